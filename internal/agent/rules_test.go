package agent

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var testDelegable = map[string][]string{
	"profile":   {"GET"},
	"billing":   {"GET", "POST"},
	"dashboard": {"GET"},
}

// policyDenies builds an Allowed func that refuses the listed route:method pairs.
func policyDenies(pairs ...string) func(route, method string) (bool, error) {
	return func(route, method string) (bool, error) {
		return !slices.Contains(pairs, route+":"+method), nil
	}
}

func TestNarrowTable(t *testing.T) {
	base := Bounds{Delegable: testDelegable, MaxTTL: 15 * time.Minute, DefaultTTL: 5 * time.Minute,
		SessionLeft: 12 * time.Hour, Allowed: policyDenies()}
	withLeft := func(d time.Duration) Bounds { b := base; b.SessionLeft = d; return b }
	withPolicy := func(p ...string) Bounds { b := base; b.Allowed = policyDenies(p...); return b }
	cases := []struct {
		name      string
		req       Request
		b         Bounds
		wantScope string // route:M,M;route:M
		wantTTL   time.Duration
		wantErr   error
	}{
		{"exactly what is delegable", Request{Routes: []string{"profile"}, Methods: []string{"GET"}, TTL: 2 * time.Minute}, base,
			"profile:GET", 2 * time.Minute, nil},
		{"default methods are GET", Request{Routes: []string{"billing"}}, base, "billing:GET", 5 * time.Minute, nil},
		{"more than delegable: undelegable route dropped", Request{Routes: []string{"profile", "admin"}, Methods: []string{"GET"}}, base,
			"profile:GET", 5 * time.Minute, nil},
		{"unknown route only", Request{Routes: []string{"nope"}}, base, "", 0, ErrNothingDelegable},
		{"method the route does not serve dropped", Request{Routes: []string{"profile", "billing"}, Methods: []string{"GET", "POST"}}, base,
			"billing:GET,POST;profile:GET", 5 * time.Minute, nil},
		{"only unserved method", Request{Routes: []string{"profile"}, Methods: []string{"DELETE"}}, base, "", 0, ErrNothingDelegable},
		{"HEAD goes with GET", Request{Routes: []string{"profile"}, Methods: []string{"HEAD"}}, base, "profile:HEAD", 5 * time.Minute, nil},
		{"more than the user's policy", Request{Routes: []string{"billing"}, Methods: []string{"GET", "POST"}}, withPolicy("billing:POST"),
			"billing:GET", 5 * time.Minute, nil},
		{"policy refuses everything", Request{Routes: []string{"billing"}, Methods: []string{"POST"}}, withPolicy("billing:POST"),
			"", 0, ErrNothingDelegable},
		{"longer than max_ttl", Request{Routes: []string{"profile"}, TTL: time.Hour}, base, "profile:GET", 15 * time.Minute, nil},
		{"longer than the session", Request{Routes: []string{"profile"}, TTL: 10 * time.Minute}, withLeft(3 * time.Minute),
			"profile:GET", 3 * time.Minute, nil},
		{"default longer than the session", Request{Routes: []string{"profile"}}, withLeft(time.Minute), "profile:GET", time.Minute, nil},
		{"session already over", Request{Routes: []string{"profile"}}, withLeft(0), "", 0, ErrNothingDelegable},
		{"duplicates collapse", Request{Routes: []string{"profile", "profile"}, Methods: []string{"GET", "GET"}}, base,
			"profile:GET", 5 * time.Minute, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			scope, ttl, err := Narrow(tc.req, tc.b)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got := scopeString(scope); got != tc.wantScope || ttl != tc.wantTTL {
				t.Errorf("got %q %s, want %q %s", got, ttl, tc.wantScope, tc.wantTTL)
			}
		})
	}
}

func TestNarrowFailsClosedWhenThePolicyCannotBeAsked(t *testing.T) {
	b := Bounds{Delegable: testDelegable, MaxTTL: time.Minute, DefaultTTL: time.Minute, SessionLeft: time.Hour,
		Allowed: func(string, string) (bool, error) { return false, errors.New("pdp timeout") }}
	if _, _, err := Narrow(Request{Routes: []string{"profile"}}, b); err == nil || errors.Is(err, ErrNothingDelegable) {
		t.Fatalf("err = %v, want the policy error", err)
	}
}

func scopeString(scope []RouteMethods) string {
	parts := make([]string, len(scope))
	for i, s := range scope {
		parts[i] = s.Route + ":" + strings.Join(s.Methods, ",")
	}
	return strings.Join(parts, ";")
}

// The property: whatever is asked, every granted (route, method) was asked
// for, is delegable, is served by the route and allowed by the policy, and
// the TTL is at most what was asked (or the default), max_ttl and the
// session's remaining lifetime.
func TestNarrowNeverWiderNorLonger(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	routes := []string{"profile", "billing", "dashboard", "admin", "catalog", ""}
	pick := func(from []string) []string {
		var out []string
		for range rng.IntN(5) {
			out = append(out, from[rng.IntN(len(from))])
		}
		return out
	}
	for i := range 5000 {
		delegable := map[string][]string{}
		for _, r := range routes[:5] {
			if rng.IntN(2) == 0 {
				delegable[r] = pick(knownMethods)
			}
		}
		denied := map[string]bool{}
		for _, r := range routes {
			for _, m := range knownMethods {
				denied[r+":"+m] = rng.IntN(3) == 0
			}
		}
		req := Request{Routes: pick(routes), Methods: pick(knownMethods), TTL: time.Duration(rng.Int64N(int64(2*time.Hour))) - time.Minute}
		b := Bounds{Delegable: delegable, MaxTTL: time.Duration(1 + rng.Int64N(int64(time.Hour))),
			SessionLeft: time.Duration(rng.Int64N(int64(2*time.Hour))) - time.Minute,
			Allowed:     func(r, m string) (bool, error) { return !denied[r+":"+m], nil }}
		b.DefaultTTL = time.Duration(1 + rng.Int64N(int64(b.MaxTTL)))
		scope, ttl, err := Narrow(req, b)
		if err != nil {
			if !errors.Is(err, ErrNothingDelegable) {
				t.Fatalf("case %d: unexpected error %v", i, err)
			}
			continue
		}
		asked := req.TTL
		if asked <= 0 {
			asked = b.DefaultTTL
		}
		if ttl <= 0 || ttl > asked || ttl > b.MaxTTL || ttl > b.SessionLeft {
			t.Fatalf("case %d: ttl %s exceeds a bound (asked %s, max %s, session %s)", i, ttl, asked, b.MaxTTL, b.SessionLeft)
		}
		methods := req.Methods
		if len(methods) == 0 {
			methods = []string{"GET"}
		}
		g := Grant{Scope: scope}
		for _, s := range scope {
			if !slices.Contains(req.Routes, s.Route) {
				t.Fatalf("case %d: route %q was not asked for", i, s.Route)
			}
			served, ok := delegable[s.Route]
			if !ok {
				t.Fatalf("case %d: route %q is not delegable", i, s.Route)
			}
			for _, m := range s.Methods {
				if !slices.Contains(methods, m) || !serves(served, m) || denied[s.Route+":"+m] {
					t.Fatalf("case %d: %s %s granted beyond a bound", i, s.Route, m)
				}
			}
		}
		// And enforcement agrees: what Allows admits is a granted method, or
		// HEAD riding on a granted GET (as on the routes themselves).
		for _, r := range routes {
			for _, m := range knownMethods {
				if !g.Allows(r, m) {
					continue
				}
				eff := m
				if i := slices.IndexFunc(scope, func(s RouteMethods) bool { return s.Route == r }); i < 0 || !slices.Contains(scope[i].Methods, m) {
					eff = "GET"
				}
				if !slices.Contains(req.Routes, r) || !slices.Contains(methods, eff) || denied[r+":"+eff] {
					t.Fatalf("case %d: Allows(%s, %s) beyond the grant", i, r, m)
				}
			}
		}
	}
}

func TestParseRequest(t *testing.T) {
	cases := []struct {
		body    string
		want    Request
		wantErr string
	}{
		{`{"name":"bot","routes":["profile"],"methods":["get"],"ttl":"5m"}`, Request{Name: "bot", Routes: []string{"profile"}, Methods: []string{"GET"}, TTL: 5 * time.Minute}, ""},
		{`{"name":"bot","routes":["profile"],"ttl":300}`, Request{Name: "bot", Routes: []string{"profile"}, TTL: 300 * time.Second}, ""},
		{`{"name":"my agent 1","routes":["profile"]}`, Request{Name: "my agent 1", Routes: []string{"profile"}}, ""},
		{`{"name":"bot","routes":["profile"],"ttl":null}`, Request{Name: "bot", Routes: []string{"profile"}}, ""},
		{`{"routes":["profile"]}`, Request{}, "name is required"},
		{`{"name":"a\nb","routes":["profile"]}`, Request{}, "name is required"},
		{`{"name":"` + strings.Repeat("a", 65) + `","routes":["p"]}`, Request{}, "name is required"},
		{`{"name":"bot","routes":[]}`, Request{}, "routes must list"},
		{`{"name":"bot","routes":["p"],"methods":["FETCH"]}`, Request{}, "methods may contain only"},
		{`{"name":"bot","routes":["p"],"ttl":"0s"}`, Request{}, "ttl must be"},
		{`{"name":"bot","routes":["p"],"ttl":-5}`, Request{}, "ttl must be"},
		{`{"name":"bot","routes":["p"],"ttl":1.5}`, Request{}, "ttl must be"},
		{`{"name":"bot","routes":["p"],"ttl":"soon"}`, Request{}, "ttl must be"},
		{`{"name":"bot","routes":["p"],"ttl":true}`, Request{}, "ttl must be"},
		{`{"name":"bot","routes":["p"],"scope":"all"}`, Request{}, "no other fields"},
		{`{"name":"bot","routes":["p"]} {}`, Request{}, "one JSON object"},
		{`[]`, Request{}, "must be a JSON object"},
	}
	for _, tc := range cases {
		got, err := ParseRequest([]byte(tc.body))
		if tc.wantErr != "" {
			var bad *BadRequestError
			if !errors.As(err, &bad) || !strings.Contains(bad.Msg, tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.body, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.Name != tc.want.Name || !slices.Equal(got.Routes, tc.want.Routes) ||
			!slices.Equal(got.Methods, tc.want.Methods) || got.TTL != tc.want.TTL {
			t.Errorf("%s: got %+v, %v; want %+v", tc.body, got, err, tc.want)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"name":"bot","routes":["profile"],"methods":["GET"],"ttl":"5m"}`))
	f.Add([]byte(`{"name":"bot","routes":["profile"],"ttl":300}`))
	f.Add([]byte(`{"ttl":9223372036854775807}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseRequest(body)
		if err != nil {
			var bad *BadRequestError
			if !errors.As(err, &bad) {
				t.Fatalf("error %T is not a BadRequestError", err)
			}
			return
		}
		if !validName(req.Name) || req.TTL < 0 || len(req.Routes) == 0 {
			t.Fatalf("accepted an invalid request %+v", req)
		}
	})
}

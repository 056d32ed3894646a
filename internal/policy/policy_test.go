package policy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func newTestEnv(t testing.TB) *Env {
	t.Helper()
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func mustCompile(t testing.TB, env *Env, expr string) *Program {
	t.Helper()
	p, err := env.Compile(expr)
	if err != nil {
		t.Fatalf("compile %q: %v", expr, err)
	}
	return p
}

// userInput is a signed-in user's GET of /api/profile/me.
func userInput() *Input {
	return &Input{
		User: map[string]any{
			"sub": "user-1", "email": "ada@example.com", "email_verified": true,
			"groups": []any{"staff", "billing-admins"}, "level": float64(3),
		},
		Session: &SessionInfo{SID: "pub-sid", AuthTime: testNow.Add(-10 * time.Minute), Created: testNow.Add(-10 * time.Minute),
			ACR: "urn:mfa", AMR: []string{"pwd", "otp"}, Age: 10 * time.Minute},
		Request: RequestInfo{Method: http.MethodGet, Path: "/api/profile/me", RawQuery: "view=full&lang=en",
			Header: http.Header{"X-Tenant": {"acme"}, "Accept": {"application/json, text/plain"}}, RemoteIP: "10.1.2.3"},
		Route:  "profile",
		Client: "web",
	}
}

func withAgent(in *Input) *Input {
	in.Agent = &AgentInfo{ID: "agt-1", Name: "report-bot", Routes: []string{"profile"}, Methods: []string{"GET"}, Expires: testNow.Add(5 * time.Minute)}
	return in
}

func TestPolicyRules(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		name  string
		expr  string
		in    func() *Input
		allow bool
	}{
		{"claim: verified email allowed", `user.email_verified == true`, userInput, true},
		{"claim: unverified email denied", `user.email_verified == true`, func() *Input {
			in := userInput()
			in.User["email_verified"] = false
			return in
		}, false},
		{"claim: group membership", `"billing-admins" in user.groups`, userInput, true},
		{"claim: missing group denied", `"root" in user.groups`, userInput, false},
		{"claim: JSON number against int literal", `user.level >= 3`, userInput, true},
		{"claim: email domain", `user.email.endsWith("@example.com")`, userInput, true},
		{"claim: optional claim guarded with has", `has(user.tenant) && user.tenant == "acme"`, userInput, false},
		{"method: GET allowed", `request.method == "GET"`, userInput, true},
		{"method: write denied", `request.method in ["POST", "PUT", "DELETE"]`, userInput, false},
		{"path: prefix", `request.path.startsWith("/api/profile/")`, userInput, true},
		{"path: regex", `request.path.matches("^/api/profile/[a-z]+$")`, userInput, true},
		{"path: admin subtree denied", `!request.path.startsWith("/api/profile/admin")`, func() *Input {
			in := userInput()
			in.Request.Path = "/api/profile/admin/users"
			return in
		}, false},
		{"query: a parameter's value", `request.query.view == "full"`, userInput, true},
		{"header: lower-cased name", `request.headers["x-tenant"] == "acme"`, userInput, true},
		{"header: one field line with a list", `request.headers["accept"] == "application/json, text/plain"`, userInput, true},
		{"header: absent header is not in the map", `!("x-debug" in request.headers)`, userInput, true},
		{"header: wrong tenant denied", `request.headers["x-tenant"] == user.email.split("@")[1].split(".")[0]`, userInput, false},
		{"session: MFA required", `session != null && "otp" in session.amr && session.acr == "urn:mfa"`, userInput, true},
		{"session: fresh login required", `session.age < duration("5m")`, userInput, false},
		{"route and client", `route == "profile" && client == "web"`, userInput, true},
		{"agent: humans only", `agent == null`, func() *Input { return withAgent(userInput()) }, false},
		{"agent: humans pass humans-only rule", `agent == null`, userInput, true},
		{"agent: grant must cover route and method", `agent == null || (route in agent.grant.routes && request.method in agent.grant.methods)`,
			func() *Input { return withAgent(userInput()) }, true},
		{"agent: grant without the method denied", `agent == null || request.method in agent.grant.methods`, func() *Input {
			in := withAgent(userInput())
			in.Request.Method = http.MethodDelete
			return in
		}, false},
		{"agent: routes at the top", `agent != null && "profile" in agent.routes && agent.routes == agent.grant.routes`, func() *Input { return withAgent(userInput()) }, true},
		{"agent: named agent", `agent != null && agent.name == "report-bot" && agent.id == "agt-1"`, func() *Input { return withAgent(userInput()) }, true},
		{"agent: grant expiry visible", `agent.grant.expires > timestamp("2026-11-28T12:00:00Z")`, func() *Input { return withAgent(userInput()) }, true},
		{"anonymous: session is null", `session == null`, func() *Input { return &Input{Request: userInput().Request, Route: "catalog"} }, true},
		{"anonymous: has() on empty user", `!has(user.sub)`, func() *Input { return &Input{Request: userInput().Request} }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAuthorizer(mustCompile(t, env, tc.expr), nil)
			d := a.Decide(context.Background(), tc.in(), "req-1")
			if d.Allow != tc.allow {
				t.Fatalf("Allow = %v, want %v (reason %s, err %v)", d.Allow, tc.allow, d.Reason, d.Err)
			}
			switch {
			case tc.allow && (d.Reason != ReasonAllowed || d.Status != http.StatusOK):
				t.Fatalf("allowed decision = %+v", d)
			case !tc.allow && (d.Reason != ReasonCELDenied || d.Status != http.StatusForbidden):
				t.Fatalf("denied decision = %+v, want cel_denied/403", d)
			}
		})
	}
}

func TestNoAllowExpressionAdmitsAnyValidSession(t *testing.T) {
	d := NewAuthorizer(nil, nil).Decide(context.Background(), userInput(), "r")
	if !d.Allow || d.Reason != ReasonAllowed {
		t.Fatalf("decision = %+v", d)
	}
}

func TestCompileErrorsCarryPosition(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		name         string
		expr         string
		line, column int
		contains     string
	}{
		{"type mismatch string vs int", `request.method == 1`, 1, 16, "no matching overload"},
		{"misspelt request field", `request.metod == "GET"`, 1, 8, "undefined field 'metod'"},
		{"misspelt field on second line", "user.email_verified == true &&\n  session.sidd == \"x\"", 2, 10, "undefined field 'sidd'"},
		{"duration compared with int", `session.age > 5`, 1, 13, "no matching overload"},
		{"unknown variable", `usr.email == "x"`, 1, 1, "undeclared reference"},
		{"syntax error", `user.email ==`, 1, 14, "Syntax error"},
		{"result not bool", `request.path`, 1, 1, "must yield bool"},
		{"bare claim is not bool (check rejects it)", `user.admin`, 1, 1, "compare it explicitly, e.g. user.admin == true"},
		{"conditional of claims is not bool", `has(user.a) ? user.a : false`, 1, 1, "must yield bool"},
		{"suggests the variable", `usr.email == "x"`, 1, 1, "did you mean 'user'?"},
		{"suggests the field", `session.acrr == "x"`, 1, 8, "did you mean 'acr'?"},
		{"says how to fix a type mismatch", `request.method == 1`, 1, 16, "quote strings"},
		{"empty expression", "  ", 1, 1, "omit `allow:`"},
		{"constructing context objects", `gatehouse.Request{method: "GET"}.method == "GET"`, 1, 18, "not supported"},
		{"worst-case cost too high: nested loops over claims", `user.groups.exists(a, user.groups.exists(b, a == b))`, 1, 1, "too expensive"},
		{"invalid regex literal", `request.path.matches("(")`, 1, 1, "missing closing )"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env.Compile(tc.expr)
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("error = %v (%T), want *CompileError", err, err)
			}
			if ce.Line != tc.line || ce.Column != tc.column || !strings.Contains(ce.Message, tc.contains) {
				t.Fatalf("got %d:%d %q, want %d:%d containing %q", ce.Line, ce.Column, ce.Message, tc.line, tc.column, tc.contains)
			}
		})
	}
}

func TestRuntimeErrorsDeny(t *testing.T) {
	env := newTestEnv(t)
	big := make([]any, 5000)
	for i := range big {
		big[i] = fmt.Sprintf("g%d", i)
	}
	tests := []struct {
		name     string
		expr     string
		in       func() *Input
		contains string
	}{
		{"missing claim", `user.missing_claim == 1`, userInput, `1:5: no such key "missing_claim"`},
		{"claim of wrong type", `user.email > 3`, userInput, "no such overload"},
		{"non-bool claim under a boolean operator", `user.email_verified == false || user.email`, userInput, "no such overload"},
		{"session field on anonymous route", `session.acr == "urn:mfa"`, func() *Input { return &Input{Request: userInput().Request} },
			"session is null"},
		{"agent field without agent", `agent.name == "bot"`, userInput, "agent is null"},
		{"malformed query", `request.query.a == "1"`, func() *Input {
			in := userInput()
			in.Request.RawQuery = "a=1;b=2"
			return in
		}, "query string is malformed"},
		{"header flood", `request.headers.exists(k, k == "x")`, func() *Input {
			in := userInput()
			for i := range maxPolicyHeaders {
				in.Request.Header.Set(fmt.Sprintf("X-Flood-%d", i), "v")
			}
			return in
		}, "too many header fields"},
		{"cost blow-up over a huge claim", `user.groups.all(g, g.startsWith("g"))`, func() *Input {
			in := userInput()
			in.User["groups"] = big
			return in
		}, "cost limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewAuthorizer(mustCompile(t, env, tc.expr), nil).Decide(context.Background(), tc.in(), "r")
			if d.Allow || d.Reason != ReasonCELError || d.Status != http.StatusForbidden {
				t.Fatalf("decision = %+v, want cel_error/403", d)
			}
			if d.Err == nil || !strings.Contains(d.Err.Error(), tc.contains) {
				t.Fatalf("err = %v, want it to contain %q", d.Err, tc.contains)
			}
		})
	}
}

func TestCancelledEvaluationDenies(t *testing.T) {
	env := newTestEnv(t)
	in := userInput()
	groups := make([]any, 200)
	for i := range groups {
		groups[i] = "g"
	}
	in.User["groups"] = groups
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := mustCompile(t, env, `user.groups.all(g, g == "g")`)
	if ok, err := p.Eval(ctx, in); ok || err == nil {
		t.Fatalf("Eval on a cancelled ctx = %v, %v; want an error", ok, err)
	}
	for _, expr := range []string{`user.groups.all(g, g == "g")`, `user.email_verified == true`} {
		d := NewAuthorizer(mustCompile(t, env, expr), nil).Decide(ctx, in, "r")
		if d.Allow || d.Reason != ReasonCanceled || d.Status != http.StatusServiceUnavailable {
			t.Fatalf("%s on a cancelled request: %+v", expr, d)
		}
	}
}

// An evaluation error is logged; it must not carry what the client sent
// (header values, paths) or claim values.
func TestEvalErrorsNeverEchoRequestValues(t *testing.T) {
	env := newTestEnv(t)
	const sensitive = "s3cr3t-value-from-client"
	in := userInput()
	in.Request.Path = "/api/profile/" + sensitive
	in.Request.Header.Set("X-Token", sensitive)
	in.User["ssn"] = sensitive
	for _, expr := range []string{
		`request.headers[request.path] == "x"`,
		`int(request.headers["x-token"]) == 1`,
		`user[request.headers["x-token"]] == 1`,
		`user.ssn > 1`,
		`timestamp(request.headers["x-token"]) > timestamp("2020-01-01T00:00:00Z")`,
	} {
		_, err := mustCompile(t, env, expr).Eval(context.Background(), in)
		if err == nil {
			t.Fatalf("%s: expected an error", expr)
		}
		if strings.Contains(err.Error(), sensitive) {
			t.Fatalf("%s: error leaks a request value: %v", expr, err)
		}
	}
}

// Policies compiled once are evaluated concurrently by every request.
func TestProgramConcurrentUse(t *testing.T) {
	env := newTestEnv(t)
	p := mustCompile(t, env, `request.headers["x-tenant"] == "acme" && request.query.lang == "en"`)
	done := make(chan error, 8)
	for range 8 {
		go func() {
			for range 200 {
				if ok, err := p.Eval(context.Background(), userInput()); !ok || err != nil {
					done <- fmt.Errorf("Eval = %v, %v", ok, err)
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkEvalSimple(b *testing.B) {
	p := mustCompile(b, newTestEnv(b), `user.email_verified == true`)
	in := userInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := p.Eval(ctx, in); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkEvalHeaders(b *testing.B) {
	p := mustCompile(b, newTestEnv(b), `request.headers["x-tenant"] == "acme" && request.method == "GET"`)
	in := userInput()
	in.Request.Header.Set("User-Agent", "Mozilla/5.0")
	in.Request.Header.Set("Cookie", "__Host-gatehouse=abc")
	in.Request.Header.Set("X-Csrf", "1")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := p.Eval(ctx, in); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func TestHeaderMapViews(t *testing.T) {
	env := newTestEnv(t)
	in := userInput()
	in.Request.Header["X-Other"] = []string{"b"}
	in.Request.Header["X_Hidden"] = []string{"never forwarded, never seen"}
	for _, expr := range []string{
		`request.headers.exists(k, k == "x-tenant")`,
		`size(request.headers) == 3`,
		`!("X-Tenant" in request.headers)`, // names are lower case only
		`has(request.headers.accept) && !has(request.headers.cookie)`,
		`request.headers.filter(k, k.startsWith("x-")).size() == 2`,
		`request.headers == {"x-tenant": "acme", "accept": "application/json, text/plain", "x-other": "b"}`,
		`!("x-hidden" in request.headers) && !("x_hidden" in request.headers)`,
	} {
		if ok, err := mustCompile(t, env, expr).Eval(context.Background(), in); !ok || err != nil {
			t.Errorf("%s = %v, %v", expr, ok, err)
		}
	}
}

// Activations are pooled: one request's headers, query, session or agent
// must never be seen by the next request's evaluation.
func TestPooledEvaluationDoesNotLeakBetweenRequests(t *testing.T) {
	env := newTestEnv(t)
	first := withAgent(userInput())
	second := &Input{Request: RequestInfo{Method: "GET", Path: "/api/profile/me", RawQuery: "lang=de", Header: http.Header{}}}
	for _, tc := range []struct {
		expr      string
		secondErr string // "" when the second request must evaluate to false
	}{
		{`request.headers["x-tenant"] == "acme"`, `no such key "x-tenant"`},
		{`request.headers.size() == 2`, ""},
		{`request.query.lang == "en"`, ""},
		{`session != null || agent != null`, ""},
		{`user.email_verified == true`, `no such key "email_verified"`},
	} {
		p := mustCompile(t, env, tc.expr)
		for range 3 { // several rounds so pooled activations are reused
			if ok, err := p.Eval(context.Background(), first); !ok || err != nil {
				t.Fatalf("%s on first = %v, %v", tc.expr, ok, err)
			}
			ok, err := p.Eval(context.Background(), second)
			if ok || (tc.secondErr == "" && err != nil) || (tc.secondErr != "" && (err == nil || !strings.Contains(err.Error(), tc.secondErr))) {
				t.Fatalf("%s on second = %v, %v; the first request's values leaked", tc.expr, ok, err)
			}
		}
	}
}

// Header names and values and the query string come from the client.
func FuzzRequestHeadersAndQuery(f *testing.F) {
	f.Add("X-Tenant", "acme", "x-tenant", "a=1&b=2")
	f.Add("x-tenant", "a, b", "X-TENANT", "a=%zz")
	f.Add("", "", "", ";;")
	env, err := NewEnv()
	if err != nil {
		f.Fatal(err)
	}
	lookup, err := env.Compile(`request.headers[request.path] == request.query.v`)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, value, key, rawQuery string) {
		in := &Input{Request: RequestInfo{Method: "GET", Path: key, RawQuery: rawQuery,
			Header: http.Header{name: {value}, "Accept": {"*/*"}}}}
		_, _ = lookup.Eval(context.Background(), in) // must not panic
		// The single-key fast path agrees with the full map.
		r := &requestVal{r: &in.Request}
		fast, okFast, err := r.header(key)
		full, okFull := r.headerMap()[key]
		if err == nil && (okFast != okFull || fast != full) {
			t.Fatalf("header(%q) = %q,%v; map has %q,%v", key, fast, okFast, full, okFull)
		}
	})
}

package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCSRFAttacksAreRefusedBeforeAnyUpstream(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name   string
		path   string
		method string
		edit   func(r *http.Request)
		code   string
	}{
		{"missing header", "/api/profile/me", "GET", func(r *http.Request) { r.Header.Del("X-CSRF") }, "csrf_header_missing"},
		{"missing header on POST", "/api/profile/me", "POST", func(r *http.Request) { r.Header.Del("X-CSRF") }, "csrf_header_missing"},
		{"missing header on anonymous route", "/api/public/x", "POST", func(r *http.Request) { r.Header.Del("X-CSRF") }, "csrf_header_missing"},
		{"wrong value", "/api/profile/me", "GET", func(r *http.Request) { r.Header.Set("X-CSRF", "0") }, "csrf_header_invalid"},
		{"empty value", "/api/profile/me", "GET", func(r *http.Request) { r.Header.Set("X-CSRF", "") }, "csrf_header_invalid"},
		{"two values", "/api/profile/me", "GET", func(r *http.Request) { r.Header.Add("X-CSRF", "1") }, "csrf_header_invalid"},
		{"underscore spelling", "/api/profile/me", "GET", func(r *http.Request) { r.Header.Del("X-CSRF"); r.Header["X_csrf"] = []string{"1"} }, "csrf_header_missing"},
		{"foreign origin", "/api/profile/me", "POST", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, "csrf_origin_mismatch"},
		{"lookalike origin", "/api/profile/me", "POST", func(r *http.Request) { r.Header.Set("Origin", "https://app.example.com.evil.example") }, "csrf_origin_mismatch"},
		{"http downgrade origin", "/api/profile/me", "POST", func(r *http.Request) { r.Header.Set("Origin", "http://app.example.com") }, "csrf_origin_mismatch"},
		{"null origin", "/api/profile/me", "POST", func(r *http.Request) { r.Header.Set("Origin", "null") }, "csrf_origin_mismatch"},
		{"null origin anonymous", "/api/public/x", "POST", func(r *http.Request) { r.Header.Set("Origin", "null") }, "csrf_origin_mismatch"},
		{"two origins", "/api/profile/me", "POST", func(r *http.Request) {
			r.Header.Add("Origin", "https://app.example.com")
			r.Header.Add("Origin", "https://evil.example")
		}, "csrf_origin_mismatch"},
		{"sec-fetch-site cross-site", "/api/profile/me", "GET", func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }, "csrf_cross_site"},
		{"sec-fetch-site cross-site with good origin", "/api/profile/me", "POST", func(r *http.Request) {
			r.Header.Set("Origin", publicURL)
			r.Header.Set("Sec-Fetch-Site", "Cross-Site")
		}, "csrf_cross_site"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.resetHits()
			r := h.req(tt.method, tt.path, strings.NewReader("{}"))
			tt.edit(r)
			res, body := h.do(r)
			wantError(t, res, body, http.StatusUnauthorized, tt.code)
			h.wantNothingForwarded()
		})
	}
	// And the legitimate variants pass.
	for _, origin := range []string{"", publicURL, "https://admin.example.com"} {
		h.resetHits()
		r := h.req("POST", "/api/profile/me", strings.NewReader("{}"))
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		res, body := h.do(r)
		if res.StatusCode != 200 || len(h.ups["profile"].Hits()) != 1 {
			t.Fatalf("origin %q: status %d %s", origin, res.StatusCode, body)
		}
	}
}

func TestSeamFailuresForwardNothing(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		setup  func(h *harness)
		edit   func(r *http.Request)
		status int
		code   string
	}{
		{"no cookie", "/api/profile/me", nil, func(r *http.Request) { r.Header.Del("Cookie") }, 401, "unauthenticated"},
		{"unknown session", "/api/profile/me", nil, func(r *http.Request) { r.Header.Set("Cookie", "gh=forged") }, 401, "unauthenticated"},
		{"bearer instead of cookie", "/api/profile/me", nil, func(r *http.Request) {
			r.Header.Del("Cookie")
			r.Header.Set("Authorization", "Bearer user-at-alice")
		}, 401, "unauthenticated"},
		{"session store down", "/api/profile/me", func(h *harness) { h.auth.err.Store(ptr(error(errBoom))) }, nil, 503, "session_unavailable"},
		{"policy denies", "/api/profile/me", func(h *harness) { h.denyAll.Store(true) }, nil, 403, "policy_denied"},
		{"policy denies anonymous route", "/api/public/x", func(h *harness) { h.denyAll.Store(true) }, nil, 403, "policy_denied"},
		{"policy denies non-admin", "/api/admin/x", nil, nil, 403, "policy_denied"},
		{"policy engine down", "/api/profile/me", func(h *harness) { h.authzErr.Store(ptr(error(errBoom))) }, nil, 503, "policy_unavailable"},
		{"audit down", "/api/profile/me", func(h *harness) { h.audit.reserveErr.Store(ptr(error(errBoom))) }, nil, 503, "audit_unavailable"},
		{"audit down anonymous", "/api/public/x", func(h *harness) { h.audit.reserveErr.Store(ptr(error(errBoom))) }, nil, 503, "audit_unavailable"},
		{"user token refresh fails", "/api/profile/me", func(h *harness) { h.tokens.err.Store(ptr(error(errBoom))) }, nil, 502, "user_token_unavailable"},
		{"user token invalid_grant", "/api/profile/me", func(h *harness) {
			h.tokens.err.Store(ptr(error(fmt.Errorf("refresh: invalid_grant: %w", ErrNoSession))))
		}, nil, 401, "session_expired"},
		{"token exchange fails", "/api/billing/plan", func(h *harness) { h.xchg.err.Store(ptr(error(errBoom))) }, nil, 502, "token_exchange_failed"},
		{"token exchange subject expired", "/api/billing/plan", func(h *harness) { h.tokens.err.Store(ptr(error(ErrNoSession))) }, nil, 401, "session_expired"},
		{"client credentials fail", "/api/catalog/x", func(h *harness) { h.ccErr.Store(ptr(error(errBoom))) }, nil, 502, "client_credentials_failed"},
		{"method not allowed", "/api/catalog/x", nil, func(r *http.Request) { r.Method = "DELETE" }, 405, "method_not_allowed"},
		{"no route", "/api/unknown/x", nil, nil, 404, "no_route"},
		{"upgrade on plain route", "/api/profile/me", nil, func(r *http.Request) {
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
		}, 403, "upgrade_not_allowed"},
		{"h2c upgrade on websocket route", "/api/ws/x", nil, func(r *http.Request) {
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "h2c")
		}, 403, "upgrade_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.setup != nil {
				tt.setup(h)
			}
			r := h.req("GET", tt.path, nil)
			if tt.edit != nil {
				tt.edit(r)
			}
			res, body := h.do(r)
			wantError(t, res, body, tt.status, tt.code)
			if strings.Contains(body, "boom") || strings.Contains(body, "user-at") {
				t.Fatalf("error body leaks internals: %s", body)
			}
			h.wantNothingForwarded()
			if tt.status == 405 && res.Header.Get("Allow") != "GET, HEAD" {
				t.Fatalf("Allow = %q", res.Header.Get("Allow"))
			}
			reserved, _, recorded := h.audit.last()
			if len(reserved) != 0 {
				t.Fatalf("refused request was reserved as allowed: %+v", reserved)
			}
			if tt.code != "audit_unavailable" && (len(recorded) != 1 || recorded[0].Decision != "deny" || recorded[0].Code != tt.code) {
				t.Fatalf("audit records = %+v", recorded)
			}
		})
	}
}

func TestAllowedRequestIsAuditedBeforeAndAfter(t *testing.T) {
	h := newHarness(t)
	h.ups["profile"].handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	res, _ := h.do(h.req("GET", "/api/profile/me?secret=x", nil))
	if res.StatusCode != http.StatusTeapot {
		t.Fatalf("status %d", res.StatusCode)
	}
	reserved, committed, _ := h.audit.last()
	if len(reserved) != 1 || len(committed) != 1 {
		t.Fatalf("reserved %d committed %d", len(reserved), len(committed))
	}
	c := committed[0]
	if c.Decision != "allow" || c.Status != http.StatusTeapot || c.Route != "profile" || c.Subject != "alice" ||
		c.SessionID != "sid-alice" || c.Path != "/api/profile/me" || c.Credential != "user_token" {
		t.Fatalf("committed %+v", c)
	}
}

func TestTokenExchangeCachedPerSessionAndRouteWithSingleflight(t *testing.T) {
	h := newHarness(t)
	h.xchg.delay = 50 * time.Millisecond
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			res, err := h.srv.Client().Do(h.req("GET", "/api/billing/plan", nil))
			if err == nil {
				res.Body.Close()
				if res.StatusCode != 200 {
					err = fmt.Errorf("status %d", res.StatusCode)
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if c := h.xchg.calls.Load(); c != 1 {
		t.Fatalf("exchanges = %d, want 1 for concurrent requests", c)
	}
	// Another session exchanges its own token.
	r := h.req("GET", "/api/billing/plan", nil)
	r.Header.Set("Cookie", "gh="+adminCookie)
	h.do(r)
	if c := h.xchg.calls.Load(); c != 2 {
		t.Fatalf("exchanges = %d, want 2 after a second session", c)
	}
	for _, hit := range h.ups["billing"].Hits() {
		if hit.Header.Get("Authorization") == "Bearer xchg-1-billing-api-for-user-at-alice" {
			continue
		}
		if hit.Header.Get("Authorization") != "Bearer xchg-2-billing-api-for-user-at-root" {
			t.Fatalf("unexpected credential %q", hit.Header.Get("Authorization"))
		}
	}
	// Shortly before expiry (5m TTL, 30s skew) the token is replaced.
	h.clock.Advance(4*time.Minute + 31*time.Second)
	h.do(h.req("GET", "/api/billing/plan", nil))
	if c := h.xchg.calls.Load(); c != 3 {
		t.Fatalf("exchanges = %d, want 3 after expiry", c)
	}
	// Ending the session forgets its tokens.
	h.p.ForgetSession("sid-alice")
	h.do(h.req("GET", "/api/billing/plan", nil))
	if c := h.xchg.calls.Load(); c != 4 {
		t.Fatalf("exchanges = %d, want 4 after ForgetSession", c)
	}
}

func TestNewRejectsUnsafeRoutes(t *testing.T) {
	up := mustURL("http://up.internal/")
	ok := RouteSpec{Name: "a", Path: "/api/a/", Upstream: up, Credential: Credential{Kind: CredentialNone}, Authorizer: AllowAll{}}
	tests := []struct {
		name string
		edit func(s *RouteSpec)
		want string
	}{
		{"no authorizer", func(s *RouteSpec) { s.Authorizer = nil }, "no authorizer"},
		{"no credential", func(s *RouteSpec) { s.Credential = Credential{} }, "no credential"},
		{"unknown credential", func(s *RouteSpec) { s.Credential.Kind = "magic" }, "not supported"},
		{"dirty path", func(s *RouteSpec) { s.Path = "/api/../a/" }, "not clean"},
		{"root path", func(s *RouteSpec) { s.Path = "/" }, "proxy everything"},
		{"upstream with query", func(s *RouteSpec) { s.Upstream = mustURL("http://up/?a=1") }, "query"},
		{"upstream with user", func(s *RouteSpec) { s.Upstream = mustURL("http://u:p@up/") }, "user info"},
		{"upstream scheme", func(s *RouteSpec) { s.Upstream = mustURL("ftp://up/") }, "scheme"},
		{"anonymous user_token", func(s *RouteSpec) { s.Anonymous = true; s.Credential.Kind = CredentialUserToken }, "anonymous"},
		{"exchange without audience", func(s *RouteSpec) { s.Credential.Kind = CredentialTokenExchange }, "audience"},
		{"header credential named Cookie", func(s *RouteSpec) {
			s.Credential = Credential{Kind: CredentialHeader, HeaderName: "Cookie", HeaderValue: secretStatic("x")}
		}, "reserved"},
		{"header credential named X-Forwarded-User", func(s *RouteSpec) {
			s.Credential = Credential{Kind: CredentialHeader, HeaderName: "X-Forwarded-User", HeaderValue: secretStatic("x")}
		}, "reserved"},
		{"header credential empty", func(s *RouteSpec) { s.Credential = Credential{Kind: CredentialHeader, HeaderName: "X-Key"} }, "non-empty"},
		{"mixed credential fields", func(s *RouteSpec) { s.Credential.Audience = "x" }, "only to token_exchange"},
		{"lower-case method", func(s *RouteSpec) { s.Methods = []string{"get"} }, "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.edit(&s)
			_, err := New([]RouteSpec{s}, Options{PublicURL: mustURL(publicURL), Auditor: &testAuditor{}, Authenticator: &testAuth{}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	_, err := New([]RouteSpec{ok, ok}, Options{PublicURL: mustURL(publicURL), Auditor: &testAuditor{}})
	if err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate: %v", err)
	}
	p, err := New([]RouteSpec{ok}, Options{PublicURL: mustURL(publicURL), Auditor: &testAuditor{}, Authenticator: &testAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if got := p.Prefixes(); len(got) != 1 || got[0] != "/api/" {
		t.Fatalf("Prefixes = %v", got)
	}
}

func TestRouteMatchIsLongestPrefixAtSegmentBoundaries(t *testing.T) {
	mk := func(name, path string) *route {
		return &route{name: name, path: path, prefix: strings.HasSuffix(path, "/")}
	}
	routes := []*route{mk("api", "/api/"), mk("profile", "/api/profile/"), mk("deep", "/api/profile/admin/"), mk("exact", "/api/profile")}
	tbl := table{exact: map[string]*route{}, prefix: map[string]*route{}}
	for _, r := range routes {
		if r.prefix {
			tbl.prefix[r.path] = r
		} else {
			tbl.exact[r.path] = r
		}
	}
	for path, want := range map[string]string{
		"/api/profile/me":        "profile",
		"/api/profile/":          "profile",
		"/api/profile":           "exact",
		"/api/profilex":          "api",
		"/api/profile/admin/x":   "deep",
		"/api/profile/adminx":    "profile",
		"/api/profile/admin":     "profile",
		"/api/x":                 "api",
		"/apix":                  "",
		"/":                      "",
		"/api":                   "",
		"/api/profile/admin/x/y": "deep",
	} {
		got := ""
		if r := tbl.match(path); r != nil {
			got = r.name
		}
		if got != want {
			t.Errorf("match(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestRequestIDAndPolicyReasonReachAuditUpstreamAndClient(t *testing.T) {
	var wrapped atomic.Int64
	h := newHarness(t, func(h *harness, s []RouteSpec, o *Options) []RouteSpec {
		o.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				wrapped.Add(1)
				return rt.RoundTrip(r)
			})
		}
		for i := range s {
			if s[i].Name == "public" {
				s[i].Authorizer = AuthorizerFunc(func(_ context.Context, in *AuthzInput) (bool, error) {
					in.Reason = "cel_denied"
					return in.Header.Get("X-Want") == "yes", nil
				})
			}
		}
		return s
	})
	r := h.req("GET", "/api/public/x", nil)
	r.Header.Set("X-Request-Id", "client-chosen")
	r.Header.Set("X-Want", "yes")
	res, _ := h.do(r)
	id := res.Header.Get("X-Request-Id")
	if res.StatusCode != 200 || len(id) != 16 || len(res.Header.Values("X-Request-Id")) != 1 {
		t.Fatalf("status %d, X-Request-Id %q", res.StatusCode, res.Header.Values("X-Request-Id"))
	}
	if got := h.ups["public"].Hits()[0].Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id {
		t.Fatalf("upstream X-Request-Id %q, want %q", got, id)
	}
	_, committed, _ := h.audit.last()
	if len(committed) != 1 || committed[0].RequestID != id || committed[0].Upstream != h.ups["public"].URL+"/" {
		t.Fatalf("committed %+v", committed)
	}
	if wrapped.Load() != 1 {
		t.Fatalf("wrapped transport used %d times", wrapped.Load())
	}
	r = h.req("GET", "/api/public/x", nil)
	res, body := h.do(r)
	wantError(t, res, body, 403, "policy_denied")
	_, _, recorded := h.audit.last()
	if len(recorded) != 1 || recorded[0].Reason != "cel_denied" || recorded[0].RequestID != res.Header.Get("X-Request-Id") {
		t.Fatalf("recorded %+v", recorded)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

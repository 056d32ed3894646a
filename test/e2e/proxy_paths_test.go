package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// Hostile request paths, sent byte for byte over TCP, never reach an upstream
// they were not routed to. Two upstreams: /api/public/ (anonymous, no
// credential) and /api/admin/ (alice's token, but its allow: policy admits
// only bob). Alice is signed in for every variant, so a path that sneaks
// past the matcher into admin would show up as a hit on the admin upstream.
// Each variant is either refused with no upstream contact, or reaches
// exactly the upstream its cleaned path routes to, with that cleaned path.
func TestProxyHostilePathsNeverReachAnUnroutedUpstream(t *testing.T) {
	verifyNoLeaks(t)
	pub, adm := newRecorder(t, nil), newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: public
    path: /api/public/
    upstream: "` + pub.URL + `/"
    anonymous: true
    credential: none
  - name: admin
    path: /api/admin/
    upstream: "` + adm.URL + `/"
    credential: user_token
    allow: 'user.sub == "user-bob"'
`})
	alice := e.cookieHeader(e.login("alice", "wonderland"))
	bob := e.cookieHeader(e.login("bob", "builder"))

	const (
		any4xx = -1 // refused by Gatehouse or by Go's HTTP parser; the exact code is theirs
	)
	long := strings.Repeat("a", 3000)
	climb := strings.Repeat("../", 200)
	tests := []struct {
		name   string
		target string
		as     string // "bob" to sign in as the admin; default alice
		status int    // expected status when refused (0: forwarded)
		pub    string // path the public upstream receives
		adm    string // path the admin upstream receives (bob only)
	}{
		// controls
		{name: "plain public", target: "/api/public/ok", pub: "/ok"},
		{name: "plain admin as alice", target: "/api/admin/x", status: 403},
		{name: "plain admin as bob", target: "/api/admin/x", as: "bob", adm: "/x"},
		// traversal and dot segments: resolved once, then routed and checked
		{name: "dotdot into admin", target: "/api/public/../admin/x", status: 403},
		{name: "dotdot into admin as bob reaches admin only", target: "/api/public/../admin/ok", as: "bob", adm: "/ok"},
		{name: "encoded dotdot", target: "/api/public/%2e%2e/admin/x", status: 403},
		{name: "upper encoded dotdot", target: "/api/public/%2E%2E/admin/x", status: 403},
		{name: "half encoded dotdot", target: "/api/public/.%2e/admin/x", status: 403},
		{name: "half encoded dotdot 2", target: "/api/public/%2e./admin/x", status: 403},
		{name: "double dotdot", target: "/api/public/x/../../admin/y", status: 403},
		{name: "dot segment", target: "/api/./admin/x", status: 403},
		{name: "dot in public", target: "/api/public/./x", pub: "/x"},
		{name: "encoded dot in public", target: "/api/public/%2e/x", pub: "/x"},
		{name: "dotdot to api root", target: "/api/public/..", status: 404},
		{name: "encoded dotdot to api root", target: "/api/public/%2e%2e", status: 404},
		{name: "climb above root", target: "/api/public/" + climb + "api/admin/x", status: 400},
		{name: "triple dots", target: "/api/public/.../admin", status: 400},
		{name: "dots and space", target: "/api/public/%20../admin", status: 400},
		{name: "dots and trailing space", target: "/api/public/..%20/admin", status: 400},
		// encoded slashes, backslashes, double encoding
		{name: "encoded slash", target: "/api/public/..%2fadmin/x", status: 400},
		{name: "upper encoded slash", target: "/api/public/..%2Fadmin/x", status: 400},
		{name: "encoded dotdot slash", target: "/api/public/%2e%2e%2fadmin/x", status: 400},
		{name: "encoded slash in route", target: "/api/admin%2fx", status: 400},
		{name: "encoded api path", target: "/api/public/%2fapi%2fadmin", status: 400},
		{name: "nested encoded slashes", target: "/api/public/x/..%2f..%2fadmin", status: 400},
		{name: "encoded backslash", target: "/api/public/..%5cadmin/x", status: 400},
		{name: "encoded backslash lead", target: "/api/public/%5c..%5cadmin", status: 400},
		{name: "raw backslash", target: `/api/public/..\admin/x`, status: 400},
		{name: "raw backslashes everywhere", target: `/api/public\..\admin\x`, status: 400},
		{name: "double encoded dots", target: "/api/public/%252e%252e/admin", status: 400},
		{name: "double encoded slash", target: "/api/public/..%252fadmin", status: 400},
		{name: "iis unicode escape", target: "/api/public/%u002e%u002e/admin", status: any4xx},
		{name: "truncated escape", target: "/api/public/%2", status: any4xx},
		// path parameters, fragments, queries
		{name: "semicolon segment", target: "/api/public/;/../admin/x", status: 400},
		{name: "tomcat dotdot semicolon", target: "/api/public/..;/admin/x", status: 400},
		{name: "matrix param on route", target: "/api/admin;x=1/y", status: 400},
		{name: "encoded semicolon", target: "/api/public/..%3b/admin", status: 400},
		{name: "raw fragment", target: "/api/public/x#/../../admin/y", status: 400},
		{name: "encoded fragment", target: "/api/public/x%23/../../admin", status: 400},
		{name: "encoded question mark", target: "/api/public/x%3f/../../admin", status: 400},
		{name: "traversal only in query", target: "/api/public/x?/../../admin/y", pub: "/x"},
		{name: "admin path only in query", target: "/api/public/q?path=/api/admin/x", pub: "/q"},
		// duplicate slashes and case
		{name: "leading double slash", target: "//api/admin/x", status: any4xx},
		{name: "inner double slash", target: "/api//admin/x", status: 403},
		{name: "double slash dotdot", target: "/api/public//..//admin/x", status: 403},
		{name: "double slash in public", target: "/api/public//x", pub: "/x"},
		{name: "upper case prefix", target: "/API/admin/x", status: any4xx}, // not an API path: the frontend answers
		{name: "upper case route", target: "/api/Admin/x", status: 404},
		{name: "route without slash", target: "/api/public", status: 404},
		{name: "bff traversal", target: "/bff/../api/admin/x", status: any4xx},
		// control characters and NUL
		{name: "encoded NUL", target: "/api/public/%00", status: 400},
		{name: "NUL before dotdot", target: "/api/public/..%00/admin", status: 400},
		{name: "encoded CRLF", target: "/api/public/%0d%0aX-Injected:%201", status: 400},
		{name: "encoded tab", target: "/api/public/%09", status: 400},
		{name: "encoded DEL", target: "/api/public/%7f", status: 400},
		{name: "raw NUL", target: "/api/public/\x00/../../admin", status: any4xx},
		{name: "raw space", target: "/api/public/ x", status: any4xx},
		// unicode
		{name: "overlong utf8 dots", target: "/api/public/%c0%ae%c0%ae/admin", status: 400},
		{name: "invalid utf8", target: "/api/public/x%ff", status: 400},
		{name: "fullwidth solidus", target: "/api/public/%ef%bc%8f..%ef%bc%8fadmin", status: 400},
		{name: "fullwidth dots", target: "/api/public/%ef%bc%8e%ef%bc%8e/admin", status: 400},
		{name: "two dot leader", target: "/api/public/%e2%80%a5/admin", status: 400},
		{name: "raw two dot leader", target: "/api/public/\u2025/admin", status: any4xx},
		{name: "line separator", target: "/api/public/%e2%80%a8", status: 400},
		{name: "zero width joiner", target: "/api/public/a%e2%80%8db", status: 400},
		{name: "plain unicode", target: "/api/public/caf%c3%a9", pub: "/caf%C3%A9"},
		// length
		{name: "very long", target: "/api/public/" + long, status: 400},
		{name: "long but allowed", target: "/api/public/" + long[:1900], pub: "/" + long[:1900]},
		// absolute-form request targets
		{name: "absolute form dotdot", target: "http://" + "HOST" + "/api/public/../admin/x", status: 403},
		{name: "absolute form foreign host", target: "http://evil.example/api/admin/x", status: 403},
		{name: "absolute form public", target: "http://evil.example/api/public/abs", pub: "/abs"},
	}
	if len(tests) < 40 {
		t.Fatalf("only %d variants", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub.reset()
			adm.reset()
			cookie := alice
			if tt.as == "bob" {
				cookie = bob
			}
			target := strings.Replace(tt.target, "HOST", e.host(), 1)
			r := e.raw("GET", target, cookie, "X-CSRF: 1")
			np, na := pub.count(), adm.count()
			switch {
			case tt.pub != "":
				if r.Status != http.StatusOK || np != 1 || na != 0 {
					t.Fatalf("status %d, public hits %d, admin hits %d; want 200 on public only (%s)", r.Status, np, na, r.Body)
				}
				if got := pub.last(t).Path; got != tt.pub {
					t.Fatalf("public upstream received %q, want %q", got, tt.pub)
				}
			case tt.adm != "":
				if r.Status != http.StatusOK || na != 1 || np != 0 {
					t.Fatalf("status %d, public hits %d, admin hits %d; want 200 on admin only (%s)", r.Status, np, na, r.Body)
				}
				if got := adm.last(t).Path; got != tt.adm {
					t.Fatalf("admin upstream received %q, want %q", got, tt.adm)
				}
				if got := bearerOf(t, adm.last(t).Header); jwtClaims(t, got)["sub"] != "user-bob" {
					t.Fatal("admin upstream received a token of someone other than bob")
				}
			default:
				if np != 0 || na != 0 {
					t.Fatalf("refused variant reached an upstream: public hits %d, admin hits %d (status %d)", np, na, r.Status)
				}
				if tt.status == any4xx {
					t.Logf("refused with %d", r.Status)
					if r.Status < 300 || r.Status >= 500 {
						t.Fatalf("status %d, want a refusal (3xx/4xx) (%s)", r.Status, r.Body)
					}
					return
				}
				if r.Status != tt.status {
					t.Fatalf("status %d, want %d (%s)", r.Status, tt.status, r.Body)
				}
				wantJSONError(t, r, tt.status, "")
			}
		})
	}
}

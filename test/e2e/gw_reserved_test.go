package e2e

import (
	"strings"
	"testing"
)

// A one-segment exact route (/b, /bf, /.w) owns that one path: Gatehouse's
// own /bff/* endpoints and /.well-known/* documents are never handed to
// the proxy, so no such route can capture them; the route itself still
// works. (Route paths under /bff or /.well-known, in any case, are config
// errors: internal/config TestLoadErrors.)
func TestGatewayOneSegmentRoutesDoNotCaptureReservedPaths(t *testing.T) {
	up := newRecorder(t, nil)
	route := func(name, path string) string {
		return "  - name: " + name + "\n    path: " + path + "\n    upstream: \"" + up.URL + "/\"\n    anonymous: true\n    credential: none\n"
	}
	e := startGW(t, gwOptions{Config: "session:\n  store: memory\nroutes:\n" +
		route("b", "/b") + route("bf", "/bf") + route("wk", "/.w") + route("bffx", "/bffx")})
	for _, p := range []string{"/bff/user", "/bff/login", "/bff", "/bf/", "/b/", "/b/x", "/.well-known/oauth-protected-resource", "/.well-known/x", "/.w/x", "/bffx/"} {
		res := e.raw("GET", p, "X-CSRF: 1")
		if strings.Contains(string(res.Body), `"no_route"`) {
			t.Errorf("%s: answered by the proxy (%d %s)", p, res.Status, res.Body)
		}
	}
	if n := up.count(); n != 0 {
		t.Fatalf("upstream contacted %d times for reserved paths (first %s)", n, up.requests()[0].Path)
	}
	if res := e.raw("GET", "/bff/user", "X-CSRF: 1"); res.Status != 401 {
		t.Errorf("/bff/user: %d, want the BFF's 401", res.Status)
	}
	for _, p := range []string{"/b", "/bf", "/.w", "/bffx"} {
		if res := e.raw("GET", p, "X-CSRF: 1"); res.Status != 200 {
			t.Errorf("%s: %d %s, want the route's upstream", p, res.Status, res.Body)
		}
	}
	if n := up.count(); n != 4 {
		t.Fatalf("upstream got %d requests, want 4", n)
	}
}

package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// Forged cross-site requests carrying alice's real session cookie are refused
// with 401 JSON (Duende BFF's status) before any upstream is contacted: missing or wrong CSRF
// header, a foreign Origin, cross-site fetch metadata. Anonymous routes are
// checked the same way.
func TestProxyCSRFForgeriesWithRealSessionReachNoUpstream(t *testing.T) {
	verifyNoLeaks(t)
	prof, pub := newRecorder(t, nil), newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
csrf:
  allowed_origins: ["https://admin.example.com"]
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + prof.URL + `/"
    methods: [GET, POST, DELETE]
    credential: user_token
  - name: public
    path: /api/public/
    upstream: "` + pub.URL + `/"
    methods: [GET, POST, DELETE]
    anonymous: true
    credential: none
`})
	cookie := e.cookieHeader(e.login("alice", "wonderland"))
	u := e.host()
	tests := []struct {
		name    string
		method  string
		headers []string
		code    string
	}{
		{"no CSRF header", "GET", nil, "csrf_header_missing"},
		{"no CSRF header POST", "POST", []string{"Content-Length: 0"}, "csrf_header_missing"},
		{"no CSRF header DELETE", "DELETE", nil, "csrf_header_missing"},
		{"classic form post", "POST", []string{"Origin: https://evil.example", "Content-Type: application/x-www-form-urlencoded", "Content-Length: 3", "", "a=1"}, "csrf_origin_mismatch"},
		{"CSRF header 0", "GET", []string{"X-CSRF: 0"}, "csrf_header_invalid"},
		{"CSRF header true", "GET", []string{"X-CSRF: true"}, "csrf_header_invalid"},
		{"CSRF header empty", "GET", []string{"X-CSRF:"}, "csrf_header_invalid"},
		{"CSRF header 11", "GET", []string{"X-CSRF: 11"}, "csrf_header_invalid"},
		{"CSRF header twice", "GET", []string{"X-CSRF: 1", "X-CSRF: 1"}, "csrf_header_invalid"},
		{"CSRF header underscore spelling", "GET", []string{"X_CSRF: 1"}, "csrf_header_missing"},
		{"foreign Origin", "GET", []string{"X-CSRF: 1", "Origin: https://evil.example"}, "csrf_origin_mismatch"},
		{"foreign Origin POST", "POST", []string{"X-CSRF: 1", "Origin: https://evil.example", "Content-Length: 0"}, "csrf_origin_mismatch"},
		{"null Origin", "GET", []string{"X-CSRF: 1", "Origin: null"}, "csrf_origin_mismatch"},
		{"Origin suffix trick", "GET", []string{"X-CSRF: 1", "Origin: http://" + u + ".evil.example"}, "csrf_origin_mismatch"},
		{"Origin other scheme", "GET", []string{"X-CSRF: 1", "Origin: https://" + u}, "csrf_origin_mismatch"},
		{"Origin with path", "GET", []string{"X-CSRF: 1", "Origin: http://" + u + "/x"}, "csrf_origin_mismatch"},
		{"two Origins", "GET", []string{"X-CSRF: 1", "Origin: http://" + u, "Origin: https://evil.example"}, "csrf_origin_mismatch"},
		{"cross-site fetch", "GET", []string{"X-CSRF: 1", "Sec-Fetch-Site: cross-site"}, "csrf_cross_site"},
		{"cross-site fetch odd case", "GET", []string{"X-CSRF: 1", "Sec-Fetch-Site: Cross-Site"}, "csrf_cross_site"},
		{"cross-site fetch with good Origin", "POST", []string{"X-CSRF: 1", "Origin: http://" + u, "Sec-Fetch-Site: cross-site", "Content-Length: 0"}, "csrf_cross_site"},
	}
	for _, route := range []struct {
		path string
		up   *recorder
	}{{"/api/profile/me", prof}, {"/api/public/news", pub}} {
		for _, tt := range tests {
			t.Run(route.path+" "+tt.name, func(t *testing.T) {
				r := sendWithBody(e, tt.method, route.path, append([]string{cookie}, tt.headers...))
				wantJSONError(t, r, http.StatusUnauthorized, tt.code)
				if n := prof.count() + pub.count(); n != 0 {
					t.Fatalf("a forged request reached an upstream (%d hits)", n)
				}
			})
		}
	}

	// Controls: the same session with the SPA's headers passes, so the
	// refusals above are the CSRF check's, not a missing session.
	for _, h := range [][]string{
		{"X-CSRF: 1"},
		{"X-CSRF: 1", "Origin: http://" + u, "Sec-Fetch-Site: same-origin"},
		{"x-csrf: 1", "Origin: https://admin.example.com"},
	} {
		r := e.raw("GET", "/api/profile/me", append([]string{cookie}, h...)...)
		if r.Status != http.StatusOK {
			t.Fatalf("SPA request with %q: %d %s", h, r.Status, r.Body)
		}
	}
	if prof.count() != 3 {
		t.Fatalf("profile upstream hits %d, want the 3 controls", prof.count())
	}
}

// sendWithBody sends headers; a "" entry separates headers from a body.
func sendWithBody(e *gwEnv, method, path string, lines []string) rawResponse {
	e.t.Helper()
	for i, l := range lines {
		if l == "" {
			var b strings.Builder
			b.WriteString(method + " " + path + " HTTP/1.1\r\nHost: " + e.host() + "\r\nConnection: close\r\n")
			for _, h := range lines[:i] {
				b.WriteString(h + "\r\n")
			}
			b.WriteString("\r\n" + strings.Join(lines[i+1:], "\r\n"))
			return e.rawMessage(b.String())
		}
	}
	return e.raw(method, path, lines...)
}

package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// Gatehouse's own refusals through the real gateway are JSON with the right
// status and reach no upstream: no session (401, never a redirect to the
// IdP), unknown API path (404), method (405 with Allow), body over the
// route's max_body (413, declared or chunked). Upstream cookies are dropped
// unless the route allows them.
func TestProxyRefusalsAreJSONAndUpstreamCookiesStayBehind(t *testing.T) {
	verifyNoLeaks(t)
	cookieUp := func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "upstream_session", Value: "u1", Path: "/"})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}
	prof, keep := newRecorder(t, cookieUp), newRecorder(t, cookieUp)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + prof.URL + `/"
    methods: [GET, POST]
    credential: user_token
    max_body: 1KiB
  - name: keep
    path: /api/keep/
    upstream: "` + keep.URL + `/"
    anonymous: true
    credential: none
    allow_set_cookie: true
`})
	b := e.login("alice", "wonderland")
	cookie := e.cookieHeader(b)

	wantJSONError(t, e.raw("GET", "/api/profile/me", "X-CSRF: 1", "Accept: application/json"), http.StatusUnauthorized, "unauthenticated")
	wantJSONError(t, e.raw("GET", "/api/profile/me", "X-CSRF: 1", "Cookie: "+e.Cfg.EffectiveCookieName()+"=forged-handle"), http.StatusUnauthorized, "unauthenticated")
	wantJSONError(t, e.raw("GET", "/api/nothing/here", cookie, "X-CSRF: 1"), http.StatusNotFound, "no_route")
	r := e.raw("DELETE", "/api/profile/me", cookie, "X-CSRF: 1")
	wantJSONError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	if allow := r.Header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Fatalf("Allow = %q", allow)
	}
	big := strings.Repeat("x", 2048)
	wantJSONError(t, sendWithBody(e, "POST", "/api/profile/me", []string{cookie, "X-CSRF: 1", "Content-Length: 2048", "", big}),
		http.StatusRequestEntityTooLarge, "body_too_large")
	if prof.count() != 0 {
		t.Fatalf("refused requests reached the upstream (%d)", prof.count())
	}
	// A chunked body declares no length: the limit is enforced while
	// streaming and the client still gets 413.
	chunked := "800\r\n" + big + "\r\n0\r\n\r\n"
	wantJSONError(t, sendWithBody(e, "POST", "/api/profile/me", []string{cookie, "X-CSRF: 1", "Transfer-Encoding: chunked", "", chunked}),
		http.StatusRequestEntityTooLarge, "body_too_large")
	for _, rq := range prof.requests() {
		if len(rq.Body) > 1024 {
			t.Fatalf("the upstream received %d body bytes over the 1KiB limit", len(rq.Body))
		}
	}

	// Set-Cookie: dropped by default, passed where the route allows it.
	r = e.raw("GET", "/api/profile/me", cookie, "X-CSRF: 1")
	if r.Status != 200 || len(r.Header.Values("Set-Cookie")) != 0 {
		t.Fatalf("profile: %d, Set-Cookie %q", r.Status, r.Header.Values("Set-Cookie"))
	}
	r = e.raw("GET", "/api/keep/x", "X-CSRF: 1")
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Set-Cookie"), "upstream_session=u1") {
		t.Fatalf("keep: %d, Set-Cookie %q", r.Status, r.Header.Values("Set-Cookie"))
	}
	e.Stop()
}

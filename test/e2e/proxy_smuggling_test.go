package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
)

// trailerRecorder is an upstream that also records request trailers (sent
// after a chunked body, where a header check that ran earlier cannot see them).
type trailerRecorder struct {
	*recorder
	mu       sync.Mutex
	trailers []http.Header
}

func newTrailerRecorder(t *testing.T) *trailerRecorder {
	tr := &trailerRecorder{}
	tr.recorder = newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.trailers = append(tr.trailers, r.Trailer.Clone())
		tr.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	return tr
}

// Attacks on the request framing and on the headers an upstream derives URLs
// from: a forged Host, an h2c or WebSocket upgrade on a plain route, a
// request smuggled behind Content-Length/Transfer-Encoding disagreement,
// identity headers sent as chunked trailers or folded lines. None reaches an
// upstream it was not routed to, and none carries client identity there.
func TestProxyHostHeaderUpgradeAndSmugglingTricks(t *testing.T) {
	verifyNoLeaks(t)
	pub, adm := newTrailerRecorder(t), newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: public
    path: /api/public/
    upstream: "` + pub.URL + `/"
    methods: [GET, POST]
    anonymous: true
    credential: none
  - name: admin
    path: /api/admin/
    upstream: "` + adm.URL + `/"
    credential: user_token
    allow: 'user.sub == "user-bob"'
`})
	cookie := e.cookieHeader(e.login("alice", "wonderland"))

	t.Run("forged Host sets no X-Forwarded-Host", func(t *testing.T) {
		pub.reset()
		r := e.raw("GET", "/api/public/h", "Host: evil.example", "X-CSRF: 1",
			"X-Forwarded-Host: evil.example", "X_Forwarded_Host: evil.example", "Forwarded: host=evil.example")
		if r.Status != 200 {
			t.Fatalf("status %d %s", r.Status, r.Body)
		}
		h := pub.last(t).Header
		if vs := h.Values("X-Forwarded-Host"); len(vs) != 1 || vs[0] != e.host() {
			t.Fatalf("upstream X-Forwarded-Host = %q, want public_url's host %q", vs, e.host())
		}
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, "evil") {
					t.Fatalf("upstream header %s carries the forged host", k)
				}
			}
		}
	})

	t.Run("h2c and websocket upgrades on a plain route", func(t *testing.T) {
		pub.reset()
		for _, up := range [][]string{
			{"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"},
			{"Connection: upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Origin: " + e.URL},
		} {
			r := e.raw("GET", "/api/public/x", append([]string{"X-CSRF: 1", cookie}, up...)...)
			wantJSONError(t, r, http.StatusForbidden, "upgrade_not_allowed")
		}
		if pub.count()+adm.count() != 0 {
			t.Fatal("an upgrade request reached an upstream")
		}
	})

	t.Run("request smuggled behind CL and TE", func(t *testing.T) {
		pub.reset()
		adm.reset()
		// With Connection: close on the outer request, the only way the
		// inner one can be served is a desync between framings.
		smuggled := "GET /api/public/smuggled HTTP/1.1\r\nHost: " + e.host() + "\r\n" + cookie + "\r\nX-CSRF: 1\r\n\r\n"
		for _, msg := range []string{
			// CL.TE: the gateway must not read the tail as a second request.
			"POST /api/public/x HTTP/1.1\r\nHost: " + e.host() + "\r\nX-CSRF: 1\r\nConnection: close\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			// Duplicate, conflicting Content-Length.
			"POST /api/public/x HTTP/1.1\r\nHost: " + e.host() + "\r\nX-CSRF: 1\r\nConnection: close\r\nContent-Length: 0\r\nContent-Length: 60\r\n\r\n" + smuggled,
			// Obfuscated Transfer-Encoding.
			"POST /api/public/x HTTP/1.1\r\nHost: " + e.host() + "\r\nX-CSRF: 1\r\nConnection: close\r\nTransfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n" + smuggled,
		} {
			res, err := rawExchange(e.host(), msg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("answered %d", res.Status)
		}
		if adm.count() != 0 {
			t.Fatalf("a smuggled request reached the admin upstream (%d hits)", adm.count())
		}
		reqs := pub.requests()
		if len(reqs) > 3 {
			t.Fatalf("public upstream received %d requests for 3 messages", len(reqs))
		}
		for _, rq := range reqs {
			if rq.Path != "/x" || rq.Header.Get("Cookie") != "" {
				t.Fatalf("the smuggled request was served: upstream saw %s", rq.Path)
			}
		}
	})

	t.Run("identity headers as chunked trailers", func(t *testing.T) {
		pub.reset()
		msg := "POST /api/public/t HTTP/1.1\r\nHost: " + e.host() + "\r\nX-CSRF: 1\r\nTransfer-Encoding: chunked\r\n" +
			"Trailer: Authorization, X-Forwarded-User, X-Api-Key\r\nConnection: close\r\n\r\n" +
			"5\r\nhello\r\n0\r\nAuthorization: Bearer attacker\r\nX-Forwarded-User: attacker\r\nX-Api-Key: attacker\r\n\r\n"
		res, err := rawExchange(e.host(), msg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != 200 {
			t.Fatalf("status %d %s", res.Status, res.Body)
		}
		rq := pub.last(t)
		if string(rq.Body) != "hello" {
			t.Fatalf("upstream body %q", rq.Body)
		}
		pub.mu.Lock()
		tr := pub.trailers[len(pub.trailers)-1]
		pub.mu.Unlock()
		if len(tr) != 0 || rq.Header.Get("Trailer") != "" {
			t.Fatalf("client trailers reached the upstream: %v (Trailer header %q)", tr, rq.Header.Get("Trailer"))
		}
	})

	t.Run("folded identity header", func(t *testing.T) {
		pub.reset()
		r := e.raw("GET", "/api/public/f", "X-CSRF: 1", "X-Forwarded-User: nobody", " attacker", "X_Forwarded_User:", "\tattacker")
		if r.Status == 200 {
			for k, vs := range pub.last(t).Header {
				for _, v := range vs {
					if strings.Contains(v, "attacker") || strings.Contains(v, "nobody") {
						t.Fatalf("folded header reached the upstream as %s", k)
					}
				}
			}
		} else if pub.count() != 0 {
			t.Fatal("refused, yet the upstream was contacted")
		}
		t.Logf("answered %d", r.Status)
	})
	e.Stop()
}

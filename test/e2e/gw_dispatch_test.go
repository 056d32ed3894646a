package e2e

import (
	"bufio"
	"net"
	"net/http"
	"testing"
)

// Paths that only clean to an API path are judged by the proxy (JSON, same
// routing as the cleaned path), never redirected by the public ServeMux.
func TestGatewayDispatchesPathsThatCleanIntoTheAPI(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: public
    path: /api/public/
    upstream: "` + up.URL + `/"
    anonymous: true
    credential: none
`})
	for _, p := range []string{"//api/public/x", "/bff/../api/public/x", "/./api/public/x"} {
		conn, err := net.Dial("tcp", e.URL[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte("GET " + p + " HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nConnection: close\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode == http.StatusMovedPermanently || resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect {
			t.Errorf("%s: redirected (%d) instead of being judged by the proxy", p, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 && ct != "application/json; charset=utf-8" {
			t.Errorf("%s: %d with %q, want JSON", p, resp.StatusCode, ct)
		}
	}
	for _, r := range up.requests() {
		if r.Path != "/x" {
			t.Errorf("upstream received %q, want the cleaned /x", r.Path)
		}
	}
}

package e2e

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Upstream failures become clear JSON errors, fast, and leave nothing
// running: an unreachable upstream is 502, one that does not answer within
// the route's timeout is 504 (also with several clients waiting at once, and
// with a client that gives up first), an upstream's 401 challenge is a 502
// without the challenge. After the gateway stops, no goroutine is left.
func TestProxyUpstreamDownIs502SlowIs504AndNothingLeaks(t *testing.T) {
	verifyNoLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + ln.Addr().String() + "/"
	ln.Close() // nothing listens there any more

	release := make(chan struct{})
	var closeRelease sync.Once
	t.Cleanup(func() { closeRelease.Do(func() { close(release) }) })
	slow := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	challenge := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
		w.Header().Set("Set-Cookie", "upstream=1")
		http.Error(w, "who are you", http.StatusUnauthorized)
	})
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: down
    path: /api/down/
    upstream: "` + downURL + `"
    credential: user_token
    timeout: 2s
  - name: slow
    path: /api/slow/
    upstream: "` + slow.URL + `/"
    credential: user_token
    timeout: 300ms
  - name: challenge
    path: /api/challenge/
    upstream: "` + challenge.URL + `/"
    anonymous: true
    credential: none
`})
	b := e.login("alice", "wonderland")
	cookie := e.cookieHeader(b)

	// Down: 502 JSON at once (connection refused), not after the timeout.
	start := time.Now()
	r := e.raw("GET", "/api/down/x", cookie, "X-CSRF: 1")
	wantJSONError(t, r, http.StatusBadGateway, "upstream_unavailable")
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("unreachable upstream took %v to report", d)
	}

	// Slow: 504 JSON at the route's timeout, for several waiting clients.
	var wg sync.WaitGroup
	results := make([]rawResponse, 5)
	durations := make([]time.Duration, 5)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := time.Now()
			r, err := rawExchange(e.host(), "GET /api/slow/wait HTTP/1.1\r\nHost: "+e.host()+"\r\n"+cookie+"\r\nX-CSRF: 1\r\nConnection: close\r\n\r\n")
			if err != nil {
				r.Body = []byte(err.Error())
			}
			results[i] = r
			durations[i] = time.Since(s)
		}()
	}
	wg.Wait()
	for i, r := range results {
		wantJSONError(t, r, http.StatusGatewayTimeout, "upstream_timeout")
		if durations[i] < 300*time.Millisecond || durations[i] > 3*time.Second {
			t.Fatalf("504 after %v, want about the route timeout (300ms)", durations[i])
		}
		if strings.Contains(string(r.Body), "127.0.0.1") {
			t.Fatalf("the error names the upstream's address: %s", r.Body)
		}
	}
	if slow.count() != 5 {
		t.Fatalf("slow upstream saw %d requests, want 5", slow.count())
	}

	// A client that gives up before the timeout leaves nothing behind.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+"/api/slow/abandoned", nil)
	req.Header.Set("X-CSRF", "1")
	if res, err := b.Do(req); err == nil {
		res.Body.Close()
		t.Fatal("the abandoned request got an answer before the client gave up")
	}
	cancel()

	// An upstream's 401 challenge: a Gatehouse 502, no browser prompt, no cookie.
	r = e.raw("GET", "/api/challenge/x", "X-CSRF: 1")
	wantJSONError(t, r, http.StatusBadGateway, "upstream_unauthorized")
	if r.Header.Get("WWW-Authenticate") != "" || r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("the upstream's challenge or cookie reached the browser: %v", r.Header)
	}

	// The gateway recovers by itself: the slow upstream answering in time works.
	closeRelease.Do(func() { close(release) })
	if code, body := e.api(b, "GET", "/api/slow/fast-now", nil); code != http.StatusOK {
		t.Fatalf("after release: %d %s", code, body)
	}
	e.Stop()
}

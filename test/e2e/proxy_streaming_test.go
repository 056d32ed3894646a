package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Through the whole gateway (security headers, tracing, the public mux), an
// event stream arrives event by event, and a WebSocket on a route that
// enables it carries the route's credential, not the browser's cookie, and
// needs a same-origin handshake. Nothing is left running afterwards.
func TestProxyStreamsAndWebSocketThroughTheGateway(t *testing.T) {
	verifyNoLeaks(t)
	next := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(next) }) })
	sse := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 2 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	ws := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		_ = c.Write(r.Context(), typ, append([]byte("echo:"), msg...))
		_, _, _ = c.Read(r.Context()) // until the client closes
	})
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: events
    path: /api/events/
    upstream: "` + sse.URL + `/"
    credential: user_token
    timeout: 300ms
  - name: chat
    path: /api/chat/
    upstream: "` + ws.URL + `/"
    credential: user_token
    websocket: true
`})
	b := e.login("alice", "wonderland")

	// SSE: the first event arrives while the upstream still holds the stream
	// open (longer than the route's 300ms header timeout).
	req, _ := http.NewRequest("GET", e.URL+"/api/events/stream", nil)
	req.Header.Set("X-CSRF", "1")
	res, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("events: %d", res.StatusCode)
	}
	br := bufio.NewReader(res.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: 0\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	time.Sleep(400 * time.Millisecond) // past the route timeout: a stream may run longer
	once.Do(func() { close(next) })
	_, _ = br.ReadString('\n')
	if line, err = br.ReadString('\n'); err != nil || line != "data: 1\n" {
		t.Fatalf("second event %q, %v", line, err)
	}
	res.Body.Close()

	// WebSocket: a cross-origin handshake is refused; a same-origin one
	// works, and the upstream sees the route's credential only.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(e.URL, "http") + "/api/chat/room"
	for _, origin := range []string{"https://evil.example", ""} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, res, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: b, HTTPHeader: h})
		if err == nil {
			c.CloseNow()
			t.Fatalf("handshake with Origin %q accepted", origin)
		}
		if res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("handshake with Origin %q: %v, want 401 (CSRF)", origin, err)
		}
	}
	if ws.count() != 0 {
		t.Fatal("a refused handshake reached the upstream")
	}
	h := http.Header{}
	h.Set("Origin", e.URL)
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: b, HTTPHeader: h})
	if err != nil {
		t.Fatalf("same-origin handshake: %v\nlogs:\n%s", err, e.Logs.String())
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "echo:hi" {
		t.Fatalf("echo %q, %v", msg, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	got := ws.last(t)
	if got.Header.Get("Cookie") != "" {
		t.Fatal("the browser's cookie reached the WebSocket upstream")
	}
	if tok := bearerOf(t, got.Header); jwtClaims(t, tok)["sub"] != "user-alice" {
		t.Fatal("the WebSocket upstream did not receive alice's token")
	}
	e.Stop()
}

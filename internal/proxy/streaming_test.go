package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

func TestUpstreamDownIs502(t *testing.T) {
	h := newHarness(t)
	h.ups["down"].Close()
	res, body := h.do(h.req("GET", "/api/down/x", nil))
	wantError(t, res, body, http.StatusBadGateway, "upstream_unavailable")
	_, committed, _ := h.audit.last()
	if len(committed) != 1 || committed[0].Status != 502 || committed[0].Code != "upstream_unavailable" {
		t.Fatalf("committed %+v", committed)
	}
}

func TestSlowUpstreamIs504AtRouteTimeout(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	defer close(release)
	h.ups["slow"].handle(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	res, body := h.do(h.req("GET", "/api/slow/x", nil))
	wantError(t, res, body, http.StatusGatewayTimeout, "upstream_timeout")
}

// The route timeout bounds the wait for headers, not a stream's lifetime,
// and each event reaches the client before the upstream sends the next.
func TestServerSentEventsStreamIncrementally(t *testing.T) {
	h := newHarness(t)
	next := make(chan struct{})
	h.ups["stream"].handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	res, err := h.srv.Client().Do(h.req("GET", "/api/stream/events", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q, %v", i, line, err)
		}
		br.ReadString('\n')
		next <- struct{}{} // the upstream sends the next event only now
	}
}

func TestBodyOverLimitIs413(t *testing.T) {
	h := newHarness(t)
	big := strings.Repeat("x", 2048)
	// Declared length: refused before anything is contacted.
	res, body := h.do(h.req("POST", "/api/weather/x", strings.NewReader(big)))
	wantError(t, res, body, http.StatusRequestEntityTooLarge, "body_too_large")
	h.wantNothingForwarded()
	// Chunked: the limit trips while streaming and the request fails.
	pr, pw := io.Pipe()
	go func() {
		for range 8 {
			if _, err := pw.Write([]byte(big[:512])); err != nil {
				return
			}
		}
		pw.Close()
	}()
	r := h.req("POST", "/api/stream/upload", pr)
	r.ContentLength = -1
	res, body = h.do(r)
	wantError(t, res, body, http.StatusRequestEntityTooLarge, "body_too_large")
	pr.Close()
	// Within the limit, the body arrives intact.
	res, _ = h.do(h.req("POST", "/api/weather/x", strings.NewReader(big[:1000])))
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if hits := h.ups["weather"].Hits(); len(hits) != 1 || hits[0].Body != big[:1000] {
		t.Fatalf("body not forwarded intact")
	}
}

func TestWebSocketThroughProxyWithOriginCheck(t *testing.T) {
	h := newHarness(t)
	h.ups["ws"].handle(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	})
	wsURL := "ws" + strings.TrimPrefix(h.srv.URL, "http") + "/api/ws/chat"
	dial := func(hdr http.Header) (*websocket.Conn, *http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: h.srv.Client()})
	}
	good := http.Header{"Origin": {publicURL}, "Cookie": {"gh=" + aliceCookie}, "Authorization": {"Bearer attacker"}}

	c, _, err := dial(good)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "echo:hi" {
		t.Fatalf("read %q, %v", msg, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	hits := h.ups["ws"].Hits()
	if len(hits) != 1 || hits[0].Header.Get("Authorization") != "Bearer user-at-alice" || hits[0].Header.Get("Cookie") != "" {
		t.Fatalf("upstream handshake headers: %+v", hits)
	}

	for name, hdr := range map[string]http.Header{
		"foreign origin": {"Origin": {"https://evil.example"}, "Cookie": {"gh=" + aliceCookie}},
		"null origin":    {"Origin": {"null"}, "Cookie": {"gh=" + aliceCookie}},
		"no origin":      {"Cookie": {"gh=" + aliceCookie}},
		"no session":     {"Origin": {publicURL}},
		"cross-site":     {"Origin": {publicURL}, "Cookie": {"gh=" + aliceCookie}, "Sec-Fetch-Site": {"cross-site"}},
	} {
		h.resetHits()
		c, res, err := dial(hdr)
		if err == nil {
			c.CloseNow()
			t.Fatalf("%s: handshake succeeded", name)
		}
		if res == nil || (res.StatusCode != 403 && res.StatusCode != 401) {
			t.Fatalf("%s: response %v, err %v", name, res, err)
		}
		h.wantNothingForwarded()
	}
	// Upgrades on routes without websocket: true never reach the upstream.
	h.resetHits()
	_, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.srv.URL, "http")+"/api/profile/chat",
		&websocket.DialOptions{HTTPHeader: good, HTTPClient: h.srv.Client()})
	if err == nil || res == nil || res.StatusCode != 403 {
		t.Fatalf("upgrade on plain route: %v %v", res, err)
	}
	h.wantNothingForwarded()
}

// A header secret read from a file rotates under load: every request gets
// either the old or the new key, none fails, and after the reload only the
// new key is sent.
func TestHeaderSecretRotatesUnderLoadWithoutFailures(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	write := func(v string) {
		tmp := filepath.Join(dir, "key.tmp")
		if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write("key-v1")
	val, err := secret.Resolve("${file:"+file+"}", dir)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(h *harness, s []RouteSpec, o *Options) []RouteSpec {
		for i := range s {
			if s[i].Name == "weather" {
				s[i].Credential.HeaderValue = val
			}
		}
		return s
	})
	var failures, total atomic.Int64
	var reloaded atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Requests started after Reload returned are marked.
				path := "/api/weather/now"
				if reloaded.Load() {
					path += "?after=1"
				}
				res, err := h.srv.Client().Do(h.req("GET", path, nil))
				total.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	waitHits := func(n int) {
		for len(h.ups["weather"].Hits()) < n {
			time.Sleep(time.Millisecond)
		}
	}
	waitHits(50)
	write("key-v2")
	if changed, err := val.Reload(); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	reloaded.Store(true)
	after := len(h.ups["weather"].Hits())
	waitHits(after + 100)
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d requests failed during rotation", failures.Load(), total.Load())
	}
	hits := h.ups["weather"].Hits()
	sawV2 := false
	for i, hit := range hits {
		v := hit.Header.Values("X-Api-Key")
		if len(v) != 1 || (v[0] != "key-v1" && v[0] != "key-v2") {
			t.Fatalf("hit %d: X-Api-Key %q", i, v)
		}
		if v[0] == "key-v2" {
			sawV2 = true
		}
		if hit.RawQuery == "after=1" && v[0] != "key-v2" {
			t.Fatalf("hit %d, started after the reload, carried the old key", i)
		}
	}
	if !sawV2 {
		t.Fatal("new key never sent")
	}
}

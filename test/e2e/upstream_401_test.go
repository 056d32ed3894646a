package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// rejectFirst is a test-owned upstream that refuses (401) the first bearer
// token it ever sees, and every token in always.
type rejectFirst struct {
	mu    sync.Mutex
	first string
	seen  []string
}

func (u *rejectFirst) handler(w http.ResponseWriter, r *http.Request) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	u.mu.Lock()
	if u.first == "" {
		u.first = tok
	}
	u.seen = append(u.seen, tok)
	reject := tok == u.first
	u.mu.Unlock()
	if reject {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true}`)
}

func (u *rejectFirst) tokens() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

func countEvents(lines []string, event string) int {
	n := 0
	for _, l := range lines {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["event"] == event {
			n++
		}
	}
	return n
}

// Issue 15 item 3: an upstream 401 on a user_token or token_exchange route
// makes Gatehouse refresh the session's tokens once (across concurrent
// requests) and retry the request once when its body can be replayed; only
// when that fails does the SPA get 401 (never a silent 502). Real OP.
func TestUpstream401RefreshesOnceAndRetries(t *testing.T) {
	prof, bill, post := &rejectFirst{}, &rejectFirst{}, &rejectFirst{}
	profUp := newRecorder(t, prof.handler)
	billUp := newRecorder(t, bill.handler)
	postUp := newRecorder(t, post.handler)
	never := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + profUp.URL + `/"
    credential: user_token
  - name: billing
    path: /api/billing/
    upstream: "` + billUp.URL + `/"
    credential:
      token_exchange: { audience: billing-api }
  - name: orders
    path: /api/orders/
    upstream: "` + postUp.URL + `/"
    methods: [POST]
    credential: user_token
  - name: never
    path: /api/never/
    upstream: "` + never.URL + `/"
    credential: user_token
`})
	b := e.login("alice", "wonderland")

	// Concurrent requests with the same refused token: one refresh.
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.URL+"/api/profile/me", nil)
			req.Header.Set("X-CSRF", "1")
			resp, err := b.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("request %d: %d, want 200 after refresh and retry; logs:\n%s", i, c, e.Logs.String())
		}
	}
	seen := prof.tokens()
	if seen[0] == "" || seen[len(seen)-1] == seen[0] {
		t.Fatalf("the retry did not carry a new token")
	}
	if n := countEvents(e.auditLines(), "token_refresh"); n != 1 {
		t.Errorf("token_refresh records = %d, want exactly 1 for one refused token", n)
	}
	// The refreshed token is the session's now: no further 401 round trip.
	before := len(seen)
	if code, body := e.api(b, "GET", "/api/profile/again", nil); code != 200 {
		t.Fatalf("after refresh: %d %s", code, body)
	}
	if seen = prof.tokens(); len(seen) != before+1 {
		t.Errorf("upstream saw %d more requests, want 1", len(seen)-before)
	}

	// token_exchange: the exchanged token refused once → a fresh exchange.
	if code, body := e.api(b, "GET", "/api/billing/plan", nil); code != 200 {
		t.Fatalf("billing: %d %s\nlogs:\n%s", code, body, e.Logs.String())
	}
	if seen := bill.tokens(); len(seen) != 2 || seen[0] == seen[1] {
		t.Errorf("billing upstream saw %d tokens, want the refused one then a new one", len(seen))
	}

	// A small body is replayed unchanged.
	req, _ := http.NewRequest("POST", e.URL+"/api/orders/new", strings.NewReader(`{"item":"tea"}`))
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	if reqs := postUp.requests(); len(reqs) != 2 || string(reqs[0].Body) != `{"item":"tea"}` || string(reqs[1].Body) != `{"item":"tea"}` {
		t.Errorf("the upstream saw %d requests, want the same body twice", len(reqs))
	}

	// An upstream that refuses every token: one retry, then 401 to the SPA.
	code, body := e.api(b, "GET", "/api/never/x", nil)
	if code != http.StatusUnauthorized || !strings.Contains(string(body), "upstream_unauthorized") {
		t.Fatalf("never: %d %s, want 401 upstream_unauthorized", code, body)
	}
	if n := never.count(); n != 2 {
		t.Errorf("the refusing upstream saw %d requests, want 2 (one retry)", n)
	}
}

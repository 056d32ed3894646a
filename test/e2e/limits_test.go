package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// limitsGet calls path on e as the SPA does and returns the response with
// its body read.
func limitsGet(t *testing.T, e *gwEnv, b *http.Client, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", e.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-CSRF", "1")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, body
}

// want429 asserts a rate-limit refusal with its headers.
func want429(t *testing.T, res *http.Response, body []byte, policy string) {
	t.Helper()
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d %s, want 429", res.StatusCode, body)
	}
	if code := sessErrCode(t, body); code != "rate_limited" {
		t.Fatalf("code %q, want rate_limited", code)
	}
	if res.Header.Get("Retry-After") == "" || !strings.HasPrefix(res.Header.Get("RateLimit-Policy"), `"`+policy+`"`) ||
		!strings.HasPrefix(res.Header.Get("RateLimit"), `"`+policy+`"`) {
		t.Fatalf("headers %v: want Retry-After and RateLimit/RateLimit-Policy for %q", res.Header, policy)
	}
}

// One session over its route limit gets 429 (Retry-After, RateLimit
// headers) and none of its refused requests reaches the upstream, while
// another session is unaffected. The flood is audited once (the sampler),
// then summarised with its count; the metric counts every refusal.
func TestLimitsSessionOverLimitOthersUnaffected(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: orders
    path: /api/orders/
    upstream: "` + up.URL + `/"
    credential: user_token
rate_limits:
  routes:
    orders: { requests: 5, per: 1h }
`})
	alice := e.login("alice", "wonderland")
	bob := e.login("bob", "builder")
	for i := range 5 {
		if res, body := limitsGet(t, e, alice, "/api/orders/list"); res.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, res.StatusCode, body)
		}
	}
	const flood = 40
	for range flood {
		res, body := limitsGet(t, e, alice, "/api/orders/list")
		want429(t, res, body, "orders")
	}
	if got := up.count(); got != 5 {
		t.Fatalf("upstream reached %d times, want 5: a refused request got through", got)
	}
	if res, body := limitsGet(t, e, bob, "/api/orders/list"); res.StatusCode != 200 {
		t.Fatalf("bob, another session: %d %s", res.StatusCode, body)
	}

	// The metric counts every refusal on the route; no caller in labels.
	res, err := http.Get(e.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(res.Body)
	res.Body.Close()
	// Labels: the frontend and configuration generation, the route, the result.
	limited := regexp.MustCompile(fmt.Sprintf(`gatehouse_ratelimit_decisions_total\{client="[^"]*",generation="[0-9]+",result="limited",route="orders"\} %d\n`, flood))
	if !limited.Match(m) {
		t.Fatalf("metrics lack %d limited decisions on orders:\n%s", flood, grepLines(string(m), "ratelimit"))
	}

	// Audit: one individual record for the flood while it lasts, and, once
	// its window is over (here: at shutdown), a summary with the rest.
	e.Stop()
	individual, summaries := 0, 0
	var suppressed string
	for _, l := range e.auditLines() {
		var r map[string]any
		_ = json.Unmarshal([]byte(l), &r)
		reason, _ := r["reason"].(string)
		switch {
		case reason == "rate_limited" || strings.HasPrefix(reason, "rate_limited;"):
			individual++
		case strings.HasPrefix(reason, "rate_limited_summary;suppressed="):
			summaries++
			suppressed = strings.TrimPrefix(reason, "rate_limited_summary;suppressed=")
		}
	}
	if individual != 1 || summaries != 1 || suppressed != fmt.Sprint(flood-1) {
		t.Fatalf("audit: %d individual refusal records and %d summaries (suppressed=%s); want 1 and 1 (suppressed=%d)",
			individual, summaries, suppressed, flood-1)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Two instances on one redis enforce one budget: a session alternating
// between them gets exactly the route's quota (tolerance +1: one request's
// quota refilled while the test runs, at 10 per hour at most 1).
func TestLimitsTwoInstancesShareOneBudget(t *testing.T) {
	rs := redisserver.Start(t)
	up := newRecorder(t, nil)
	ln1, base1 := sessListen(t)
	ln2, base2 := sessListen(t)
	p := startIdP(t, 5*time.Minute, base1, base2)
	cfg := `
session:
  store: redis
  redis:
    url: ` + rs.URL() + `
routes:
  - name: orders
    path: /api/orders/
    upstream: "` + up.URL + `/"
    credential: user_token
rate_limits:
  routes:
    orders: { requests: 10, per: 1h }
`
	e1 := startGW(t, gwOptions{IdP: p, Listener: ln1, Config: cfg})
	e2 := startGW(t, gwOptions{IdP: p, Listener: ln2, Config: cfg})
	b := e1.login("alice", "wonderland")
	ok := 0
	for i := range 40 {
		e := []*gwEnv{e1, e2}[i%2]
		res, body := limitsGet(t, e, b, "/api/orders/x")
		switch res.StatusCode {
		case 200:
			ok++
		case 429:
			want429(t, res, body, "orders")
		default:
			t.Fatalf("request %d: %d %s", i, res.StatusCode, body)
		}
	}
	if ok < 10 || ok > 11 || up.count() != ok {
		t.Fatalf("%d of 40 requests admitted across two instances (upstream saw %d); want 10 (+1)", ok, up.count())
	}
}

// slowUpstream holds every request until release is closed, counting arrivals.
type slowUpstream struct {
	*recorder
	arrived atomic.Int64
	release chan struct{}
	once    sync.Once
}

func newSlowUpstream(t *testing.T) *slowUpstream {
	s := &slowUpstream{release: make(chan struct{})}
	s.recorder = newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		s.arrived.Add(1)
		select {
		case <-s.release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(s.free)
	return s
}

func (s *slowUpstream) free() { s.once.Do(func() { close(s.release) }) }

// limitsBurst sends n concurrent requests; wait returns their statuses once all
// are answered.
func limitsBurst(t *testing.T, e *gwEnv, b *http.Client, path string, n int, hdr ...string) (wait func() []int) {
	t.Helper()
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.URL+path, nil)
			req.Header.Set("X-CSRF", "1")
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			res, err := b.Do(req)
			if err != nil {
				codes <- -1
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			codes <- res.StatusCode
		}()
	}
	return func() []int {
		wg.Wait()
		close(codes)
		var out []int
		for c := range codes {
			out = append(out, c)
		}
		return out
	}
}

// The concurrency cap holds under a burst of slow requests: from one
// session, and from one address on an anonymous route, only the cap's
// worth reaches the upstream; the rest get 429 at once; another caller is
// unaffected; the slots come back when the responses end.
func TestLimitsConcurrencyCapHoldsUnderSlowBurst(t *testing.T) {
	slow, public := newSlowUpstream(t), newSlowUpstream(t)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
trusted_proxies: [127.0.0.1/32]
routes:
  - name: slow
    path: /api/slow/
    upstream: "` + slow.URL + `/"
    credential: user_token
  - name: public
    path: /api/public/
    upstream: "` + public.URL + `/"
    credential: none
    anonymous: true
rate_limits:
  concurrent_per_caller: 4
`})
	alice := e.login("alice", "wonderland")
	bob := e.login("bob", "builder")
	cases := []struct {
		name   string
		up     *slowUpstream
		b      *http.Client
		path   string
		hdr    []string
		other  *http.Client
		othHdr []string
	}{
		{"one session", slow, alice, "/api/slow/x", nil, bob, nil},
		{"one address, anonymous route", public, newHTTPBrowser(t), "/api/public/x", []string{"X-Forwarded-For", "203.0.113.7"},
			newHTTPBrowser(t), []string{"X-Forwarded-For", "198.51.100.9"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.up
			wait := limitsBurst(t, e, tc.b, tc.path, 30, tc.hdr...)
			deadline := time.Now().Add(10 * time.Second)
			for up.arrived.Load() < 4 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // a fifth arrival would show here
			if got := up.arrived.Load(); got != 4 {
				t.Fatalf("%d requests reached the upstream at once, want the cap, 4", got)
			}
			// Another caller still gets through while the cap is reached.
			owait := limitsBurst(t, e, tc.other, tc.path, 1, tc.othHdr...)
			for up.arrived.Load() < 5 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if up.arrived.Load() != 5 {
				t.Fatal("another caller was held back by this caller's cap")
			}
			up.free()
			n200, n429 := 0, 0
			codes := wait()
			for _, c := range codes {
				switch c {
				case 200:
					n200++
				case 429:
					n429++
				}
			}
			if n200 != 4 || n429 != 26 {
				t.Fatalf("statuses %v: want 4×200 and 26×429", codes)
			}
			if oc := owait(); oc[0] != 200 {
				t.Fatalf("other caller: %v", oc)
			}
			// Released: the caller's next requests pass again.
			for range 4 {
				if res, body := limitsGet(t, e, tc.b, tc.path, tc.hdr...); res.StatusCode != 200 {
					t.Fatalf("after the burst: %d %s", res.StatusCode, body)
				}
			}
		})
	}
}

// A /bff/login flood from one address gets 429 (after trusted-proxy
// resolution) while another address signs in.
func TestLimitsLoginFloodFromOneAddress(t *testing.T) {
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
trusted_proxies: [127.0.0.1/32]
rate_limits:
  default: { requests: 10, per: 1h }
`})
	attacker := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	limited := 0
	for range 30 {
		req, _ := http.NewRequest("GET", e.URL+"/bff/login?returnUrl=/", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		res, err := attacker.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == 429 {
			want429(t, res, body, "default")
			limited++
		}
	}
	if limited != 20 {
		t.Fatalf("%d of 30 sign-in starts from one address refused, want 20 (budget 10)", limited)
	}
	// The callback from that address is limited as well.
	req, _ := http.NewRequest("GET", e.URL+"/bff/callback?code=x&state=y", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	res, err := attacker.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 429 {
		t.Fatalf("callback from the flooding address: %d, want 429", res.StatusCode)
	}
	// Another address signs in.
	b := newHTTPBrowser(t)
	b.Transport = headerTransport{base: http.DefaultTransport, host: strings.TrimPrefix(e.URL, "http://"), name: "X-Forwarded-For", value: "198.51.100.9"}
	e.loginWith(b, "alice", "wonderland")
	if code, _ := e.user(b); code != 200 {
		t.Fatalf("the other address's session: /bff/user %d", code)
	}
}

// headerTransport sets one header on requests to host.
type headerTransport struct {
	base              http.RoundTripper
	host, name, value string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == h.host {
		r = r.Clone(r.Context())
		r.Header.Set(h.name, h.value)
	}
	return h.base.RoundTrip(r)
}

// Redis down: callers with a session get 503 and nothing reaches the
// upstream (fail closed); anonymous routes fall back to this instance's
// budget (allowed within it, 429 beyond it). Both recover with Redis.
func TestLimitsRedisDown(t *testing.T) {
	rs := redisserver.Start(t)
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: redis
  redis:
    url: ` + rs.URL() + `
routes:
  - name: orders
    path: /api/orders/
    upstream: "` + up.URL + `/"
    credential: user_token
  - name: public
    path: /api/public/
    upstream: "` + up.URL + `/"
    credential: none
    anonymous: true
rate_limits:
  routes:
    public: { requests: 3, per: 1h }
`})
	b := e.login("alice", "wonderland")
	if res, body := limitsGet(t, e, b, "/api/orders/x"); res.StatusCode != 200 {
		t.Fatalf("before: %d %s", res.StatusCode, body)
	}
	rs.Kill()
	before := up.count()
	for range 3 {
		res, body := limitsGet(t, e, b, "/api/orders/x")
		if res.StatusCode != 503 {
			t.Fatalf("session caller with redis down: %d %s, want 503", res.StatusCode, body)
		}
	}
	if up.count() != before {
		t.Fatal("a request reached the upstream while its limit could not be checked")
	}
	anon := newHTTPBrowser(t)
	for i := range 5 {
		res, body := limitsGet(t, e, anon, "/api/public/x")
		want := 200
		if i >= 3 {
			want = 429
		}
		if res.StatusCode != want {
			t.Fatalf("anonymous request %d with redis down: %d %s, want %d (local fallback budget of 3)", i, res.StatusCode, body, want)
		}
	}
	// Recovery (this redis keeps no data, so the session is gone: sign in again).
	rs.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		b = newHTTPBrowser(t)
		cb, err := e.IdP.Login(context.Background(), b, e.URL+"/bff/login?returnUrl=/", "alice", "wonderland")
		if err == nil {
			if res, err := b.Get(cb); err == nil {
				res.Body.Close()
				if res.StatusCode == 302 || res.StatusCode == 303 {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no sign-in after redis returned")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res, body := limitsGet(t, e, b, "/api/orders/x"); res.StatusCode != 200 {
		t.Fatalf("after redis returned: %d %s", res.StatusCode, body)
	}
}

// Issue 10 item 6, from the attacker's side: a session holds an event
// stream and a WebSocket open; when the session ends (admin revocation,
// logout; on another instance over redis) both are closed within the bound.
func TestLimitsSessionEndClosesStreamsAndWebSockets(t *testing.T) {
	const bound = 5 * time.Second
	sse := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the upstream would stream for ever
	})
	ws := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), typ, msg); err != nil {
				return
			}
		}
	})
	rs := redisserver.Start(t)
	ln1, base1 := sessListen(t)
	ln2, base2 := sessListen(t)
	p := startIdP(t, 5*time.Minute, base1, base2)
	dir1, dir2 := t.TempDir(), t.TempDir()
	sessWriteFile(t, dir1, "admin-token", endAdminToken)
	sessWriteFile(t, dir2, "admin-token", endAdminToken)
	cfg := `
session:
  store: redis
  redis:
    url: ` + rs.URL() + `
admin:
  token: ${file:admin-token}
routes:
  - name: events
    path: /api/events/
    upstream: "` + sse.URL + `/"
    credential: user_token
  - name: chat
    path: /api/chat/
    upstream: "` + ws.URL + `/"
    credential: user_token
    websocket: true
`
	e1 := startGW(t, gwOptions{IdP: p, Listener: ln1, Config: cfg, Dir: dir1})
	e2 := startGW(t, gwOptions{IdP: p, Listener: ln2, Config: cfg, Dir: dir2})

	type opened struct {
		sseDone, wsDone chan error
		close           func()
	}
	open := func(t *testing.T, e *gwEnv, b *http.Client) opened {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		o := opened{sseDone: make(chan error, 1), wsDone: make(chan error, 1), close: cancel}
		req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+"/api/events/stream", nil)
		req.Header.Set("X-CSRF", "1")
		res, err := b.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("stream: %v %v", res, err)
		}
		br := bufio.NewReader(res.Body)
		if l, err := br.ReadString('\n'); err != nil || l != "data: hello\n" {
			t.Fatalf("first event %q %v", l, err)
		}
		go func() { _, err := io.Copy(io.Discard, br); res.Body.Close(); o.sseDone <- err }()
		h := http.Header{}
		h.Set("Origin", e.URL)
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.URL, "http")+"/api/chat/room", &websocket.DialOptions{HTTPClient: b, HTTPHeader: h})
		if err != nil {
			t.Fatalf("websocket: %v", err)
		}
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, m, err := c.Read(ctx); err != nil || string(m) != "ping" {
			t.Fatalf("echo %q %v", m, err)
		}
		go func() {
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					o.wsDone <- err
					return
				}
			}
		}()
		t.Cleanup(func() { cancel(); c.CloseNow() })
		return o
	}
	wantClosed := func(t *testing.T, o opened) {
		t.Helper()
		for name, ch := range map[string]chan error{"event stream": o.sseDone, "websocket": o.wsDone} {
			select {
			case <-ch:
			case <-time.After(bound):
				t.Fatalf("the %s stayed open %s after the session ended", name, bound)
			}
		}
	}

	ends := []struct {
		name string
		on   *gwEnv // the instance holding the stream and the WebSocket
		end  func(t *testing.T, b *http.Client, id string)
	}{
		{"admin revoke", e1, func(t *testing.T, b *http.Client, id string) {
			if code, body := e1.sessAdmin(nil, "DELETE", "/admin/sessions/"+id, endAdminToken); code/100 != 2 {
				t.Fatalf("revoke: %d %s", code, body)
			}
		}},
		{"logout", e1, func(t *testing.T, b *http.Client, id string) {
			if code, body := e1.api(b, "GET", "/bff/logout?sid="+url.QueryEscape(id), nil); code != 302 && code != 303 {
				t.Fatalf("logout: %d %s", code, body)
			}
		}},
		{"admin revoke on the other instance", e2, func(t *testing.T, b *http.Client, id string) {
			if code, body := e1.sessAdmin(nil, "DELETE", "/admin/sessions/"+id, endAdminToken); code/100 != 2 {
				t.Fatalf("revoke: %d %s", code, body)
			}
		}},
	}
	for _, tc := range ends {
		t.Run(tc.name, func(t *testing.T) {
			b := e1.login("alice", "wonderland")
			id := e1.sessPublicID(b)
			o := open(t, tc.on, b)
			// A session that stays alive keeps its stream: nothing closes early.
			select {
			case err := <-o.sseDone:
				t.Fatalf("stream closed before the session ended: %v", err)
			case err := <-o.wsDone:
				t.Fatalf("websocket closed before the session ended: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
			tc.end(t, b, id)
			wantClosed(t, o)
			// And the session's credential opens nothing new.
			if res, _ := limitsGet(t, tc.on, b, "/api/events/stream"); res.StatusCode != 401 {
				t.Fatalf("after the end: %d, want 401", res.StatusCode)
			}
		})
	}
}

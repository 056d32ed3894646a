package e2e

// Several instances on one Redis behind a load balancer: revocation on one
// instance is enforced on the others within the documented bound, and a
// rolling restart of every instance in turn, under a bounded load loop
// whose clients do not retry, loses no request: each instance's readiness
// fails at its shutdown signal while it keeps serving for server.drain_delay,
// and the load balancer stand-in, which only polls readiness, stops sending
// to it before its listener closes.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

const scaleAdminToken = "admin-token-e2e-scaleout-0123456789"

// lbBackend is one instance as the load balancer sees it.
type lbBackend struct {
	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	admin string // the instance's admin base URL (changes on restart)
	ready atomic.Bool
}

// loadBalancer is a stand-in for a cloud load balancer or kube-proxy: it
// sends each request to the next backend whose /readyz answered 200 at the
// last poll (every 20ms), and knows nothing else about the instances.
type loadBalancer struct {
	backends []*lbBackend
	next     atomic.Uint64
	noneUp   atomic.Int64
}

func (l *loadBalancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := uint64(len(l.backends))
	for range n {
		b := l.backends[l.next.Add(1)%n]
		if b.ready.Load() {
			b.proxy.ServeHTTP(w, r)
			return
		}
	}
	l.noneUp.Add(1)
	http.Error(w, "no backend ready", http.StatusBadGateway)
}

func (l *loadBalancer) poll(ctx context.Context) {
	// As a real load balancer: each backend probed on its own, a 503
	// answer takes it out at once, a probe that fails (refused, or too slow
	// on a loaded machine) only after two in a row.
	var wg sync.WaitGroup
	for _, b := range l.backends {
		wg.Go(func() {
			c := &http.Client{Timeout: time.Second}
			failed := 0
			for ctx.Err() == nil {
				b.mu.Lock()
				admin := b.admin
				b.mu.Unlock()
				if resp, err := c.Get(admin + "/readyz"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					failed = 0
					b.ready.Store(resp.StatusCode == http.StatusOK)
				} else if failed++; failed >= 2 {
					b.ready.Store(false)
				}
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
}

type scaleOut struct {
	t        *testing.T
	lb       *loadBalancer
	base     string // the load balancer's URL: public_url of every instance
	envs     []*gwEnv
	addrs    []string // the instances' public addresses
	opts     gwOptions
	dirs     []string
	upstream *recorder
}

func startScaleOut(t *testing.T, n int) *scaleOut {
	t.Helper()
	rs := redisserver.Start(t)
	up := newRecorder(t, nil)
	lbLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scaleOut{t: t, lb: &loadBalancer{}, base: "http://" + lbLn.Addr().String(), upstream: up}
	p := startIdP(t, 0, s.base)
	s.opts = gwOptions{IdP: p, Config: strings.ReplaceAll(refreshRoute, "{{.Upstream}}", up.URL) + `
trusted_proxies: [127.0.0.1/32]
server:
  drain_delay: 500ms
session:
  store: redis
  redis:
    url: ` + rs.URL() + `
  cookie_keys: ["${file:cookie-key}"]
admin:
  token: ${file:admin-token}
# One session drives the load through every instance: its shared budget
# must not be what fails requests.
rate_limits:
  default: { requests: 1000000, per: 1m }
`}
	for i := range n {
		dir := t.TempDir()
		sessWriteFile(t, dir, "cookie-key", "scaleout-cookie-key-0123456789abcdef")
		sessWriteFile(t, dir, "admin-token", scaleAdminToken)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		o := s.opts
		o.Dir = dir
		e := startGWWith(t, o, p, ln, s.base)
		s.envs, s.dirs, s.addrs = append(s.envs, e), append(s.dirs, dir), append(s.addrs, ln.Addr().String())
		target, _ := url.Parse("http://" + ln.Addr().String())
		rp := httputil.NewSingleHostReverseProxy(target)
		idx := fmt.Sprint(i)
		rp.ModifyResponse = func(r *http.Response) error { r.Header.Set("X-Test-Backend", idx); return nil }
		b := &lbBackend{proxy: rp, admin: e.Admin}
		b.ready.Store(true)
		s.lb.backends = append(s.lb.backends, b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: s.lb, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lbLn) }()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.lb.poll(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); _ = srv.Close() })
	return s
}

// restart stops instance i (its readiness drops, it drains) and starts it
// again on the same port, as an orchestrator replacing a pod would.
func (s *scaleOut) restart(i int) {
	s.t.Helper()
	s.envs[i].Stop()
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", s.addrs[i]); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("re-listen on %s: %v", s.addrs[i], err)
	}
	o := s.opts
	o.Dir = s.dirs[i]
	e := startGWWith(s.t, o, s.opts.IdP, ln, s.base)
	s.envs[i] = e
	b := s.lb.backends[i]
	b.mu.Lock()
	b.admin = e.Admin
	b.mu.Unlock()
}

// direct calls one instance itself (not through the load balancer).
func (s *scaleOut) direct(b *http.Client, i int, path string) int {
	s.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.addrs[i]+path, nil)
	req.Header.Set("X-CSRF", "1")
	resp, err := b.Do(req)
	if err != nil {
		s.t.Fatalf("instance %d: %v", i, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// A revocation made through one instance's admin API is enforced by the
// two others within the documented bound (pub/sub invalidation; at worst
// the session cache TTL, 5s), although they had the session cached.
func TestScaleOutRevocationReachesEveryInstance(t *testing.T) {
	s := startScaleOut(t, 3)
	b := s.envs[0].login("alice", "wonderland")
	code, u := s.envs[0].user(b)
	if code != 200 {
		t.Fatalf("/bff/user: %d", code)
	}
	sub := u.get("sub")
	if sub == "" {
		t.Fatalf("no sub in /bff/user: %v", u)
	}
	for i := range s.envs {
		if c := s.direct(b, i, "/api/profile/me"); c != 200 {
			t.Fatalf("instance %d before revocation: %d", i, c)
		}
	}
	before := s.upstream.count()
	if c, body := s.envs[0].sessAdmin(nil, "POST", "/admin/sessions/revoke?sub="+url.QueryEscape(sub), scaleAdminToken); c != 200 {
		t.Fatalf("revoke on instance 0: %d %s", c, body)
	}
	revoked := time.Now()
	const bound = 5 * time.Second // session.DefaultCacheTTL, docs/deploy.md
	for _, i := range []int{0, 1, 2} {
		for {
			c := s.direct(b, i, "/api/profile/me")
			if c == http.StatusUnauthorized {
				t.Logf("instance %d refuses the revoked session %v after the revocation", i, time.Since(revoked).Round(time.Millisecond))
				break
			}
			if c != 200 || time.Since(revoked) > bound {
				t.Fatalf("instance %d %v after the revocation: %d; want 401 within %s", i, time.Since(revoked), c, bound)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Requests after each instance saw the revocation never reached the
	// upstream; those before it (bounded by the pub/sub delay) may have.
	t.Logf("upstream requests after the revocation: %d", s.upstream.count()-before)
}

// Every instance is restarted in turn while clients that never retry keep
// calling through the load balancer: no request fails; a revocation made in
// the middle of the roll holds on every instance afterwards.
func TestScaleOutRollingRestartLosesNoRequest(t *testing.T) {
	s := startScaleOut(t, 3)
	const clients = 4
	browsers := make([]*http.Client, clients)
	for i := range browsers {
		browsers[i] = s.envs[i%len(s.envs)].login("alice", "wonderland")
	}
	// bob's sessions are revoked in the middle of the roll; afterwards no
	// instance, restarted or not, may honour them.
	bobs := make([]*http.Client, 3)
	for i := range bobs {
		bobs[i] = s.envs[i].login("bob", "builder")
		if c := s.direct(bobs[i], i, "/api/profile/me"); c != 200 {
			t.Fatalf("bob before the revocation: %d", c)
		}
	}
	var sent, ok, unavailable, other atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, b := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20000 { // bounded by count, and by stop
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", s.base+"/api/profile/me", nil)
				req.Header.Set("X-CSRF", "1")
				sent.Add(1)
				resp, err := b.Do(req)
				if err != nil {
					other.Add(1)
					t.Logf("request failed: %v", err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Logf("status %d from %s: %s", resp.StatusCode, resp.Header.Get("X-Test-Backend"), body)
				}
				switch {
				case resp.StatusCode == 200:
					ok.Add(1)
				case resp.StatusCode == http.StatusServiceUnavailable:
					unavailable.Add(1)
				default:
					other.Add(1)
					t.Logf("status %d", resp.StatusCode)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	for i := range s.envs {
		s.restart(i)
		t.Logf("instance %d restarted; sent so far %d", i, sent.Load())
		if i == 0 {
			if c, body := s.envs[1].sessAdmin(nil, "POST", "/admin/sessions/revoke?sub=user-bob", scaleAdminToken); c != 200 {
				t.Fatalf("revoke bob on instance 1: %d %s", c, body)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	lost := 0
	for _, b := range bobs {
		for i := range s.envs {
			if c := s.direct(b, i, "/api/profile/me"); c != http.StatusUnauthorized {
				lost++
				t.Errorf("instance %d answers a revoked session with %d", i, c)
			}
		}
	}
	counts := fmt.Sprintf("sent=%d 2xx=%d 503=%d other=%d lost_revocations=%d no_backend=%d",
		sent.Load(), ok.Load(), unavailable.Load(), other.Load(), lost, s.lb.noneUp.Load())
	t.Log("rolling restart: " + counts)
	fmt.Println("rolling restart: " + counts)
	if other.Load() != 0 || unavailable.Load() != 0 || lost != 0 {
		t.Fatalf("a rolling restart lost requests: %s", counts)
	}
	if ok.Load() < 100 {
		t.Fatalf("the load loop barely ran: %s", counts)
	}
}

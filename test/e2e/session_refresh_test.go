package e2e

import (
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// burst sends n concurrent GETs of path to each base with browser b and
// returns every status and body.
func burst(t *testing.T, b *http.Client, path string, n int, bases ...string) (codes []int, bodies []string) {
	t.Helper()
	total := n * len(bases)
	codes, bodies = make([]int, total), make([]string, total)
	errs := make([]error, total)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range total {
		base := bases[i%len(bases)]
		wg.Go(func() {
			<-start
			c, body, err := sessAPI(b, base, "GET", path)
			codes[i], bodies[i], errs[i] = c, string(body), err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	return codes, bodies
}

// assertOneRefresh: every request succeeded, the OP saw exactly one refresh,
// and every request that reached the upstream carried the one new token.
func assertOneRefresh(t *testing.T, p *idp.Provider, up *recorder, oldAuth string, codes []int, bodies []string, logs string) {
	t.Helper()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("request %d: %d %s\nlogs:\n%s", i, c, bodies[i], sessTail(logs, 6000))
		}
	}
	if n := p.Count(idp.GrantRefreshToken); n != 1 {
		t.Fatalf("refreshes at the OP: %d, want exactly 1\nlogs:\n%s", n, sessTail(logs, 6000))
	}
	reqs := up.requests()
	if len(reqs) != len(codes) {
		t.Fatalf("upstream saw %d requests, want %d", len(reqs), len(codes))
	}
	first := reqs[0].Header.Get("Authorization")
	for i, r := range reqs {
		got := r.Header.Get("Authorization")
		if got != first || got == oldAuth || !strings.HasPrefix(got, "Bearer ") {
			t.Fatalf("upstream request %d carried a different or the expired token", i)
		}
	}
}

const refreshRoute = `
routes:
  - name: profile
    path: /api/profile/
    upstream: "{{.Upstream}}/"
    credential: user_token
`

// 50 concurrent API calls on a session whose access token is about to
// expire: one refresh at the OP (singleflight + lock), all 50 succeed with
// the new token.
func TestSessionConcurrentRequestsRefreshOnce(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{AccessTokenTTL: 5 * time.Minute,
		Config: strings.ReplaceAll(refreshRoute, "{{.Upstream}}", up.URL)})
	b := e.login("alice", "wonderland")
	e.sessWant(b, "/api/profile/me", 200)
	oldAuth := up.last(t).Header.Get("Authorization")
	up.reset()
	// The gateway's clock moves past expiry - refresh_before_expiry (30s).
	e.Clock.Advance(4*time.Minute + 40*time.Second)
	codes, bodies := burst(t, b, "/api/profile/me", 50, e.URL)
	assertOneRefresh(t, e.IdP, up, oldAuth, codes, bodies, e.Logs.String())
	e.sessWant(b, "/bff/user", 200)
}

// The same across two Gatehouse instances sharing a real redis, caches on
// (the default): both have the session cached with the old tokens when the
// burst starts, 25 requests go to each, and the OP still sees exactly one
// refresh (store lock + store re-read, not the cache) and the session lives.
func TestSessionConcurrentRequestsRefreshOnceAcrossTwoInstancesOnRedis(t *testing.T) {
	rs := redisserver.Start(t)
	up := newRecorder(t, nil)
	ln1, base1 := sessListen(t)
	ln2, base2 := sessListen(t)
	p := startIdP(t, 5*time.Minute, base1, base2)
	clk := &testclock.Clock{}
	cfg := strings.ReplaceAll(refreshRoute, "{{.Upstream}}", up.URL) + `
session:
  store: redis
  redis:
    url: ` + rs.URL() + `
`
	e1 := startGW(t, gwOptions{IdP: p, Listener: ln1, Clock: clk, Config: cfg})
	e2 := startGW(t, gwOptions{IdP: p, Listener: ln2, Clock: clk, Config: cfg})
	b := e1.login("alice", "wonderland")
	// Cookies are per host, not per port: the same jar reaches both.
	if e1.sessionCookie(b) == "" || e1.sessionCookie(b) != e2.sessionCookie(b) {
		t.Fatal("the browser does not send its session cookie to both instances")
	}
	e1.sessWant(b, "/api/profile/me", 200)
	e2.sessWant(b, "/api/profile/me", 200) // instance two caches the session too
	oldAuth := up.last(t).Header.Get("Authorization")
	up.reset()
	clk.Advance(4*time.Minute + 40*time.Second)
	codes, bodies := burst(t, b, "/api/profile/me", 25, e1.URL, e2.URL)
	assertOneRefresh(t, p, up, oldAuth, codes, bodies, e1.Logs.String()+e2.Logs.String())
	e1.sessWant(b, "/bff/user", 200)
	e2.sessWant(b, "/bff/user", 200)
}

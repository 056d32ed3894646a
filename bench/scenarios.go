package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// result is one row of the table.
type result struct {
	Scenario  string         `json:"scenario"`
	What      string         `json:"what"`
	Bare      *summary       `json:"bare,omitempty"`
	Gatehouse summary        `json:"gatehouse"`
	Ratio     float64        `json:"ratio_to_bare,omitempty"`
	Extra     map[string]any `json:"extra,omitempty"`
}

type scenario struct {
	name string
	run  func(ctx context.Context, e *environment) ([]result, error)
}

func scenarios() []scenario {
	return []scenario{
		{"get-bolt", func(ctx context.Context, e *environment) ([]result, error) {
			return e.sideBySide(ctx, "get-bolt", "authenticated GET, user token, full pipeline, bolt, one session", gatehouseConfig{store: "bolt"}, 1, getSmall)
		}},
		{"get-bolt-many", func(ctx context.Context, e *environment) ([]result, error) {
			return e.sideBySide(ctx, "get-bolt-many", fmt.Sprintf("the same, %d sessions in random order", e.f.sessions), gatehouseConfig{store: "bolt"}, e.f.sessions, getSmall)
		}},
		{"mixed-bolt", func(ctx context.Context, e *environment) ([]result, error) {
			return e.sideBySide(ctx, "mixed-bolt", "10 KB JSON answers, 20% POSTs with 2 KB bodies, bolt", gatehouseConfig{store: "bolt"}, 1, mixed)
		}},
		{"get-redis", func(ctx context.Context, e *environment) ([]result, error) {
			url, stop, err := startRedis(ctx, e.dir)
			if err != nil {
				return nil, err
			}
			defer stop()
			return e.sideBySide(ctx, "get-redis", "authenticated GET, full pipeline, Redis store (real redis-server)", gatehouseConfig{store: "redis", redisURL: url}, 1, getSmall)
		}},
		{"login", func(ctx context.Context, e *environment) ([]result, error) { return e.loginThroughput(ctx) }},
		{"idle-conns", func(ctx context.Context, e *environment) ([]result, error) { return e.idleConnections(ctx) }},
		{"composite", func(ctx context.Context, e *environment) ([]result, error) { return e.compositeScenario(ctx) }},
	}
}

var payload2K = bytes.Repeat([]byte(`{"k":"vvvvvvvvvvvvvvvvvvvvvvvvv"},`), 64)

func getSmall(cookies []string) workload {
	return func(rnd *rand.Rand) request {
		return request{method: http.MethodGet, path: "/api/profile/me", cookie: cookies[rnd.IntN(len(cookies))]}
	}
}

func mixed(cookies []string) workload {
	return func(rnd *rand.Rand) request {
		c := cookies[rnd.IntN(len(cookies))]
		if rnd.IntN(5) == 0 {
			return request{method: http.MethodPost, path: "/api/profile/items", cookie: c, body: payload2K}
		}
		return request{method: http.MethodGet, path: "/api/profile/big", cookie: c}
	}
}

// sideBySide measures Gatehouse and the bare proxy on one workload in
// alternating rounds. The bare proxy gets the same requests (it ignores the
// cookie and the CSRF header) on the same path: its upstream path keeps the
// /api/profile prefix, Gatehouse strips it, which the upstream does not mind.
func (e *environment) sideBySide(ctx context.Context, name, what string, gc gatehouseConfig, sessions int, mk func([]string) workload) ([]result, error) {
	dir := filepath.Join(e.dir, name)
	var cookies []string
	if sessions > 1 {
		var err error
		if cookies, err = seedSessions(ctx, filepath.Join(dir, "sessions.db"), sessions); err != nil {
			return nil, fmt.Errorf("seed %d sessions: %w", sessions, err)
		}
	}
	gh, err := e.startGatehouse(ctx, dir, gc)
	if err != nil {
		return nil, err
	}
	defer gh.stop()
	if sessions <= 1 {
		c, err := e.login(ctx)
		if err != nil {
			return nil, err
		}
		cookies = []string{c}
	} else {
		for i := range cookies {
			cookies[i] = "gatehouse=" + cookies[i]
		}
	}
	bare, err := e.startBare(ctx)
	if err != nil {
		return nil, err
	}
	defer bare.stop()
	w := mk(cookies)
	var bareRounds, ghRounds []round
	for i := 0; i < e.f.rounds; i++ {
		r, err := drive(ctx, e, bare, e.f.conns, e.f.duration, w)
		if err != nil {
			return nil, err
		}
		bareRounds = append(bareRounds, r)
		r, err = drive(ctx, e, gh, e.f.conns, e.f.duration, w)
		if err != nil {
			return nil, err
		}
		ghRounds = append(ghRounds, r)
	}
	b, g := summarize("bare", bareRounds), summarize("gatehouse", ghRounds)
	if g.Non2xx > 0 || g.Errors > 0 {
		return nil, fmt.Errorf("gatehouse answered %d non-2xx and %d errors of %d requests: the benchmark measures successes only\n%s", g.Non2xx, g.Errors, g.Requests, tail(gh.out.Bytes()))
	}
	res := result{Scenario: name, What: what, Bare: &b, Gatehouse: g}
	if b.RPS > 0 {
		res.Ratio = g.RPS / b.RPS
	}
	return []result{res}, nil
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// seedSessions creates n sessions directly in a bolt file before Gatehouse
// opens it (as n users who signed in earlier), and returns their cookies.
func seedSessions(ctx context.Context, path string, n int) ([]string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	st, err := session.OpenBoltStore(path, session.BoltOptions{SweepInterval: -1})
	if err != nil {
		return nil, err
	}
	m := session.NewManager(st, session.Options{IdleTimeout: 2 * time.Hour, AbsoluteTimeout: 12 * time.Hour, CacheTTL: -1, HealthInterval: -1})
	defer m.Close()
	cookies := make([]string, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 64 { // bolt batches concurrent writers into one transaction each
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				sub := "user-" + strconv.Itoa(i)
				h, err := m.Create(ctx, &session.Session{Subject: sub,
					Claims:      map[string]any{"sub": sub, "email_verified": true, "email": sub + "@example.com"},
					AccessToken: secret.New("bench-access-token-" + sub), AccessTokenExpiry: time.Now().Add(6 * time.Hour), TokenType: "Bearer"})
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				cookies[i] = h.Cookie().Reveal()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return cookies, ctx.Err()
}

// startRedis runs a throw-away redis-server for the Redis scenario.
func startRedis(ctx context.Context, dir string) (string, func(), error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("the Redis scenario needs redis-server (apt-get install redis-server), or leave it out with -only")
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.CommandContext(ctx, bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			stop()
			return "", nil, fmt.Errorf("redis-server did not start: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "redis://" + addr + "/0", stop, nil
}

// loginThroughput measures whole sign-ins (login redirect, the OP's login
// form, callback with code exchange and userinfo) and the callback alone.
func (e *environment) loginThroughput(ctx context.Context) ([]result, error) {
	dir := filepath.Join(e.dir, "login")
	gh, err := e.startGatehouse(ctx, dir, gatehouseConfig{store: "bolt"})
	if err != nil {
		return nil, err
	}
	defer gh.stop()
	const workers = 4
	deadline := time.Now().Add(e.f.duration * time.Duration(e.f.rounds))
	var mu sync.Mutex
	var whole []time.Duration
	var wg sync.WaitGroup
	var failed atomic.Int64
	before, _ := scrape(ctx, gh.metrics)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if _, err := e.login(ctx); err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				whole = append(whole, time.Since(t0))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	after, _ := scrape(ctx, gh.metrics)
	slices.Sort(whole)
	s := summary{Target: "gatehouse", Requests: int64(len(whole)), Errors: failed.Load(), RPS: float64(len(whole)) / elapsed.Seconds(),
		P50us: pct(whole, 0.5), P99us: pct(whole, 0.99), P999us: pct(whole, 0.999)}
	if len(whole) > 0 {
		s.CPUusPerReq = (after.cpuSeconds - before.cpuSeconds) * 1e6 / float64(len(whole))
		s.AllocsPerReq = (after.mallocs - before.mallocs) / float64(len(whole))
	}
	return []result{{Scenario: "login", What: "sign-ins per second (4 in parallel; the OP runs in the benchmark process); CPU and allocations are Gatehouse's own per sign-in", Gatehouse: s}}, nil
}

// idleConnections holds many idle keep-alive connections open to Gatehouse
// and reports its RSS and goroutines per connection.
func (e *environment) idleConnections(ctx context.Context) ([]result, error) {
	const n = 10_000
	dir := filepath.Join(e.dir, "idle")
	gh, err := e.startGatehouse(ctx, dir, gatehouseConfig{store: "bolt"})
	if err != nil {
		return nil, err
	}
	defer gh.stop()
	before, err := scrape(ctx, gh.metrics)
	if err != nil {
		return nil, err
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	req := []byte("GET /bff/user HTTP/1.1\r\nHost: " + e.gatehouseAddr + "\r\nX-CSRF: 1\r\n\r\n")
	buf := make([]byte, 4096)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", e.gatehouseAddr)
		if err != nil {
			return nil, fmt.Errorf("after %d connections: %w", i, err)
		}
		conns = append(conns, c)
		// One request each, so every connection is a served keep-alive
		// connection, not a half-open one.
		if _, err := c.Write(req); err != nil {
			return nil, err
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil && err != io.EOF {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
	}
	time.Sleep(time.Second)
	after, err := scrape(ctx, gh.metrics)
	if err != nil {
		return nil, err
	}
	s := summary{Target: "gatehouse", RSSBytes: after.rss, Goroutines: after.goroutines}
	return []result{{Scenario: "idle-conns", What: fmt.Sprintf("%d idle keep-alive connections", n), Gatehouse: s,
		Extra: map[string]any{"connections": n, "rss_before_bytes": before.rss, "rss_after_bytes": after.rss,
			"rss_per_connection_bytes": (after.rss - before.rss) / n, "goroutines_before": before.goroutines, "goroutines_after": after.goroutines}}}, nil
}

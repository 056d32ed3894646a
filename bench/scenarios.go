package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// optIn reports the scenarios that run only when -only names them: the
// default run must stay within 5 minutes on a fresh machine.
func optIn(name string) bool { return name == "get-bolt-many-cached" }

func scenarios() []scenario {
	return []scenario{
		{"get-bolt", func(ctx context.Context, e *environment) ([]result, error) {
			return e.sideBySide(ctx, "get-bolt", "authenticated GET, user token, full pipeline, bolt, one session"+e.generator(true), gatehouseConfig{store: "bolt"}, 1, getSmall)
		}},
		{"get-bolt-many", func(ctx context.Context, e *environment) ([]result, error) {
			return e.sideBySide(ctx, "get-bolt-many", fmt.Sprintf("the same, %d sessions (JWT-sized tokens) in random order", e.f.sessions), gatehouseConfig{store: "bolt"}, e.f.sessions, getSmall)
		}},
		{"get-bolt-many-cached", func(ctx context.Context, e *environment) ([]result, error) {
			return e.sideBySide(ctx, "get-bolt-many-cached", fmt.Sprintf("the same, with session.cache_memory: 1GiB so that all %d sessions stay cached (the default 128MiB holds about 30 000 of these)", e.f.sessions), gatehouseConfig{store: "bolt", cacheMem: "1GiB"}, e.f.sessions, getSmall)
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
			return e.sideBySide(ctx, "get-redis", "authenticated GET, full pipeline, Redis store (real redis-server)"+e.generator(true), gatehouseConfig{store: "redis", redisURL: url}, 1, getSmall)
		}},
		{"stored-sessions", func(ctx context.Context, e *environment) ([]result, error) { return e.storedSessions(ctx) }},
		{"get-agent", func(ctx context.Context, e *environment) ([]result, error) { return e.agentToken(ctx) }},
		{"get-dpop", func(ctx context.Context, e *environment) ([]result, error) { return e.nativeDPoP(ctx) }},
		{"audit", func(ctx context.Context, e *environment) ([]result, error) { return e.durability(ctx) }},
		{"half-peak", func(ctx context.Context, e *environment) ([]result, error) { return e.halfPeakLatency(ctx) }},
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

// pair is a started Gatehouse and bare proxy with the cookies to use.
type pair struct {
	gh, bare *child
	cookies  []string
}

func (p *pair) stop() {
	if p.bare != nil {
		_ = p.bare.stop()
	}
	if p.gh != nil {
		_ = p.gh.stop()
	}
}

// startPair starts Gatehouse (with sessions: one signed in at the OP, or n
// seeded into its bolt file) and a bare proxy.
func (e *environment) startPair(ctx context.Context, name string, gc gatehouseConfig, sessions int) (*pair, error) {
	dir := filepath.Join(e.dir, name)
	p := &pair{}
	if sessions > 1 {
		var err error
		if p.cookies, err = seedSessions(ctx, filepath.Join(dir, "sessions.db"), sessions); err != nil {
			return nil, fmt.Errorf("seed %d sessions: %w", sessions, err)
		}
		for i := range p.cookies {
			p.cookies[i] = "gatehouse=" + p.cookies[i]
		}
	}
	var err error
	if p.gh, err = e.startGatehouse(ctx, dir, gc); err != nil {
		return nil, err
	}
	if sessions <= 1 {
		c, err := e.login(ctx)
		if err != nil {
			p.stop()
			return nil, err
		}
		p.cookies = []string{c}
	}
	if p.bare, err = e.startBare(ctx); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// sideBySide measures Gatehouse and the bare proxy on one workload in
// alternating rounds. The bare proxy gets the same requests (it ignores the
// cookie and the CSRF header) on the same path: its upstream path keeps the
// /api/profile prefix, Gatehouse strips it, which the upstream does not mind.
func (e *environment) sideBySide(ctx context.Context, name, what string, gc gatehouseConfig, sessions int, mk func([]string) workload) ([]result, error) {
	p, err := e.startPair(ctx, name, gc, sessions)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	w := mk(p.cookies)
	one := func(target *child) (round, error) {
		if e.wrk != "" && len(p.cookies) == 1 && name != "mixed-bolt" {
			return wrkRound(ctx, e, target, e.f.conns, e.f.duration, "/api/profile/me", p.cookies[0])
		}
		return drive(ctx, e, target, e.f.conns, e.f.duration, w)
	}
	if len(p.cookies) > 1 {
		// Steady state: the users have been active before the measurement, so
		// every session is used once first (as a cache would hold them), in
		// parallel; the rounds then pick sessions at random.
		if err := warmSessions(ctx, p.gh, p.cookies, e.f.conns); err != nil {
			return nil, err
		}
	}
	res, err := e.alternate(p, name, what, one)
	if err != nil {
		return nil, err
	}
	if e.f.profile != "" {
		if err := e.profileRound(ctx, name, p.gh, w); err != nil {
			return nil, fmt.Errorf("profile: %w", err)
		}
	}
	return []result{res}, nil
}

// alternate runs e.f.rounds rounds against the bare proxy and Gatehouse in
// turn with one, and returns the side-by-side result (successes only).
func (e *environment) alternate(p *pair, name, what string, one func(*child) (round, error)) (result, error) {
	var bareRounds, ghRounds []round
	for i := 0; i < e.f.rounds; i++ {
		r, err := one(p.bare)
		if err != nil {
			return result{}, err
		}
		bareRounds = append(bareRounds, r)
		if r, err = one(p.gh); err != nil {
			return result{}, err
		}
		ghRounds = append(ghRounds, r)
	}
	b, g := summarize("bare", bareRounds), summarize("gatehouse", ghRounds)
	if err := successesOnly(p.gh, g); err != nil {
		return result{}, err
	}
	res := result{Scenario: name, What: what, Bare: &b, Gatehouse: g}
	if b.RPS > 0 {
		res.Ratio = g.RPS / b.RPS
	}
	return res, nil
}

// closedLoop is the round alternate runs by default: drive with w.
func (e *environment) closedLoop(ctx context.Context, w workload) func(*child) (round, error) {
	return func(target *child) (round, error) { return drive(ctx, e, target, e.f.conns, e.f.duration, w) }
}

// warmSessions sends one GET with each cookie to target, conns at a time.
func warmSessions(ctx context.Context, target *child, cookies []string, conns int) error {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(cookies) || ctx.Err() != nil {
					return
				}
				status, err := do(client, target.url, request{method: http.MethodGet, path: "/api/profile/me", cookie: cookies[i]})
				if err != nil || status != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("warming %d sessions: %d requests failed", len(cookies), n)
	}
	return ctx.Err()
}

// generator names the load generator of the single-path GET scenarios.
func (e *environment) generator(wrkCapable bool) string {
	if wrkCapable && e.wrk != "" {
		return " (wrk)"
	}
	return ""
}

func successesOnly(gh *child, g summary) error {
	if g.Non2xx > 0 || g.Errors > 0 {
		return fmt.Errorf("gatehouse answered %d non-2xx and %d errors of %d requests: the benchmark measures successes only\n%s", g.Non2xx, g.Errors, g.Requests, tail(gh.out.Bytes()))
	}
	return nil
}

// agentToken measures an agent's GETs with a gha_ token minted by the
// signed-in user (Authorization: Bearer, no cookie): the token's grant is
// looked up and its sealed session opened instead of the cookie's.
func (e *environment) agentToken(ctx context.Context) ([]result, error) {
	p, err := e.startPair(ctx, "get-agent", gatehouseConfig{store: "bolt",
		extraYAML: "agents:\n  max_ttl: 2h\n  default_ttl: 1h\n  delegable_routes: [profile]\n"}, 1)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	tok, err := e.mintAgentToken(ctx, p.cookies[0])
	if err != nil {
		return nil, err
	}
	w := func(*rand.Rand) request {
		return request{method: http.MethodGet, path: "/api/profile/me", auth: "Bearer " + tok}
	}
	res, err := e.alternate(p, "get-agent", "authenticated GET with an agent token (gha_, minted at /bff/agents/tokens), bolt", e.closedLoop(ctx, w))
	if err != nil {
		return nil, err
	}
	return []result{res}, nil
}

// mintAgentToken asks Gatehouse for an agent token as the signed-in user.
func (e *environment) mintAgentToken(ctx context.Context, cookie string) (string, error) {
	body := strings.NewReader(`{"name":"bench","routes":["profile"],"methods":["GET"],"ttl":"1h"}`)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+e.gatehouseAddr+"/bff/agents/tokens", body)
	req.Header.Set("Cookie", cookie)
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &out) != nil || out.Token == "" {
		return "", fmt.Errorf("mint agent token: %d %s", resp.StatusCode, b)
	}
	return out.Token, nil
}

// durability compares the three audit durabilities on the same GET load:
// interval (fsync every fsync_interval, nothing waited for), written (the
// default: a request's decision record is written to the file before the
// upstream is contacted) and sync (... and fsynced, group commit). Both
// rows are against interval. All need the run's one Gatehouse address (the
// OP's redirect URI), so each round starts a fresh Gatehouse in the mode
// measured, alternating.
func (e *environment) durability(ctx context.Context) ([]result, error) {
	modes := []string{"interval", "written", "sync"}
	rounds := map[string][]round{}
	for i := 0; i < e.f.rounds; i++ {
		for _, mode := range modes {
			gh, err := e.startGatehouse(ctx, filepath.Join(e.dir, "audit-"+mode), gatehouseConfig{store: "bolt", durability: mode})
			if err != nil {
				return nil, err
			}
			c, err := e.login(ctx)
			if err != nil {
				_ = gh.stop()
				return nil, err
			}
			r, err := drive(ctx, e, gh, e.f.conns, e.f.duration, getSmall([]string{c}))
			if err == nil && e.f.profile != "" && i == e.f.rounds-1 {
				err = e.profileRound(ctx, "audit-"+mode, gh, getSmall([]string{c}))
			}
			_ = gh.stop()
			if err != nil {
				return nil, err
			}
			rounds[mode] = append(rounds[mode], r)
		}
	}
	iv := summarize("interval", rounds["interval"])
	var out []result
	for _, mode := range modes[1:] {
		s := summarize(mode, rounds[mode])
		if s.Non2xx > 0 || s.Errors > 0 || iv.Non2xx > 0 || iv.Errors > 0 {
			return nil, fmt.Errorf("non-2xx or errors: %s %d/%d, interval %d/%d", mode, s.Non2xx, s.Errors, iv.Non2xx, iv.Errors)
		}
		res := result{Scenario: "audit-" + mode, What: "authenticated GET, bolt, audit durability " + mode + " (row 2) against interval (row 1), a fresh Gatehouse per round; ratio is " + mode + " ÷ interval",
			Bare: &iv, Gatehouse: s}
		if s.AuditSyncs > 0 && s.Requests > 0 {
			res.Extra = map[string]any{
				"fsyncs_per_second":  math.Round(s.AuditSyncs / (float64(s.Requests) / s.RPS)),
				"requests_per_fsync": math.Round(10*float64(s.Requests)/s.AuditSyncs) / 10,
			}
		}
		if iv.RPS > 0 {
			res.Ratio = s.RPS / iv.RPS
		}
		out = append(out, res)
	}
	return out, nil
}

// halfPeakLatency finds both targets' peak (one closed-loop round each),
// then offers half of the lower peak as an open-loop, fixed-rate load to
// each in alternating rounds: the latency a request adds when the machine
// is not saturated.
func (e *environment) halfPeakLatency(ctx context.Context) ([]result, error) {
	p, err := e.startPair(ctx, "half-peak", gatehouseConfig{store: "bolt"}, 1)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	w := getSmall(p.cookies)
	rb, err := drive(ctx, e, p.bare, e.f.conns, e.f.duration, w)
	if err != nil {
		return nil, err
	}
	rg, err := drive(ctx, e, p.gh, e.f.conns, e.f.duration, w)
	if err != nil {
		return nil, err
	}
	peakB, peakG := float64(rb.requests)/rb.elapsed.Seconds(), float64(rg.requests)/rg.elapsed.Seconds()
	rate := min(peakB, peakG) * e.f.loadFraction
	res, err := e.alternate(p, "half-peak", "", func(target *child) (round, error) {
		return driveOpen(ctx, e, target, rate, e.f.duration, w)
	})
	if err != nil {
		return nil, err
	}
	b, g := *res.Bare, res.Gatehouse
	return []result{{Scenario: "half-peak", What: fmt.Sprintf("open loop at %.2f of the lower closed-loop peak (%.0f req/s; peaks %.0f bare, %.0f gatehouse), authenticated GET, bolt; latency counted from each request's scheduled start", e.f.loadFraction, rate, peakB, peakG),
		Bare: &b, Gatehouse: g, Ratio: g.RPS / b.RPS,
		Extra: map[string]any{"rate": rate, "peak_bare": peakB, "peak_gatehouse": peakG,
			"added_p50_us": g.P50us - b.P50us, "added_p99_us": g.P99us - b.P99us}}}, nil
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
	for range 1000 { // bolt batches concurrent writers (up to 1000) into one transaction
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				h, err := m.Create(ctx, realisticSession(i))
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

// realisticSession is user i's session as a typical IdP fills it: JWT
// access and ID tokens of about 900 bytes each (RS256, a dozen claims), an
// opaque refresh token and a dozen claims, so that the store and the cache
// are measured with what they hold in production, not with toy tokens.
func realisticSession(i int) *session.Session {
	sub := "user-" + strconv.Itoa(i)
	jwt := func(kind string) string {
		// header.payload.signature, base64url-sized: 36 + 480 + 342 characters.
		return "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0." + fill(kind+sub, 480) + "." + fill("sig"+sub, 342)
	}
	return &session.Session{Subject: sub, IdPSessionID: "sid-" + sub,
		Claims: map[string]any{"sub": sub, "email_verified": true, "email": sub + "@example.com",
			"name": "User " + strconv.Itoa(i), "given_name": "User", "family_name": strconv.Itoa(i),
			"preferred_username": sub, "locale": "en-GB", "zoneinfo": "Europe/London",
			"iss": "https://idp.example.com", "aud": "gatehouse", "auth_time": float64(1764547200),
			"groups": []any{"staff", "engineering"}},
		AccessToken: secret.New(jwt("at")), IDToken: secret.New(jwt("id")), RefreshToken: secret.New(fill("rt"+sub, 64)),
		AccessTokenExpiry: time.Now().Add(6 * time.Hour), TokenType: "Bearer", Scope: "openid profile email offline_access"}
}

// fill returns n base64url characters derived from seed.
func fill(seed string, n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	h := uint64(14695981039346656037)
	for _, c := range []byte(seed) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	for i := range b {
		h ^= h << 13
		h ^= h >> 7
		h ^= h << 17
		b[i] = alphabet[h&63]
	}
	return string(b)
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
				if _, err := e.loginOnce(ctx); err != nil {
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
	// The default connection cap is half the open-file limit, which on a
	// machine with 20 000 descriptors is just under n.
	gh, err := e.startGatehouse(ctx, dir, gatehouseConfig{store: "bolt", extraYAML: "server:\n  max_connections: 15000\n"})
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

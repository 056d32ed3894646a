package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
)

const (
	clientSecret = "bench-client-secret-0123456789"
	// adminToken opens Gatehouse's /admin/debug/pprof/ for -profile.
	adminToken = "bench-admin-token-0123456789"
)

// environment is what every scenario shares: the binaries, one upstream and
// one OpenID Provider, all on loopback.
type environment struct {
	f            flags
	dir          string
	log          *slog.Logger
	gatehouseBin string
	self         string
	wrk          string // wrk's path when -wrk is set and it is installed

	upstream *upstreamServer
	op       *idp.Provider
	// gatehouseAddr is fixed for the run: the OP's registered redirect URI
	// names it.
	gatehouseAddr string
}

// upstreamServer answers fast and counts the TCP connections and requests
// it sees, so requests per upstream connection can be reported.
type upstreamServer struct {
	srv         *http.Server
	url         string
	conns, reqs atomic.Int64
	small, big  []byte
	delay       atomic.Int64 // nanoseconds added to /slow/*
}

func (e *environment) startShared(ctx context.Context) error {
	up := &upstreamServer{small: []byte(`{"id":"me","name":"Alice","email_verified":true}`)}
	up.big = bigJSON(10 << 10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	up.url = "http://" + ln.Addr().String()
	up.srv = &http.Server{Handler: up, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				up.conns.Add(1)
			}
		}}
	go func() { _ = up.srv.Serve(ln) }()
	e.upstream = up

	if e.gatehouseAddr, err = freeAddr(); err != nil {
		return err
	}
	e.op, err = idp.Start(ctx, idp.Options{
		Clients: []idp.Client{{ID: "bench", Secret: clientSecret, RedirectURIs: []string{"http://" + e.gatehouseAddr + "/bff/callback"}}},
		// Long-lived tokens: no refresh inside a round.
		AccessTokenTTL: 2 * time.Hour, IDTokenTTL: 2 * time.Hour,
		Logger: e.log,
	})
	return err
}

func (e *environment) close() {
	_ = e.upstream.srv.Close()
	_ = e.op.Close()
}

func (u *upstreamServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.reqs.Add(1)
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	if d := u.delay.Load(); d > 0 && strings.Contains(r.URL.Path, "/slow/") {
		time.Sleep(time.Duration(d))
	}
	w.Header().Set("Content-Type", "application/json")
	if strings.HasSuffix(r.URL.Path, "/big") {
		_, _ = w.Write(u.big)
		return
	}
	_, _ = w.Write(u.small)
}

func bigJSON(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < n-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item %d","ok":true}`, i, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// child is one measured server process.
type child struct {
	name    string
	cmd     *exec.Cmd
	url     string // where requests go
	metrics string // its Prometheus endpoint
	admin   string // Gatehouse's admin listener base URL ("" for the bare proxy)
	out     *bytes.Buffer
	done    chan error
}

func (c *child) stop() error {
	if c.cmd.Process == nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		return err
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		return <-c.done
	}
}

func (e *environment) startChild(ctx context.Context, name string, args []string, dir, url, metrics string) (*child, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if e.f.verbose {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(out, os.Stderr), io.MultiWriter(out, os.Stderr)
	}
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(max(2, runtimeCPUs())))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, url: url, metrics: metrics, out: out, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

// startBare starts the bare reverse proxy child.
func (e *environment) startBare(ctx context.Context) (*child, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	stats, err := freeAddr()
	if err != nil {
		return nil, err
	}
	c, err := e.startChild(ctx, "bare", []string{e.self, "-role", "bare", "-upstream", e.upstream.url, "-listen", addr, "-stats", stats},
		e.dir, "http://"+addr, "http://"+stats+"/metrics")
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, c.metrics, 20*time.Second); err != nil {
		_ = c.stop()
		return nil, fmt.Errorf("bare proxy: %w\n%s", err, c.out.String())
	}
	return c, nil
}

// gatehouseConfig is what varies between scenarios.
type gatehouseConfig struct {
	store      string // bolt | redis
	redisURL   string
	durability string // "" = default
	cacheMem   string // session.cache_memory; "" = default
	extraYAML  string // appended (routes, composites, ...)
}

// startGatehouse writes a config into its own directory and starts
// `gatehouse serve` on the run's fixed address.
func (e *environment) startGatehouse(ctx context.Context, dir string, gc gatehouseConfig) (*child, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "client-secret"), []byte(clientSecret), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(adminToken), 0o600); err != nil {
		return nil, err
	}
	store := "  store: bolt\n  bolt: { path: sessions.db }\n"
	if gc.store == "redis" {
		store = "  store: redis\n  redis: { url: \"" + gc.redisURL + "\" }\n"
	}
	audit := "audit:\n  sink: file\n  path: audit.jsonl\n"
	if gc.durability != "" {
		audit += "  durability: " + gc.durability + "\n"
	}
	yaml := `listen: "` + e.gatehouseAddr + `"
admin_listen: "` + admin + `"
public_url: "http://` + e.gatehouseAddr + `"
identity:
  issuer: "` + e.op.Issuer() + `"
  client_id: bench
  client_secret: ${file:client-secret}
session:
` + store + cacheMem(gc.cacheMem) + `  cookie_name: gatehouse
  idle_timeout: 2h
  absolute_timeout: 12h
` + audit + `admin:
  token: ${file:admin-token}
telemetry:
  log_level: error
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + e.upstream.url + `/"
    methods: [GET, POST]
    credential: user_token
    allow: 'user.email_verified == true && (request.method == "GET" || request.method == "POST")'
# A few sessions drive the whole load: their budgets are raised so the
# limit stage is measured, not hit.
rate_limits:
  default: { requests: 1000000, per: 1s }
  concurrent_per_caller: 100000
` + gc.extraYAML
	cfg := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	c, err := e.startChild(ctx, "gatehouse", []string{e.gatehouseBin, "serve", "-c", cfg}, dir,
		"http://"+e.gatehouseAddr, "http://"+admin+"/metrics")
	if err != nil {
		return nil, err
	}
	c.admin = "http://" + admin
	if err := waitHTTP(ctx, "http://"+admin+"/readyz", 30*time.Second); err != nil {
		_ = c.stop()
		return nil, fmt.Errorf("gatehouse: %w\n%s", err, c.out.String())
	}
	return c, nil
}

// cacheMem is the session.cache_memory line, when set.
func cacheMem(v string) string {
	if v == "" {
		return ""
	}
	return "  cache_memory: " + v + "\n"
}

// login signs alice in at the real OP through Gatehouse and returns her
// session cookie as a Cookie header value.
func (e *environment) login(ctx context.Context) (string, error) {
	// Readiness does not wait for the IdP's discovery document, so a
	// Gatehouse that has just become ready can answer a sign-in 503 for a
	// moment: retry for up to 5 s before giving up.
	var err error
	for attempt := 0; attempt < 25; attempt++ {
		var c string
		if c, err = e.loginOnce(ctx); err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "", err
}

func (e *environment) loginOnce(ctx context.Context) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "http://" + e.gatehouseAddr
	cb, err := e.op.Login(ctx, c, base+"/bff/login?returnUrl=/", "alice", "wonderland")
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	resp, err := c.Get(cb)
	if err != nil {
		return "", fmt.Errorf("callback: %w", err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "gatehouse" && ck.Value != "" {
			return ck.Name + "=" + ck.Value, nil
		}
	}
	return "", fmt.Errorf("callback answered %d without a session cookie", resp.StatusCode)
}

// procStats are the counters read from a child's /metrics.
type procStats struct {
	mallocs, cpuSeconds, rss, goroutines float64
	auditSyncs                           float64 // Gatehouse only: gatehouse_audit_syncs_total
}

func scrape(ctx context.Context, u string) (procStats, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return procStats{}, err
	}
	defer resp.Body.Close()
	var s procStats
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_mallocs_total":
			s.mallocs = v
		case "process_cpu_seconds_total":
			s.cpuSeconds = v
		case "process_resident_memory_bytes":
			s.rss = v
		case "go_goroutines":
			s.goroutines = v
		case "gatehouse_audit_syncs_total":
			s.auditSyncs = v
		}
	}
	return s, sc.Err()
}

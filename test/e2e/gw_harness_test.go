package e2e

// The gateway harness: a real OpenID Provider (internal/idp on zitadel op),
// Gatehouse built by internal/gateway from a real YAML file, and upstream APIs
// owned by the test that record every request they receive.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/idp"
)

const (
	gwClientID     = "gatehouse-e2e"
	gwClientSecret = "e2e-client-secret-0123456789"
)

// recorded is one request an upstream received.
type recorded struct {
	Method string
	Path   string // as received (escaped)
	Query  string
	Header http.Header
	Body   []byte
}

// recorder is a test-owned upstream API that records what reaches it.
type recorder struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	handler http.HandlerFunc // optional: answers after recording
}

func newRecorder(t *testing.T, h http.HandlerFunc) *recorder {
	t.Helper()
	r := &recorder{handler: h}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, recorded{req.Method, req.URL.EscapedPath(), req.URL.RawQuery, req.Header.Clone(), body})
		r.mu.Unlock()
		if r.handler != nil {
			r.handler(w, req)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func (r *recorder) last(t *testing.T) recorded {
	t.Helper()
	reqs := r.requests()
	if len(reqs) == 0 {
		t.Fatal("the upstream received nothing")
	}
	return reqs[len(reqs)-1]
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}

// gwEnv is one running Gatehouse with its IdP.
type gwEnv struct {
	t       *testing.T
	IdP     *idp.Provider
	Dir     string
	Config  string // path of the YAML file
	Cfg     *config.Config
	GW      *gateway.Gateway
	URL     string // public base URL, e.g. http://127.0.0.1:1234
	Admin   string // admin base URL
	Logs    *syncbuf.Buffer
	Audit   string // audit file path
	Clock   *testclock.Clock
	cancel  context.CancelFunc
	done    <-chan error
	stopped bool
}

// gwOptions shapes a test's Gatehouse.
type gwOptions struct {
	// Config is the YAML after the generated header (public_url, identity,
	// audit); it is a text/template with {{.Dir}} and {{.Issuer}}.
	Config string
	// IdP reuses a running IdP (several instances); nil starts one.
	IdP *idp.Provider
	// Listener reuses a bound public listener (restart on the same port).
	Listener net.Listener
	// AccessTokenTTL of the IdP started for the test (default 5m).
	AccessTokenTTL time.Duration
	// Dir reuses a data directory (restart); empty: a new temp dir.
	Dir string
	// Clock shared with the gateway; nil: a new one.
	Clock *testclock.Clock
	// Header replaces the generated header entirely (rarely needed).
	Header string
	// Audit adds keys to the generated header's audit section, e.g. "buffer: 16".
	Audit string
}

// startGW starts an IdP (unless given) and a Gatehouse on loopback. The
// IdP registers the gateway's callback, logout and back-channel URLs.
func startGW(t *testing.T, o gwOptions) *gwEnv {
	t.Helper()
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + ln.Addr().String()
	p := o.IdP
	if p == nil {
		p = startIdP(t, o.AccessTokenTTL, base)
	}
	return startGWWith(t, o, p, ln, base)
}

// startIdP starts the development OP with the test client registered for
// every base URL given (several Gatehouse instances).
func startIdP(t *testing.T, ttl time.Duration, bases ...string) *idp.Provider {
	t.Helper()
	c := idp.Client{ID: gwClientID, Secret: gwClientSecret}
	for _, b := range bases {
		c.RedirectURIs = append(c.RedirectURIs, b+"/bff/callback")
		c.PostLogoutRedirectURIs = append(c.PostLogoutRedirectURIs, b+"/")
	}
	if len(bases) > 0 {
		c.BackChannelLogoutURI = bases[0] + "/bff/backchannel"
	}
	p := idp.MustStart(t, idp.Options{Clients: []idp.Client{c}, AccessTokenTTL: ttl})
	return p
}

func startGWWith(t *testing.T, o gwOptions, p *idp.Provider, ln net.Listener, base string) *gwEnv {
	t.Helper()
	dir := o.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	clk := o.Clock
	if clk == nil {
		clk = &testclock.Clock{}
	}
	if err := os.WriteFile(filepath.Join(dir, "client-secret"), []byte(gwClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	header := o.Header
	if header == "" {
		header = `public_url: "{{.Base}}"
identity:
  issuer: "{{.Issuer}}"
  client_id: ` + gwClientID + `
  client_secret: ${file:client-secret}
audit:
  sink: file
  path: audit.jsonl
  fsync_interval: 50ms
`
		if o.Audit != "" {
			header += "  " + strings.ReplaceAll(strings.TrimSpace(o.Audit), "\n", "\n  ") + "\n"
		}
		header += `telemetry:
  log_level: debug
`
	}
	tpl, err := template.New("cfg").Parse(header + o.Config)
	if err != nil {
		t.Fatal(err)
	}
	var y bytes.Buffer
	if err := tpl.Execute(&y, map[string]string{"Base": base, "Issuer": p.Issuer(), "Dir": dir}); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(cfgPath, y.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("config:\n%s\n%v", y.String(), err)
	}
	logs := &syncbuf.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	adm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := gateway.New(ctx, cfg, gateway.Options{
		Logger: logger, Version: "e2e", Now: clk.Now,
		PublicListener: ln, AdminListener: adm, SecretPollInterval: 20 * time.Millisecond,
	})
	if err != nil {
		cancel()
		t.Fatalf("gateway: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	e := &gwEnv{t: t, IdP: p, Dir: dir, Config: cfgPath, Cfg: cfg, GW: g, URL: base, Admin: "http://" + adm.Addr().String(),
		Logs: logs, Audit: filepath.Join(dir, "audit.jsonl"), Clock: clk, cancel: cancel, done: done}
	t.Cleanup(e.Stop)
	e.waitReady()
	return e
}

// waitReady waits until /readyz reports the IdP discovered.
func (e *gwEnv) waitReady() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(e.Admin + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			// The IdP only degrades readiness, so wait for it explicitly.
			if resp.StatusCode == 200 && strings.Contains(string(b), `"identity_provider":"ok"`) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("gatehouse not ready; logs:\n%s", e.Logs.String())
}

// Stop shuts the gateway down and waits for it (idempotent).
func (e *gwEnv) Stop() {
	if e.stopped {
		return
	}
	e.stopped = true
	e.cancel()
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("gateway stopped with error: %v", err)
		}
	case <-time.After(15 * time.Second):
		e.t.Error("gateway did not stop within 15s")
	}
}

// browser is an HTTP client with a cookie jar that does not follow redirects
// (so tests see each hop), like a browser's fetch with manual redirects.
func newHTTPBrowser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// login signs user in through /bff/login, the OP's login form and
// /bff/callback, and returns the browser holding the session cookie.
func (e *gwEnv) login(user, pass string) *http.Client {
	e.t.Helper()
	b := newHTTPBrowser(e.t)
	e.loginWith(b, user, pass)
	return b
}

func (e *gwEnv) loginWith(b *http.Client, user, pass string) {
	e.t.Helper()
	cb, err := e.IdP.Login(context.Background(), b, e.URL+"/bff/login?returnUrl=/", user, pass)
	if err != nil {
		e.t.Fatalf("login at the OP: %v\nlogs:\n%s", err, e.Logs.String())
	}
	resp, err := b.Get(cb)
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("callback: %d %s\nlogs:\n%s", resp.StatusCode, body, e.Logs.String())
	}
}

// api calls an API path the way the SPA does (X-CSRF: 1) and returns status and body.
func (e *gwEnv) api(b *http.Client, method, path string, hdr map[string]string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("X-CSRF", "1")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// bffUser is a /bff/user answer: Duende BFF's array of claims.
type bffUser []struct {
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// get is the value of the first claim of type typ ("" when absent or not a string).
func (u bffUser) get(typ string) string {
	for _, c := range u {
		if c.Type == typ {
			s, _ := c.Value.(string)
			return s
		}
	}
	return ""
}

// user fetches /bff/user.
func (e *gwEnv) user(b *http.Client) (int, bffUser) {
	e.t.Helper()
	code, body := e.api(b, "GET", "/bff/user", nil)
	var u bffUser
	_ = json.Unmarshal(body, &u)
	return code, u
}

// sessionCookie returns the browser's session cookie value for the gateway.
func (e *gwEnv) sessionCookie(b *http.Client) string {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.URL+"/", nil)
	for _, c := range b.Jar.Cookies(req.URL) {
		if c.Name == e.Cfg.EffectiveCookieName() {
			return c.Value
		}
	}
	return ""
}

// auditLines returns the audit file's lines (after flushing by stopping is
// not needed: fsync_interval only bounds durability; writes are prompt).
func (e *gwEnv) auditLines() []string {
	e.t.Helper()
	var lines []string
	deadline := time.Now().Add(2 * time.Second)
	for {
		b, err := os.ReadFile(e.Audit)
		if err == nil {
			lines = strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		}
		if time.Now().After(deadline) || (err == nil && len(lines) > 0) {
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return m
}

var _ = fmt.Sprintf

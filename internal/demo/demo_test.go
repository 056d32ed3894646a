package demo

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/config"
)

// TestDemoConfigLoads checks the generated configuration against the real loader: every
// route and credential kind the demo uses is accepted, and nothing unsupported sneaks in.
func TestDemoConfigLoads(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"client-secret", "weather-api-key", "cookie-key", "admin-token"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("s3cr3t-value-for-test-long-enough-32b"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "web"), 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := renderConfig(configData{
		Listen: "127.0.0.1:18080", AdminListen: "127.0.0.1:18090", PublicURL: "http://127.0.0.1:18080", Issuer: "http://127.0.0.1:18081",
		ClientID: ClientID, BillingAudience: BillingAudience,
		Profile: "http://127.0.0.1:1/", Billing: "http://127.0.0.1:2/", Notifications: "http://127.0.0.1:3/",
		Weather: "http://127.0.0.1:4/", Audit: "http://127.0.0.1:5/", Operator: "http://127.0.0.1:6/",
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("demo config does not load:\n%v\n---\n%s", err, data)
	}
	want := map[string]config.CredentialKind{
		"profile": config.CredUserToken, "billing": config.CredTokenExchange,
		"notifications": config.CredClientCredentials, "weather": config.CredHeader, "audit": config.CredNone,
		"reports": config.CredUserToken, "operator": config.CredNone,
	}
	for name, kind := range want {
		r := cfg.Route(name)
		if r == nil || r.Credential.Kind != kind {
			t.Errorf("route %s: %+v, want credential %s", name, r, kind)
		}
	}
	if got := cfg.Route("billing").Credential.TokenExchange.Audience; got != BillingAudience {
		t.Errorf("billing audience %q", got)
	}
	if cfg.Frontend.StaticDir != filepath.Join(dir, "web") || cfg.Audit.Path != filepath.Join(dir, "audit.jsonl") ||
		cfg.Session.Store != config.StoreBolt || cfg.Session.Bolt.Path != filepath.Join(dir, "sessions.db") {
		t.Errorf("paths not under the data dir: %+v %+v %+v", cfg.Frontend, cfg.Audit, cfg.Session.Bolt)
	}
	if strings.Contains(string(data), "s3cr3t") {
		t.Error("a secret value was written into the config file")
	}
	// The only warning left is the inherent one: plain http on loopback.
	for _, w := range cfg.Warnings() {
		if w.Key != "public_url" {
			t.Errorf("avoidable config warning: %s", w)
		}
	}
}

// TestRunStartsEverythingOnLoopbackAndStopsCleanly runs the demo with a starter that only
// loads the config (the gateway is another package's job) and checks what the demo owns.
func TestRunStartsEverythingOnLoopbackAndStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncbuf.Buffer
	ready := make(chan Info, 1)
	gwDone := make(chan error, 1)
	var loaded *config.Config
	start := func(gctx context.Context, path string) (string, <-chan error, error) {
		cfg, err := config.Load(path)
		if err != nil {
			return "", nil, err
		}
		loaded = cfg
		go func() { <-gctx.Done(); gwDone <- nil }()
		return cfg.PublicURL.String(), gwDone, nil
	}
	runErr := make(chan error, 1)
	go func() {
		runErr <- Run(ctx, Options{StartGateway: start, Out: &out, Ready: func(i Info) { ready <- i }})
	}()
	var info Info
	select {
	case info = <-ready:
	case err := <-runErr:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not become ready")
	}

	banner := out.String()
	for _, w := range []string{Banner, info.PublicURL, "alice", "wonderland", "bob", "builder",
		"Admin API:         " + info.AdminURL + "/admin/sessions", "Metrics:           " + info.AdminURL + "/metrics"} {
		if !strings.Contains(banner, w) {
			t.Errorf("banner lacks %q:\n%s", w, banner)
		}
	}
	if !strings.HasPrefix(info.PublicURL, "http://127.0.0.1:") || !strings.HasPrefix(info.IssuerURL, "http://127.0.0.1:") {
		t.Errorf("not loopback: %+v", info)
	}
	if _, err := os.Stat(filepath.Join(info.DataDir, "web", "index.html")); err != nil {
		t.Errorf("SPA not written: %v", err)
	}
	// The OP answers discovery, and every upstream answers on loopback.
	get := func(u string, hdr http.Header) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(info.IssuerURL+"/.well-known/openid-configuration", nil); code != 200 {
		t.Errorf("OP discovery: %d", code)
	}
	for _, r := range loaded.Routes {
		if h := r.Upstream.Hostname(); h != "127.0.0.1" {
			t.Errorf("route %s upstream %s is not loopback", r.Name, r.Upstream)
		}
	}
	key, err := os.ReadFile(info.APIKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(loaded.Route("weather").Upstream.String()+"today", http.Header{"X-Api-Key": {string(key)}})
	if code != 200 || strings.Contains(body, string(key)) {
		t.Errorf("weather API: %d %s", code, body)
	}
	var echoed struct {
		Credential struct{ Kind string } `json:"credential"`
	}
	_ = json.Unmarshal([]byte(body), &echoed)
	if echoed.Credential.Kind != "api_key" {
		t.Errorf("weather echo: %s", body)
	}

	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := os.Stat(info.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary data dir left behind: %v", err)
	}
	if _, err := http.Get(info.IssuerURL + "/.well-known/openid-configuration"); err == nil {
		t.Error("OP still serving after the demo stopped")
	}
}

func TestRunRefusesBadOptions(t *testing.T) {
	ctx := context.Background()
	if err := Run(ctx, Options{}); err == nil || !strings.Contains(err.Error(), "StartGateway") {
		t.Errorf("no starter: %v", err)
	}
	start := func(context.Context, string) (string, <-chan error, error) { return "", nil, nil }
	for _, addr := range []string{"0.0.0.0:8080", "example.com:80", "nonsense"} {
		err := Run(ctx, Options{StartGateway: start, Addr: addr, Out: io.Discard})
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Errorf("addr %q: %v", addr, err)
		}
	}
}

func TestRunReportsGatewayStartFailureWithoutLeaks(t *testing.T) {
	start := func(context.Context, string) (string, <-chan error, error) {
		return "", nil, errors.New("listen: address already in use")
	}
	dir := t.TempDir()
	err := Run(context.Background(), Options{StartGateway: start, DataDir: dir, Out: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v", err)
	}
	// A given data dir is kept (it is the user's), its secrets are not world-readable.
	st, err := os.Stat(filepath.Join(dir, "client-secret"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("client secret file: %v %v", st, err)
	}
}

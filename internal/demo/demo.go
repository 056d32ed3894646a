// Package demo runs `gatehouse demo`: a development OpenID Provider, demo APIs, the demo SPA
// and Gatehouse in front of them, all on loopback, for trying Gatehouse — never for production.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/demo/apis"
	"github.com/gatehouse-dev/gatehouse/internal/idp"
	webdemo "github.com/gatehouse-dev/gatehouse/web/demo"
)

// ClientID is the demo's client registration at the development OP.
const ClientID = "gatehouse-demo"

// BillingAudience is the audience the billing route exchanges the user's token for.
const BillingAudience = "billing-api"

// Banner is printed, loudly, whenever the demo starts.
const Banner = "DEMO MODE — for trying Gatehouse, never for production"

// StartGatewayFunc starts Gatehouse from the configuration file at configPath and returns once
// it accepts connections: the public URL it serves, and a channel that receives the gateway's
// result when it stops (nil if the caller cannot tell). The gateway must stop when ctx is done.
// The demo takes it as a function so that it does not depend on the gateway package.
type StartGatewayFunc func(ctx context.Context, configPath string) (publicURL string, done <-chan error, err error)

// Options configures Run.
type Options struct {
	// StartGateway starts Gatehouse (required).
	StartGateway StartGatewayFunc
	// DataDir holds the generated config, secrets, the SPA's files, the session store and the
	// audit log. Empty: a temporary directory, deleted when Run returns.
	DataDir string
	// Addr is the public listener, a loopback host:port. Empty: 127.0.0.1 and a free port.
	Addr string
	// Out receives the banner and the instructions (default os.Stdout).
	Out io.Writer
	// Logger receives the demo's own log lines and the development OP's (default: discard).
	Logger *slog.Logger
	// Ready, when set, is called once everything is up, before Run waits for ctx.
	Ready func(Info)
}

// Info describes a running demo.
type Info struct {
	PublicURL  string // open this in a browser
	IssuerURL  string // the development OP
	ConfigPath string // the generated Gatehouse configuration
	DataDir    string // where every generated file lives
	AuditPath  string // the audit log (JSON Lines)
	APIKeyPath string // the weather API key file (the browser must never see its content)
	// AdminURL is the admin listener (health, /metrics, /admin/*); AdminTokenPath holds its
	// bearer token.
	AdminURL, AdminTokenPath string
	Users                    []idp.User // who can sign in (demo passwords, development only)
}

// Run starts the demo and blocks until ctx is done (Ctrl-C) or the gateway stops, then stops
// everything it started. Everything listens on loopback only.
func Run(ctx context.Context, opts Options) (err error) {
	if opts.StartGateway == nil {
		return errors.New("demo: Options.StartGateway is required (it starts Gatehouse from the generated config)")
	}
	out := opts.Out
	if out == nil {
		out = os.Stdout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Stop in reverse order of start: everything started below registers a stop func.
	var stops []func()
	defer func() {
		cancel()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		wg.Wait()
	}()

	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir, err = os.MkdirTemp("", "gatehouse-demo-")
		if err != nil {
			return fmt.Errorf("demo: create a temporary data directory: %w", err)
		}
		stops = append(stops, func() { _ = os.RemoveAll(dataDir) })
	} else if dataDir, err = filepath.Abs(dataDir); err != nil {
		return fmt.Errorf("demo: data directory: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("demo: create data directory %s: %w", dataDir, err)
	}

	addr, err := publicAddr(ctx, opts.Addr)
	if err != nil {
		return err
	}
	publicURL := "http://" + addr
	adminAddr, err := publicAddr(ctx, "")
	if err != nil {
		return err
	}
	adminURL := "http://" + adminAddr
	adminTokenPath := filepath.Join(dataDir, "admin-token")

	// The demo APIs, each on its own loopback listener like separate services.
	auditPath := filepath.Join(dataDir, "audit.jsonl")
	people := map[string]apis.Person{}
	users := idp.DefaultUsers()
	for _, u := range users {
		people[u.ID] = apis.Person{Name: u.Name, Email: u.Email}
	}
	upstreams := map[string]http.Handler{
		"profile":       apis.Profile(people),
		"billing":       apis.Entitlements(),
		"notifications": apis.Notifications(),
		"weather":       apis.Weather(),
		"audit":         apis.AuditTail(auditPath, 12),
		"operator":      apis.Operator(adminURL, adminTokenPath),
	}
	urls := map[string]string{}
	for name, h := range upstreams {
		u, stop, err := serve(ctx, &wg, h, logger.With("api", name))
		if err != nil {
			return fmt.Errorf("demo: start the %s API: %w", name, err)
		}
		stops = append(stops, stop)
		urls[name] = u + "/"
	}

	// Secrets the browser must never see, in files the config references.
	clientSecret := randomString(32)
	if err := os.WriteFile(filepath.Join(dataDir, "client-secret"), []byte(clientSecret), 0o600); err != nil {
		return fmt.Errorf("demo: write client secret: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "cookie-key"), []byte(randomString(32)), 0o600); err != nil {
		return fmt.Errorf("demo: write cookie key: %w", err)
	}
	if err := os.WriteFile(adminTokenPath, []byte(randomString(32)), 0o600); err != nil {
		return fmt.Errorf("demo: write admin token: %w", err)
	}
	apiKeyPath := filepath.Join(dataDir, "weather-api-key")
	if err := os.WriteFile(apiKeyPath, []byte("wx_demo_"+randomString(24)), 0o600); err != nil {
		return fmt.Errorf("demo: write weather API key: %w", err)
	}

	op, err := idp.Start(ctx, idp.Options{
		Clients: []idp.Client{{
			ID: ClientID, Secret: clientSecret,
			RedirectURIs:           []string{publicURL + "/bff/callback"},
			PostLogoutRedirectURIs: []string{publicURL + "/"},
			BackChannelLogoutURI:   publicURL + "/bff/backchannel",
		}},
		Users:  users,
		Logger: logger.With("component", "dev-idp"),
	})
	if err != nil {
		return fmt.Errorf("demo: start the development OpenID Provider: %w", err)
	}
	stops = append(stops, func() { _ = op.Close() })

	if err := writeFrontend(filepath.Join(dataDir, "web")); err != nil {
		return err
	}
	cfg, err := renderConfig(configData{
		Listen: addr, AdminListen: adminAddr, PublicURL: publicURL, Issuer: op.Issuer(), ClientID: ClientID, BillingAudience: BillingAudience,
		Profile: urls["profile"], Billing: urls["billing"], Notifications: urls["notifications"],
		Weather: urls["weather"], Audit: urls["audit"], Operator: urls["operator"],
	})
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dataDir, "gatehouse.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("demo: write config: %w", err)
	}

	gotURL, done, err := opts.StartGateway(ctx, cfgPath)
	if err != nil {
		return fmt.Errorf("demo: start Gatehouse with %s: %w", cfgPath, err)
	}
	gatewayStopped := false
	if done != nil {
		// The gateway must be down before its data directory goes.
		stops = append(stops, func() {
			if gatewayStopped {
				return
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				logger.Warn("gatehouse did not stop within 10s")
			}
		})
	}
	if gotURL != "" && strings.TrimSuffix(gotURL, "/") != publicURL {
		return fmt.Errorf("demo: Gatehouse serves %s but the demo configured %s; cookies and redirects need the configured one", gotURL, publicURL)
	}

	info := Info{
		PublicURL: publicURL + "/", IssuerURL: op.Issuer(), ConfigPath: cfgPath, DataDir: dataDir,
		AuditPath: auditPath, APIKeyPath: apiKeyPath, Users: op.Users(),
		AdminURL: adminURL, AdminTokenPath: adminTokenPath,
	}
	printBanner(out, info, opts.DataDir == "")
	if opts.Ready != nil {
		opts.Ready(info)
	}

	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "\nStopping the demo…")
		return nil
	case err := <-done:
		gatewayStopped = true
		if ctx.Err() != nil {
			// Both were ready: the gateway stopped because ctx ended.
			fmt.Fprintln(out, "\nStopping the demo…")
			return nil
		}
		if err != nil {
			return fmt.Errorf("demo: Gatehouse stopped: %w", err)
		}
		return errors.New("demo: Gatehouse stopped")
	}
}

// publicAddr checks a given address is loopback, or picks a free loopback port.
func publicAddr(ctx context.Context, addr string) (string, error) {
	if addr != "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("demo: address %q is not host:port; write it like 127.0.0.1:8080", addr)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return "", fmt.Errorf("demo: address %q is not a loopback IP; the demo listens only on 127.0.0.1 or ::1", addr)
		}
		return addr, nil
	}
	// The public URL must be known before Gatehouse starts (it is in the config and in the
	// OP's redirect URIs), so take a free port now; another process could take it in between,
	// in which case Gatehouse fails to start with a clear error and Addr can be given.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo: find a free port on 127.0.0.1: %w", err)
	}
	a := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("demo: find a free port on 127.0.0.1: %w", err)
	}
	return a, nil
}

// serve runs h on a fresh 127.0.0.1 port until the returned stop func is called.
func serve(ctx context.Context, wg *sync.WaitGroup, h http.Handler, logger *slog.Logger) (string, func(), error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("demo API stopped", "error", err)
		}
	}()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// writeFrontend copies the embedded SPA to dir (the config's frontend.static_dir).
func writeFrontend(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("demo: clear %s: %w", dir, err)
	}
	files := webdemo.Files()
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		return fmt.Errorf("demo: write the demo SPA to %s: %w", dir, err)
	}
	return nil
}

func printBanner(w io.Writer, info Info, temporary bool) {
	line := strings.Repeat("#", 66)
	where := info.DataDir
	if temporary {
		where += " (deleted at exit)"
	}
	fmt.Fprintf(w, "\n%s\n##  %-60s##\n%s\n\n", line, Banner, line)
	fmt.Fprintf(w, "  Open:           %s\n\n", info.PublicURL)
	fmt.Fprintf(w, "  Sign in as (development OP, demo passwords):\n")
	for _, u := range info.Users {
		fmt.Fprintf(w, "    %-8s / %-12s  %s <%s>\n", u.Username, u.Password, u.Name, u.Email)
	}
	fmt.Fprintf(w, "\n  Identity provider: %s\n  Config:            %s\n  Data:              %s\n", info.IssuerURL, info.ConfigPath, where)
	fmt.Fprintf(w, "\n  Admin API:         %s/admin/sessions  (Authorization: Bearer $(cat %s))\n", info.AdminURL, info.AdminTokenPath)
	fmt.Fprintf(w, "  Metrics:           %s/metrics\n  Health:            %s/readyz\n\n", info.AdminURL, info.AdminURL)
	fmt.Fprintf(w, "  Press Ctrl-C to stop.\n")
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

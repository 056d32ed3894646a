// Package gateway builds a running Gatehouse from a loaded configuration:
// the session manager, OIDC client, policies, audit log and proxy, joined
// into the public and admin HTTP handlers. It is the "build" step of
// load → validate → build → serve; nothing it builds is re-parsed per request.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
)

// Options are the run-time inputs that do not come from the config file.
type Options struct {
	Logger  *slog.Logger
	Version string
	// Now is the clock for sessions, tokens and audit (tests inject one).
	Now func() time.Time
	// PublicListener and AdminListener replace listen/admin_listen (tests).
	PublicListener, AdminListener net.Listener
	// IdPClient talks to the IdP (tests may pass one with a custom transport).
	IdPClient *http.Client
	// SecretPollInterval is how often file-backed secrets are re-read. Default 1s.
	SecretPollInterval time.Duration
	// Stdout receives the stdout audit sink. Default os.Stdout.
	Stdout interface{ Write([]byte) (int, error) }
	// ConfigPollInterval is how often the configuration file is checked for
	// a change (a new file renamed over it included). Default 2s; negative
	// disables the polling (SIGHUP still reloads, see Reload).
	ConfigPollInterval time.Duration
}

// Gateway is a built Gatehouse: the process-wide parts (listeners, session
// store, audit log, telemetry) and the current generation, everything built
// from one configuration file (every frontend's request path and the admin
// API). A reload builds a new generation and swaps it in atomically; the
// old one finishes its in-flight requests and is closed (reload.go).
type Gateway struct {
	cfg     *config.Config // the configuration the process was started with (process-wide keys)
	log     *slog.Logger
	opts    Options
	store   session.Store // shared by every frontend and generation; closed last
	audit   *audit.Logger
	metrics *telemetry.Metrics
	tracing *telemetry.Tracing
	server  *server.Server
	public  http.Handler
	admin   http.Handler
	unbound http.Handler // requests that bind to no frontend
	closers []func() error

	gen    atomic.Pointer[generation]
	reload reloadState
	// generations numbers the frontends built, so that each one's own
	// metrics collectors (rate-limit counters) never collide with those of
	// the generation a reload is replacing.
	generations atomic.Int64

	// grants is the agent grants' store, opened on first use (grantStore)
	// and kept for the process, like store.
	grantsMu sync.Mutex
	grants   session.Store
}

// New builds a Gateway. It reports every build problem it finds (policy
// compile errors with file:line). It does not need the IdP to be up: discovery
// is retried in the background once Run starts.
func New(ctx context.Context, cfg *config.Config, opts Options) (_ *Gateway, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SecretPollInterval == 0 {
		opts.SecretPollInterval = time.Second
	}
	if opts.ConfigPollInterval == 0 {
		opts.ConfigPollInterval = 2 * time.Second
	}
	g := &Gateway{cfg: cfg, log: opts.Logger, opts: opts, metrics: telemetry.NewMetrics()}
	defer func() {
		if err != nil {
			// Release what was opened before the failure (audit file, store lock).
			if gen := g.gen.Load(); gen != nil {
				_ = gen.close()
			}
			_ = g.close()
		}
	}()
	for _, w := range cfg.Warnings() {
		g.log.Warn("configuration warning", "problem", w.String())
	}

	otlp := ""
	if cfg.Telemetry.OTLPEndpoint != nil {
		otlp = cfg.Telemetry.OTLPEndpoint.String()
	}
	if g.tracing, err = telemetry.NewTracing(ctx, otlp, opts.Version); err != nil {
		return nil, err
	}
	g.closers = append(g.closers, func() error { return g.tracing.Shutdown(context.Background()) })

	if g.audit, err = openAudit(ctx, cfg, opts); err != nil {
		return nil, err
	}
	g.closers = append(g.closers, g.audit.Close)

	if g.store, err = openStore(cfg, opts); err != nil {
		return nil, err
	}
	g.closers = append(g.closers, g.store.Close)
	g.reload.init(g.metrics)

	gen, err := g.build(ctx, cfg)
	if err != nil {
		return nil, err
	}
	gen.hash = hashFile(cfg.File)
	g.gen.Store(gen)
	g.reload.loaded(gen.hash, opts.Now())

	tlsConf, err := publicTLS(cfg, g.log)
	if err != nil {
		return nil, err
	}
	g.unbound = unboundHandler()
	g.public = g.tracing.Handler(http.HandlerFunc(g.servePublic), "gatehouse", cfg.TrustedProxies)
	g.admin = http.HandlerFunc(g.serveAdmin)
	g.server, err = server.New(server.Options{
		PublicAddr: cfg.Listen, AdminAddr: cfg.AdminListen,
		Public: g.public, Admin: g.admin, Logger: g.log,
		PublicListener: opts.PublicListener, AdminListener: opts.AdminListener, TLS: tlsConf,
		ShutdownTimeout: cfg.Server.ShutdownTimeout, DrainDelay: cfg.Server.DrainDelay,
		BodyReadTimeout: cfg.Server.BodyReadTimeout, MaxConnections: cfg.Server.MaxConnections,
	})
	if err != nil {
		return nil, err
	}
	g.registerGauges()
	return g, nil
}

// urlString is u as text, or "" when it is not set.
func urlString(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.String()
}

// PublicHandler is the public listener's handler (tests drive it in-process).
func (g *Gateway) PublicHandler() http.Handler { return g.public }

// AdminHandler is the admin listener's handler.
func (g *Gateway) AdminHandler() http.Handler { return g.admin }

// PublicAddr is the bound public address.
func (g *Gateway) PublicAddr() string { return g.server.PublicAddr() }

// AdminAddr is the bound admin address.
func (g *Gateway) AdminAddr() string { return g.server.AdminAddr() }

// Sessions exposes the first frontend's session manager in the current
// generation (tests, demo).
func (g *Gateway) Sessions() *session.Manager { return g.gen.Load().fronts[0].sessions }

// Run serves until ctx ends, then drains in-flight requests and closes every
// resource (audit log flushed and synced last). While it runs, SIGHUP (see
// Reload) or a change of the configuration file reloads the configuration.
func (g *Gateway) Run(ctx context.Context) error {
	bg, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	g.reload.mu.Lock()
	g.reload.bg = bg
	g.gen.Load().start(bg)
	g.reload.mu.Unlock()
	wg.Go(func() { g.watchConfig(bg) })
	g.recordStart(ctx)
	err := g.server.Run(ctx)
	cancel()
	wg.Wait()
	g.reload.mu.Lock() // no reload may swap in a generation now
	g.reload.stopped = true
	g.reload.retiring.Wait()
	if cerr := g.gen.Load().close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	g.reload.mu.Unlock()
	if cerr := g.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

func (g *Gateway) recordStart(ctx context.Context) {
	for _, fc := range g.gen.Load().cfg.Frontends() {
		if err := g.audit.Log(ctx, audit.Record{Event: audit.EventConfigLoaded, Outcome: audit.OutcomeSuccess,
			Client: fc.Client, Reason: "start", Path: g.cfg.File}); err != nil {
			g.log.Error("audit record not written", "event", "config_loaded", "err", err)
		}
	}
}

// close releases the process-wide resources in reverse order of creation.
func (g *Gateway) close() error {
	var err error
	for _, c := range slices.Backward(g.closers) {
		err = errors.Join(err, c())
	}
	g.closers = nil
	return err
}

// StartFile loads the configuration at path, builds a Gateway and runs it in
// the background until ctx ends. It returns once the listeners are bound;
// done receives Run's result. The demo and end-to-end tests start Gatehouse
// this way.
func StartFile(ctx context.Context, path string, opts Options) (*Gateway, <-chan error, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	g, err := New(ctx, cfg, opts)
	if err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	return g, done, nil
}

// PublicURL is the first frontend's public_url (its origin and prefix).
func (g *Gateway) PublicURL() string {
	fc := g.gen.Load().fronts[0].cfg
	return fc.Origin() + fc.PathPrefix()
}

// Call runs the post-identify half of the pipeline (authorize, credential,
// forward, audit) of route for an identified caller and returns the
// upstream's response; refusals are *pipeline.Refusal errors. See
// proxy.Proxy.Call. It uses the current configuration's first frontend
// (the only one in the one-frontend form).
func (g *Gateway) Call(ctx context.Context, caller *pipeline.Caller, route, method, path, rawQuery string, body io.Reader) (*http.Response, error) {
	gen := g.acquire()
	defer gen.release()
	return gen.fronts[0].proxy.Call(ctx, caller, route, method, path, rawQuery, body)
}

// ExchangeCached reports whether this instance caches an exchanged token for
// the session at any frontend (tests: every session end must drop them).
func (g *Gateway) ExchangeCached(sessionID string) bool {
	gen := g.acquire()
	defer gen.release()
	for _, fe := range gen.fronts {
		if fe.proxy.ExchangeCached(sessionID) {
			return true
		}
	}
	return false
}

// registerGauges exposes the state of what the instance depends on. The checks
// are the readiness checks (cached or cheap: a scrape must not hang); the IdP
// gauge is 1 only when every frontend's IdP answers.
func (g *Gateway) registerGauges() {
	up := func(check func(context.Context) error) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if check(ctx) != nil {
				return 0
			}
			return 1
		}
	}
	idps := func(ctx context.Context) error {
		gen := g.acquire()
		defer gen.release()
		return gen.idpsReady(ctx)
	}
	m := g.metrics
	m.Gauge("gatehouse_store_up", "1 when the session store answers.", up(g.store.Ping))
	m.Gauge("gatehouse_idp_up", "1 when every frontend's IdP is discovered and answers (0: logins and refreshes fail; sessions work).", up(idps))
	m.Gauge("gatehouse_audit_up", "1 when the audit log accepts records.", up(func(context.Context) error { return g.audit.Ready() }))
	m.Gauge("gatehouse_audit_buffer_depth", "Audit records accepted but not yet written.", func() float64 { return float64(g.audit.Stats().Buffered) })
	m.Gauge("gatehouse_audit_buffer_capacity", "Size of the audit buffer (audit.buffer).", func() float64 { return float64(g.audit.Stats().Capacity) })
	m.Counter("gatehouse_audit_dropped_total", "Audit records lost (0 with on_failure deny unless the sink failed through shutdown).", func() float64 { return float64(g.audit.Stats().Dropped) })
	m.Counter("gatehouse_audit_syncs_total", "fsyncs of the audit file: records written ÷ syncs is the size of a group commit.", func() float64 { return float64(g.audit.Stats().Syncs) })
	m.Counter("gatehouse_audit_write_errors_total", "Failed audit writes, syncs and rotations.", func() float64 { return float64(g.audit.Stats().WriteErrors) })
	m.Gauge("gatehouse_open_connections", "Open connections on the public listener.", func() float64 { return float64(g.server.Stats().OpenConnections) })
	m.Counter("gatehouse_refused_connections_total", "Public connections refused at server.max_connections.", func() float64 { return float64(g.server.Stats().RefusedConnections) })
	m.Gauge("gatehouse_inflight_requests", "Public requests being handled.", func() float64 { return float64(g.server.Stats().InFlight) })
}

// WaitIdP waits until every frontend's IdP is discovered (the demo prints
// its sign-in URL only then), or ctx ends.
func (g *Gateway) WaitIdP(ctx context.Context) error {
	for {
		gen := g.acquire()
		err := gen.idpsReady(ctx)
		gen.release()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the identity provider was not discovered: %w", ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

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
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/admin"
	"github.com/gatehouse-dev/gatehouse/internal/agent"
	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/compose"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/oauthserver"
	"github.com/gatehouse-dev/gatehouse/internal/oidc"
	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/policy"
	"github.com/gatehouse-dev/gatehouse/internal/proxy"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
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
}

// Gateway is a built Gatehouse.
type Gateway struct {
	cfg      *config.Config
	log      *slog.Logger
	opts     Options
	sessions *session.Manager
	audit    *audit.Logger
	idp      *lazyIdP
	proxy    *proxy.Proxy
	limits   *limits
	oauth    *oauthserver.Server // nil without an oauth section
	metrics  *telemetry.Metrics
	tracing  *telemetry.Tracing
	server   *server.Server
	// comps serves the composites (nil when there are none).
	comps   *composites
	public  http.Handler
	admin   http.Handler
	closers []func() error

	// agents is nil without an agents section; agentLimit is nil without
	// agents.rate_limit.
	agents       *agent.Broker
	agentLimit   *agentLimit
	agentMint    agent.PolicyFunc
	agentBrowser agent.BrowserSession
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
	g := &Gateway{cfg: cfg, log: opts.Logger, opts: opts, metrics: telemetry.NewMetrics()}
	defer func() {
		if err != nil {
			// Release what was opened before the failure (audit file, store lock).
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

	pdpClient := &http.Client{Transport: g.tracing.Transport(http.DefaultTransport)}
	authz, err := BuildPolicies(cfg, opts.Now, pdpClient)
	if err != nil {
		return nil, err
	}
	set, err := BuildComposites(cfg)
	if err != nil {
		return nil, err
	}

	limitPolicies, err := compileLimits(cfg)
	if err != nil {
		return nil, err
	}

	if g.audit, err = openAudit(ctx, cfg, opts); err != nil {
		return nil, err
	}
	g.closers = append(g.closers, g.audit.Close)

	store, err := openStore(cfg, opts)
	if err != nil {
		return nil, err
	}
	lo := limitsOptions{Audit: g.audit, Metrics: g.metrics, Client: cfg.Client, Now: opts.Now, Logger: g.log.With("component", "ratelimit")}
	if rs, ok := store.(*session.RedisStore); ok {
		// One budget for every instance on this Redis (standalone,
		// sentinel or cluster; the limiter's keys carry hash tags).
		lo.Redis, lo.KeyPrefix = rs.Client(), rs.KeyPrefix()
	}
	g.limits = newLimits(limitPolicies, lo)
	g.sessions = session.NewManager(store, session.Options{
		IdleTimeout:     cfg.Session.IdleTimeout,
		AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
		Now:             opts.Now,
		Logger:          g.log.With("component", "session"),
	})
	g.closers = append(g.closers, g.sessions.Close)

	keys, err := cfg.Session.CookieKeyRing()
	if err != nil {
		return nil, fmt.Errorf("session.cookie_keys: %w", err)
	}
	// Rotated cookie-key files take effect at once: the ring the OIDC client
	// holds is rebuilt in place from the current values.
	for _, v := range cfg.Session.CookieKeys {
		v.OnChange(func() {
			cur := make([]secret.Secret, 0, len(cfg.Session.CookieKeys))
			for _, k := range cfg.Session.CookieKeys {
				cur = append(cur, k.Get())
			}
			if err := keys.Replace(cur...); err != nil {
				g.log.Error("session.cookie_keys rotation refused; the previous keys stay in force", "err", err)
			}
		})
	}
	if cfg.RandomCookieKeys() {
		g.log.Warn("session.cookie_keys is not set: the login-state cookie key is random per process, so a login started on one instance cannot finish on another; set cookie_keys when running several instances")
	}
	idpClient := opts.IdPClient
	if idpClient == nil {
		idpClient = &http.Client{Timeout: 10 * time.Second, Transport: g.tracing.Transport(http.DefaultTransport)}
	}
	evAudit := &eventAuditor{log: g.audit, client: cfg.Client, metrics: g.metrics}
	oo := g.oidcOptions(keys, idpClient, evAudit)
	// Refused now, not retried in the background for ever (issue 9).
	if err := oidc.ValidateOptions(oo); err != nil {
		return nil, err
	}
	g.idp = newLazyIdP(oo, g.log.With("component", "oidc"))

	if err := g.buildAgents(authz); err != nil {
		return nil, err
	}
	if g.oauth, err = g.buildOAuth(); err != nil {
		return nil, err
	}
	if g.oauth != nil {
		g.idp.opts.Handoff = g.oauth // discovery (connect) runs later, in Run
	}

	if g.proxy, err = g.buildProxy(authz, set); err != nil {
		return nil, err
	}
	g.closers = append(g.closers, func() error { g.proxy.Close(); return nil })
	trusted := cfg.TrustedProxies
	g.limits.clientIP = func(r *http.Request) netip.Addr { return proxy.ClientIP(r, trusted) }
	// Every per-session cache is dropped here, whatever ended the session
	// (logout, back-channel, revocation, refused refresh, expiry, another
	// instance).
	g.sessions.OnEnd(func(_ context.Context, e session.SessionEnd) { g.proxy.ForgetSession(e.ID) })
	// A session's open streams and WebSockets end with it (issue 10 item 6).
	g.sessions.OnEnd(func(ctx context.Context, e session.SessionEnd) { g.limits.flights.end(e.ID, flightOf(ctx)) })
	if g.agents != nil {
		// Grants die with their session anyway (every agent request loads
		// it); this frees them and audits their end.
		g.sessions.OnEnd(func(_ context.Context, e session.SessionEnd) { g.agents.SessionEnded(e.ID, string(e.Cause), e.Remote) })
	}

	g.public = g.publicHandler()
	g.admin = g.adminHandler()
	tlsConf, err := publicTLS(cfg, g.log)
	if err != nil {
		return nil, err
	}
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

// oidcOptions maps the configuration onto the OIDC client's options.
func (g *Gateway) oidcOptions(keys *secret.KeyRing, idpClient *http.Client, evAudit oidc.Auditor) oidc.Options {
	cfg := g.cfg
	return oidc.Options{
		Issuer:                cfg.Identity.Issuer,
		ClientID:              cfg.Identity.ClientID,
		ClientSecret:          cfg.Identity.ClientSecret,
		ClientAuth:            string(cfg.Identity.ClientAuth),
		PrivateKey:            cfg.Identity.PrivateKey,
		PrivateKeyID:          cfg.Identity.PrivateKeyID,
		ClientIP:              proxy.ClientIPFunc(cfg.TrustedProxies),
		Scopes:                cfg.Identity.Scopes,
		PAR:                   string(cfg.Identity.PushedAuthorizationRequests),
		PublicURL:             strings.TrimSuffix(cfg.PublicURL.String(), "/"),
		PostLogoutRedirectURL: urlString(cfg.Identity.PostLogoutRedirect),
		CookieName:            cfg.EffectiveCookieName(),
		CookieSameSite:        cfg.Session.SameSite,
		CookieKeys:            keys,
		Sessions:              g.sessions,
		HTTPClient:            idpClient,
		Clock:                 g.opts.Now,
		RefreshBeforeExpiry:   cfg.Session.RefreshBeforeExpiry,
		CSRFHeader:            cfg.CSRF.Header,
		Logger:                g.log.With("component", "oidc"),
		Auditor:               evAudit,
	}
}

// buildProxy builds the route table and the proxy. Route problems come back
// at the route's file:line.
func (g *Gateway) buildProxy(authz map[string]*policy.Authorizer, set *compose.Set) (*proxy.Proxy, error) {
	cfg, opts := g.cfg, g.opts
	aud := &auditor{log: g.audit, client: cfg.Client, metrics: g.metrics, now: opts.Now}
	var endpoints proxy.Endpoints
	if set != nil {
		g.comps = &composites{set: set, proxy: func() *proxy.Proxy { return g.proxy }, audit: aud}
		endpoints = g.comps
	}
	specs := make([]proxy.RouteSpec, 0, len(cfg.Routes))
	for i := range cfg.Routes {
		specs = append(specs, g.routeSpec(&cfg.Routes[i], authz[cfg.Routes[i].Name]))
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	var wrap func(http.RoundTripper) http.RoundTripper
	if g.tracing != nil {
		wrap = g.tracing.Transport
	}
	p, err := proxy.New(specs, proxy.Options{
		PublicURL:      cfg.PublicURL,
		CSRF:           proxy.CSRFOptions{Header: cfg.CSRF.Header, AllowedOrigins: cfg.CSRF.AllowedOrigins},
		TrustedProxies: cfg.TrustedProxies,
		Stages:         g.stages(),
		UserTokens:     &userTokens{idp: g.idp},
		Exchanger:      &exchanger{idp: g.idp, issuer: cfg.Origin(), now: opts.Now},
		Auditor:        aud,
		Counter:        g.metrics,
		Endpoints:      endpoints,
		Transport:      transport,
		WrapTransport:  wrap,
		Logger:         g.log.With("component", "proxy"),
		Now:            opts.Now,
		// The session cookie and the OIDC client's login-state cookie
		// (oidc names it CookieName+"-login").
		ProtectedCookies: []string{cfg.EffectiveCookieName(), cfg.EffectiveCookieName() + "-login"},
	})
	if err != nil {
		return nil, routeProblems(cfg, err)
	}
	return p, nil
}

// routeProblems turns the proxy's route errors into config problems at
// each route's position; other errors pass through.
func routeProblems(cfg *config.Config, err error) error {
	var probs []config.Problem
	var rest []error
	for _, e := range flatten(err) {
		var re *proxy.RouteError
		if errors.As(e, &re) && re.Index >= 0 && re.Index < len(cfg.Routes) {
			r := cfg.Routes[re.Index]
			probs = append(probs, r.Pos.Problem(r.Key, re.Err.Error()))
			continue
		}
		rest = append(rest, e)
	}
	if len(rest) > 0 {
		return fmt.Errorf("build routes: %w", errors.Join(append(rest, (&config.Errors{Problems: probs}).ErrOrNil())...))
	}
	return (&config.Errors{Problems: probs}).ErrOrNil()
}

// flatten lists the errors an errors.Join holds.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Check builds what New builds that needs no listener, store, audit file or
// network — policies, the OIDC client's options, the cookie keys, the route
// table — with the same constructors New calls, and returns what New would
// refuse (config problems at file:line). `gatehouse check` calls it, so check
// and serve agree.
func Check(cfg *config.Config) error {
	g := &Gateway{cfg: cfg, log: slog.New(slog.DiscardHandler), opts: Options{Now: time.Now}, metrics: telemetry.NewMetrics()}
	authz, err := BuildPolicies(cfg, nil, nil)
	if err != nil {
		return err
	}
	if _, err := compileLimits(cfg); err != nil {
		return err
	}
	keys, err := cfg.Session.CookieKeyRing()
	if err != nil {
		return fmt.Errorf("session.cookie_keys: %w", err)
	}
	// No store is opened: the options only need a session manager named.
	oo := g.oidcOptions(keys, nil, nil)
	if err := oidc.ValidateOptions(oo); err != nil {
		return err
	}
	if _, _, err := oauthRegistry(cfg); err != nil {
		return err
	}
	if cfg.Agents != nil {
		if _, err := newAgentLimit(cfg, nil, nil); err != nil {
			return err
		}
	}
	set, err := BuildComposites(cfg)
	if err != nil {
		return err
	}
	p, err := g.buildProxy(authz, set)
	if err != nil {
		return err
	}
	p.Close()
	return nil
}

// registerGauges exposes the state of what the instance depends on. The checks
// are the readiness checks (cached or cheap: a scrape must not hang).
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
	m := g.metrics
	m.Gauge("gatehouse_store_up", "1 when the session store answers.", up(g.sessions.Ready))
	m.Gauge("gatehouse_idp_up", "1 when the IdP is discovered and answers (0: logins and refreshes fail; sessions work).", up(g.idp.Ready))
	m.Gauge("gatehouse_audit_up", "1 when the audit log accepts records.", up(func(context.Context) error { return g.audit.Ready() }))
	m.Gauge("gatehouse_audit_buffer_depth", "Audit records accepted but not yet written.", func() float64 { return float64(g.audit.Stats().Buffered) })
	m.Gauge("gatehouse_audit_buffer_capacity", "Size of the audit buffer (audit.buffer).", func() float64 { return float64(g.audit.Stats().Capacity) })
	m.Counter("gatehouse_audit_dropped_total", "Audit records lost (0 with on_failure deny unless the sink failed through shutdown).", func() float64 { return float64(g.audit.Stats().Dropped) })
	m.Counter("gatehouse_audit_write_errors_total", "Failed audit writes, syncs and rotations.", func() float64 { return float64(g.audit.Stats().WriteErrors) })
	m.Gauge("gatehouse_open_connections", "Open connections on the public listener.", func() float64 { return float64(g.server.Stats().OpenConnections) })
	m.Counter("gatehouse_refused_connections_total", "Public connections refused at server.max_connections.", func() float64 { return float64(g.server.Stats().RefusedConnections) })
	m.Gauge("gatehouse_inflight_requests", "Public requests being handled.", func() float64 { return float64(g.server.Stats().InFlight) })
}

// urlString is u as text, or "" when it is not set.
func urlString(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.String()
}

func (g *Gateway) routeSpec(r *config.Route, authz *policy.Authorizer) proxy.RouteSpec {
	methods := r.Methods // defaulted to [GET] by config (HEAD goes with GET)
	spec := proxy.RouteSpec{
		Name: r.Name, Path: r.Path, Upstream: r.Upstream, KeepPrefix: !r.StripPrefix,
		Methods: methods, Timeout: r.Timeout, MaxBodyBytes: r.MaxBody,
		WebSocket: r.WebSocket, AllowSetCookie: r.AllowSetCookie, Anonymous: r.Anonymous,
		AllowCaching: r.AllowCaching, AllowMethodOverride: r.AllowMethodOverride,
		Authorizer: &routeAuthorizer{client: g.cfg.Client, authz: authz, log: g.log.With("component", "policy"), now: g.opts.Now},
	}
	switch c := r.Credential; c.Kind {
	case config.CredUserToken:
		spec.Credential = proxy.Credential{Kind: proxy.CredentialUserToken}
	case config.CredTokenExchange:
		spec.Credential = proxy.Credential{Kind: proxy.CredentialTokenExchange,
			Audience: c.TokenExchange.Audience, Scope: c.TokenExchange.Scope, Resource: c.TokenExchange.Resource}
	case config.CredClientCredentials:
		var scope, aud string
		if c.ClientCredentials != nil {
			scope, aud = c.ClientCredentials.Scope, c.ClientCredentials.Audience
		}
		spec.Credential = proxy.Credential{Kind: proxy.CredentialClientCredentials, Source: clientCredentials(g.idp, scope, aud)}
	case config.CredHeader:
		spec.Credential = proxy.Credential{Kind: proxy.CredentialHeader, HeaderName: c.Header.Name, HeaderValue: c.Header.Value}
	default:
		spec.Credential = proxy.Credential{Kind: proxy.CredentialNone}
	}
	return spec
}

func (g *Gateway) publicHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/bff/", g.idp)
	// Sign-in endpoints are limited by client address (no session yet).
	mux.Handle("/bff/login", g.limits.bff(bffLoginRoute, g.idp))
	mux.Handle("/bff/callback", g.limits.bff(bffCallbackRoute, g.idp))
	// Every API request gets a cancellable context and a flight the limit
	// stage fills in (concurrency slot, session tracking).
	api := g.limits.track(g.proxy)
	if g.oauth != nil {
		g.oauth.Register(mux) // /bff/oauth/* and the two well-known documents
	}
	if g.agents != nil {
		g.agents.Register(mux, g.agentBrowser, g.agentMint)
	}
	for _, pre := range g.proxy.Prefixes() {
		mux.Handle(pre, api)
	}
	var front http.Handler
	switch {
	case g.cfg.Frontend.StaticDir != "":
		front = staticFrontend(g.cfg.Frontend.StaticDir)
	case g.cfg.Frontend.Upstream != nil:
		front = upstreamFrontend(g.cfg.Frontend.Upstream)
	default:
		front = noFrontend()
	}
	mux.Handle("/", front)
	// The proxy cleans paths itself and must see them raw: dispatch on the
	// raw path's prefix before ServeMux would clean or redirect it.
	underAPI := g.proxy.Owns
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.URL.EscapedPath()
		// An agent token reaches API routes only: never /bff/* (no minting,
		// no /bff/user), the frontend or a path no route matches (403, not
		// 404: what its grant does not name is refused).
		if carriesAgentToken(r) {
			if clean, err := proxy.CleanPath(raw); err != nil || g.proxy.RouteOf(clean) == "" {
				refuseAgent(w)
				return
			}
		}
		// A path that only cleans to an API path (//api/x, /bff/../api/x) is
		// the proxy's too: it answers with its own JSON verdict instead of
		// ServeMux redirecting an XHR to the cleaned form.
		if underAPI(raw) {
			api.ServeHTTP(w, r)
			return
		}
		if clean, err := proxy.CleanPath(raw); err == nil && clean != raw && underAPI(clean) {
			api.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	h = server.SecurityHeaders(h, headerSet(g.cfg))
	return g.tracing.Handler(h, "gatehouse", g.cfg.TrustedProxies)
}

func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	// The IdP only degrades the instance (existing sessions keep working) unless
	// server.ready_requires_idp; audit_buffer reports saturation without pulling
	// the instance (decisions are refused 503 meanwhile). g.server is built after
	// this handler, hence the closure.
	server.HealthHandlers(mux, []server.Check{
		{Name: "session_store", Fn: g.sessions.Ready},
		{Name: "identity_provider", Fn: g.idp.Ready, Degrades: !g.cfg.Server.ReadyRequiresIdP},
		{Name: "audit", Fn: func(context.Context) error { return g.audit.Ready() }},
		{Name: "audit_buffer", Fn: func(context.Context) error { return g.audit.SaturatedErr() }, Degrades: true},
		{Name: "shutdown", Fn: func(ctx context.Context) error { return g.server.Ready(ctx) }},
	})
	mux.Handle("GET /metrics", g.metrics.Handler())
	ao := admin.Options{
		Token: g.cfg.Admin.Token, Sessions: revoker{g.sessions},
		Audit: g.audit, Client: g.cfg.Client, Logger: g.log.With("component", "admin"),
		ListenAddr: g.cfg.AdminListen,
	}
	if g.agents != nil { // never a typed nil in the interface
		ao.Agents = g.agents
	}
	admin.Register(mux, ao)
	return admin.CheckHost(mux, g.cfg.AdminListen)
}

// revoker ends sessions for the admin API with cause EndRevoked.
type revoker struct{ m *session.Manager }

func (r revoker) List(ctx context.Context, sub string) ([]session.Info, error) {
	return r.m.List(ctx, sub)
}

func (r revoker) Revoke(ctx context.Context, id string) (bool, error) {
	return r.m.Revoke(ctx, id)
}

func (r revoker) DeleteBySubject(ctx context.Context, sub string) (int, error) {
	ids, err := r.m.EndBySubject(ctx, sub, session.EndRevoked)
	return len(ids), err
}

// WaitIdP waits until the IdP is discovered (or ctx ends). Readiness does not
// wait for it (an IdP outage degrades an instance; existing sessions work),
// so a caller that must sign in at once — the demo — waits here.
func (g *Gateway) WaitIdP(ctx context.Context) error {
	for {
		if err := g.idp.Ready(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the identity provider was not discovered: %w", ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// PublicHandler is the public listener's handler (tests drive it in-process).
func (g *Gateway) PublicHandler() http.Handler { return g.public }

// AdminHandler is the admin listener's handler.
func (g *Gateway) AdminHandler() http.Handler { return g.admin }

// PublicAddr is the bound public address.
func (g *Gateway) PublicAddr() string { return g.server.PublicAddr() }

// AdminAddr is the bound admin address.
func (g *Gateway) AdminAddr() string { return g.server.AdminAddr() }

// Call runs the post-identify half of the pipeline (authorize, credential,
// forward, audit) of route for an identified caller and returns the
// upstream's response; refusals are *pipeline.Refusal errors. See
// proxy.Proxy.Call.
func (g *Gateway) Call(ctx context.Context, caller *pipeline.Caller, route, method, path, rawQuery string, body io.Reader) (*http.Response, error) {
	return g.proxy.Call(ctx, caller, route, method, path, rawQuery, body)
}

// ExchangeCached reports whether this instance caches an exchanged token for
// the session (tests: every session end must drop them).
func (g *Gateway) ExchangeCached(sessionID string) bool { return g.proxy.ExchangeCached(sessionID) }

// Sessions exposes the session manager (tests, demo).
func (g *Gateway) Sessions() *session.Manager { return g.sessions }

// Run serves until ctx ends, then drains in-flight requests and closes every
// resource (audit log flushed and synced last).
func (g *Gateway) Run(ctx context.Context) error {
	bg, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); g.idp.run(bg) }()
	go func() { defer wg.Done(); g.limits.runSummaries(bg) }()
	go func() {
		defer wg.Done()
		secret.Watch(bg, g.opts.SecretPollInterval, g.cfg.Secrets(), g.secretChanged)
	}()
	g.recordStart(ctx)
	err := g.server.Run(ctx)
	cancel()
	wg.Wait()
	if cerr := g.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

func (g *Gateway) recordStart(ctx context.Context) {
	if err := g.audit.Log(ctx, audit.Record{Event: audit.EventConfigLoaded, Outcome: audit.OutcomeSuccess,
		Client: g.cfg.Client, Reason: "start", Path: g.cfg.File}); err != nil {
		g.log.Error("audit record not written", "event", "config_loaded", "err", err)
	}
}

// secretChanged audits a rotation. source names the reference, never the value.
func (g *Gateway) secretChanged(source string, changed bool, err error) {
	if err != nil {
		g.log.Warn("secret file could not be re-read; the previous value stays in force", "source", source, "err", err)
		return
	}
	g.log.Info("secret rotated", "source", source)
	g.metrics.Event(string(audit.EventSecretRotated), string(audit.OutcomeSuccess))
	if aerr := g.audit.Log(context.Background(), audit.Record{Event: audit.EventSecretRotated, Outcome: audit.OutcomeSuccess,
		Client: g.cfg.Client, Reason: source}); aerr != nil {
		g.log.Error("audit record not written", "event", "secret_rotated", "err", aerr)
	}
}

// close releases resources in reverse order of creation.
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

// PublicURL is the configured public_url's origin.
func (g *Gateway) PublicURL() string { return g.cfg.Origin() }

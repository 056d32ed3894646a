package gateway

import (
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/admin"
	"github.com/gatehouse-dev/gatehouse/internal/agent"
	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/binding"
	"github.com/gatehouse-dev/gatehouse/internal/compose"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/oauthserver"
	"github.com/gatehouse-dev/gatehouse/internal/oidc"
	"github.com/gatehouse-dev/gatehouse/internal/policy"
	"github.com/gatehouse-dev/gatehouse/internal/proxy"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
)

// generation is everything built from one configuration file: one request
// path per frontend, the binder that picks among them, and the admin API.
// Requests hold the generation they started on (acquire/release) until they
// finish, so a reload never changes the rules under a request in flight.
type generation struct {
	g      *Gateway
	cfg    *config.Config
	hash   string
	fronts []*frontend
	binder *binding.Binder[*frontend]
	admin  http.Handler

	inflight atomic.Int64
	retired  atomic.Bool
	drained  chan struct{}
	drainOne sync.Once

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// frontend is one frontend's request path within a generation.
type frontend struct {
	cfg      *config.Config
	id       string // the session namespace: the client name, "" in the one-frontend form
	sessions *session.Manager
	idp      *lazyIdP
	proxy    *proxy.Proxy
	handler  http.Handler
	closers  []func() error
	// agents is nil without an agents section; agentLimit is nil without
	// agents.rate_limit.
	agents       *agent.Broker
	agentLimit   *agentLimit
	agentMint    agent.PolicyFunc
	agentBrowser agent.BrowserSession
	// oauth is nil without an oauth section; comps nil without composites.
	oauth *oauthserver.Server
	comps *composites
	// limits is the frontend's rate limits, concurrency cap and in-flight
	// tracker (limits.go).
	limits *limits
}

// sharedStore lets several Managers (one per frontend and generation) use
// the process's one store; the Gateway closes the store itself.
type sharedStore struct{ session.Store }

func (sharedStore) Close() error { return nil }

// Take passes the store's one-time reads through (the OAuth front door's
// pending authorizations and codes); every store implements it.
func (s sharedStore) Take(ctx context.Context, key string) (string, bool, error) {
	t, ok := s.Store.(session.Taker)
	if !ok {
		return "", false, fmt.Errorf("session store %T cannot take one-time keys", s.Store)
	}
	return t.Take(ctx, key)
}

// sessionCacheTTL is how long a frontend's Manager serves a session from
// its cache. With Redis, other instances revoke too and the TTL bounds a
// lost pub/sub message. A bolt or memory store serves this process alone,
// whose every revocation drops the cached copy in each Manager that can
// hold it (a session opens only at its frontend's Manager; the admin API
// ends sessions through every frontend's): the TTL can be longer.
func sessionCacheTTL(store config.StoreKind) time.Duration {
	if store == config.StoreRedis {
		return session.DefaultCacheTTL
	}
	return session.DefaultLocalCacheTTL
}

// sharedNotifier is sharedStore for stores shared between instances (redis),
// which each Manager subscribes to.
type sharedNotifier struct {
	sharedStore
	session.Notifier
}

// sharedWindow is sharedStore for stores that keep single-use ids in
// memory (bolt): every Manager, of every generation, uses the store's one
// set, so a reload forgets no DPoP proof id.
type sharedWindow struct {
	sharedStore
	session.WindowOncer
}

func (g *Gateway) shared() session.Store {
	if n, ok := g.store.(session.Notifier); ok {
		return sharedNotifier{sharedStore{g.store}, n}
	}
	if w, ok := g.store.(session.WindowOncer); ok {
		return sharedWindow{sharedStore{g.store}, w}
	}
	return sharedStore{g.store}
}

// build builds a generation from cfg. Nothing is started (see start); on
// failure everything built so far is closed.
func (g *Gateway) build(ctx context.Context, cfg *config.Config) (_ *generation, err error) {
	gen := &generation{g: g, cfg: cfg, drained: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = gen.close()
		}
	}()
	var probs config.Errors
	var binds []binding.Frontend[*frontend]
	for _, fc := range cfg.Frontends() {
		fe, err := g.buildFrontend(ctx, cfg, fc)
		if err != nil {
			var ce *config.Errors
			if errors.As(err, &ce) {
				for _, p := range ce.Problems {
					p.Frontend = fc.Client
					probs.Add(p)
				}
				continue
			}
			return nil, err
		}
		gen.fronts = append(gen.fronts, fe)
		binds = append(binds, binding.Frontend[*frontend]{URL: fc.PublicURL, Value: fe})
	}
	if err := probs.ErrOrNil(); err != nil {
		return nil, err
	}
	if gen.binder, err = binding.New(binds); err != nil {
		return nil, err
	}
	gen.admin = gen.adminHandler()
	return gen, nil
}

func (g *Gateway) buildFrontend(ctx context.Context, root, cfg *config.Config) (_ *frontend, err error) {
	fe := &frontend{cfg: cfg}
	if root.MultiFrontend() {
		fe.id = cfg.Client
	}
	defer func() {
		if err != nil {
			_ = fe.close()
		}
	}()
	log := g.log.With("client", cfg.Client)
	pdpClient := &http.Client{Transport: g.tracing.Transport(http.DefaultTransport)}
	authz, err := BuildPolicies(cfg, g.opts.Now, pdpClient)
	if err != nil {
		return nil, err
	}
	fe.sessions = session.NewManager(g.shared(), session.Options{
		IdleTimeout:     cfg.Session.IdleTimeout,
		AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
		CacheMemory:     cfg.Session.CacheMemory,
		CacheTTL:        sessionCacheTTL(cfg.Session.Store),
		Now:             g.opts.Now,
		Logger:          log.With("component", "session"),
		Frontend:        fe.id,
	})
	fe.closers = append(fe.closers, fe.sessions.Close)

	policies, err := compileLimits(cfg)
	if err != nil {
		return nil, err
	}
	// The limiter's counters carry the frontend and the generation: during a
	// reload the old generation's and the new one's are registered at once.
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"client": cfg.Client, "generation": strconv.FormatInt(g.generations.Add(1), 10)}, g.metrics.Registry())
	lo := limitsOptions{Audit: g.audit, Metrics: g.metrics, Registerer: reg, Client: cfg.Client, Now: g.opts.Now, Logger: log.With("component", "ratelimit")}
	if rs, ok := g.store.(*session.RedisStore); ok {
		// One budget for every instance on this Redis (standalone,
		// sentinel or cluster; the limiter's keys carry hash tags).
		lo.Redis, lo.KeyPrefix = rs.Client(), rs.KeyPrefix()+fe.id
	}
	fe.limits = newLimits(policies, lo)
	fe.closers = append(fe.closers, func() error { reg.Unregister(fe.limits.counters); return nil })

	keys, err := cfg.Session.CookieKeyRing()
	if err != nil {
		return nil, fmt.Errorf("%s: session.cookie_keys: %w", cfg.Client, err)
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
				log.Error("session.cookie_keys rotation refused; the previous keys stay in force", "err", err)
			}
		})
	}
	if cfg.RandomCookieKeys() {
		log.Warn("session.cookie_keys is not set: the login-state cookie key is random per process, so a login started on one instance cannot finish on another; set cookie_keys when running several instances")
	}
	idpClient := g.opts.IdPClient
	if idpClient == nil {
		idpClient = &http.Client{Timeout: 10 * time.Second, Transport: g.tracing.Transport(http.DefaultTransport)}
	}
	metrics := g.metrics.For(cfg.Client)
	evAudit := &eventAuditor{log: g.audit, client: cfg.Client, metrics: metrics}
	oo := fe.oidcOptions(g, keys, idpClient, evAudit)
	// Refused now, not retried in the background for ever (issue 9).
	if err := oidc.ValidateOptions(oo); err != nil {
		return nil, err
	}
	fe.idp = newLazyIdP(oo, log.With("component", "oidc"))
	if err := fe.buildAgents(g, authz); err != nil {
		return nil, err
	}
	if fe.oauth, err = fe.buildOAuth(g); err != nil {
		return nil, err
	}
	if fe.oauth != nil {
		fe.idp.opts.Handoff = fe.oauth // discovery (connect) runs later, in Run
	}
	set, err := BuildComposites(cfg)
	if err != nil {
		return nil, err
	}
	if fe.proxy, err = fe.buildProxy(g, authz, metrics, set); err != nil {
		return nil, err
	}
	fe.closers = append(fe.closers, func() error { fe.proxy.Close(); return nil })
	trusted := cfg.TrustedProxies
	fe.limits.clientIP = func(r *http.Request) netip.Addr { return proxy.ClientIP(r, trusted) }
	// A session's open streams and WebSockets end with it (issue 10 item 6).
	fe.sessions.OnEnd(func(ctx context.Context, e session.SessionEnd) { fe.limits.flights.end(e.ID, flightOf(ctx)) })
	// Every per-session cache is dropped here, whatever ended the session
	// (logout, back-channel, revocation, refused refresh, expiry, another
	// instance).
	fe.sessions.OnEnd(func(_ context.Context, e session.SessionEnd) { fe.proxy.ForgetSession(e.ID) })
	if fe.agents != nil {
		// Grants die with their session anyway (every agent request loads
		// it); this frees them and audits their end.
		fe.sessions.OnEnd(func(_ context.Context, e session.SessionEnd) { fe.agents.SessionEnded(e.ID, string(e.Cause), e.Remote) })
	}
	fe.handler = fe.publicHandler()
	return fe, nil
}

// oidcOptions maps the frontend's configuration onto the OIDC client's options.
func (fe *frontend) oidcOptions(g *Gateway, keys *secret.KeyRing, idpClient *http.Client, evAudit oidc.Auditor) oidc.Options {
	cfg := fe.cfg
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
		PathPrefix:            cfg.PathPrefix(),
		CookieSameSite:        cfg.Session.SameSite,
		CookieKeys:            keys,
		Sessions:              fe.sessions,
		HTTPClient:            idpClient,
		Clock:                 g.opts.Now,
		RefreshBeforeExpiry:   cfg.Session.RefreshBeforeExpiry,
		CSRFHeader:            cfg.CSRF.Header,
		Logger:                g.log.With("component", "oidc", "client", cfg.Client),
		Auditor:               evAudit,
	}
}

// buildProxy builds the frontend's route table and proxy, with its own
// stage list (stages.go). Route problems come back at the route's file:line.
func (fe *frontend) buildProxy(g *Gateway, authz map[string]*policy.Authorizer, metrics *telemetry.Metrics, set *compose.Set) (*proxy.Proxy, error) {
	cfg, opts := fe.cfg, g.opts
	aud := &auditor{log: g.audit, client: cfg.Client, metrics: metrics, now: opts.Now}
	var endpoints proxy.Endpoints
	if set != nil {
		fe.comps = &composites{set: set, proxy: func() *proxy.Proxy { return fe.proxy }, audit: aud}
		endpoints = fe.comps
	}
	specs := make([]proxy.RouteSpec, 0, len(cfg.Routes))
	for i := range cfg.Routes {
		specs = append(specs, fe.routeSpec(g, &cfg.Routes[i], authz[cfg.Routes[i].Name]))
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	var wrap func(http.RoundTripper) http.RoundTripper
	if g.tracing != nil {
		wrap = g.tracing.Transport
	}
	origin := *cfg.PublicURL // the proxy checks origins: public_url without a path-bound prefix
	origin.Path, origin.RawPath = "", ""
	p, err := proxy.New(specs, proxy.Options{
		PublicURL:      &origin,
		CSRF:           proxy.CSRFOptions{Header: cfg.CSRF.Header, AllowedOrigins: cfg.CSRF.AllowedOrigins},
		TrustedProxies: cfg.TrustedProxies,
		Stages:         fe.stages(),
		UserTokens:     &userTokens{idp: fe.idp},
		Exchanger:      &exchanger{idp: fe.idp, issuer: cfg.Origin(), now: opts.Now},
		Auditor:        aud,
		Counter:        metrics,
		Endpoints:      endpoints,
		Transport:      transport,
		WrapTransport:  wrap,
		Logger:         g.log.With("component", "proxy", "client", cfg.Client),
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
// network — for every frontend: policies, the OIDC client's options, the
// cookie keys, the route table — with the same constructors New calls, and
// returns what New would refuse (config problems at file:line, naming their
// frontend). `gatehouse check` calls it, so check and serve agree.
func Check(cfg *config.Config) error {
	g := &Gateway{cfg: cfg, log: slog.New(slog.DiscardHandler), opts: Options{Now: time.Now}, metrics: telemetry.NewMetrics()}
	var probs config.Errors
	for _, fc := range cfg.Frontends() {
		err := checkFrontend(g, fc)
		var ce *config.Errors
		switch {
		case err == nil:
		case errors.As(err, &ce):
			for _, p := range ce.Problems {
				if cfg.MultiFrontend() {
					p.Frontend = fc.Client
				}
				probs.Add(p)
			}
		case cfg.MultiFrontend():
			return fmt.Errorf("frontend %s (%s): %w", fc.Client, fc.Key, err)
		default:
			return err
		}
	}
	return probs.ErrOrNil()
}

func checkFrontend(g *Gateway, fc *config.Config) error {
	fe := &frontend{cfg: fc}
	authz, err := BuildPolicies(fc, nil, nil)
	if err != nil {
		return err
	}
	keys, err := fc.Session.CookieKeyRing()
	if err != nil {
		return fmt.Errorf("session.cookie_keys: %w", err)
	}
	// No store is opened: the options only need a session manager named.
	if err := oidc.ValidateOptions(fe.oidcOptions(g, keys, nil, nil)); err != nil {
		return err
	}
	if _, _, err := oauthRegistry(fc); err != nil {
		return err
	}
	set, err := BuildComposites(fc)
	if err != nil {
		return err
	}
	if _, err := compileLimits(fc); err != nil {
		return err
	}
	p, err := fe.buildProxy(g, authz, g.metrics, set)
	if err != nil {
		return err
	}
	p.Close()
	if fc.Agents != nil {
		if _, err := newAgentLimit(fc, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

func (fe *frontend) routeSpec(g *Gateway, r *config.Route, authz *policy.Authorizer) proxy.RouteSpec {
	methods := r.Methods // defaulted to [GET] by config (HEAD goes with GET)
	spec := proxy.RouteSpec{
		Name: r.Name, Path: r.Path, Upstream: r.Upstream, KeepPrefix: !r.StripPrefix,
		Methods: methods, Timeout: r.Timeout, MaxBodyBytes: r.MaxBody, MaxIdleConns: r.MaxIdleConns,
		WebSocket: r.WebSocket, AllowSetCookie: r.AllowSetCookie, Anonymous: r.Anonymous,
		AllowCaching: r.AllowCaching, AllowMethodOverride: r.AllowMethodOverride,
		Authorizer: &routeAuthorizer{client: fe.cfg.Client, authz: authz, log: g.log.With("component", "policy", "client", fe.cfg.Client), now: g.opts.Now},
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
		spec.Credential = proxy.Credential{Kind: proxy.CredentialClientCredentials, Source: clientCredentials(fe.idp, scope, aud)}
	case config.CredHeader:
		spec.Credential = proxy.Credential{Kind: proxy.CredentialHeader, HeaderName: c.Header.Name, HeaderValue: c.Header.Value}
	default:
		spec.Credential = proxy.Credential{Kind: proxy.CredentialNone}
	}
	return spec
}

// publicHandler is the frontend's own request path. It sees paths without
// the frontend's prefix (the binder strips it).
func (fe *frontend) publicHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/bff/", fe.idp)
	// Sign-in endpoints are limited by client address (no session yet).
	mux.Handle("/bff/login", fe.limits.bff(bffLoginRoute, fe.idp))
	mux.Handle("/bff/callback", fe.limits.bff(bffCallbackRoute, fe.idp))
	// Every API request gets a cancellable context and a flight the limit
	// stage fills in (concurrency slot, session tracking).
	api := fe.limits.track(fe.proxy)
	if fe.oauth != nil {
		fe.oauth.Register(mux) // /bff/oauth/* and the two well-known documents
	}
	if fe.agents != nil {
		fe.agents.Register(mux, fe.agentBrowser, fe.agentMint)
	}
	for _, pre := range fe.proxy.Prefixes() {
		mux.Handle(pre, api)
	}
	var front http.Handler
	switch {
	case fe.cfg.Frontend.StaticDir != "":
		front = staticFrontend(fe.cfg.Frontend.StaticDir)
	case fe.cfg.Frontend.Upstream != nil:
		front = upstreamFrontend(fe.cfg.Frontend.Upstream)
	default:
		front = noFrontend()
	}
	mux.Handle("/", front)
	// The proxy cleans paths itself and must see them raw: dispatch on the
	// raw path's prefix before ServeMux would clean or redirect it.
	underAPI := fe.proxy.Owns
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.URL.EscapedPath()
		// An agent token reaches API routes only: never /bff/* (no minting,
		// no /bff/user), the frontend or a path no route matches (403, not
		// 404: what its grant does not name is refused).
		if carriesAgentToken(r) {
			if clean, err := proxy.CleanPath(raw); err != nil || fe.proxy.RouteOf(clean) == "" {
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
	return server.SecurityHeaders(h, headerSet(fe.cfg))
}

func (fe *frontend) close() error {
	var err error
	for _, c := range slices.Backward(fe.closers) {
		err = errors.Join(err, c())
	}
	fe.closers = nil
	return err
}

// servePublic binds the request to a frontend of the current generation and
// serves it there; a request that binds to no frontend gets 404 and reaches
// nothing.
func (g *Gateway) servePublic(w http.ResponseWriter, r *http.Request) {
	gen := g.acquire()
	defer gen.release()
	fe, prefix, ok := gen.binder.Bind(r.Host, r.URL.EscapedPath())
	if !ok {
		g.unbound.ServeHTTP(w, r)
		return
	}
	fe.handler.ServeHTTP(w, binding.StripPrefix(r, prefix))
}

// unboundHandler answers a request that binds to no frontend. No HSTS: the
// host is none of ours, and includeSubDomains on it could reach hosts that
// are not Gatehouse's either.
func unboundHandler() http.Handler {
	return server.SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apierror.Write(w, http.StatusNotFound, "no_frontend", "no frontend is served at this host and path")
	}), server.NewHeaderSet(server.HeaderOptions{}))
}

func (g *Gateway) serveAdmin(w http.ResponseWriter, r *http.Request) {
	gen := g.acquire()
	defer gen.release()
	gen.admin.ServeHTTP(w, r)
}

// acquire returns the current generation, counted as in use until release.
// A generation retired between the load and the count is given back and the
// new one taken: once a retired generation's count reaches zero, no request
// can start on it again.
func (g *Gateway) acquire() *generation {
	for {
		gen := g.gen.Load()
		gen.inflight.Add(1)
		if !gen.retired.Load() {
			return gen
		}
		gen.release()
	}
}

func (gen *generation) release() {
	if gen.inflight.Add(-1) == 0 && gen.retired.Load() {
		gen.drainOne.Do(func() { close(gen.drained) })
	}
}

// retire stops new requests from starting on gen and waits (up to timeout)
// for those in flight to finish; then it closes gen.
func (gen *generation) retire(timeout time.Duration) {
	gen.retired.Store(true)
	if gen.inflight.Load() != 0 {
		t := time.NewTimer(timeout)
		select {
		case <-gen.drained:
		case <-t.C:
			gen.g.log.Warn("requests of the previous configuration still running after the drain timeout; closing it", "in_flight", gen.inflight.Load())
		}
		t.Stop()
	}
	if err := gen.close(); err != nil {
		gen.g.log.Warn("closing the previous configuration", "err", err)
	}
}

// start runs the generation's background work (IdP discovery, secret
// rotation) until it is closed or ctx ends.
func (gen *generation) start(ctx context.Context) {
	ctx, gen.cancel = context.WithCancel(ctx)
	for _, fe := range gen.fronts {
		gen.wg.Go(func() { fe.idp.run(ctx) })
		gen.wg.Go(func() { fe.limits.runSummaries(ctx) })
	}
	gen.wg.Go(func() {
		secret.Watch(ctx, gen.g.opts.SecretPollInterval, gen.cfg.Secrets(), gen.secretChanged)
	})
}

// close stops the background work and closes every frontend.
func (gen *generation) close() error {
	gen.closeOnce.Do(func() {
		if gen.cancel != nil {
			gen.cancel()
		}
		gen.wg.Wait()
		for _, fe := range gen.fronts {
			gen.closeErr = errors.Join(gen.closeErr, fe.close())
		}
		gen.closed.Store(true)
	})
	return gen.closeErr
}

// secretChanged audits a rotation. source names the reference, never the value.
func (gen *generation) secretChanged(source string, changed bool, err error) {
	g := gen.g
	if err != nil {
		g.log.Warn("secret file could not be re-read; the previous value stays in force", "source", source, "err", err)
		return
	}
	g.log.Info("secret rotated", "source", source)
	g.metrics.Event(string(audit.EventSecretRotated), string(audit.OutcomeSuccess))
	client := ""
	if fs := gen.cfg.Frontends(); len(fs) == 1 {
		client = fs[0].Client
	}
	if aerr := g.audit.Log(context.Background(), audit.Record{Event: audit.EventSecretRotated, Outcome: audit.OutcomeSuccess,
		Client: client, Reason: source}); aerr != nil {
		g.log.Error("audit record not written", "event", "secret_rotated", "err", aerr)
	}
}

func (gen *generation) adminHandler() http.Handler {
	g := gen.g
	mux := http.NewServeMux()
	// The IdP only degrades the instance (existing sessions keep working) unless
	// server.ready_requires_idp; audit_buffer reports saturation without pulling
	// the instance (decisions are refused 503 meanwhile). g.server is built after
	// the first generation, hence the closure.
	// identity_provider is every frontend's IdP; with several frontends each
	// also has its own identity_provider:<client>.
	degrades := !g.cfg.Server.ReadyRequiresIdP
	checks := []server.Check{{Name: "session_store", Fn: gen.fronts[0].sessions.Ready},
		{Name: "identity_provider", Fn: gen.idpsReady, Degrades: degrades}}
	for _, fe := range gen.fronts {
		if fe.id != "" {
			checks = append(checks, server.Check{Name: "identity_provider:" + fe.id, Fn: fe.idp.Ready, Degrades: degrades})
		}
	}
	checks = append(checks,
		server.Check{Name: "audit", Fn: func(context.Context) error { return g.audit.Ready() }},
		server.Check{Name: "audit_buffer", Fn: func(context.Context) error { return g.audit.SaturatedErr() }, Degrades: true},
		server.Check{Name: "shutdown", Fn: func(ctx context.Context) error { return g.server.Ready(ctx) }},
	)
	server.HealthHandlers(mux, checks, g.reload.status)
	mux.Handle("GET /metrics", g.metrics.Handler())
	var clients []string
	for _, fe := range gen.fronts {
		clients = append(clients, fe.cfg.Client)
	}
	ao := admin.Options{
		Token: gen.cfg.Admin.Token, Sessions: &revoker{gen: gen},
		Audit: g.audit, Client: clients[0], Clients: clients, Logger: g.log.With("component", "admin"),
		ListenAddr: g.cfg.AdminListen,
	}
	var brokers []*agent.Broker
	for _, fe := range gen.fronts {
		if fe.agents != nil {
			brokers = append(brokers, fe.agents)
		}
	}
	if len(brokers) > 0 { // never a typed nil in the interface
		ao.Agents = agentsAdmin{brokers}
	}
	admin.Register(mux, ao)
	return admin.CheckHost(mux, g.cfg.AdminListen)
}

// idpsReady reports whether every frontend's IdP is discovered and answers.
func (gen *generation) idpsReady(ctx context.Context) error {
	for _, fe := range gen.fronts {
		if err := fe.idp.Ready(ctx); err != nil {
			return err
		}
	}
	return nil
}

// revoker ends sessions for the admin API, across the generation's
// frontends, dropping per-session caches along with each session.
type revoker struct{ gen *generation }

func (r *revoker) List(ctx context.Context, sub string) ([]session.Info, error) {
	infos, err := r.gen.fronts[0].sessions.List(ctx, sub)
	if err != nil {
		return nil, err
	}
	if r.gen.cfg.MultiFrontend() {
		return infos, nil
	}
	// The one-frontend form: every session is the one frontend's.
	for i := range infos {
		infos[i].Frontend = r.gen.fronts[0].cfg.Client
	}
	return infos, nil
}

// Revoke ends the session (cause EndRevoked) through every frontend's
// Manager, and reports whether it existed: the id does not say whose it
// is, and each Manager runs its own end hooks (per-session caches).
func (r *revoker) Revoke(ctx context.Context, id string) (bool, error) {
	existed := false
	for _, fe := range r.gen.fronts {
		e, err := fe.sessions.Revoke(ctx, id)
		if err != nil {
			return existed, err
		}
		existed = existed || e
	}
	return existed, nil
}

// DeleteBySubject ends sub's sessions at every frontend, each through its
// own Manager (which ends only its frontend's sessions).
func (r *revoker) DeleteBySubject(ctx context.Context, sub string) (int, error) {
	total := 0
	for _, fe := range r.gen.fronts {
		ids, err := fe.sessions.EndBySubject(ctx, sub, session.EndRevoked)
		total += len(ids)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

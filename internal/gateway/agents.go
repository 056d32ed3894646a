package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/agent"
	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/policy"
	"github.com/gatehouse-dev/gatehouse/internal/proxy"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// This file builds the agent credentials broker (internal/agent) from the
// agents section and adapts it to the gateway: its grant store, the browser
// guard of /bff/agents/tokens and the mint-time policy check.

// grantBoltPath is the bolt file of agent grants, next to the sessions' file
// (sessions.db → sessions-agents.db): bbolt locks a file per process, so the
// grants cannot share the sessions' file through a second handle.
func grantBoltPath(sessions string) string {
	ext := filepath.Ext(sessions)
	return strings.TrimSuffix(sessions, ext) + "-agents" + ext
}

// grantKeyPrefix namespaces the grants in the sessions' Redis.
func grantKeyPrefix(sessions string) string {
	if sessions == "" {
		sessions = config.DefaultRedisKeyPrefix
	}
	return sessions + "agents:"
}

// openGrantStore opens the agent grants' store: the session store's kind,
// in a namespace of its own (memory: another map; bolt: grantBoltPath; redis:
// grantKeyPrefix on the same server), so grants are session.Records whose
// Subject is the delegating session's id and every store's subject index
// lists and deletes a session's grants. Nothing in internal/session changes.
func openGrantStore(cfg *config.Config, opts Options) (session.Store, error) {
	c := *cfg
	c.Session.Bolt.Path = grantBoltPath(cfg.Session.Bolt.Path)
	c.Session.Redis.KeyPrefix = grantKeyPrefix(cfg.Session.Redis.KeyPrefix)
	s, err := openStore(&c, opts)
	if err != nil {
		return nil, fmt.Errorf("agent grant store: %w", err)
	}
	return s, nil
}

// delegable maps each delegable route to the methods it serves.
func delegable(cfg *config.Config) map[string][]string {
	out := map[string][]string{}
	for _, name := range cfg.Agents.DelegableRoutes {
		for i := range cfg.Routes {
			if r := &cfg.Routes[i]; r.Name == name {
				out[name] = r.Methods
			}
		}
		// A composite answers one method; its calls are checked against the
		// grant when it is served (gateway/composites.go).
		for _, c := range cfg.Composites {
			if c.Name == name {
				m := c.Method
				if m == "" {
					m = http.MethodGet
				}
				out[name] = []string{m}
			}
		}
	}
	return out
}

// browserSession is the guard of the /bff/agents/tokens endpoints: the API
// routes' CSRF check, then the session cookie (sliding the session: minting
// or listing is the user's activity).
func browserSession(csrf *proxy.CSRFGuard, cookie string, sessions *session.Manager) agent.BrowserSession {
	return func(w http.ResponseWriter, r *http.Request) (session.Handle, *session.Session, bool) {
		if code, msg := csrf.Check(r.Header); code != "" {
			apierror.Write(w, http.StatusForbidden, code, msg)
			return session.Handle{}, nil, false
		}
		c, err := r.Cookie(cookie)
		if err != nil || c.Value == "" {
			apierror.Write(w, http.StatusUnauthorized, "unauthenticated", "sign in first (/bff/login)")
			return session.Handle{}, nil, false
		}
		h, err := session.ParseHandle(c.Value)
		if err != nil {
			apierror.Write(w, http.StatusUnauthorized, "unauthenticated", "sign in first (/bff/login)")
			return session.Handle{}, nil, false
		}
		s, err := sessions.Load(r.Context(), h, true)
		switch {
		case errors.Is(err, session.ErrNotFound), err == nil && s.Native != nil:
			// A native app's handle is usable only with its DPoP key: as a
			// cookie it could mint agent tokens without it.
			apierror.Write(w, http.StatusUnauthorized, "unauthenticated", "sign in first (/bff/login)")
			return session.Handle{}, nil, false
		case err != nil:
			apierror.Write(w, http.StatusServiceUnavailable, "session_unavailable", "the session store is unavailable; try again shortly")
			return session.Handle{}, nil, false
		}
		return h, s, true
	}
}

// mintPolicy asks a route's own policy whether the user may have method on
// it delegated now: the policy sees the user, the session, the agent and a
// request for the route's path, as it will on the agent's requests. A PDP
// that cannot be asked fails the mint (503), never grants by guess.
func mintPolicy(client string, routes []config.Route, authz map[string]*policy.Authorizer) agent.PolicyFunc {
	paths := map[string]string{}
	for i := range routes {
		paths[routes[i].Name] = routes[i].Path
	}
	return func(ctx context.Context, s *session.Session, route, method string, a *policy.AgentInfo) (bool, error) {
		az, ok := authz[route]
		if !ok {
			return false, nil
		}
		in := policy.Input{
			User: s.Claims, Route: route, Client: client, Agent: a,
			Session: &policy.SessionInfo{SID: s.ID, AuthTime: s.AuthTime, Created: s.Created, ACR: s.ACR, AMR: s.AMR,
				Age: s.LastSeen.Sub(s.Created)},
			Request: policy.RequestInfo{Method: method, Path: paths[route]},
		}
		d := az.Decide(ctx, &in, "")
		if d.Allow {
			return true, nil
		}
		if d.Status == http.StatusServiceUnavailable {
			return false, fmt.Errorf("policy of route %s: %s", route, d.Reason)
		}
		return false, nil
	}
}

// agentIdentifier recognises Authorization: Bearer gha_… and identifies the
// request as the agent acting for the delegating user's live session. It is
// not cookie-borne, so the CSRF check does not apply; a request that also
// carries the session cookie is refused as ambiguous by the chain.
type agentIdentifier struct{ broker *agent.Broker }

// Recognises looks at the Authorization headers only (no I/O).
func (a *agentIdentifier) Recognises(r *http.Request) bool { return carriesAgentToken(r) }

// CookieBorne: a bearer token is sent deliberately, never ambiently.
func (a *agentIdentifier) CookieBorne() bool { return false }

func (a *agentIdentifier) Identify(ctx context.Context, r *pipeline.Request) *pipeline.Refusal {
	vals := r.HTTP.Header["Authorization"]
	if len(vals) != 1 {
		return &pipeline.Refusal{Status: http.StatusBadRequest, Code: "ambiguous_credentials",
			Message: "send exactly one Authorization header"}
	}
	_, tok, _ := strings.Cut(vals[0], " ")
	d, err := a.broker.Authenticate(ctx, strings.TrimLeft(tok, " "))
	if err != nil {
		var ae *agent.AuthError
		if errors.As(err, &ae) {
			return &pipeline.Refusal{Status: http.StatusUnauthorized, Code: "agent_token_invalid", AuditReason: ae.Reason,
				Message: "the agent token is unknown, expired or revoked, or its user's session has ended",
				Header:  http.Header{"Www-Authenticate": {`Bearer error="invalid_token"`}}}
		}
		return &pipeline.Refusal{Status: http.StatusServiceUnavailable, Code: "agents_unavailable",
			Message: "agent tokens cannot be checked right now; try again shortly", Err: err}
	}
	g := &d.Grant
	r.Caller = pipeline.Caller{Kind: pipeline.AgentBearer, SessionID: d.Session.ID, Handle: d.Handle, Session: d.Session,
		Subject: d.Session.Subject, Claims: d.Session.Claims, IP: r.ClientIP,
		Agent: &pipeline.Agent{ID: g.ID, Name: g.Name, Routes: d.Routes(), Methods: d.Methods(), Expires: g.Expires, Grant: g}}
	return nil
}

// agentScope refuses an agent's request outside its grant (route and method)
// before anything else is asked; users pass untouched.
type agentScope struct{}

func (agentScope) Run(_ context.Context, r *pipeline.Request) *pipeline.Refusal {
	if !r.Caller.Permits(r.Route, r.HTTP.Method) {
		return proxy.AgentScopeRefusal(r.Route)
	}
	return nil
}

// agentLimit is agents.rate_limit: one token bucket per agent token (shared
// by instances on Redis). Users pass untouched; the general rate_limits are
// a stage of their own.
type agentLimit struct{ lim ratelimit.Limiter }

// agentLimitPolicy names the limit in the RateLimit headers.
const agentLimitPolicy = "agent"

func newAgentLimit(cfg *config.Config, store session.Store, now func() time.Time) (*agentLimit, error) {
	rl := cfg.Agents.RateLimit
	if rl == nil {
		return nil, nil
	}
	l := ratelimit.Limit{Requests: rl.Requests, Per: rl.Per, Burst: rl.Burst}
	p, err := ratelimit.Compile(ratelimit.Spec{Default: l, Routes: map[string]ratelimit.Limit{agentLimitPolicy: l}}, []string{agentLimitPolicy})
	if err != nil {
		return nil, fmt.Errorf("agents.rate_limit: %w", err)
	}
	if rs, ok := store.(*session.RedisStore); ok {
		return &agentLimit{lim: ratelimit.NewRedis(p, rs.Client(), ratelimit.RedisOptions{KeyPrefix: grantKeyPrefix(cfg.Session.Redis.KeyPrefix)})}, nil
	}
	return &agentLimit{lim: ratelimit.NewLocal(p, ratelimit.LocalOptions{Now: now})}, nil
}

func (a *agentLimit) Run(ctx context.Context, r *pipeline.Request) *pipeline.Refusal {
	if a == nil || r.Caller.Kind != pipeline.AgentBearer {
		return nil
	}
	d, err := a.lim.Allow(ctx, ratelimit.Request{Route: agentLimitPolicy, Caller: r.Caller.Key()})
	if err != nil {
		return &pipeline.Refusal{Status: http.StatusServiceUnavailable, Code: "rate_limit_unavailable",
			Message: "the rate limit cannot be checked right now; try again shortly", Err: err}
	}
	if d.Allowed {
		return nil
	}
	h := http.Header{}
	ratelimit.SetHeaders(h, d)
	secs := max(int64((d.RetryAfter+time.Second-1)/time.Second), 1)
	h.Set(ratelimit.HeaderRetryAfter, strconv.FormatInt(secs, 10))
	return &pipeline.Refusal{Status: http.StatusTooManyRequests, Code: "rate_limited", Header: h,
		Message: "too many requests with this agent token (agents.rate_limit); retry after " + strconv.FormatInt(secs, 10) + " s (see the Retry-After header)"}
}

// ExchangeAs implements proxy.ActorExchanger: the agent is the exchange's
// actor_token (an unsigned JWT naming agent:<grant id>; see agent.ActorToken).
func (e *exchanger) ExchangeAs(ctx context.Context, subjectToken secret.Secret, a *pipeline.Agent, audience, scope, resource string) (secret.Secret, time.Time, error) {
	t, err := e.idp.tokens()
	if err != nil {
		return secret.Secret{}, time.Time{}, err
	}
	actor := agent.ActorToken(a.ID, a.Name, a.Expires, e.issuer, e.now())
	return t.ExchangeWithActor(ctx, subjectToken, actor, agent.ActorTokenType, audience, scope, resource)
}

// carriesAgentToken reports whether any Authorization header presents an
// agent token.
func carriesAgentToken(r *http.Request) bool {
	for _, v := range r.Header["Authorization"] {
		if agent.IsAgentAuthorization(v) {
			return true
		}
	}
	return false
}

// refuseAgent answers an agent token outside the API routes.
func refuseAgent(w http.ResponseWriter) {
	apierror.Write(w, http.StatusForbidden, "agent_forbidden", "agent tokens are accepted only on the API routes of their grant, never on /bff/* or the frontend")
}

// buildAgents builds the frontend's broker when its agents section is
// present: over the process's one grant store (opened on first use, kept
// across reloads), with the frontend's session Manager — so a grant is only
// ever honoured for a session of this frontend —, the mint guard and policy,
// the per-token rate limit.
func (fe *frontend) buildAgents(g *Gateway, authz map[string]*policy.Authorizer) error {
	cfg := fe.cfg
	if cfg.Agents == nil {
		return nil
	}
	grants, err := g.grantStore()
	if err != nil {
		return err
	}
	// Grants are cached only in a store no other instance writes (bolt,
	// memory): every revocation then happens in this process and drops the
	// entry at once. With a shared store (Redis) an agent token is a bearer
	// credential in a less trusted party's hands, and a revocation on one
	// instance must stop it on all of them on the next request, not when a
	// pub/sub message arrives: the grant is read on every request.
	var grantTTL time.Duration // 0: session.DefaultCacheTTL
	if _, shared := grants.(session.Notifier); shared {
		grantTTL = -1
	}
	b, err := agent.New(agent.Options{
		Store: grants, Sessions: fe.sessions, Delegable: delegable(cfg), CacheTTL: grantTTL,
		MaxTTL: cfg.Agents.MaxTTL, DefaultTTL: cfg.Agents.DefaultTTL, MaxPerSession: cfg.Agents.MaxTokensPerSession,
		Audit: g.audit, Client: cfg.Client, Now: g.opts.Now, Logger: g.log.With("component", "agents", "client", cfg.Client),
	})
	if err != nil {
		return err
	}
	fe.closers = append(fe.closers, func() error { b.Close(); return nil })
	origin := *cfg.PublicURL // the CSRF guard checks origins: no path-bound prefix
	origin.Path, origin.RawPath = "", ""
	csrf, err := proxy.NewCSRFGuard(&origin, proxy.CSRFOptions{Header: cfg.CSRF.Header, AllowedOrigins: cfg.CSRF.AllowedOrigins})
	if err != nil {
		return fmt.Errorf("csrf: %w", err)
	}
	fe.agentLimit, err = newAgentLimit(cfg, grants, g.opts.Now)
	if err != nil {
		return err
	}
	fe.agents = b
	fe.agentBrowser = browserSession(csrf, cfg.EffectiveCookieName(), fe.sessions)
	fe.agentMint = compositeMint(cfg, mintPolicy(cfg.Client, cfg.Routes, authz))
	return nil
}

// grantStore opens the agent grants' store once per process (the session
// store's kind, in a namespace of its own); every frontend's broker shares it.
func (g *Gateway) grantStore() (session.Store, error) {
	g.grantsMu.Lock()
	defer g.grantsMu.Unlock()
	if g.grants == nil {
		grants, err := openGrantStore(g.cfg, g.opts)
		if err != nil {
			return nil, err
		}
		g.grants = grants
		g.closers = append(g.closers, grants.Close)
	}
	return g.grants, nil
}

// agentsAdmin is the admin API's view of the generation's brokers. Grants
// live in the one grant store, so the first broker lists a subject's grants
// (of every frontend) and revokes one by id; the others then forget it too,
// since only the broker of the grant's own frontend can have cached it.
type agentsAdmin struct{ bs []*agent.Broker }

func (a agentsAdmin) ListBySubject(ctx context.Context, sub string) ([]agent.Grant, error) {
	return a.bs[0].ListBySubject(ctx, sub)
}

func (a agentsAdmin) RevokeByID(ctx context.Context, id string) (agent.Grant, error) {
	g, err := a.bs[0].RevokeByID(ctx, id)
	for _, b := range a.bs[1:] {
		b.Forget(id)
	}
	return g, err
}

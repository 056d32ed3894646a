package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/proxy"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// stages is a frontend's request path, in order. This list is the one place
// the order is written; each stage's behaviour lives where its comment says.
func (g *Gateway) stages() []proxy.Stage {
	// identify: tried in order, the first identifier that recognises the
	// request wins. The agent-token (Authorization: Bearer gha_...) and
	// DPoP (Authorization: DPoP ...) identifiers join here, one line each.
	identifiers := pipeline.Chain{
		&cookieIdentifier{name: g.cfg.EffectiveCookieName(), sessions: g.sessions}, // below
	}
	if g.agents != nil {
		identifiers = append(identifiers, &agentIdentifier{broker: g.agents}) // Bearer gha_… (agents.go)
	}
	return []proxy.Stage{
		proxy.Route(),               // path cleaning, route, method, upgrade, body size (internal/proxy)
		proxy.CSRF(identifiers),     // cookie-borne requests only (internal/proxy/csrf.go)
		proxy.Identify(identifiers), // the Caller and its session (identifiers above; internal/session)
		proxy.Custom(agentScope{}),  // an agent stays inside its grant: route and method (agents.go)
		proxy.Custom(g.agentLimit),  // agents.rate_limit per agent token (agents.go; no-op without it)
		proxy.Custom(g.limits),      // per-caller rate limit and concurrency cap; tracks the session's requests (gateway/limits.go, internal/ratelimit)
		proxy.Endpoint(),            // composites are answered here; each call runs authorize..forward via Proxy.Call (gateway/composites.go, internal/compose)
		proxy.Authorize(),           // the route's CEL + PDP policy (internal/policy via routeAuthorizer)
		proxy.AttachCredential(),    // exactly the route's one credential (internal/proxy/credential.go, internal/oidc)
		proxy.Audit(),               // reserve the audit record: nothing is served unaudited (internal/audit)
		proxy.Forward(),             // hygiene, forwarding, then the audit record is committed (internal/proxy)
	}
}

// cookieIdentifier recognises the session cookie and loads its session.
type cookieIdentifier struct {
	name     string
	sessions *session.Manager
}

// Recognises looks for the cookie's name without parsing every cookie.
func (c *cookieIdentifier) Recognises(r *http.Request) bool {
	for _, h := range r.Header["Cookie"] {
		if strings.Contains(h, c.name) {
			return true
		}
	}
	return false
}

// CookieBorne: the browser sends the cookie with every request, so CSRF
// checks apply.
func (c *cookieIdentifier) CookieBorne() bool { return true }

func (c *cookieIdentifier) Identify(ctx context.Context, r *pipeline.Request) *pipeline.Refusal {
	ck, err := r.HTTP.Cookie(c.name)
	if err != nil || ck.Value == "" {
		return unauthenticated()
	}
	h, err := session.ParseHandle(ck.Value)
	if err != nil {
		return unauthenticated()
	}
	s, err := c.sessions.Load(ctx, h, true)
	switch {
	case errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrInvalidHandle):
		return unauthenticated()
	case err != nil:
		return &pipeline.Refusal{Status: http.StatusServiceUnavailable, Code: "session_unavailable", Message: "the session store is unavailable; try again shortly", Err: err}
	}
	r.Caller = pipeline.Caller{Kind: pipeline.SessionCookie, SessionID: s.ID, Handle: h, Session: s,
		Subject: s.Subject, Claims: s.Claims, IP: r.ClientIP}
	return nil
}

func unauthenticated() *pipeline.Refusal {
	return &pipeline.Refusal{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "sign in first (/bff/login)"}
}

package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/agent"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/dpop"
	"github.com/gatehouse-dev/gatehouse/internal/oauthserver"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// buildOAuth builds the OAuth front door (nil without an oauth section). Its
// DPoP replay cache is the session store, so every instance sharing the
// store refuses a proof another instance has seen. Agent clients get their
// grants from the agents broker (config refuses them without an agents
// section).
func (fe *frontend) buildOAuth(g *Gateway) (*oauthserver.Server, error) {
	cfg := fe.cfg
	if cfg.OAuth == nil {
		return nil, nil
	}
	reg, routes, err := oauthRegistry(cfg)
	if err != nil {
		return nil, err
	}
	v, err := dpop.NewVerifier(dpop.Options{Replay: fe.sessions, Now: g.opts.Now})
	if err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	o := oauthserver.Options{PublicURL: cfg.PublicURL, Registry: reg, Routes: routes, Sessions: fe.sessions,
		Login: fe.idp, DPoP: v, Auditor: g.audit, Client: cfg.Client, Now: g.opts.Now, Logger: g.log.With("component", "oauth", "client", cfg.Client),
		BrowserSession: browserSessionOf(cfg.EffectiveCookieName(), fe.sessions)}
	if fe.agents != nil {
		o.Agents = &agentGrants{b: fe.agents, delegable: delegable(cfg), maxTTL: cfg.Agents.MaxTTL, defaultTTL: cfg.Agents.DefaultTTL,
			mint: fe.agentMint, now: g.opts.Now}
	}
	return oauthserver.New(o)
}

// oauthRegistry builds the client registry (Check calls it too) and lists
// the routes clients may be granted: every route that needs a session.
func oauthRegistry(cfg *config.Config) (*oauthserver.Registry, []string, error) {
	routes := make([]string, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		if !r.Anonymous {
			routes = append(routes, r.Name)
		}
	}
	if cfg.OAuth == nil {
		return nil, routes, nil
	}
	specs := make([]oauthserver.ClientSpec, 0, len(cfg.OAuth.Clients))
	for _, c := range cfg.OAuth.Clients {
		specs = append(specs, c.Spec())
	}
	reg, err := oauthserver.NewRegistry(specs, routes)
	if err != nil {
		return nil, nil, fmt.Errorf("oauth: %w", err)
	}
	return reg, routes, nil
}

// browserSessionOf reads the user's browser session from the session
// cookie for the consent page; a native app's session never counts.
func browserSessionOf(cookie string, sessions *session.Manager) oauthserver.BrowserSession {
	return func(r *http.Request) (session.Handle, *session.Session, error) {
		c, err := r.Cookie(cookie)
		if err != nil || c.Value == "" {
			return session.Handle{}, nil, session.ErrNotFound
		}
		h, err := session.ParseHandle(c.Value)
		if err != nil {
			return session.Handle{}, nil, session.ErrNotFound
		}
		s, err := sessions.Load(r.Context(), h, true)
		switch {
		case err != nil:
			return session.Handle{}, nil, err
		case s.Native != nil:
			return session.Handle{}, nil, session.ErrNotFound
		}
		return h, s, nil
	}
}

// agentGrants adapts the agents broker to the front door's agent clients:
// the client id is the grant's name, the methods those each route serves
// (narrowed by the broker to the delegable routes, the user's own policy,
// max_ttl and the session's remaining lifetime).
type agentGrants struct {
	b                  *agent.Broker
	delegable          map[string][]string
	maxTTL, defaultTTL time.Duration
	mint               agent.PolicyFunc
	now                func() time.Time
}

func (a *agentGrants) Offer(s *session.Session, routes []string) ([]oauthserver.RouteScope, time.Duration) {
	out := make([]oauthserver.RouteScope, 0, len(routes))
	for _, r := range routes {
		if m, ok := a.delegable[r]; ok {
			out = append(out, oauthserver.RouteScope{Route: r, Methods: m})
		}
	}
	return out, min(a.defaultTTL, s.AbsoluteExpiry.Sub(a.now()))
}

func (a *agentGrants) Grant(ctx context.Context, h session.Handle, s *session.Session, clientID string, routes []string) (oauthserver.AgentToken, error) {
	var methods []string
	for _, r := range routes {
		for _, m := range a.delegable[r] {
			if !slices.Contains(methods, m) {
				methods = append(methods, m)
			}
		}
	}
	iss, err := a.b.Issue(ctx, h, s, agent.Request{Name: clientID, Routes: routes, Methods: methods}, a.mint)
	if errors.Is(err, agent.ErrNothingDelegable) {
		return oauthserver.AgentToken{}, oauthserver.ErrNothingGranted
	}
	if err != nil {
		return oauthserver.AgentToken{}, err
	}
	return oauthserver.AgentToken{Value: iss.Token.Value(), GrantID: iss.Grant.ID, SessionID: iss.Grant.SessionID,
		Expires: iss.Grant.Expires, Routes: iss.Grant.Routes()}, nil
}

func (a *agentGrants) RevokeID(ctx context.Context, sessionID, grantID string) error {
	if err := a.b.Revoke(ctx, sessionID, grantID); err != nil && !errors.Is(err, agent.ErrNotFound) {
		return err
	}
	return nil
}

func (a *agentGrants) RevokeToken(ctx context.Context, token, clientID string) (bool, error) {
	d, err := a.b.Authenticate(ctx, token)
	var ae *agent.AuthError
	switch {
	case errors.As(err, &ae):
		return false, nil
	case err != nil:
		return false, err
	case d.Grant.Name != clientID:
		return false, nil
	}
	return true, a.RevokeID(ctx, d.Grant.SessionID, d.Grant.ID)
}

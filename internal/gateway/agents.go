package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/agent"
	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/policy"
	"github.com/gatehouse-dev/gatehouse/internal/proxy"
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
		case errors.Is(err, session.ErrNotFound):
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

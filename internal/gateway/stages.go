package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/oauthserver"
	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/proxy"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// stages is a frontend's request path, in order. This list is the one place
// the order is written; each stage's behaviour lives where its comment says.
func (fe *frontend) stages() []proxy.Stage {
	// identify: tried in order, the first identifier that recognises the
	// request wins. The agent-token (Authorization: Bearer gha_...) and
	// DPoP (Authorization: DPoP ...) identifiers join here, one line each.
	cookies := &cookieIdentifier{name: fe.cfg.EffectiveCookieName(), sessions: fe.sessions} // below
	identifiers := pipeline.Chain{cookies}
	if fe.agents != nil {
		identifiers = append(identifiers, &agentIdentifier{broker: fe.agents}) // Bearer gha_… (agents.go)
	}
	if fe.oauth != nil {
		identifiers = append(identifiers,
			&nativeIdentifier{srv: fe.oauth},                      // Authorization: DPoP ghn_... (internal/oauthserver, internal/dpop)
			&challengeIdentifier{cookies: cookies, srv: fe.oauth}, // last: no credential at all -> 401 with the RFC 9728 challenge
		)
	}
	return []proxy.Stage{
		proxy.Route(),               // path cleaning, route, method, upgrade, body size (internal/proxy)
		proxy.CSRF(identifiers),     // cookie-borne requests only (internal/proxy/csrf.go)
		proxy.Identify(identifiers), // the Caller and its session (identifiers above; internal/session)
		proxy.Custom(agentScope{}),  // an agent stays inside its grant: route and method (agents.go)
		proxy.Custom(fe.agentLimit), // agents.rate_limit per agent token (agents.go; no-op without it)
		proxy.Custom(fe.limits),     // per-caller rate limit and concurrency cap; tracks the session's requests (gateway/limits.go, internal/ratelimit)
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
	case s.Native != nil:
		// A native app's handle is usable only with its DPoP key.
		return unauthenticated()
	}
	r.Caller = pipeline.Caller{Kind: pipeline.SessionCookie, SessionID: s.ID, Handle: h, Session: s,
		Subject: s.Subject, Claims: s.Claims, IP: r.ClientIP}
	return nil
}

func unauthenticated() *pipeline.Refusal {
	return &pipeline.Refusal{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "sign in first (/bff/login)"}
}

// nativeIdentifier recognises a native app's DPoP-bound handle
// (Authorization: DPoP ghn_..., or the handle wrongly sent as Bearer, which
// it refuses) and checks handle, proof and session in internal/oauthserver.
type nativeIdentifier struct{ srv *oauthserver.Server }

func (n *nativeIdentifier) Recognises(r *http.Request) bool { return oauthserver.RecognisesNative(r) }

// CookieBorne: the handle travels in Authorization, never ambiently.
func (n *nativeIdentifier) CookieBorne() bool { return false }

func (n *nativeIdentifier) Identify(ctx context.Context, r *pipeline.Request) *pipeline.Refusal {
	h, s, ierr := n.srv.Identify(ctx, r.HTTP, r.Route)
	if ierr != nil {
		ref := &pipeline.Refusal{Status: ierr.Status, Code: ierr.Code, Message: ierr.Message, Err: ierr.Err}
		if ierr.Challenge != "" {
			ref.Header = http.Header{"Www-Authenticate": {ierr.Challenge}}
		}
		return ref
	}
	r.Caller = pipeline.Caller{Kind: pipeline.Native, SessionID: s.ID, Handle: h, Session: s,
		Subject: s.Subject, Claims: s.Claims, IP: r.ClientIP}
	return nil
}

// challengeIdentifier is the chain's last entry: it recognises a request
// that carries no session cookie and that no identifier before it took, and
// refuses it 401 with the Bearer challenge naming the RFC 9728 document
// first and the DPoP challenge after it, so OAuth clients (MCP) can find
// the authorization server. Such a request holds no ambient credential, so
// CSRF does not apply to it; it never reaches an upstream either way.
type challengeIdentifier struct {
	cookies *cookieIdentifier
	srv     *oauthserver.Server
}

func (c *challengeIdentifier) Recognises(r *http.Request) bool { return !c.cookies.Recognises(r) }

func (c *challengeIdentifier) CookieBorne() bool { return false }

func (c *challengeIdentifier) Identify(_ context.Context, r *pipeline.Request) *pipeline.Refusal {
	ref := unauthenticated()
	ref.Message = "authenticate: sign in (/bff/login), or use the OAuth front door (" + oauthserver.ASMetadataPath + ")"
	ref.Header = http.Header{"Www-Authenticate": c.srv.Challenges(r.Route)}
	return ref
}

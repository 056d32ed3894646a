package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// The interfaces below are the proxy's seams: it owns them (consumer side) and
// the packages that implement sessions, OIDC, policy and audit are adapted to
// them when Gatehouse is wired together.

// ErrNoSession tells the proxy that the request has no usable session: no
// cookie, an unknown, expired or revoked session, or a refresh that the IdP
// refused (invalid_grant). Authenticator and UserTokens return it (possibly
// wrapped); the proxy answers 401. Any other error means a dependency is down.
var ErrNoSession = errors.New("no valid session")

// Identity is the caller a request acts for: the typed pipeline.Caller
// (SessionID keys the token-exchange cache and appears in audit records;
// Session and Handle are the loaded session, handed back to UserTokens).
type Identity = pipeline.Caller

// Authenticator finds the session a request carries (its cookie). It must
// not modify the request.
type Authenticator interface {
	// Authenticate returns the request's identity, ErrNoSession when there is
	// none, or another error when the session store cannot be reached.
	Authenticate(ctx context.Context, r *http.Request) (*Identity, error)
}

// UserTokens returns the signed-in user's current access token, refreshing it
// on demand. A refresh the IdP refuses ends the session: return ErrNoSession.
type UserTokens interface {
	AccessToken(ctx context.Context, id *Identity) (secret.Secret, error)
}

// Exchanger performs an RFC 8693 token exchange of the user's access token for
// a token for one audience. The proxy caches the result per session and route
// until shortly before expiry, and exchanges once for concurrent requests.
type Exchanger interface {
	Exchange(ctx context.Context, subjectToken secret.Secret, audience, scope, resource string) (token secret.Secret, expiry time.Time, err error)
}

// SessionExchanger is an Exchanger that exchanges the session's own
// current access token and returns an expiry capped at that token's
// (oidc.Tokens.ExchangeForSession). The proxy prefers it when the Exchanger
// implements it. It returns ErrNoSession (wrapped) when the session has ended.
type SessionExchanger interface {
	ExchangeForSession(ctx context.Context, id *Identity, audience, scope, resource string) (token secret.Secret, expiry time.Time, err error)
}

// ActorExchanger is an Exchanger that can name an agent as the RFC 8693
// actor (actor_token), so the downstream token carries act. Token exchange
// routes called by agents need it; the result is cached per agent.
type ActorExchanger interface {
	ExchangeAs(ctx context.Context, subjectToken secret.Secret, actor *pipeline.Agent, audience, scope, resource string) (token secret.Secret, expiry time.Time, err error)
}

// TokenSource returns Gatehouse's own client-credentials token for one route's
// scope and audience. Implementations cache and renew the token themselves
// (e.g. oauth2.ReuseTokenSource over clientcredentials.Config).
type TokenSource interface {
	Token(ctx context.Context) (secret.Secret, error)
}

// TokenSourceFunc adapts a function to TokenSource.
type TokenSourceFunc func(ctx context.Context) (secret.Secret, error)

// Token calls f.
func (f TokenSourceFunc) Token(ctx context.Context) (secret.Secret, error) { return f(ctx) }

// AuthzInput is what a route's Authorizer decides on. It is built from the
// request after path cleaning: Path is the cleaned path that is forwarded.
type AuthzInput struct {
	Route    string
	Method   string
	Path     string
	RawQuery string
	// Header is the client's request header, read-only (before hygiene:
	// policies may look at what the client sent; upstreams never see it).
	Header http.Header
	// Identity is nil on anonymous routes.
	Identity *Identity
	ClientIP netip.Addr
	// ClientIPText is ClientIP as text when the proxy has formatted it
	// already (it is formatted once per request for the policy and both
	// audit records); "" means format ClientIP.
	ClientIPText string
	// RequestID identifies the request in audit records and upstream logs.
	RequestID string

	// Reason may be set by the Authorizer to explain its decision (e.g.
	// "cel_denied", "pdp_timeout"); it goes into the audit record.
	Reason string
}

// Authorizer decides whether a request may pass. Errors deny (503).
type Authorizer interface {
	Authorize(ctx context.Context, in *AuthzInput) (allow bool, err error)
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(ctx context.Context, in *AuthzInput) (bool, error)

// Authorize calls f.
func (f AuthorizerFunc) Authorize(ctx context.Context, in *AuthzInput) (bool, error) {
	return f(ctx, in)
}

// AllowAll is the default policy of the design: any request that passed
// identification (a valid session, or none on an anonymous route) is allowed.
// Routes must name it explicitly (AllowAll{}), so a missing policy never
// allows silently.
type AllowAll struct{}

// Authorize allows.
func (AllowAll) Authorize(context.Context, *AuthzInput) (bool, error) { return true, nil }

// AuditEvent describes one decision about one request. It carries no token,
// no cookie and no query string.
type AuditEvent struct {
	Time     time.Time
	Route    string // "" when no route matched
	Method   string
	Path     string // cleaned path; "" when the path was rejected
	ClientIP netip.Addr
	// ClientIPText is ClientIP as text, when already formatted ("": not yet;
	// the auditor may fill it in so the second record reuses it).
	ClientIPText string
	Subject      string
	SessionID    string
	// Actor is the delegation chain when an agent acts for Subject.
	Actor []string
	// Decision is "allow" or "deny".
	Decision string
	// Status is the HTTP status answered (for "allow": the upstream's, set at Commit).
	Status int
	// Code is Gatehouse's error code when Gatehouse answered with an error.
	Code string
	// Reason is the Authorizer's explanation of its decision, if it gave one.
	Reason string
	// AuditReason is a refusal's own reason for the audit record (its
	// Refusal.AuditReason, e.g. an agent token's token_unknown), recorded
	// instead of Code.
	AuditReason string
	Credential  string
	// Upstream is the route's upstream base URL (no query, no user info).
	Upstream string
	// RequestID is also sent upstream and to the client as X-Request-Id.
	RequestID string
	// CorrelationID is shared by a composite's record and its calls'
	// records (WithCorrelation); "" for direct requests.
	CorrelationID string
}

// Auditor records decisions. An allowed request is reserved before it is
// forwarded and committed after: if Reserve fails the request is refused
// (503), so no request is ever served unaudited.
type Auditor interface {
	// Reserve durably records that ev is about to be forwarded. It must copy
	// what it keeps: the proxy fills in ev's outcome afterwards.
	Reserve(ctx context.Context, ev *AuditEvent) (Reservation, error)
	// Record records a request refused before forwarding. The request is
	// refused whatever Record returns; errors are logged.
	Record(ctx context.Context, ev *AuditEvent) error
}

// Reservation completes a reserved audit record with the outcome.
type Reservation interface {
	// Commit is called once, after the response (or its failure) is known;
	// ev is the reserved event with Status and Code filled in.
	Commit(ctx context.Context, ev *AuditEvent)
}

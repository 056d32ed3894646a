// Package pipeline holds the types one API request carries through
// Gatehouse's stages: the per-request Request, the typed Caller an
// identifier recognised, the one Refusal every stage answers with, and the
// Identifier chain. It has no behaviour of its own beyond writing a
// Refusal; the stages live in the packages that own their job (proxy:
// HTTP mechanics; gateway: identification and sessions; policy; audit).
package pipeline

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// CallerKind says how a request was identified.
type CallerKind uint8

// The kinds of caller.
const (
	// Anonymous: no identifier recognised the request (anonymous routes).
	Anonymous CallerKind = iota
	// SessionCookie: the browser's session cookie.
	SessionCookie
	// AgentBearer: an agent token (Authorization: Bearer gha_...).
	AgentBearer
	// Native: a DPoP-bound native-app session (Authorization: DPoP ...).
	Native
)

// String names the kind for logs and audit.
func (k CallerKind) String() string {
	switch k {
	case SessionCookie:
		return "session_cookie"
	case AgentBearer:
		return "agent"
	case Native:
		return "native"
	}
	return "anonymous"
}

// Agent describes the agent a request acts through (nil for users).
type Agent struct {
	Name string
	// ID is the agent grant's id; it keys rate limits and audit records.
	ID      string
	Routes  []string
	Methods []string
	// Expires is when the grant ends.
	Expires time.Time
	// Grant says exactly which (route, method) pairs the agent may call;
	// Routes × Methods only summarises it.
	Grant Scope
}

// Scope is an agent's grant as the request path checks it.
type Scope interface {
	Allows(route, method string) bool
}

// Actor is the agent's element of an audit record's actor chain
// ("agent:<grant id>:<name>"), acting for the record's sub.
func (a *Agent) Actor() []string { return []string{"agent:" + a.ID + ":" + a.Name} }

// Caller is who a request acts for, as an identifier recognised it. It is
// a value (no per-request allocation); the session is the loaded copy.
type Caller struct {
	Kind CallerKind
	// SessionID is the public session id ("" for anonymous callers).
	SessionID string
	// Handle is the session handle the credential named, or for an agent
	// the delegating session's (from its sealed grant; it never leaves the
	// process). Zero for anonymous callers.
	Handle session.Handle
	// Session is the loaded session; nil for anonymous callers.
	Session *session.Session
	Subject string
	Claims  map[string]any
	// Agent is nil for users.
	Agent *Agent
	// IP is the client address after trusted-proxy resolution.
	IP netip.Addr
}

// Permits reports whether the caller may call method on route as far as
// delegation goes: users always, agents only inside their grant.
func (c *Caller) Permits(route, method string) bool {
	if c.Kind != AgentBearer {
		return true
	}
	return c.Agent != nil && c.Agent.Grant != nil && c.Agent.Grant.Allows(route, method)
}

// Key is a stable key for per-caller limits: the session id, the agent
// grant id, the native handle id, or "ip:<addr>" for anonymous callers.
func (c *Caller) Key() string {
	switch c.Kind {
	case AgentBearer:
		if c.Agent != nil {
			return "agent:" + c.Agent.ID
		}
	case Native:
		return "native:" + c.Handle.ID()
	case SessionCookie:
		return "session:" + c.SessionID
	}
	return "ip:" + c.IP.String()
}

// Refusal is the one way a stage says no. It is written (JSON
// {"error","message"}), audited and counted in exactly one place, by the
// code that runs the stages. It implements error so Go callers of
// Pipeline.Call get it back as one.
type Refusal struct {
	// Status is the HTTP status answered.
	Status int
	// Code is the stable machine-readable error code (the metrics label).
	Code string
	// Message is for humans: what was wrong and how to fix it. It never
	// holds a secret or a value copied from the request.
	Message string
	// AuditReason, when set, is recorded instead of Code (e.g. the
	// policy's own cel_denied / pdp_timeout).
	AuditReason string
	// Header holds extra response headers (e.g. Allow for 405).
	Header http.Header
	// Unaudited, when true, means the refusal is counted but gets no audit
	// record of its own: an aggregating sampler has counted it and reports
	// the count in a later record (rate limits: a flood must not flood the
	// audit log, and no refusal goes unaccounted).
	Unaudited bool
	// Err is the operator-facing cause, logged, never sent to the client.
	Err error
}

// Error returns the code and message (and the cause, for operators).
func (r *Refusal) Error() string {
	s := r.Code + ": " + r.Message
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// Unwrap returns the operator-facing cause.
func (r *Refusal) Unwrap() error { return r.Err }

// Write sends the refusal as Gatehouse's JSON error response.
func (r *Refusal) Write(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range r.Header {
		h[k] = v
	}
	apierror.Write(w, r.Status, r.Code, r.Message)
}

// Request is one API request's state as the stages fill it in.
type Request struct {
	// HTTP is the request as received (stages must not modify it).
	HTTP *http.Request
	// ID is the request id (X-Request-Id to the client and the upstream).
	ID string
	// Start is when the request was received (the injected clock).
	Start time.Time
	// ClientIP is the peer, or the address a trusted proxy reported.
	ClientIP netip.Addr
	// Path is the cleaned path: the one matched, authorized and forwarded.
	Path string
	// Route is the matched route's name ("" before routing).
	Route string
	// Caller is who the request acts for (Anonymous until identified).
	Caller Caller
	// Reason is the policy's explanation of its decision, for audit.
	Reason string
}

// Stage is one step of the request path. It returns nil to let the request
// continue, or the Refusal that ends it.
type Stage interface {
	Run(ctx context.Context, r *Request) *Refusal
}

// Identifier recognises one kind of credential on a request. The first
// identifier in a Chain that recognises the request wins.
type Identifier interface {
	// Recognises reports, without I/O, whether the request carries this
	// identifier's credential.
	Recognises(r *http.Request) bool
	// CookieBorne reports whether the credential travels ambiently with
	// browser requests (a cookie): only such requests need the CSRF check.
	CookieBorne() bool
	// Identify fills r.Caller from the credential, or refuses (unknown,
	// expired or revoked credential: 401; dependency down: 503).
	Identify(ctx context.Context, r *Request) *Refusal
}

// Chain is the ordered list of identifiers. Adding an identifier (agent
// bearer tokens, DPoP) is adding one entry where the chain is built.
type Chain []Identifier

// Find returns the first identifier that recognises the request, or nil.
// A request carrying a cookie-borne credential and a non-cookie one is
// ambiguous and refused: which identity it acts for must never depend on
// the order identifiers are listed in.
func (c Chain) Find(r *http.Request) (Identifier, *Refusal) {
	var first Identifier
	cookie, other := false, false
	for _, id := range c {
		if !id.Recognises(r) {
			continue
		}
		if first == nil {
			first = id
		}
		if id.CookieBorne() {
			cookie = true
		} else {
			other = true
		}
	}
	if cookie && other {
		return nil, &Refusal{Status: http.StatusBadRequest, Code: "ambiguous_credentials",
			Message: "the request carries both a session cookie and an Authorization credential; send one"}
	}
	return first, nil
}

// Counter counts refusals and upstream failures. Labels are the stable
// code and the configured route name only: never a user, session or path.
type Counter interface {
	Refused(route, code string, status int)
	UpstreamError(route, kind string)
}

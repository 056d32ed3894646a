package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// Stage is one step of the proxy's request path. The built-in stages are
// the values returned below; a frontend's list of them is written once, in
// internal/gateway/stages.go. A pipeline.Stage from another package (the
// rate limiter) joins the list with Custom.
type Stage interface {
	run(ctx context.Context, p *Proxy, x *exchange) *pipeline.Refusal
}

// exchange is one request's state as the stages fill it in. It is pooled:
// nothing may keep a pointer to it after ServeHTTP returns.
type exchange struct {
	req     pipeline.Request
	w       http.ResponseWriter
	ev      AuditEvent
	rt      *route
	upgrade bool
	// found is the identifier that recognised the request (nil: none);
	// looked up once, by the first stage that needs it.
	found    pipeline.Identifier
	foundSet bool
	id       *Identity // nil on anonymous routes
	cred     secret.Secret
	res      Reservation
	// audit is false once the audit log itself refused (audit_unavailable).
	noAudit bool
	// rid is X-Request-Id's value, shared by the answer and the upstream request.
	rid []string
	// fwd is the forwarding state the reverse proxy's callbacks find in the
	// request context (part of the pooled exchange: one fewer allocation).
	fwd forwarding
	// done: an Endpoint answered the request; no later stage runs.
	done bool
}

// Route cleans the path (once: this exact path is matched, authorized and
// forwarded) and matches the route (longest prefix; the query never takes
// part), then checks method, upgrade and declared body size.
func Route() Stage { return routeStage{} }

type routeStage struct{}

func (routeStage) run(_ context.Context, p *Proxy, x *exchange) *pipeline.Refusal {
	r := x.req.HTTP
	path, err := cleanPath(r.URL.EscapedPath(), p.opts.MaxPathLength)
	if err != nil {
		return &pipeline.Refusal{Status: http.StatusBadRequest, Code: "bad_path", Message: err.Error() + ": request the canonical path"}
	}
	x.req.Path, x.ev.Path = path, path
	rt := p.routes.match(path)
	if rt == nil && p.opts.Endpoints != nil {
		if name, method, ok := p.opts.Endpoints.Endpoint(path); ok {
			rt = endpointRoute(name, method)
		}
	}
	if rt == nil {
		return &pipeline.Refusal{Status: http.StatusNotFound, Code: "no_route", Message: "no API route matches this path"}
	}
	x.rt = rt
	x.req.Route = rt.name
	x.ev.Route, x.ev.Credential, x.ev.Upstream = rt.name, string(rt.cred.Kind), rt.upString
	if p.fold.confused(path, rt) {
		return &pipeline.Refusal{Status: http.StatusBadRequest, Code: "ambiguous_path", Message: "this path names another route to upstreams that ignore case, trailing dots or spaces, or Unicode forms; request the route's exact path"}
	}
	if !slices.Contains(rt.methods, r.Method) {
		return &pipeline.Refusal{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "route " + rt.name + " allows " + rt.allow,
			Header: http.Header{"Allow": {rt.allow}}}
	}
	if status, code, msg := checkMethodOverride(rt, r); status != 0 {
		ref := &pipeline.Refusal{Status: status, Code: code, Message: msg}
		if status == http.StatusMethodNotAllowed {
			ref.Header = http.Header{"Allow": {rt.allow}}
		}
		return ref
	}
	x.upgrade = hasUpgrade(r.Header)
	if x.upgrade && !(rt.websocket && r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")) {
		return &pipeline.Refusal{Status: http.StatusForbidden, Code: "upgrade_not_allowed", Message: "route " + rt.name + " does not accept protocol upgrades"}
	}
	if rt.maxBody >= 0 && r.ContentLength > rt.maxBody {
		return &pipeline.Refusal{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: fmt.Sprintf("route %s accepts request bodies up to %d bytes", rt.name, rt.maxBody)}
	}
	return nil
}

// find looks up, once, which identifier of the chain recognises the request.
func (x *exchange) find(chain pipeline.Chain) *pipeline.Refusal {
	if x.foundSet {
		return nil
	}
	x.foundSet = true
	id, ref := chain.Find(x.req.HTTP)
	x.found = id
	return ref
}

// CSRF checks the CSRF header and Origin of cookie-borne requests (and of
// requests no identifier recognised, as anonymous routes are reached from
// browsers too). A request a non-cookie identifier recognises (agent
// token, DPoP) skips it: no ambient credential, no cross-site forgery.
func CSRF(chain pipeline.Chain) Stage { return csrfStage{chain} }

type csrfStage struct{ chain pipeline.Chain }

func (s csrfStage) run(_ context.Context, p *Proxy, x *exchange) *pipeline.Refusal {
	if ref := x.find(s.chain); ref != nil {
		return ref
	}
	// Anonymous routes are never identified, so the identifier cannot
	// vouch for them: they keep the check.
	if x.found != nil && !x.found.CookieBorne() && !x.rt.anonymous {
		return nil
	}
	if code, msg := p.csrf.check(x.req.HTTP.Header, x.upgrade); code != "" {
		return &pipeline.Refusal{Status: csrfStatus, Code: code, Message: msg}
	}
	return nil
}

// Identify runs the identifier chain: the first identifier that recognises
// the request fills the Caller (loading its session). Anonymous routes are
// not identified. A session route no identifier recognises is refused 401.
func Identify(chain pipeline.Chain) Stage { return identifyStage{chain} }

type identifyStage struct{ chain pipeline.Chain }

func (s identifyStage) run(ctx context.Context, p *Proxy, x *exchange) *pipeline.Refusal {
	if x.rt.anonymous {
		return nil
	}
	if ref := x.find(s.chain); ref != nil {
		return ref
	}
	if x.found == nil {
		return &pipeline.Refusal{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "sign in first (/bff/login)"}
	}
	if ref := x.found.Identify(ctx, &x.req); ref != nil {
		if ref.Err != nil {
			p.log.ErrorContext(ctx, "identification failed", "route", x.rt.name, "code", ref.Code, "err", ref.Err)
		}
		return ref
	}
	x.id = &x.req.Caller
	x.ev.Subject, x.ev.SessionID = x.id.Subject, x.id.SessionID
	if x.id.Agent != nil {
		x.ev.Actor = x.id.Agent.Actor()
	}
	return nil
}

// Custom adds a stage from another package (e.g. the rate limiter). It sees
// the request as identified so far.
func Custom(s pipeline.Stage) Stage { return customStage{s} }

type customStage struct{ s pipeline.Stage }

func (s customStage) run(ctx context.Context, _ *Proxy, x *exchange) *pipeline.Refusal {
	return s.s.Run(ctx, &x.req)
}

// Authorize evaluates the route's policy on exactly what is forwarded
// (cleaned path, client headers before hygiene); errors deny (503).
func Authorize() Stage { return authorizeStage{} }

type authorizeStage struct{}

func (authorizeStage) run(ctx context.Context, p *Proxy, x *exchange) *pipeline.Refusal {
	if x.rt.endpoint {
		return endpointMisrouted()
	}
	r := x.req.HTTP
	if x.ev.ClientIPText == "" && x.ev.ClientIP.IsValid() {
		x.ev.ClientIPText = x.ev.ClientIP.String() // once, for the policy and both audit records
	}
	in := AuthzInput{Route: x.rt.name, Method: r.Method, Path: x.req.Path, RawQuery: r.URL.RawQuery, Header: r.Header,
		Identity: x.id, ClientIP: x.ev.ClientIP, ClientIPText: x.ev.ClientIPText, RequestID: x.ev.RequestID}
	ref := p.authorize(ctx, x.rt, &x.ev, &in)
	x.req.Reason = in.Reason
	return ref
}

// Credential obtains exactly the route's one credential.
func AttachCredential() Stage { return credentialStage{} }

type credentialStage struct{}

func (credentialStage) run(ctx context.Context, p *Proxy, x *exchange) *pipeline.Refusal {
	if x.rt.endpoint {
		return endpointMisrouted()
	}
	var ref *pipeline.Refusal
	x.cred, ref = p.obtain(ctx, x.rt, x.id)
	return ref
}

// Audit reserves the request's audit record before anything is forwarded,
// so nothing is served unaudited; Forward completes it with the outcome.
func Audit() Stage { return auditStage{} }

type auditStage struct{}

func (auditStage) run(ctx context.Context, p *Proxy, x *exchange) *pipeline.Refusal {
	var ref *pipeline.Refusal
	x.res, ref = p.reserve(ctx, x.rt, &x.ev)
	if ref != nil {
		x.noAudit = true
	}
	return ref
}

// Forward sends the request upstream (hygiene, forwarding headers, the
// credential) and commits the audit record with the outcome. It must be
// the last stage, after Audit.
func Forward() Stage { return forwardStage{} }

type forwardStage struct{}

func (forwardStage) run(ctx context.Context, p *Proxy, x *exchange) *pipeline.Refusal {
	if x.rt.endpoint {
		return endpointMisrouted()
	}
	if x.res == nil {
		return &pipeline.Refusal{Status: http.StatusInternalServerError, Code: "not_audited", Message: "the request was not audited",
			Err: errors.New("stage list: Forward without Audit before it")}
	}
	rt, r, w := x.rt, x.req.HTTP, x.w
	st := &x.fwd
	*st = forwarding{path: upstreamPath(rt, x.req.Path), cred: x.cred, requestID: x.rid, status: http.StatusBadGateway, id: x.id}
	defer func() {
		x.ev.Status, x.ev.Code = st.status, st.code
		// The record is committed even when the client has gone away; the
		// context is detached only then (it costs an allocation).
		cctx := ctx
		if ctx.Err() != nil {
			cctx = context.WithoutCancel(ctx)
		}
		x.res.Commit(cctx, &x.ev)
	}()
	if rt.maxBody >= 0 && r.Body != nil && r.Body != http.NoBody {
		st.limited = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, rt.maxBody)}
	}
	rt.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, forwardingKey{}, st)))
	return nil
}

// authenticatorIdentifier adapts an Authenticator (Options.Authenticator)
// to the identifier chain: it claims every request, as a cookie would.
type authenticatorIdentifier struct{ a Authenticator }

func (authenticatorIdentifier) Recognises(*http.Request) bool { return true }
func (authenticatorIdentifier) CookieBorne() bool             { return true }

func (ai authenticatorIdentifier) Identify(ctx context.Context, r *pipeline.Request) *pipeline.Refusal {
	id, err := ai.a.Authenticate(ctx, r.HTTP)
	switch {
	case errors.Is(err, ErrNoSession) || (err == nil && id == nil):
		return &pipeline.Refusal{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "sign in first (/bff/login)"}
	case err != nil:
		return &pipeline.Refusal{Status: http.StatusServiceUnavailable, Code: "session_unavailable", Message: "the session store is unavailable; try again shortly", Err: err}
	}
	ip := r.Caller.IP
	r.Caller = *id
	if !r.Caller.IP.IsValid() {
		r.Caller.IP = ip
	}
	return nil
}

// DefaultStages is the stage list for Options.Authenticator (tests and
// callers that build no list of their own).
func DefaultStages(a Authenticator) []Stage {
	var chain pipeline.Chain
	if a != nil {
		chain = pipeline.Chain{authenticatorIdentifier{a}}
	}
	return []Stage{Route(), CSRF(chain), Identify(chain), Authorize(), AttachCredential(), Audit(), Forward()}
}

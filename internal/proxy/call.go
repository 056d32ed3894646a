package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"

	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
)

// Call runs the post-identify half of the pipeline — authorize, credential,
// forward, audit — for a caller already identified, and returns the
// upstream's response to Go code (composites). The call gets exactly the
// named route's policy, credential and audit record: path must be a path of
// that route. Refusals come back as a *pipeline.Refusal error (audited and
// counted like any other); the caller must close the response body.
//
// The policy sees no client headers (a composite's sub-call has none of
// its own) and the upstream receives only Gatehouse's headers.
func (p *Proxy) Call(ctx context.Context, caller *pipeline.Caller, route, method, path, rawQuery string, body io.Reader) (*http.Response, error) {
	ev := AuditEvent{Time: p.now(), Method: method, RequestID: newRequestID(), CorrelationID: correlationOf(ctx)}
	if caller != nil {
		ev.ClientIP = caller.IP
	}
	rt := p.byName(route)
	if rt == nil {
		ref := &pipeline.Refusal{Status: http.StatusNotFound, Code: "no_route", Message: "no API route is named " + route}
		p.account(ctx, &ev, ref, true)
		return nil, ref
	}
	ev.Route, ev.Credential, ev.Upstream = rt.name, string(rt.cred.Kind), rt.upString
	clean, err := cleanPath(path, p.opts.MaxPathLength)
	if err != nil {
		ref := &pipeline.Refusal{Status: http.StatusBadRequest, Code: "bad_path", Message: err.Error() + ": request the canonical path", Err: err}
		p.account(ctx, &ev, ref, true)
		return nil, ref
	}
	ev.Path = clean
	if p.routes.match(clean) != rt {
		ref := &pipeline.Refusal{Status: http.StatusNotFound, Code: "no_route", Message: "the path is not a path of route " + rt.name}
		p.account(ctx, &ev, ref, true)
		return nil, ref
	}
	if p.fold.confused(clean, rt) {
		ref := &pipeline.Refusal{Status: http.StatusBadRequest, Code: "ambiguous_path", Message: "this path names another route to upstreams that ignore case, trailing dots or spaces, or Unicode forms"}
		p.account(ctx, &ev, ref, true)
		return nil, ref
	}
	if !slices.Contains(rt.methods, method) {
		ref := &pipeline.Refusal{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "route " + rt.name + " allows " + rt.allow,
			Header: http.Header{"Allow": {rt.allow}}}
		p.account(ctx, &ev, ref, true)
		return nil, ref
	}
	var id *Identity
	if !rt.anonymous {
		if caller == nil || caller.Kind == pipeline.Anonymous {
			ref := &pipeline.Refusal{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "sign in first (/bff/login)"}
			p.account(ctx, &ev, ref, true)
			return nil, ref
		}
		id = caller
		ev.Subject, ev.SessionID = id.Subject, id.SessionID
		if id.Agent != nil {
			ev.Actor = id.Agent.Actor()
		}
		// An agent's sub-call (a composite's) stays inside its grant, exactly
		// like its direct requests (the agent-scope stage).
		if !id.Permits(rt.name, method) {
			ref := AgentScopeRefusal(rt.name)
			p.account(ctx, &ev, ref, true)
			return nil, ref
		}
	}
	in := AuthzInput{Route: rt.name, Method: method, Path: clean, RawQuery: rawQuery, Header: http.Header{},
		Identity: id, ClientIP: ev.ClientIP, RequestID: ev.RequestID}
	cred, res, ref, audit := p.admit(ctx, rt, &ev, &in, id)
	if ref != nil {
		p.account(ctx, &ev, ref, audit)
		return nil, ref
	}
	status, code := http.StatusBadGateway, "upstream_unavailable"
	defer func() {
		ev.Status, ev.Code = status, code
		res.Commit(context.WithoutCancel(ctx), &ev)
	}()

	u := &url.URL{Scheme: rt.upstream.Scheme, Host: rt.upstream.Host, Path: upstreamPath(rt, clean), RawQuery: rawQuery}
	// The forwarding state lets retry401 refresh and retry once on a 401.
	st := &forwarding{cred: cred, id: id}
	out, err := http.NewRequestWithContext(context.WithValue(ctx, forwardingKey{}, st), method, u.String(), body)
	if err != nil {
		return nil, &pipeline.Refusal{Status: status, Code: code, Message: "the upstream request could not be built", Err: err}
	}
	out.Header["X-Request-Id"] = []string{ev.RequestID}
	out.Header["X-Forwarded-Host"] = p.fwdHost
	switch rt.cred.Kind {
	case CredentialNone:
	case CredentialHeader:
		out.Header[rt.credHeader] = []string{cred.Reveal()}
	default:
		out.Header["Authorization"] = []string{"Bearer " + cred.Reveal()}
	}
	resp, err := p.transportOf(rt).RoundTrip(out)
	if err != nil {
		p.upstreamFailed(rt.name, "unavailable")
		p.count(rt.name, code, status)
		return nil, &pipeline.Refusal{Status: status, Code: code, Message: "the upstream of route " + rt.name + " could not be reached", Err: err}
	}
	resp.Request = out
	if err := modifyResponse(rt, resp); err != nil {
		resp.Body.Close()
		status, code = http.StatusBadGateway, "upstream_unauthorized"
		if resp.StatusCode == http.StatusUnauthorized && userCredential(rt.cred.Kind) {
			// As on a direct request: the user's token was refused even
			// after one refresh and retry (retry401), so the caller can
			// sign in again (Duende's semantics).
			status = http.StatusUnauthorized
		}
		kind := "unauthorized"
		if resp.StatusCode == http.StatusForbidden {
			status, code, kind = http.StatusForbidden, "upstream_forbidden", "forbidden"
		}
		p.upstreamFailed(rt.name, kind)
		p.count(rt.name, code, status)
		return nil, &pipeline.Refusal{Status: status, Code: code, Message: "the upstream of route " + rt.name + " refused Gatehouse's credential", Err: err}
	}
	status, code = resp.StatusCode, ""
	return resp, nil
}

// byName finds a route by its configured name.
func (p *Proxy) byName(name string) *route {
	for _, rt := range p.all {
		if rt.name == name {
			return rt
		}
	}
	return nil
}

// transportOf is the route's transport as its forwarder uses it (wrapped
// for tracing when configured).
func (p *Proxy) transportOf(rt *route) http.RoundTripper {
	if rp, ok := rt.proxy.(*httputil.ReverseProxy); ok && rp.Transport != nil {
		return rp.Transport
	}
	return rt.transport
}

// count counts a refusal that is not a pre-forwarding one (upstream failures).
func (p *Proxy) count(route, code string, status int) {
	if p.opts.Counter != nil {
		p.opts.Counter.Refused(route, code, status)
	}
}

// AgentScopeRefusal is the answer to an agent calling a route or method
// outside its grant: 403, and nothing reaches the upstream.
func AgentScopeRefusal(route string) *pipeline.Refusal {
	return &pipeline.Refusal{Status: http.StatusForbidden, Code: "agent_scope",
		Message: "this agent token does not grant " + route + " with this method; ask the user for a token that does"}
}

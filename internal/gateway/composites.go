package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gatehouse-dev/gatehouse/internal/agent"
	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/compose"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/policy"
	"github.com/gatehouse-dev/gatehouse/internal/proxy"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// BuildComposites compiles the configuration's composites against its
// routes (internal/compose). Problems — an unknown route, a depends_on
// cycle, a template naming an unknown call, a shape that does not compile,
// a path a route also serves — come back as config problems at file:line.
// `gatehouse check` and `serve` both call it. It returns nil, nil when there
// are no composites.
func BuildComposites(cfg *config.Config) (*compose.Set, error) {
	if len(cfg.Composites) == 0 {
		return nil, nil
	}
	// compose reports positions as text; remember which config.Pos each
	// text stands for so problems keep their file, line and column.
	at := map[string]config.Pos{}
	pos := func(p config.Pos) string {
		s := p.String()
		if _, ok := at[s]; !ok {
			at[s] = p
		}
		return s
	}
	fieldPos := func(m map[string]config.Pos) map[string]string {
		out := make(map[string]string, len(m))
		for k, p := range m {
			out[k] = pos(p)
		}
		return out
	}
	specs := make([]compose.Spec, 0, len(cfg.Composites))
	for _, c := range cfg.Composites {
		s := compose.Spec{Name: c.Name, Path: c.Path, Method: c.Method, Timeout: c.Timeout, Shape: c.Shape.Source,
			Key: c.Key, Pos: pos(c.Pos), FieldPos: fieldPos(c.FieldPos)}
		if c.Shape.Source != "" {
			shape := c.Shape
			s.ShapePos = func(line, col int) string {
				p := shape.ProblemAt(line, col, "")
				return pos(config.Pos{File: p.File, Line: p.Line, Column: p.Column})
			}
		}
		for _, k := range c.Calls {
			s.Calls = append(s.Calls, compose.CallSpec{Name: k.Name, Route: k.Route, Path: k.Path, Method: k.Method,
				Query: k.Query, Optional: k.Optional, Timeout: k.Timeout, DependsOn: k.DependsOn, MaxBody: k.MaxBody,
				Pos: pos(k.Pos), FieldPos: fieldPos(k.FieldPos)})
		}
		specs = append(specs, s)
	}
	routes := make([]compose.RouteInfo, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		routes = append(routes, compose.RouteInfo{Name: r.Name, Path: r.Path, Methods: r.Methods, Timeout: r.Timeout})
	}
	set, err := compose.Compile(specs, routes)
	var ce *compose.Errors
	if errors.As(err, &ce) {
		errs := &config.Errors{}
		for _, p := range ce.Problems {
			cp, ok := at[p.Pos]
			if !ok {
				cp = cfg.Composites[min(max(p.Composite, 0), len(cfg.Composites)-1)].Pos
			}
			errs.Add(cp.Problem(p.Key, p.Message))
		}
		return nil, errs.ErrOrNil()
	}
	if err != nil {
		return nil, err
	}
	return set, nil
}

// composites serves the compiled composites as proxy Endpoints: the
// route-level stages (path, method, CSRF, identify, limit) have passed when
// ServeEndpoint runs; each call then goes through Proxy.Call for the same
// Caller, getting its route's policy, credential and audit record.
type composites struct {
	set   *compose.Set
	proxy func() *proxy.Proxy // set after the proxy is built (it holds these endpoints)
	audit *auditor
}

func (c *composites) Endpoint(path string) (string, string, bool) {
	cp, _ := c.set.Match(path)
	if cp == nil {
		return "", "", false
	}
	return cp.Name(), cp.Method(), true
}

// Paths lists the composites' paths, so the proxy mounts them.
func (c *composites) Paths() []string {
	out := make([]string, 0, len(c.set.Composites()))
	for _, cp := range c.set.Composites() {
		out = append(out, cp.Path())
	}
	return out
}

func (c *composites) ServeEndpoint(ctx context.Context, w http.ResponseWriter, r *pipeline.Request) {
	cp, params := c.set.Match(r.Path)
	caller := r.Caller // one copy, shared by every call of this request
	ev := &proxy.AuditEvent{Time: r.Start, Route: cp.Name(), Method: r.HTTP.Method, Path: r.Path, ClientIP: r.ClientIP,
		Subject: caller.Subject, SessionID: caller.SessionID, Credential: "composite", RequestID: r.ID, CorrelationID: r.ID}
	if caller.Agent != nil {
		if call, ok := agentCovers(caller.Agent, cp); !ok {
			c.refuse(ctx, w, ev, http.StatusForbidden, "agent_not_granted",
				"the agent's grant does not cover call "+strconv.Quote(call)+" of composite "+strconv.Quote(cp.Name()))
			return
		}
	}
	res, err := c.audit.Reserve(ctx, ev)
	if err != nil {
		c.refuse(ctx, w, ev, http.StatusServiceUnavailable, "audit_unavailable", "the audit log is unavailable; try again shortly")
		return
	}
	p := c.proxy()
	// Copies: a shared in-flight call may outlive this request, and r is
	// recycled when it ends.
	corr := r.ID
	doer := compose.DoerFunc(func(ctx context.Context, route, method, path string, q url.Values) (*http.Response, error) {
		if caller.Agent != nil && !agentAllows(caller.Agent, route, method) {
			return nil, &compose.Refused{Status: http.StatusForbidden, Code: "agent_not_granted"}
		}
		// compose hands over the cleaned (decoded) path; Call cleans the
		// escaped form again, so a value can never re-introduce a separator.
		resp, err := p.Call(proxy.WithCorrelation(ctx, corr), &caller, route, method, (&url.URL{Path: path}).EscapedPath(), q.Encode(), nil)
		var ref *pipeline.Refusal
		if errors.As(err, &ref) && ref.Code != "upstream_unavailable" {
			status := ref.Status
			if ref.Code == "policy_denied" {
				status = http.StatusForbidden
			} else if status == http.StatusForbidden {
				status = http.StatusBadGateway // 403 means "the route's policy said no" to compose
			}
			return nil, &compose.Refused{Status: status, Code: ref.Code}
		}
		return resp, err
	})
	rep := cp.Serve(w, r.HTTP, &compose.Input{Doer: doer, CallerKey: caller.Key(), Claims: caller.Claims,
		Params: params, CorrelationID: r.ID})
	ev.Decision, ev.Status, ev.Code = "allow", rep.Status, rep.Error
	if rep.FailedCall != "" {
		ev.Reason = "call:" + rep.FailedCall
	}
	res.Commit(context.WithoutCancel(ctx), ev)
}

func (c *composites) refuse(ctx context.Context, w http.ResponseWriter, ev *proxy.AuditEvent, status int, code, msg string) {
	apierror.Write(w, status, code, msg)
	ev.Decision, ev.Status, ev.Code = "deny", status, code
	_ = c.audit.Record(context.WithoutCancel(ctx), ev)
	c.audit.metrics.Refused(ev.Route, code, status)
}

// agentCovers reports whether an agent's grant covers every required call's
// route and method; when not, it names the first call that is not.
func agentCovers(a *pipeline.Agent, cp *compose.Composite) (string, bool) {
	for _, k := range cp.Calls() {
		if !k.Optional && !agentAllows(a, k.Route, k.Method) {
			return k.Name, false
		}
	}
	return "", true
}

// agentAllows reports whether the agent's grant allows method on route
// (the exact (route, method) pairs granted; a caller without a grant is
// allowed nothing).
func agentAllows(a *pipeline.Agent, route, method string) bool {
	return a.Grant != nil && a.Grant.Allows(route, method)
}

// compositeMint extends the mint policy to composites: a composite has no
// policy of its own, so a user may delegate it only when the user's own
// policy allows every required call's route and method (each call is still
// checked on every request).
func compositeMint(cfg *config.Config, next agent.PolicyFunc) agent.PolicyFunc {
	calls := map[string][]config.CompositeCall{}
	for _, c := range cfg.Composites {
		calls[c.Name] = c.Calls
	}
	return func(ctx context.Context, s *session.Session, route, method string, a *policy.AgentInfo) (bool, error) {
		cs, ok := calls[route]
		if !ok {
			return next(ctx, s, route, method, a)
		}
		for _, k := range cs {
			if k.Optional {
				continue
			}
			m := k.Method
			if m == "" {
				m = http.MethodGet
			}
			if ok, err := next(ctx, s, k.Route, m, a); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	}
}

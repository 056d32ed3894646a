package compose

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Set is the compiled composites of one frontend. It is safe for concurrent
// use; it holds the in-flight calls shared between requests of one caller.
type Set struct {
	all     []*Composite
	exact   map[string]*Composite
	params  []*Composite
	flights *flights
}

// Composites returns the composites in configuration order.
func (s *Set) Composites() []*Composite { return s.all }

// Match returns the composite whose path matches the cleaned request path,
// and its path parameters; nil when none does. At most one can match
// (Compile rejects overlapping paths).
func (s *Set) Match(path string) (*Composite, Params) {
	if s == nil {
		return nil, Params{}
	}
	if c, ok := s.exact[path]; ok {
		return c, Params{}
	}
	if len(s.params) == 0 || len(path) < 2 || path[0] != '/' {
		return nil, Params{}
	}
	for _, c := range s.params {
		if p, ok := c.match(path[1:]); ok {
			return c, p
		}
	}
	return nil, Params{}
}

// Params are a matched composite path's parameter values (decoded segments).
type Params struct {
	names []string
	vals  [maxParams]string
}

// Get returns the value of parameter name, "" when there is none.
func (p Params) Get(name string) string {
	for i, n := range p.names {
		if n == name {
			return p.vals[i]
		}
	}
	return ""
}

func (c *Composite) match(rest string) (Params, bool) {
	p := Params{names: c.paramNames}
	n := 0
	for i, sg := range c.segs {
		seg := rest
		j := strings.IndexByte(rest, '/')
		if j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		} else {
			rest = ""
		}
		last := i == len(c.segs)-1
		if j >= 0 == last { // too many or too few segments
			return Params{}, false
		}
		if sg.param {
			if seg == "" {
				return Params{}, false
			}
			p.vals[n] = seg
			n++
		} else if seg != sg.text {
			return Params{}, false
		}
	}
	return p, true
}

// Composite is one compiled composite endpoint.
type Composite struct {
	name, path string
	method     string
	timeout    time.Duration
	segs       []pathSeg
	paramNames []string
	nparams    int
	calls      []*call
	shape      *shape // nil: one member per call
	set        *Set
}

// call is one compiled call.
type call struct {
	idx         int
	name, route string
	method      string
	routePath   string
	routePrefix bool
	path        template
	query       []queryTmpl
	optional    bool
	timeout     time.Duration
	maxBody     int64
	deps        []int
	dependents  []int
}

type queryTmpl struct {
	name string
	t    template
}

// Name returns the composite's name.
func (c *Composite) Name() string { return c.name }

// Path returns the composite's path as configured ("/api/orders/{id}").
func (c *Composite) Path() string { return c.path }

// Method returns the one method the composite answers.
func (c *Composite) Method() string { return c.method }

// Timeout returns the whole composite's deadline.
func (c *Composite) Timeout() time.Duration { return c.timeout }

// CallRef describes one call for checks made before serving (e.g. an agent's
// grant must cover every required call's route and method).
type CallRef struct {
	Name, Route, Method string
	Optional            bool
}

// Calls returns the composite's calls in configuration order.
func (c *Composite) Calls() []CallRef {
	out := make([]CallRef, len(c.calls))
	for i, k := range c.calls {
		out[i] = CallRef{Name: k.name, Route: k.route, Method: k.method, Optional: k.optional}
	}
	return out
}

// Input is one composite request of an identified caller.
type Input struct {
	// Doer runs the calls for this caller (required).
	Doer Doer
	// CallerKey identifies the caller for sharing identical in-flight GET
	// calls: it must differ whenever the pipeline could decide or credential
	// differently (session, agent token, device handle). "" shares nothing.
	CallerKey string
	// Claims are the caller's claims ({user.<claim>} and `user` in shapes).
	Claims map[string]any
	// Params are the path parameters from Set.Match.
	Params Params
	// Query is the composite request's query as the pipeline checked it;
	// nil means parse the request's own.
	Query url.Values
	// CorrelationID is shared by the composite's audit record and its calls'.
	CorrelationID string
}

// CallOutcome is what happened to one call, for the audit record.
type CallOutcome struct {
	Name, Route, Method string
	Path                string // the cleaned path called; "" when the call never ran
	Optional            bool
	// Started is false when the call never reached the Doer (a dependency
	// failed, a template value was unusable, or the composite had already failed).
	Started bool
	// Status is the upstream's HTTP status, 0 when there was none.
	Status int
	Code   Code
	// RefusalCode and RefusalStatus are the pipeline's, when Code is denied or refused.
	RefusalCode   string
	RefusalStatus int
	// Placeholder names the template placeholder at fault for bad_input and
	// bad_result_value (as written, never its value).
	Placeholder string
	// SharedFrom is set when an identical in-flight call of the same caller
	// answered this one: the correlation id of the request that made it (the
	// call's own audit record carries that id).
	SharedFrom string
	Duration   time.Duration
}

// Report is the outcome of one composite request.
type Report struct {
	Composite     string
	CorrelationID string
	// Status is what the client was answered; 499 when the client went away
	// (nothing was written).
	Status int
	// Error is the composite's error code ("" on success): composite_call_failed,
	// composite_call_denied, composite_call_refused, composite_bad_input,
	// composite_shape_failed, method_not_allowed, composite_misconfigured,
	// client_closed_request.
	Error string
	// FailedCall names the required call that failed the composite.
	FailedCall string
	Calls      []CallOutcome
	Duration   time.Duration
}

// Serve answers one composite request: it runs the calls through in.Doer,
// shapes the results and writes the JSON answer (Content-Type:
// application/json, Cache-Control: no-store). It returns what happened, for
// one audit record of the composite (the calls' own records come from the
// Doer). r's context ending (the client going away) cancels every call.
func (c *Composite) Serve(w http.ResponseWriter, r *http.Request, in *Input) *Report {
	start := time.Now()
	rep := &Report{Composite: c.name, CorrelationID: in.CorrelationID}
	if r.Method != c.method {
		w.Header().Set("Allow", c.method)
		rep.Status, rep.Error = http.StatusMethodNotAllowed, "method_not_allowed"
		writeError(w, rep.Status, rep.Error, "composite "+strconv.Quote(c.name)+" answers "+c.method+" only", "", "")
		rep.Duration = time.Since(start)
		return rep
	}
	if in.Doer == nil { // a wiring mistake; refuse rather than panic mid-request
		rep.Status, rep.Error = http.StatusInternalServerError, "composite_misconfigured"
		writeError(w, rep.Status, rep.Error, "composite "+strconv.Quote(c.name)+" has no route pipeline to call through", "", "")
		rep.Duration = time.Since(start)
		return rep
	}
	if in.Query == nil {
		in.Query = r.URL.Query()
	}
	body := c.run(r.Context(), in, rep, make([]byte, 0, 1024))
	if rep.Status == statusClientClosed {
		rep.Duration = time.Since(start)
		return rep
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(rep.Status)
	_, _ = w.Write(body)
	rep.Duration = time.Since(start)
	return rep
}

const statusClientClosed = 499

// run executes the calls and returns the answer's body; rep gets the status
// and outcomes.
func (c *Composite) run(parent context.Context, in *Input, rep *Report, buf []byte) []byte {
	ctx, cancelDeadline := context.WithTimeoutCause(parent, c.timeout, errCompositeTimeout)
	defer cancelDeadline()
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)

	n := len(c.calls)
	v := &values{claims: in.Claims, params: in.Params.vals[:c.nparams], query: in.Query, results: make([]any, n)}
	rep.Calls = make([]CallOutcome, n)
	pending := make([]int, n)
	settled := make([]bool, n)
	done := make(chan completion, n)
	var inline []completion
	left := n
	failed := -1 // the required call that failed the composite

	launch := func(k *call) {
		out := CallOutcome{Name: k.name, Route: k.route, Method: k.method, Optional: k.optional}
		if failed >= 0 || ctx.Err() != nil {
			out.Code = ctxCode(ctx, CodeCancelled)
			if failed >= 0 {
				out.Code = CodeCancelled
			}
			inline = append(inline, completion{idx: k.idx, f: fetched{code: out.Code}, out: out})
			return
		}
		path, fl := k.path.expandPath(v, k.routePath, k.routePrefix)
		var q url.Values
		if fl == nil && len(k.query) > 0 {
			q = make(url.Values, len(k.query))
			for _, qt := range k.query {
				var s string
				if s, fl = qt.t.expandQuery(v); fl != nil {
					break
				}
				q[qt.name] = []string{s}
			}
		}
		if fl != nil {
			out.Code, out.Placeholder = fl.code, fl.placeholder
			inline = append(inline, completion{idx: k.idx, f: fetched{code: fl.code}, out: out})
			return
		}
		go c.execCall(ctx, in, k, path, q, done)
	}
	for _, k := range c.calls {
		pending[k.idx] = len(k.deps)
		if len(k.deps) == 0 {
			launch(k)
		}
	}
	for left > 0 {
		var m completion
		if len(inline) > 0 {
			m, inline = inline[0], inline[1:]
		} else {
			m = <-done
		}
		if settled[m.idx] {
			continue
		}
		settled[m.idx] = true
		left--
		k := c.calls[m.idx]
		m.out.Code, m.out.Status = m.f.code, m.f.status
		m.out.RefusalCode, m.out.RefusalStatus = m.f.refusal, m.f.refStat
		rep.Calls[m.idx] = m.out
		if m.f.code == CodeOK {
			v.results[m.idx] = m.f.result
			for _, d := range k.dependents {
				if pending[d]--; pending[d] == 0 {
					launch(c.calls[d])
				}
			}
			continue
		}
		if !k.optional && failed < 0 {
			failed = m.idx
			abort(errAborted) // cancel every other call
		}
		skip := CodeDependency
		if failed >= 0 || ctx.Err() != nil {
			skip = CodeCancelled // the composite has failed or ended anyway
		}
		for _, d := range k.dependents {
			if !settled[d] {
				dk := c.calls[d]
				inline = append(inline, completion{idx: d, f: fetched{code: skip},
					out: CallOutcome{Name: dk.name, Route: dk.route, Method: dk.method, Optional: dk.optional}})
			}
		}
	}
	// left is 0: every launched call has sent its completion.

	if parent.Err() != nil {
		rep.Status, rep.Error = statusClientClosed, "client_closed_request"
		return buf
	}
	if failed >= 0 {
		return c.failure(rep, failed, buf)
	}
	return c.answer(ctx, in, v, rep, buf)
}

// failure writes the answer for a failed required call: it names the call
// and its outcome code, and carries nothing from any call's answer.
func (c *Composite) failure(rep *Report, idx int, buf []byte) []byte {
	o := &rep.Calls[idx]
	rep.FailedCall = o.Name
	name := strconv.Quote(o.Name)
	var msg string
	switch o.Code {
	case CodeDenied:
		rep.Status, rep.Error = http.StatusForbidden, "composite_call_denied"
		msg = "call " + name + " was refused by its route's policy"
	case CodeRefused:
		rep.Status, rep.Error = http.StatusBadGateway, "composite_call_refused"
		switch o.RefusalStatus {
		case http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusServiceUnavailable:
			rep.Status = o.RefusalStatus
		}
		msg = "call " + name + " was refused by its route (" + o.RefusalCode + ")"
	case CodeBadInput:
		rep.Status, rep.Error = http.StatusBadRequest, "composite_bad_input"
		msg = "call " + name + ": " + o.Placeholder + " is missing or cannot be used as one path segment or query value"
	default:
		rep.Status, rep.Error = http.StatusBadGateway, "composite_call_failed"
		msg = "call " + name + " failed: " + string(o.Code)
	}
	return appendErrorBody(buf, rep.Error, msg, o.Name, o.Code)
}

// answer shapes the results.
func (c *Composite) answer(ctx context.Context, in *Input, v *values, rep *Report, buf []byte) []byte {
	var errs []byte
	for i := range rep.Calls {
		o := &rep.Calls[i]
		if o.Code == CodeOK {
			continue
		}
		if errs == nil {
			errs = append(errs, '[')
		} else {
			errs = append(errs, ',')
		}
		errs = append(errs, `{"call":`...)
		errs = appendString(errs, o.Name)
		errs = append(errs, `,"code":`...)
		errs = appendString(errs, string(o.Code))
		errs = append(errs, '}')
	}
	if errs != nil {
		errs = append(errs, ']')
	}
	rep.Status = http.StatusOK
	if c.shape == nil {
		buf = append(buf, '{')
		for i, k := range c.calls {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, k.name)
			buf = append(buf, ':')
			var err error
			if buf, err = appendNative(buf, v.results[i], 0); err != nil {
				return c.shapeFailed(rep, buf[:0], err)
			}
		}
		buf = append(buf, '}')
		if errs != nil {
			buf = appendErrorsMember(buf, 0, errs)
		}
		return buf
	}
	calls := make(map[string]any, len(c.calls))
	for i, k := range c.calls {
		calls[k.name] = v.results[i]
	}
	act := &shapeAct{sh: c.shape, calls: calls, user: in.Claims, param: c.paramMap(in.Params), query: singleValued(in.Query), results: v.results}
	if act.user == nil {
		act.user = map[string]any{}
	}
	out, err := c.shape.eval(ctx, act, buf, errs)
	if err != nil {
		return c.shapeFailed(rep, buf[:0], err)
	}
	return out
}

func (c *Composite) shapeFailed(rep *Report, buf []byte, err error) []byte {
	rep.Status, rep.Error = http.StatusBadGateway, "composite_shape_failed"
	return appendErrorBody(buf, rep.Error, "composite "+strconv.Quote(c.name)+": "+err.Error(), "", "")
}

func (c *Composite) paramMap(p Params) map[string]string {
	m := make(map[string]string, c.nparams)
	for i, n := range c.paramNames {
		m[n] = p.vals[i]
	}
	return m
}

// singleValued keeps the parameters given exactly once: one given twice is
// ambiguous and is not offered to the shape (as to templates).
func singleValued(q url.Values) map[string]string {
	m := make(map[string]string, len(q))
	for k, vs := range q {
		if len(vs) == 1 {
			m[k] = vs[0]
		}
	}
	return m
}

func appendErrorBody(buf []byte, code, msg, callName string, reason Code) []byte {
	buf = append(buf, `{"error":`...)
	buf = appendString(buf, code)
	buf = append(buf, `,"message":`...)
	buf = appendString(buf, msg)
	if callName != "" {
		buf = append(buf, `,"call":`...)
		buf = appendString(buf, callName)
		buf = append(buf, `,"reason":`...)
		buf = appendString(buf, string(reason))
	}
	return append(buf, "}\n"...)
}

func writeError(w http.ResponseWriter, status int, code, msg, callName string, reason Code) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(appendErrorBody(nil, code, msg, callName, reason))
}

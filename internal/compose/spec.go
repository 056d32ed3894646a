package compose

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/proxy"
)

// Defaults for Spec and CallSpec fields left zero.
const (
	// DefaultCallTimeout is a call's timeout when neither the call nor its
	// route (RouteInfo.Timeout) gives one; it matches the proxy's default.
	DefaultCallTimeout = proxy.DefaultTimeout
	// DefaultMaxBody bounds a call's response body (bytes).
	DefaultMaxBody = 1 << 20
	// maxParams bounds the {parameters} of one composite path.
	maxParams = 8
)

// Spec is one composite as the configuration describes it.
type Spec struct {
	Name string
	// Path is matched exactly against the cleaned request path; a whole
	// segment may be a parameter, "{id}", matching one non-empty segment.
	Path string
	// Method the composite answers; "" means GET.
	Method string
	// Timeout is the whole composite's deadline; 0 means the longest call
	// timeout.
	Timeout time.Duration
	// Calls in configuration order (order only matters for error messages
	// and the default shape's member order).
	Calls []CallSpec
	// Shape is a CEL expression yielding a JSON object; "" means an object
	// with one member per call.
	Shape string

	// Key names the composite in problems (e.g. "composites[0]"); "" means
	// composites[<name>].
	Key string
	// Pos locates the composite in the configuration file (e.g. "gh.yaml:81");
	// FieldPos optionally locates its fields ("name", "path", "method",
	// "timeout", "calls", "shape"); a field without one gets Pos.
	Pos      string
	FieldPos map[string]string
	// ShapePos, when set, turns a 1-based line and column inside Shape into
	// a file position for shape compile errors; nil means FieldPos["shape"].
	ShapePos func(line, col int) string
}

// CallSpec is one call of a composite.
type CallSpec struct {
	// Name is an identifier ([A-Za-z_][A-Za-z0-9_]*), unique in the composite.
	Name string
	// Route names the route the call goes through.
	Route string
	// Path is appended to the route's path: on a prefix route "/api/billing/"
	// the path "/accounts/{calls.profile.id}" becomes
	// "/api/billing/accounts/<id>". It must be empty on an exact route.
	Path string
	// Method of the call; "" means GET. The route must allow it.
	Method string
	// Query maps parameter names to templates, one value each.
	Query map[string]string
	// Optional calls may fail: their result is null and the failure is listed
	// under "errors". A required call's failure fails the composite.
	Optional bool
	// Timeout bounds the call (answer and body); 0 means the route's timeout.
	Timeout time.Duration
	// DependsOn names the calls whose results the templates read; the call
	// starts when they have all succeeded.
	DependsOn []string
	// MaxBody bounds the response body in bytes; 0 means DefaultMaxBody.
	MaxBody int64

	// Pos and FieldPos locate the call ("route", "path", "method", "query",
	// "timeout", "depends_on", "max_body") as for Spec.
	Pos      string
	FieldPos map[string]string
}

// RouteInfo is what Compile needs to know of one route of the allow-list.
type RouteInfo struct {
	Name string
	// Path as configured: ending in "/" it is a prefix, otherwise exact.
	Path string
	// Methods the route allows; empty means GET.
	Methods []string
	// Timeout is the route's upstream timeout, the default of its calls' timeouts.
	Timeout time.Duration
}

// Problem is one thing wrong with a composite. Pos is the file position when
// the Spec carried one; Composite (the index in the specs given to Compile),
// Call and Field say structurally where, for callers that locate problems
// themselves.
type Problem struct {
	Pos       string
	Key       string // e.g. composites[0].calls.plan.path
	Composite int
	Call      string
	Field     string
	Message   string
}

// String formats the problem as "pos: key: message".
func (p Problem) String() string {
	if p.Pos == "" {
		return p.Key + ": " + p.Message
	}
	return p.Pos + ": " + p.Key + ": " + p.Message
}

// Errors is the error Compile returns: every problem found.
type Errors struct{ Problems []Problem }

// Error prints one problem per line.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// callMethods are the methods a call may use: HEAD and OPTIONS answer no
// JSON document.
var callMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// reservedNames cannot name a call: they are the shape's other variables,
// the answer's "errors" member, or CEL words.
var reservedNames = []string{"calls", "user", "param", "query", "errors",
	"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
	"function", "if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}

// compiler collects problems while building one Set.
type compiler struct {
	probs  []Problem
	routes map[string]*RouteInfo
}

func (cp *compiler) add(ci int, s *Spec, call *CallSpec, field, format string, a ...any) {
	key := s.Key
	if key == "" {
		key = "composites[" + s.Name + "]"
	}
	pos := s.Pos
	if p, ok := s.FieldPos[field]; ok && call == nil {
		pos = p
	}
	callName := ""
	if call != nil {
		callName = call.Name
		key += ".calls." + call.Name
		if call.Pos != "" {
			pos = call.Pos
		}
		if p, ok := call.FieldPos[field]; ok {
			pos = p
		}
	}
	if field != "" {
		key += "." + field
	}
	cp.probs = append(cp.probs, Problem{Pos: pos, Key: key, Composite: ci, Call: callName, Field: field, Message: fmt.Sprintf(format, a...)})
}

// Compile validates specs against routes and builds them. Every problem is
// reported (as *Errors), naming the composite, the call and the field.
func Compile(specs []Spec, routes []RouteInfo) (*Set, error) {
	cp := &compiler{routes: make(map[string]*RouteInfo, len(routes))}
	for i := range routes {
		cp.routes[routes[i].Name] = &routes[i]
	}
	set := &Set{exact: map[string]*Composite{}, flights: newFlights()}
	names := map[string]bool{}
	for i := range specs {
		s := &specs[i]
		if s.Name == "" {
			cp.add(i, s, nil, "name", "a composite needs a name")
		} else if names[s.Name] {
			cp.add(i, s, nil, "name", "composite %q is defined twice", s.Name)
		}
		names[s.Name] = true
		c := cp.composite(i, s)
		if c == nil {
			continue
		}
		c.set = set
		for _, o := range set.all {
			if pathsOverlap(c.segs, o.segs) {
				cp.add(i, s, nil, "path", "path %s overlaps composite %q's path %s: a request could match both", s.Path, o.name, o.path)
			}
		}
		set.all = append(set.all, c)
		if c.nparams == 0 {
			set.exact[c.path] = c
		} else {
			set.params = append(set.params, c)
		}
	}
	if len(cp.probs) > 0 {
		return nil, &Errors{Problems: cp.probs}
	}
	return set, nil
}

// composite validates and builds one spec; nil when it has problems.
func (cp *compiler) composite(ci int, s *Spec) *Composite {
	before := len(cp.probs)
	c := &Composite{name: s.Name, path: s.Path, method: s.Method, timeout: s.Timeout}
	if c.method == "" {
		c.method = http.MethodGet
	}
	if !slices.Contains(callMethods, c.method) {
		cp.add(ci, s, nil, "method", "method %q is not supported (use upper-case GET, POST, PUT, PATCH or DELETE)", s.Method)
	}
	if s.Timeout < 0 {
		cp.add(ci, s, nil, "timeout", "timeout must be positive")
	}
	c.segs, c.paramNames = cp.compositePath(ci, s)
	c.nparams = len(c.paramNames)
	if len(s.Calls) == 0 {
		cp.add(ci, s, nil, "calls", "a composite needs at least one call")
	}
	index := make(map[string]int, len(s.Calls))
	for j := range s.Calls {
		cs := &s.Calls[j]
		switch {
		case !isIdent(cs.Name):
			cp.add(ci, s, cs, "", "call name %q must be an identifier (letters, digits, _; not starting with a digit)", cs.Name)
		case slices.Contains(reservedNames, cs.Name):
			cp.add(ci, s, cs, "", "call name %q is reserved; choose another", cs.Name)
		case index[cs.Name] != 0:
			cp.add(ci, s, cs, "", "call %q is defined twice", cs.Name)
		}
		index[cs.Name] = j + 1 // 0 means absent
	}
	for j := range s.Calls {
		if k := cp.call(ci, s, c, j, index); k != nil {
			c.calls = append(c.calls, k)
		}
	}
	if len(cp.probs) > before {
		return nil
	}
	cp.order(ci, s, c)
	if len(cp.probs) > before {
		return nil
	}
	if s.Timeout == 0 {
		for _, k := range c.calls {
			c.timeout = max(c.timeout, k.timeout)
		}
	}
	if s.Shape != "" {
		sh, err := compileShape(c, s.Shape)
		if err != nil {
			pos := s.Pos
			if p, ok := s.FieldPos["shape"]; ok {
				pos = p
			}
			if se, ok := err.(*shapeError); ok && s.ShapePos != nil {
				pos = s.ShapePos(se.line, se.col)
			}
			n := len(cp.probs)
			cp.add(ci, s, nil, "shape", "%s", err.Error())
			cp.probs[n].Pos = pos
			return nil
		}
		c.shape = sh
	}
	return c
}

// compositePath validates the composite's path and splits it into segments.
func (cp *compiler) compositePath(ci int, s *Spec) ([]pathSeg, []string) {
	p := s.Path
	if p == "" || p[0] != '/' {
		cp.add(ci, s, nil, "path", "path must start with /")
		return nil, nil
	}
	if p == "/" || strings.HasSuffix(p, "/") {
		cp.add(ci, s, nil, "path", "path %s must not end with /: a composite path is exact", p)
		return nil, nil
	}
	var segs []pathSeg
	var params []string
	for seg := range strings.SplitSeq(p[1:], "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := seg[1 : len(seg)-1]
			if !isIdent(name) {
				cp.add(ci, s, nil, "path", "path parameter %q must be an identifier", seg)
				return nil, nil
			}
			if slices.Contains(params, name) {
				cp.add(ci, s, nil, "path", "path parameter {%s} appears twice", name)
				return nil, nil
			}
			params = append(params, name)
			segs = append(segs, pathSeg{param: true, text: name})
			continue
		}
		if strings.ContainsAny(seg, "{}") {
			cp.add(ci, s, nil, "path", "a path parameter must be a whole segment such as /orders/{id}")
			return nil, nil
		}
		segs = append(segs, pathSeg{text: seg})
	}
	if len(params) > maxParams {
		cp.add(ci, s, nil, "path", "path has %d parameters; at most %d are supported", len(params), maxParams)
		return nil, nil
	}
	// The literal segments must already be in cleaned form, or no cleaned
	// request path could ever match.
	probe := make([]string, len(segs))
	for i, sg := range segs {
		probe[i] = sg.text
		if sg.param {
			probe[i] = "x"
		}
	}
	joined := "/" + strings.Join(probe, "/")
	if clean, err := proxy.CleanPath(joined); err != nil || clean != joined || !literalSafe(joined) {
		cp.add(ci, s, nil, "path", "path %s is not clean (no dot segments, //, escapes, ;, ?, # or backslashes)", p)
		return nil, nil
	}
	for _, r := range cp.routes {
		if conflictsWithRoute(segs, r.Path) {
			cp.add(ci, s, nil, "path", "path %s is also served by route %q (%s): composites and routes share one namespace", p, r.Name, r.Path)
		}
	}
	return segs, params
}

// call validates and builds call j of s.
func (cp *compiler) call(ci int, s *Spec, c *Composite, j int, index map[string]int) *call {
	cs := &s.Calls[j]
	before := len(cp.probs)
	k := &call{idx: j, name: cs.Name, route: cs.Route, method: cs.Method, optional: cs.Optional,
		timeout: cs.Timeout, maxBody: cs.MaxBody}
	if k.method == "" {
		k.method = http.MethodGet
	}
	if k.maxBody == 0 {
		k.maxBody = DefaultMaxBody
	} else if k.maxBody < 0 {
		cp.add(ci, s, cs, "max_body", "max_body must be positive")
	}
	if cs.Timeout < 0 {
		cp.add(ci, s, cs, "timeout", "timeout must be positive")
	}
	r := cp.routes[cs.Route]
	if r == nil {
		known := make([]string, 0, len(cp.routes))
		for n := range cp.routes {
			known = append(known, n)
		}
		slices.Sort(known)
		cp.add(ci, s, cs, "route", "unknown route %q (routes: %s)", cs.Route, strings.Join(known, ", "))
	} else {
		if k.timeout == 0 {
			k.timeout = r.Timeout
		}
		methods := r.Methods
		if len(methods) == 0 {
			methods = []string{http.MethodGet}
		}
		switch {
		case !slices.Contains(callMethods, k.method):
			cp.add(ci, s, cs, "method", "method %q is not supported for calls (use GET, POST, PUT, PATCH or DELETE)", cs.Method)
		case !slices.Contains(methods, k.method):
			cp.add(ci, s, cs, "method", "route %q does not allow %s (it allows %s)", r.Name, k.method, strings.Join(methods, ", "))
		}
		k.routePath = r.Path
		k.routePrefix = strings.HasSuffix(r.Path, "/")
	}
	if k.timeout == 0 {
		k.timeout = DefaultCallTimeout
	}
	// depends_on
	for _, d := range cs.DependsOn {
		di := index[d] - 1
		switch {
		case di < 0:
			cp.add(ci, s, cs, "depends_on", "depends on unknown call %q", d)
		case d == cs.Name:
			cp.add(ci, s, cs, "depends_on", "a call cannot depend on itself")
		case slices.Contains(k.deps, di):
			cp.add(ci, s, cs, "depends_on", "depends on %q twice", d)
		default:
			k.deps = append(k.deps, di)
		}
	}
	refs := refCtx{params: c.paramNames, calls: index, deps: cs.DependsOn}
	if r != nil {
		switch {
		case k.routePrefix && (cs.Path == "" || cs.Path[0] != '/'):
			cp.add(ci, s, cs, "path", "route %q is a prefix (%s): the call's path must start with /", r.Name, r.Path)
		case !k.routePrefix && cs.Path != "":
			cp.add(ci, s, cs, "path", "route %q matches exactly %s: leave the call's path empty", r.Name, r.Path)
		default:
			base := strings.TrimSuffix(r.Path, "/")
			if !k.routePrefix {
				base = r.Path
			}
			t, msg := parseTemplate(base+cs.Path, true, refs)
			if msg != "" {
				cp.add(ci, s, cs, "path", "%s", msg)
			}
			k.path = t
		}
	}
	qnames := make([]string, 0, len(cs.Query))
	for n := range cs.Query {
		qnames = append(qnames, n)
	}
	slices.Sort(qnames)
	for _, n := range qnames {
		if n == "" || !utf8Clean(n) {
			cp.add(ci, s, cs, "query", "query parameter name %q is empty or has control characters", n)
			continue
		}
		t, msg := parseTemplate(cs.Query[n], false, refs)
		if msg != "" {
			cp.add(ci, s, cs, "query", "parameter %q: %s", n, msg)
			continue
		}
		k.query = append(k.query, queryTmpl{name: n, t: t})
	}
	if len(cp.probs) > before {
		return nil
	}
	return k
}

// order checks depends_on for cycles and fills dependents.
func (cp *compiler) order(ci int, s *Spec, c *Composite) {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(c.calls))
	var stack []int
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		stack = append(stack, i)
		for _, d := range c.calls[i].deps {
			if color[d] == grey {
				cyc := []string{}
				for k := slices.Index(stack, d); k < len(stack); k++ {
					cyc = append(cyc, c.calls[stack[k]].name)
				}
				cyc = append(cyc, c.calls[d].name)
				cp.add(ci, s, &s.Calls[i], "depends_on", "depends_on forms a cycle: %s", strings.Join(cyc, " -> "))
				return false
			}
			if color[d] == white && !visit(d) {
				return false
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return true
	}
	for i := range c.calls {
		if color[i] == white && !visit(i) {
			return
		}
	}
	for _, k := range c.calls {
		for _, d := range k.deps {
			c.calls[d].dependents = append(c.calls[d].dependents, k.idx)
		}
	}
}

// pathSeg is one segment of a composite path.
type pathSeg struct {
	param bool
	text  string // literal text, or the parameter's name
}

// conflictsWithRoute reports whether a request path matching segs could also
// match routePath (exact, or a prefix when it ends in "/").
func conflictsWithRoute(segs []pathSeg, routePath string) bool {
	prefix := strings.HasSuffix(routePath, "/")
	rs := strings.Split(strings.Trim(routePath, "/"), "/")
	if routePath == "/" {
		rs = nil
	}
	if prefix {
		if len(segs) <= len(rs) {
			return false
		}
		segs = segs[:len(rs)]
	} else if len(segs) != len(rs) {
		return false
	}
	for i, sg := range segs {
		if !sg.param && sg.text != rs[i] {
			return false
		}
		if sg.param && rs[i] == "" {
			return false
		}
	}
	return true
}

func pathsOverlap(a, b []pathSeg) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].param && !b[i].param && a[i].text != b[i].text {
			return false
		}
	}
	return true
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

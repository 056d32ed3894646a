package policy

import (
	"net/url"
	"reflect"
	"strings"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// The policy variables request, session and agent (and agent.grant) are CEL
// object types with a fixed set of typed fields, so that `request.metod` or
// `session.age > 5` fails when the configuration is loaded instead of denying
// every request at run time. Their values are the small wrapper types below:
// field reads go straight to the Go struct through precompiled getters (no
// reflection), and derived values (the header and query maps) are only built
// when an expression reads them.

// CEL type names of the policy objects.
const (
	requestTypeName = "gatehouse.Request"
	sessionTypeName = "gatehouse.Session"
	agentTypeName   = "gatehouse.Agent"
	grantTypeName   = "gatehouse.AgentGrant"
)

// getter reads one field of a policy object; a nil-able wrapper that is not
// of the expected type (a null session or agent) is an error, which denies.
type getter func(obj any) (any, error)

type fieldDef struct {
	name string
	typ  *types.Type
	get  getter
}

// objType is a CEL struct type backed by Go code instead of a protobuf
// message or reflection. It is registered with cel.Types and serves as both
// the ref.Type and the types.StructTypeDescriptor of its values.
type objType struct {
	name    string
	celType *types.Type
	fields  map[string]*types.FieldType
	names   []string
}

func newObjType(name string, defs []fieldDef) *objType {
	t := &objType{
		name:    name,
		celType: types.NewObjectType(name),
		fields:  make(map[string]*types.FieldType, len(defs)),
	}
	for _, d := range defs {
		get := d.get
		t.fields[d.name] = &types.FieldType{
			Type:    d.typ,
			GetFrom: ref.FieldGetter(get),
			// has(x.f) is true when the field holds a non-zero value, as for
			// proto3 scalars; on a null object it is false rather than an error.
			IsSet: func(obj any) bool {
				v, err := get(obj)
				return err == nil && !isZero(v)
			},
		}
		t.names = append(t.names, d.name)
	}
	return t
}

// HasTrait implements ref.Type: the values support field selection and has().
func (t *objType) HasTrait(trait int) bool {
	return trait == traits.FieldTesterType || trait == traits.IndexerType
}

// TypeName implements ref.Type.
func (t *objType) TypeName() string { return t.name }

// ReflectType implements types.StructTypeDescriptor; there is no reflected Go type.
func (t *objType) ReflectType() reflect.Type { return nil }

// FieldNames implements types.StructTypeDescriptor.
func (t *objType) FieldNames() []string { return t.names }

// FindFieldType implements types.StructTypeDescriptor.
func (t *objType) FindFieldType(name string) (*types.FieldType, bool) {
	ft, ok := t.fields[name]
	return ft, ok
}

// NewValue implements types.StructTypeDescriptor. Policies read the request
// context; they cannot fabricate one.
func (t *objType) NewValue(types.Adapter, map[string]ref.Val) ref.Val {
	return types.NewErr("%s values cannot be constructed in a policy", t.name)
}

// Adapt implements types.StructTypeDescriptor.
func (t *objType) Adapt(_ types.Adapter, v any) ref.Val {
	if rv, ok := v.(ref.Val); ok {
		return rv
	}
	return types.NewErr("cannot adapt %T to %s", v, t.name)
}

// get serves dynamic (untyped) field access, e.g. through a dyn value.
func (t *objType) get(obj any, field ref.Val) ref.Val {
	name, ok := field.(types.String)
	if !ok {
		return types.NewErr("%s fields are selected by name", t.name)
	}
	ft, ok := t.fields[string(name)]
	if !ok {
		return types.NewErr("no such field %q on %s", string(name), t.name)
	}
	v, err := ft.GetFrom(obj)
	if err != nil {
		return types.WrapErr(err)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

func (t *objType) isSet(obj any, field ref.Val) ref.Val {
	name, ok := field.(types.String)
	if !ok {
		return types.NewErr("%s fields are selected by name", t.name)
	}
	ft, ok := t.fields[string(name)]
	if !ok {
		return types.NewErr("no such field %q on %s", string(name), t.name)
	}
	return types.Bool(ft.IsSet(obj))
}

func isZero(v any) bool {
	switch x := v.(type) {
	case types.String:
		return x == ""
	case time.Time:
		return x.IsZero()
	case time.Duration:
		return x == 0
	case []string:
		return len(x) == 0
	case map[string]string:
		return len(x) == 0
	case *headerMapVal:
		return len(x.r.r.Header) == 0
	case *queryMapVal:
		return len(x.r.query) == 0
	}
	return false
}

// objTypes holds the four object types of one Env.
type objTypes struct {
	request, session, agent, grant *objType
	strMap                         *types.Type
}

// nullObjectError is what reading a field of an absent session or agent yields.
type nullObjectError struct{ what string }

func (e nullObjectError) Error() string {
	return e.what + " is null here; guard the expression with `" + e.what + " != null`"
}

func newObjTypes() *objTypes {
	ts := &objTypes{}
	strList := types.NewListType(types.StringType)
	strMap := types.NewMapType(types.StringType, types.StringType)
	ts.strMap = strMap

	ts.request = newObjType(requestTypeName, []fieldDef{
		{"method", types.StringType, reqField(func(r *requestVal) (any, error) { return types.String(r.r.Method), nil })},
		{"path", types.StringType, reqField(func(r *requestVal) (any, error) { return types.String(r.r.Path), nil })},
		{"query", strMap, reqField(func(r *requestVal) (any, error) {
			if _, err := r.queryMap(); err != nil {
				return nil, err
			}
			return &r.qm, nil
		})},
		{"headers", strMap, reqField(func(r *requestVal) (any, error) {
			// Converting is linear in the header count and happens before
			// the cost limit can see it; no real client sends this many.
			if len(r.r.Header) > maxPolicyHeaders {
				return nil, errTooManyHeaders
			}
			return &r.hm, nil
		})},
		{"remote_ip", types.StringType, reqField(func(r *requestVal) (any, error) { return types.String(r.r.RemoteIP), nil })},
	})
	ts.session = newObjType(sessionTypeName, []fieldDef{
		{"sid", types.StringType, sessField(func(s *SessionInfo) any { return types.String(s.SID) })},
		{"auth_time", types.TimestampType, sessField(func(s *SessionInfo) any { return s.AuthTime })},
		{"acr", types.StringType, sessField(func(s *SessionInfo) any { return types.String(s.ACR) })},
		{"amr", strList, sessField(func(s *SessionInfo) any { return s.AMR })},
		{"created", types.TimestampType, sessField(func(s *SessionInfo) any { return s.Created })},
		{"age", types.DurationType, sessField(func(s *SessionInfo) any { return s.Age })},
	})
	ts.grant = newObjType(grantTypeName, []fieldDef{
		{"routes", strList, grantField(func(a *AgentInfo) any { return a.Routes })},
		{"methods", strList, grantField(func(a *AgentInfo) any { return a.Methods })},
		{"expires", types.TimestampType, grantField(func(a *AgentInfo) any { return a.Expires })},
	})
	ts.agent = newObjType(agentTypeName, []fieldDef{
		{"id", types.StringType, agentField(func(a *agentVal) any { return types.String(a.a.ID) })},
		{"name", types.StringType, agentField(func(a *agentVal) any { return types.String(a.a.Name) })},
		{"grant", ts.grant.celType, agentField(func(a *agentVal) any { return &a.grant })},
		// routes is agent.grant.routes, at the top as the agents docs spell it.
		{"routes", strList, agentField(func(a *agentVal) any { return a.a.Routes })},
	})
	return ts
}

func reqField(f func(*requestVal) (any, error)) getter {
	return func(obj any) (any, error) {
		r, ok := obj.(*requestVal)
		if !ok {
			return nil, nullObjectError{"request"}
		}
		return f(r)
	}
}

func sessField(f func(*SessionInfo) any) getter {
	return func(obj any) (any, error) {
		s, ok := obj.(*sessionVal)
		if !ok || s.s == nil {
			return nil, nullObjectError{"session"}
		}
		return f(s.s), nil
	}
}

func agentField(f func(*agentVal) any) getter {
	return func(obj any) (any, error) {
		a, ok := obj.(*agentVal)
		if !ok || a.a == nil {
			return nil, nullObjectError{"agent"}
		}
		return f(a), nil
	}
}

func grantField(f func(*AgentInfo) any) getter {
	return func(obj any) (any, error) {
		g, ok := obj.(*grantVal)
		if !ok || g.a == nil {
			return nil, nullObjectError{"agent"}
		}
		return f(g.a), nil
	}
}

// objVal is the ref.Val part shared by the policy object wrappers.
type objVal struct{ t *objType }

func (v objVal) ConvertToNative(reflect.Type) (any, error) {
	return nil, constError(v.t.name + " cannot be converted to a Go value") // never needed: policies return bool
}

func (v objVal) convertToType(self ref.Val, t ref.Type) ref.Val {
	if t == types.TypeType {
		return v.t.celType
	}
	if t.TypeName() == v.t.name {
		return self
	}
	return types.NewErr("type conversion error from %s to %s", v.t.name, t.TypeName())
}

func (v objVal) Type() ref.Type { return v.t.celType }

// requestVal is the `request` variable.
type requestVal struct {
	objVal
	r *RequestInfo

	hm       headerMapVal
	qm       queryMapVal
	headers  map[string]string   // built on first use
	query    map[string]string   // built on first use
	repeated map[string]struct{} // lower-cased parameters sent more than once
	queryErr error
	parsedQ  bool
}

func (r *requestVal) ConvertToType(t ref.Type) ref.Val { return r.convertToType(r, t) }
func (r *requestVal) Equal(o ref.Val) ref.Val          { return types.Bool(o == ref.Val(r)) }
func (r *requestVal) Value() any                       { return r }
func (r *requestVal) Get(f ref.Val) ref.Val            { return r.t.get(r, f) }
func (r *requestVal) IsSet(f ref.Val) ref.Val          { return r.t.isSet(r, f) }

// headerMap lower-cases names and joins repeated values with ", " (RFC 9110
// field-line combination), so policies never depend on Go's canonical casing.
func (r *requestVal) headerMap() map[string]string {
	if r.headers != nil {
		return r.headers
	}
	m := make(map[string]string, len(r.r.Header))
	for k, vs := range r.r.Header {
		if notForwarded(k) {
			continue
		}
		lk := lowerASCII(k)
		v := strings.Join(vs, ", ")
		if prev, dup := m[lk]; dup { // non-canonical duplicates set directly on the map
			v = prev + ", " + v
		}
		m[lk] = v
	}
	r.headers = m
	return m
}

// header looks one lower-case name up without building the whole map: the
// common `request.headers["x-tenant"]` costs no conversion of the others.
// A header sent in more than one field line (or under two spellings of its
// name) is an error when read this way: the policy would see one value,
// or the values joined, while an upstream may act on either one alone.
func (r *requestVal) header(name string) (string, bool, error) {
	if lowerASCII(name) != name {
		return "", false, nil // the map's keys are all lower case
	}
	var val string
	found := false
	for k, vs := range r.r.Header {
		if !equalLowerASCII(k, name) || notForwarded(k) {
			continue
		}
		if found || len(vs) > 1 {
			return "", false, errRepeatedHeader
		}
		if len(vs) == 1 {
			val, found = vs[0], true
		}
	}
	return val, found, nil
}

// notForwarded reports whether the proxy drops a header name before
// forwarding whatever it is (internal/proxy scrubRequestHeaders): names
// with "_", which CGI-style upstreams read as "-". Policies do not see them,
// so what a policy reads is what the upstream receives.
func notForwarded(name string) bool { return strings.IndexByte(name, '_') >= 0 }

// queryMap maps each parameter to its (first) value and notes which
// parameters are repeated (?tenant=mine&tenant=victim, also as TENANT= or
// %74enant=): reading one of those is an evaluation error (queryMapVal), so
// the request is denied, because upstreams differ on which copy they use
// (first, last, all joined) and some match names case-insensitively. A
// query string that does not parse cleanly (";" separators, bad escapes)
// is an error as a whole rather than a partial map a policy could be
// fooled by.
func (r *requestVal) queryMap() (map[string]string, error) {
	if !r.parsedQ {
		r.parsedQ = true
		vs, err := url.ParseQuery(r.r.RawQuery)
		if err != nil {
			r.queryErr = errMalformedQuery
		} else {
			m := make(map[string]string, len(vs))
			var seen map[string]struct{} // lower-cased names, when any has upper case
			for k, v := range vs {
				lk := lowerASCII(k)
				if len(v) > 1 {
					r.markRepeated(lk)
				}
				if lk != k && seen == nil {
					seen = make(map[string]struct{}, len(vs))
				}
				if len(v) > 0 {
					m[k] = v[0]
				}
			}
			if seen != nil { // TENANT= beside tenant=: one parameter to some upstreams
				for k := range m {
					lk := lowerASCII(k)
					if _, dup := seen[lk]; dup {
						r.markRepeated(lk)
					}
					seen[lk] = struct{}{}
				}
			}
			r.query = m
		}
	}
	return r.query, r.queryErr
}

func (r *requestVal) markRepeated(lk string) {
	if r.repeated == nil {
		r.repeated = map[string]struct{}{}
	}
	r.repeated[lk] = struct{}{}
}

// queryMapVal is `request.query`: a map(string, string) whose lookups of a
// repeated parameter are errors, as are whole-map comparisons and sizes of
// a query with one (iteration yields keys only; reading their values goes
// through the lookup).
type queryMapVal struct {
	r       *requestVal
	mapType *types.Type
}

func (q *queryMapVal) full() traits.Mapper {
	return types.NewStringStringMap(types.DefaultTypeAdapter, q.r.query)
}

func (q *queryMapVal) ambiguous() ref.Val {
	if len(q.r.repeated) > 0 {
		return types.NewErr("%s", errRepeatedQuery.Error())
	}
	return nil
}

// FindStringKey is the interpreter's fast path for constant keys.
func (q *queryMapVal) FindStringKey(key string) (any, bool) {
	if _, rep := q.r.repeated[lowerASCII(key)]; rep {
		return nil, false // Find reports the error
	}
	v, ok := q.r.query[key]
	if !ok {
		return nil, false
	}
	return types.String(v), true
}

// Find implements traits.Mapper.
func (q *queryMapVal) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return q.full().Find(key)
	}
	if _, rep := q.r.repeated[lowerASCII(string(k))]; rep {
		return types.NewErr("%s", errRepeatedQuery.Error()), false
	}
	v, found := q.r.query[string(k)]
	if !found {
		return nil, false
	}
	return types.String(v), true
}

func (q *queryMapVal) Get(key ref.Val) ref.Val { return getFound(q.Find(key)) }

func (q *queryMapVal) Contains(key ref.Val) ref.Val { return containsFound(q.Find(key)) }

func (q *queryMapVal) Size() ref.Val {
	if e := q.ambiguous(); e != nil {
		return e
	}
	return q.full().Size()
}
func (q *queryMapVal) Iterator() traits.Iterator { return q.full().Iterator() }
func (q *queryMapVal) Equal(o ref.Val) ref.Val {
	if e := q.ambiguous(); e != nil {
		return e
	}
	return q.full().Equal(o)
}
func (q *queryMapVal) ConvertToNative(t reflect.Type) (any, error) {
	if len(q.r.repeated) > 0 {
		return nil, errRepeatedQuery
	}
	return q.full().ConvertToNative(t)
}
func (q *queryMapVal) ConvertToType(t ref.Type) ref.Val {
	if e := q.ambiguous(); e != nil {
		return e
	}
	return q.full().ConvertToType(t)
}
func (q *queryMapVal) Type() ref.Type { return q.mapType }
func (q *queryMapVal) Value() any     { return q.r.query }

type constError string

func (e constError) Error() string { return string(e) }

const (
	errMalformedQuery = constError("request query string is malformed")
	errTooManyHeaders = constError("request has too many header fields for a policy to read")
	errRepeatedQuery  = constError("request query repeats a parameter; policies refuse ambiguous queries")
	errRepeatedHeader = constError("request repeats the header the policy reads; policies refuse ambiguous headers")
	maxPolicyHeaders  = 1000
)

// lowerASCII lower-cases ASCII letters only (header names are ASCII tokens;
// other bytes are kept as they are) and avoids an allocation for names that
// are already lower case.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// equalLowerASCII reports whether lowerASCII(k) == lower, without allocating.
func equalLowerASCII(k, lower string) bool {
	if len(k) != len(lower) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// headerMapVal is `request.headers`: a map(string, string) that answers
// single-key lookups straight from the http.Header and builds the full
// lower-cased map only for iteration, size or comparison.
type headerMapVal struct {
	r       *requestVal
	mapType *types.Type
}

func (h *headerMapVal) full() traits.Mapper {
	return types.NewStringStringMap(types.DefaultTypeAdapter, h.r.headerMap())
}

// FindStringKey is the interpreter's fast path for constant keys.
func (h *headerMapVal) FindStringKey(key string) (any, bool) {
	v, ok, err := h.r.header(key)
	if err != nil || !ok {
		return nil, false // Find reports the error
	}
	return types.String(v), true
}

// Find implements traits.Mapper.
func (h *headerMapVal) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return h.full().Find(key) // consistent errors for non-string keys
	}
	v, found, err := h.r.header(string(k))
	if err != nil {
		return types.NewErr("%s", err.Error()), false
	}
	if !found {
		return nil, false
	}
	return types.String(v), true
}

func (h *headerMapVal) Get(key ref.Val) ref.Val { return getFound(h.Find(key)) }

func (h *headerMapVal) Contains(key ref.Val) ref.Val { return containsFound(h.Find(key)) }

func (h *headerMapVal) Size() ref.Val             { return h.full().Size() }
func (h *headerMapVal) Iterator() traits.Iterator { return h.full().Iterator() }
func (h *headerMapVal) Equal(o ref.Val) ref.Val   { return h.full().Equal(o) }
func (h *headerMapVal) ConvertToNative(t reflect.Type) (any, error) {
	return h.full().ConvertToNative(t)
}
func (h *headerMapVal) ConvertToType(t ref.Type) ref.Val { return h.full().ConvertToType(t) }
func (h *headerMapVal) Type() ref.Type                   { return h.mapType }
func (h *headerMapVal) Value() any                       { return h.r.headerMap() }

// sessionVal is the `session` variable when a session exists.
type sessionVal struct {
	objVal
	s *SessionInfo
}

func (s *sessionVal) ConvertToType(t ref.Type) ref.Val { return s.convertToType(s, t) }
func (s *sessionVal) Equal(o ref.Val) ref.Val          { return types.Bool(o == ref.Val(s)) }
func (s *sessionVal) Value() any                       { return s }
func (s *sessionVal) Get(f ref.Val) ref.Val            { return s.t.get(s, f) }
func (s *sessionVal) IsSet(f ref.Val) ref.Val          { return s.t.isSet(s, f) }

// agentVal is the `agent` variable when the caller is an agent.
type agentVal struct {
	objVal
	a     *AgentInfo
	grant grantVal
}

func (a *agentVal) ConvertToType(t ref.Type) ref.Val { return a.convertToType(a, t) }
func (a *agentVal) Equal(o ref.Val) ref.Val          { return types.Bool(o == ref.Val(a)) }
func (a *agentVal) Value() any                       { return a }
func (a *agentVal) Get(f ref.Val) ref.Val            { return a.t.get(a, f) }
func (a *agentVal) IsSet(f ref.Val) ref.Val          { return a.t.isSet(a, f) }

// grantVal is `agent.grant`.
type grantVal struct {
	objVal
	a *AgentInfo
}

func (g *grantVal) ConvertToType(t ref.Type) ref.Val { return g.convertToType(g, t) }
func (g *grantVal) Equal(o ref.Val) ref.Val          { return types.Bool(o == ref.Val(g)) }
func (g *grantVal) Value() any                       { return g }
func (g *grantVal) Get(f ref.Val) ref.Val            { return g.t.get(g, f) }
func (g *grantVal) IsSet(f ref.Val) ref.Val          { return g.t.isSet(g, f) }

// getFound turns a Find answer into Get's: the value, Find's error, or "no such key". The
// query and header maps share it so both answer a missing or ambiguous key alike.
func getFound(v ref.Val, found bool) ref.Val {
	if found || v != nil {
		return v
	}
	return types.NewErr("no such key")
}

// containsFound turns a Find answer into Contains's: Find's error, else whether the key is there.
func containsFound(v ref.Val, found bool) ref.Val {
	if !found && v != nil {
		return v
	}
	return types.Bool(found)
}

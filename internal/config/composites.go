package config

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Composite is one composites: entry: one exact path that fans out to calls
// through routes and answers one shaped JSON document. The loader checks
// the shape of the entry; internal/compose checks it against the routes
// (unknown route, depends_on cycle, templates, the CEL shape) when
// gateway.Check and gateway.New build it, so check and serve agree.
type Composite struct {
	// Pos is where the list item starts; Key is "composites[i]".
	Pos  Pos
	Key  string
	Name string
	// Path is exact; a whole segment may be a parameter ("{id}").
	Path string
	// Method defaults to GET.
	Method string
	// Timeout is the whole composite's deadline; 0 means the longest call's.
	Timeout time.Duration
	// Calls in the order written.
	Calls []CompositeCall
	// Shape is the CEL expression over the results; Shape.Source is empty
	// when not set (an object keyed by call name).
	Shape Expr
	// FieldPos locates each field written (name, path, method, timeout, calls, shape).
	FieldPos map[string]Pos
}

// CompositeCall is one call of a composite (the key under calls: is its name).
type CompositeCall struct {
	Pos       Pos
	Key       string // composites[i].calls.<name>
	Name      string
	Route     string
	Path      string
	Method    string
	Query     map[string]string
	Optional  bool
	Timeout   time.Duration
	DependsOn []string
	MaxBody   int64
	// FieldPos locates each field written (route, path, method, query,
	// optional, timeout, depends_on, max_body).
	FieldPos map[string]Pos
}

func (d *decoder) pos(n *yaml.Node) Pos {
	if n == nil {
		return Pos{File: d.file, Line: 1, Column: 1}
	}
	return Pos{File: d.file, Line: n.Line, Column: n.Column}
}

func (d *decoder) composites(c *Config, top *fields) {
	n := top.get(d, "composites")
	if n == nil {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errf(n, "composites", "expected a list of composites (lines starting with - name: …), got %s", describe(n))
		return
	}
	for i, item := range n.Content {
		key := fmt.Sprintf("composites[%d]", i)
		item = d.deref(item)
		if item == nil {
			d.errf(n, key, "list item is empty; remove it")
			continue
		}
		f := d.mapping(item, item, key, "composites[]")
		if f == nil {
			continue
		}
		if cp, ok := d.composite(f, key); ok {
			c.Composites = append(c.Composites, cp)
		}
	}
}

func (d *decoder) composite(f *fields, key string) (Composite, bool) {
	start := len(d.problems)
	cp := Composite{Pos: d.pos(f.node), Key: key, FieldPos: map[string]Pos{}}
	for _, name := range []string{"name", "path", "method", "timeout", "calls", "shape"} {
		if n := f.get(d, name); n != nil {
			cp.FieldPos[name] = d.pos(n)
		}
	}
	if n := f.get(d, "name"); n == nil {
		d.missing(f, "name", "give the composite a unique name (letters, digits, - and _), e.g. name: dashboard")
	} else if s, ok := d.nonEmpty(n, key+".name"); ok {
		if !isName(s) {
			d.errf(n, key+".name", "%s is not a valid name; use letters, digits, - and _ (at most 64)", quote(s))
		}
		cp.Name = s
	}
	if n := f.get(d, "path"); n == nil {
		d.missing(f, "path", "add the exact path the composite answers, e.g. path: /api/dashboard")
	} else if s, ok := d.nonEmpty(n, key+".path"); ok {
		if msg := checkCompositePath(s); msg != "" {
			d.errf(n, key+".path", "%s %s", quote(s), msg)
		}
		cp.Path = s
	}
	if n := f.get(d, "method"); n != nil {
		if s, ok := d.enum(n, key+".method", "GET", "POST", "PUT", "PATCH", "DELETE"); ok {
			cp.Method = s
		}
	}
	if v, ok := d.positive(f.get(d, "timeout"), key+".timeout"); ok {
		cp.Timeout = v
	}
	if n := f.get(d, "shape"); n != nil {
		if s, ok := d.nonEmpty(n, key+".shape"); ok {
			cp.Shape = d.expr(n, s, key+".shape")
		}
	}
	cn := f.get(d, "calls")
	switch {
	case cn == nil:
		d.missing(f, "calls", "list the calls by name, e.g. calls: { profile: { route: profile, path: /me } }")
	case cn.Kind != yaml.MappingNode:
		d.errf(cn, key+".calls", "expected a mapping of call name to call (profile: { route: profile, path: /me }), got %s", describe(cn))
	default:
		explicit, merged := d.pairs(cn, key+".calls", 0)
		seen := map[string]int{}
		for _, e := range append(explicit, merged...) {
			name := e.key.Value
			ckey := key + ".calls." + name
			if line, dup := seen[name]; dup {
				d.errf(e.key, ckey, "call is defined twice (first at line %d); keep one", line)
				continue
			}
			seen[name] = e.key.Line
			cf := d.mapping(e.val, e.key, ckey, "composites[].calls.*")
			if cf == nil {
				if d.deref(e.val) == nil {
					d.errf(e.key, ckey, "is empty; give the call a route, e.g. { route: profile }")
				}
				continue
			}
			call := d.compositeCall(cf, ckey, name)
			call.Pos = d.pos(e.key)
			cp.Calls = append(cp.Calls, call)
		}
		if len(explicit)+len(merged) == 0 {
			d.errf(cn, key+".calls", "is empty; a composite needs at least one call")
		}
	}
	return cp, len(d.problems) == start
}

func (d *decoder) compositeCall(f *fields, key, name string) CompositeCall {
	k := CompositeCall{Key: key, Name: name, FieldPos: map[string]Pos{}}
	for _, fn := range []string{"route", "path", "method", "query", "optional", "timeout", "depends_on", "max_body"} {
		if n := f.get(d, fn); n != nil {
			k.FieldPos[fn] = d.pos(n)
		}
	}
	if n := f.get(d, "route"); n == nil {
		d.missing(f, "route", "name the route the call goes through, e.g. route: profile")
	} else if s, ok := d.nonEmpty(n, key+".route"); ok {
		k.Route = s
	}
	if n := f.get(d, "path"); n != nil {
		if s, ok := d.str(n, key+".path"); ok {
			k.Path = s
		}
	}
	if n := f.get(d, "method"); n != nil {
		if s, ok := d.enum(n, key+".method", "GET", "POST", "PUT", "PATCH", "DELETE"); ok {
			k.Method = s
		}
	}
	if qn := f.get(d, "query"); qn != nil && qn.Kind != yaml.MappingNode {
		d.errf(qn, key+".query", "expected a mapping of parameter name to template (page: \"{query.page}\"), got %s", describe(qn))
	} else if qn != nil {
		k.Query = map[string]string{}
		explicit, _ := d.pairs(qn, key+".query", 0)
		for _, e := range explicit {
			v := d.deref(e.val)
			if v == nil {
				d.errf(e.key, key+".query."+e.key.Value, "has no value; write a template such as \"{query.page}\"")
				continue
			}
			if s, ok := d.str(v, key+".query."+e.key.Value); ok {
				k.Query[e.key.Value] = s
			}
		}
	}
	if v, ok := d.boolean(f.get(d, "optional"), key+".optional"); ok {
		k.Optional = v
	}
	if v, ok := d.positive(f.get(d, "timeout"), key+".timeout"); ok {
		k.Timeout = v
	}
	if items, ok := d.strItems(f.get(d, "depends_on"), key+".depends_on", "[profile]"); ok {
		for _, it := range items {
			k.DependsOn = append(k.DependsOn, it.val)
		}
	}
	if mb := f.get(d, "max_body"); mb != nil {
		if v, ok := d.size(mb, key+".max_body"); ok {
			if v == 0 {
				d.errf(mb, key+".max_body", "must be more than zero")
			} else {
				k.MaxBody = v
			}
		}
	}
	return k
}

// checkCompositePath returns why p cannot be a composite path, or "".
// The rest (clean form, parameters, overlap with routes and other
// composites) is checked by internal/compose at build.
func checkCompositePath(p string) string {
	if msg := checkRoutePath(p); msg != "" {
		return msg
	}
	if strings.HasSuffix(p, "/") {
		return "must not end with /: a composite path is exact (a segment may be a parameter, /api/orders/{id})"
	}
	if first, _, _ := strings.Cut(p[1:], "/"); strings.ContainsAny(first, "{}") {
		return "must start with a literal segment (e.g. /api/…): it is served beside the routes under that prefix"
	}
	return ""
}

// compositeNames lists the configured composites' names, which
// agents.delegable_routes may name too (composites are decoded first).
func (c *Config) compositeNames() []string {
	out := make([]string, 0, len(c.Composites))
	for _, cp := range c.Composites {
		out = append(out, cp.Name)
	}
	return out
}

package config

import (
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"go.yaml.in/yaml/v3"
)

// DefaultConcurrentPerCaller is rate_limits.concurrent_per_caller when it is
// not set: requests in flight per caller and instance. Generous for a
// browser (6 connections per origin over HTTP/1.1, a few dozen streams over
// HTTP/2) and far below what one instance can hold, so one caller cannot
// take the capacity shared by all.
const DefaultConcurrentPerCaller = 64

// RateLimits is the rate_limits section: the per-caller budgets, validated
// by internal/ratelimit's own rules (ratelimit.Spec.Validate) at file:line.
type RateLimits struct {
	// Spec is what ratelimit.Compile takes. Spec.Default is the zero Limit
	// when default is not set (ratelimit then uses its DefaultLimit);
	// Spec.ConcurrentPerCaller is DefaultConcurrentPerCaller when not set.
	Spec ratelimit.Spec
}

// rateLimits decodes rate_limits. Types and shapes are checked here; the
// values (ranges, whole seconds, route names, refill time) by
// ratelimit.Spec.Validate, whose key-path messages are placed at the line
// of the key they name, so `check` and `serve` apply one set of rules.
func (d *decoder) rateLimits(c *Config, top *fields) {
	c.RateLimits.Spec.ConcurrentPerCaller = DefaultConcurrentPerCaller
	f := d.section(top, "rate_limits", "rate_limits", "rate_limits", "")
	if f == nil {
		return
	}
	start := len(d.problems)
	spec := &c.RateLimits.Spec
	at := map[string]*yaml.Node{"rate_limits": f.pos}
	if n := f.get(d, "default"); n != nil {
		at["rate_limits.default"] = f.keyNode("default")
		if l, ok := d.limit(n, f.keyNode("default"), "rate_limits.default", at); ok {
			spec.Default = l
		}
	}
	if n := f.get(d, "routes"); n != nil {
		at["rate_limits.routes"] = f.keyNode("routes")
		if n.Kind != yaml.MappingNode {
			d.errf(n, "rate_limits.routes", "expected a mapping of route names to limits, e.g. billing: { requests: 60, per: 1m }, got %s", describe(n))
		} else {
			spec.Routes = map[string]ratelimit.Limit{}
			explicit, merged := d.pairs(n, "rate_limits.routes", 0)
			for _, e := range append(explicit, merged...) {
				name := e.key.Value
				path := "rate_limits.routes." + name
				if _, dup := spec.Routes[name]; dup {
					d.errf(e.key, path, "a limit for route %s is set twice; keep one", quote(name))
					continue
				}
				at[path] = e.key
				if l, ok := d.limit(e.val, e.key, path, at); ok {
					spec.Routes[name] = l
				}
			}
		}
	}
	if n := f.get(d, "concurrent_per_caller"); n != nil {
		at["rate_limits.concurrent_per_caller"] = n
		if v, ok := d.integer(n, "rate_limits.concurrent_per_caller"); ok {
			if v < 1 {
				// 0 would mean "no cap": one caller could then hold every
				// connection and goroutine of the instance (promise 5).
				d.errf(n, "rate_limits.concurrent_per_caller", "%d is out of range; use 1 to %d (leave it out for %d)", v, ratelimit.MaxConcurrent, DefaultConcurrentPerCaller)
			} else {
				spec.ConcurrentPerCaller = v
			}
		}
	}
	if len(d.problems) > start {
		return
	}
	names := make([]string, 0, len(c.Routes))
	for _, r := range c.Routes {
		names = append(names, r.Name)
	}
	err := spec.Validate(names)
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		key, msg, found := strings.Cut(e.Error(), ": ")
		if !found {
			key, msg = "rate_limits", e.Error()
		}
		d.errf(nodeFor(at, key), key, "%s", msg)
	}
}

// nodeFor is the node of the longest key path in at that key starts with.
func nodeFor(at map[string]*yaml.Node, key string) *yaml.Node {
	for k := key; ; {
		if n, ok := at[k]; ok {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			return at["rate_limits"]
		}
		k = k[:i]
	}
}

// limit decodes one { requests, per, burst } mapping, recording where each
// key is for the value checks.
func (d *decoder) limit(n, pos *yaml.Node, path string, at map[string]*yaml.Node) (ratelimit.Limit, bool) {
	var l ratelimit.Limit
	f := d.mapping(n, pos, path, "rate_limits.limit")
	if f == nil {
		if d.deref(n) == nil {
			d.errf(pos, path, "is empty; write e.g. { requests: 600, per: 1m, burst: 100 }")
		}
		return l, false
	}
	start := len(d.problems)
	if v := f.get(d, "requests"); v == nil {
		d.missing(f, "requests", "write how many requests are refilled per window, e.g. requests: 600")
	} else if i, ok := d.integer(v, path+".requests"); ok {
		at[path+".requests"] = v
		l.Requests = i
	}
	if v := f.get(d, "per"); v == nil {
		d.missing(f, "per", "write the window as a duration, e.g. per: 1m")
	} else if p, ok := d.duration(v, path+".per"); ok {
		at[path+".per"] = v
		l.Per = p
		if p == 0 {
			d.errf(v, path+".per", "must be more than zero; write a duration like 1m")
		}
	}
	if v := f.get(d, "burst"); v != nil {
		if i, ok := d.integer(v, path+".burst"); ok {
			at[path+".burst"] = v
			if i < 1 {
				d.errf(v, path+".burst", "%d is out of range; use 1 to %d, or leave it out to allow a whole window's requests at once", i, ratelimit.MaxBurst)
			}
			l.Burst = i
		}
	}
	return l, len(d.problems) == start
}

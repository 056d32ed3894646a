package config

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// frontendsForm decodes a file that lists its frontends under frontends:.
// The top level then holds only process-wide keys; every per-frontend key
// written there is a load error naming it (a file uses one form or the
// other, never both), and so is a process-wide key written in an entry.
func (d *decoder) frontendsForm(c *Config, top *fields) {
	for _, name := range top.names {
		e, known := top.m[name]
		if !known || name == "frontends" || slices.Contains(processKeys, name) || name == "session" {
			continue
		}
		d.errf(e.key, name, "is a per-frontend key, but this file lists its frontends under frontends: (line %d); move %s into each frontends[] entry: a file uses either the top-level one-frontend form or frontends:, never both", top.keyNode("frontends").Line, name)
	}
	sf := d.section(top, "session", "session", "session", "")
	if sf != nil {
		for _, name := range sf.names {
			if e, known := sf.m[name]; known && !slices.Contains(sessionProcessKeys, name) {
				d.errf(e.key, "session."+name, "is per frontend, but this file lists its frontends under frontends:; move it into each frontends[] entry's session (only session.store, session.bolt and session.redis are shared at the top level)")
			}
		}
	}
	d.processWide(c, top, sf)

	n := top.get(d, "frontends")
	switch {
	case n == nil:
		d.errf(top.keyNode("frontends"), "frontends", "is empty; list at least one frontend, or use the top-level one-frontend form (examples/gatehouse.yaml)")
		return
	case n.Kind != yaml.SequenceNode:
		d.errf(n, "frontends", "expected a list of frontends (lines starting with - client: …), got %s", describe(n))
		return
	case len(n.Content) == 0:
		d.errf(n, "frontends", "is empty; list at least one frontend, or use the top-level one-frontend form (examples/gatehouse.yaml)")
		return
	}
	for i, item := range n.Content {
		key := fmt.Sprintf("frontends[%d]", i)
		item = d.deref(item)
		if item == nil {
			d.errf(n, key, "list item is empty; remove it")
			continue
		}
		probs, warns := len(d.problems), len(d.warnings)
		d.prefix = key + "."
		fc := d.frontendEntry(c, item, key)
		d.prefix = ""
		if fc == nil {
			continue
		}
		for _, ps := range [][]Problem{d.problems[probs:], d.warnings[warns:]} {
			for j := range ps {
				ps[j].Frontend = fc.Client
			}
		}
		c.frontends = append(c.frontends, fc)
	}
	d.checkFrontends(c.frontends, n)
}

// frontendEntry decodes one frontends[] entry into a Config holding the
// process-wide settings of c and the entry's own.
func (d *decoder) frontendEntry(c *Config, item *yaml.Node, key string) *Config {
	f := d.mapping(item, item, "", "frontends[]")
	if f == nil {
		return nil
	}
	for _, name := range f.names {
		if e, known := f.m[name]; known && slices.Contains(processKeys, name) {
			d.errf(e.key, name, "is process-wide: set it once at the top level, not in a frontends[] entry")
		}
	}
	if !f.has("client") {
		d.missing(f, "client", "name the frontend (letters, digits, - and _), e.g. client: web; names must be unique")
	}
	sf := d.section(f, "session", "session", "session", "")
	if sf != nil {
		for _, name := range sf.names {
			if e, known := sf.m[name]; known && slices.Contains(sessionProcessKeys, name) {
				d.errf(e.key, "session."+name, "the session store is shared by every frontend: set session.%s once at the top level", name)
			}
		}
	}
	// The process-wide settings are shared by copy; every per-frontend field
	// is still zero in c (the top level of this form decodes none) and is
	// set by perFrontend.
	fc := new(Config)
	*fc = *c
	fc.frontends, fc.warnings, fc.Key = nil, nil, key
	d.perFrontend(fc, f, sf)
	fc.clientNode, fc.urlNode = f.get(d, "client"), f.get(d, "public_url")
	return fc
}

// checkFrontends reports what two frontends may not share: a client name,
// a host with the same path prefix, or (on one host) a session cookie name,
// which the browser would send to both.
func (d *decoder) checkFrontends(fs []*Config, list *yaml.Node) {
	byName := map[string]*Config{}
	byBind := map[string]*Config{}
	for _, fc := range fs {
		if prev := byName[fc.Client]; prev != nil {
			d.errf(firstNode(fc.clientNode, list), fc.Key+".client", "client name %s is already used by %s; every frontend needs its own name (it is its identity in sessions, audit records, metrics and policies)", quote(fc.Client), prev.Key)
			d.problems[len(d.problems)-1].Frontend = fc.Client
		} else {
			byName[fc.Client] = fc
		}
		if fc.PublicURL == nil {
			continue
		}
		bind := fc.PublicURL.Host + fc.PathPrefix()
		if prev := byBind[bind]; prev != nil {
			d.errf(fc.urlNode, fc.Key+".public_url", "%s is already claimed by %s (%s); two frontends cannot be bound to the same host and path prefix", quote(fc.PublicURL.String()), prev.Key, prev.Client)
			d.problems[len(d.problems)-1].Frontend = fc.Client
		} else {
			byBind[bind] = fc
		}
	}
	for i, a := range fs {
		for _, b := range fs[i+1:] {
			if a.PublicURL == nil || b.PublicURL == nil || a.PublicURL.Hostname() != b.PublicURL.Hostname() {
				continue
			}
			if !strings.EqualFold(a.EffectiveCookieName(), b.EffectiveCookieName()) || !pathsOverlap(a.PathPrefix(), b.PathPrefix()) {
				continue
			}
			d.errf(b.urlNode, b.Key+".session.cookie_name", "%s and %s are on the same host and both name their session cookie %s: the browser would send %s's cookie to %s too; give one of them another session.cookie_name", a.Client, b.Client, a.EffectiveCookieName(), shorter(a, b).Client, longer(a, b).Client)
			d.problems[len(d.problems)-1].Frontend = b.Client
		}
	}
}

// pathsOverlap reports whether one prefix contains the other ("" is the root).
func pathsOverlap(a, b string) bool {
	return a == b || strings.HasPrefix(b, a+"/") || strings.HasPrefix(a, b+"/")
}

func shorter(a, b *Config) *Config {
	if len(a.PathPrefix()) <= len(b.PathPrefix()) {
		return a
	}
	return b
}

func longer(a, b *Config) *Config {
	if shorter(a, b) == a {
		return b
	}
	return a
}

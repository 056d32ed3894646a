// Package binding decides which frontend a request belongs to: by Host
// first (exact, case-insensitive, port-aware), then by the longest path
// prefix of the frontend's public_url. A request that binds to no frontend
// reaches nothing (the caller answers 404).
package binding

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Frontend is one frontend's binding, taken from its public_url.
type Frontend[T any] struct {
	// URL is the public_url: scheme, host[:port] and an optional path
	// prefix without a trailing slash ("/shop").
	URL *url.URL
	// Value is what Bind returns for requests bound to this frontend.
	Value T
}

type entry[T any] struct {
	prefix string
	value  T
}

// Binder maps requests to frontends. It is immutable and safe for
// concurrent use.
type Binder[T any] struct {
	// byHost holds, per host as a browser writes it in Host (lower case,
	// "host" or "host:port"), the frontends on it, longest prefix first.
	byHost map[string][]entry[T]
	// any is set when the process has one frontend served at the root: it
	// answers on every Host, as Gatehouse always has (docs/frontends.md).
	any   *entry[T]
	hosts []string
}

// New builds a Binder. Two frontends with the same host and prefix are an
// error (config reports it first, with file:line).
func New[T any](fs []Frontend[T]) (*Binder[T], error) {
	b := &Binder[T]{byHost: map[string][]entry[T]{}}
	if len(fs) == 1 && strings.TrimSuffix(fs[0].URL.Path, "/") == "" {
		b.any = &entry[T]{value: fs[0].Value}
		return b, nil
	}
	for _, f := range fs {
		u := f.URL
		if u == nil || u.Host == "" {
			return nil, fmt.Errorf("binding: frontend without a public_url host")
		}
		host, port := strings.ToLower(u.Hostname()), u.Port()
		def := defaultPort(u.Scheme)
		if port == "" {
			port = def
		}
		e := entry[T]{prefix: strings.TrimSuffix(u.Path, "/"), value: f.Value}
		keys := []string{net.JoinHostPort(host, port)}
		if port == def {
			// Browsers omit the scheme's default port from Host.
			keys = append(keys, hostOnly(host))
		}
		for _, k := range keys {
			for _, o := range b.byHost[k] {
				if o.prefix == e.prefix {
					return nil, fmt.Errorf("binding: two frontends claim %s%s", k, e.prefix)
				}
			}
			b.byHost[k] = append(b.byHost[k], e)
		}
	}
	for k, es := range b.byHost {
		slices.SortStableFunc(es, func(a, b entry[T]) int { return len(b.prefix) - len(a.prefix) })
		b.hosts = append(b.hosts, k)
	}
	slices.Sort(b.hosts)
	return b, nil
}

func defaultPort(scheme string) string {
	if strings.EqualFold(scheme, "http") {
		return "80"
	}
	return "443"
}

// hostOnly writes an IPv6 literal in brackets, as it appears in Host.
func hostOnly(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// Bind returns the frontend that host (the request's Host header) and
// escapedPath (its path as sent, r.URL.EscapedPath()) belong to, and that
// frontend's prefix ("" for one served at the root). ok is false when the
// request belongs to no frontend. Prefixes are compared with the path as
// sent, at segment boundaries: an escaped form of a prefix ("/sh%6Fp") is
// not that prefix, so such a request binds (at most) to a frontend at the
// host's root, whose own path checks then apply.
func (b *Binder[T]) Bind(host, escapedPath string) (v T, prefix string, ok bool) {
	if b.any != nil {
		return b.any.value, "", true
	}
	es := b.byHost[lowerASCII(host)]
	for i := range es {
		p := es[i].prefix
		if p == "" || escapedPath == p || (strings.HasPrefix(escapedPath, p) && escapedPath[len(p)] == '/') {
			return es[i].value, p, true
		}
	}
	return v, "", false
}

// Hosts lists the Host values frontends are bound to (for logs and tests).
func (b *Binder[T]) Hosts() []string { return slices.Clone(b.hosts) }

// lowerASCII lower-cases s, allocating only when s has an upper-case letter
// (the common Host is already lower case). Non-ASCII bytes are left alone:
// they match no configured host, which config keeps ASCII.
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

// StripPrefix returns r with prefix removed from its path (both the
// decoded and the escaped form), so that a path-bound frontend's handler
// sees the paths of its configuration (/bff/login, /api/cart/…). "/shop"
// alone becomes "/". r itself is not modified.
func StripPrefix(r *http.Request, prefix string) *http.Request {
	if prefix == "" {
		return r
	}
	r2 := new(http.Request)
	*r2 = *r
	r2.URL = new(url.URL)
	*r2.URL = *r.URL
	r2.URL.Path = trim(r.URL.Path, prefix)
	if r.URL.RawPath != "" {
		r2.URL.RawPath = trim(r.URL.RawPath, prefix)
	}
	return r2
}

func trim(p, prefix string) string {
	p = strings.TrimPrefix(p, prefix)
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return p
}

package proxy

import (
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// droppedExact are client request headers that never reach an upstream, by
// normalised name (lower case, "_" read as "-"): credentials and identity or
// forwarding claims an upstream might trust.
var droppedExact = map[string]struct{}{
	"cookie":              {},
	"authorization":       {},
	"proxy-authorization": {},
	"dpop":                {}, // a native app's proof is for Gatehouse only (RFC 9449)
	"forwarded":           {},
	"x-real-ip":           {},
	"x-client-ip":         {},
	"true-client-ip":      {},
	"x-cluster-client-ip": {},
	"cf-connecting-ip":    {},
	"fastly-client-ip":    {},
	"x-host":              {},
	"x-rewrite-url":       {},
	"x-remote-user":       {},
	"remote-user":         {},
	"x-webauth-user":      {},
	// Identity headers other gateways inject and upstreams are often set up
	// to trust (Authelia, Kong, oauth2-proxy setups, home-grown proxies).
	"remote-email":           {},
	"remote-groups":          {},
	"remote-name":            {},
	"x-user":                 {},
	"x-email":                {},
	"x-scopes":               {},
	"x-subject":              {},
	"x-auth-user":            {},
	"x-authenticated-user":   {},
	"x-authenticated-userid": {},
	"x-authenticated-scope":  {},
	"x-userinfo":             {},
	"x-id-token":             {},
	"x-access-token":         {},
	"x-jwt":                  {},
	"x-jwt-assertion":        {},
	"x-jwt-payload":          {},
	// mTLS results a TLS-terminating proxy passes on (nginx, HAProxy, IIS
	// ARR, Envoy, Traefik, AWS ALB): the client's certificate is whatever
	// the client writes here.
	"x-client-cert":        {},
	"x-client-cert-chain":  {},
	"x-client-certificate": {},
	"x-client-verify":      {},
	"x-client-dn":          {},
	"x-client-s-dn":        {},
	"x-client-i-dn":        {},
	"x-ssl":                {},
	"x-arr-clientcert":     {},
	"x-arr-ssl":            {},
	"proxy-connection":     {},
	"keep-alive":           {},
}

// droppedPrefixes cover header families: X-Forwarded-For/-Host/-Proto/-User/
// -Email/-Access-Token/-Client-Cert/..., X-Original-URL/-Host/-Method/...,
// X-Auth-Request-*, X-Remote-User/-Email/-Groups, the identity headers of
// cloud load balancers and identity-aware proxies (AWS ALB X-Amzn-Oidc-* and
// X-Amzn-Mtls-*, Google IAP X-Goog-Authenticated-User-*, Azure
// X-Ms-Client-Principal*, Kong X-Consumer-*, Cloudflare Access Cf-Access-*,
// Pomerium, authentik), user-claim families (X-User-Id, X-Username,
// X-Roles, X-Groups, X-Permissions, X-Identity, X-Principal, ...),
// and mTLS results (X-Ssl-Client-*, Ssl-Client-*, X-Tls-Client-*, X-Mtls-*,
// X-Client-Cert-*), which an upstream may trust when deployed behind them.
var droppedPrefixes = [...]string{"x-forwarded-", "x-original-", "x-auth-request-", "x-remote-",
	"x-amzn-oidc-", "x-amzn-mtls-", "x-goog-authenticated-user-", "x-goog-iap-", "x-ms-client-principal",
	"x-consumer-", "cf-access-", "x-pomerium-", "x-authentik-", "x-authenticated-", "x-user-", "x-auth-",
	"x-ssl-", "ssl-client-", "x-tls-client-", "x-mtls-", "x-client-cert", "x-client-ssl-", "x-envoy-",
	"x-user", "x-role", "x-group", "x-permission", "x-identity", "x-principal"}

// methodOverrides are headers (normalised) that make frameworks treat a
// request as another method: a POST-only route would serve DELETE. They
// are dropped unless the route opts in (RouteSpec.AllowMethodOverride).
var methodOverrides = map[string]struct{}{
	"x-http-method-override": {},
	"x-http-method":          {},
	"x-method-override":      {},
}

// traceHeaders carry W3C trace context and baggage. From an untrusted peer
// they would let a client pick the trace id upstream logs and audit records
// are correlated by, and push arbitrary baggage into upstreams; only a
// trusted proxy's are passed on.
var traceHeaders = map[string]struct{}{
	"traceparent": {},
	"tracestate":  {},
	"baggage":     {},
	// B3 and Jaeger propagation, read by upstreams' own tracing libraries.
	"b3": {}, "x-b3-traceid": {}, "x-b3-spanid": {}, "x-b3-parentspanid": {}, "x-b3-sampled": {}, "x-b3-flags": {},
	"uber-trace-id": {},
}

// isDropped reports whether a normalised header name is never forwarded,
// whatever the route (method overrides and trace headers aside).
func isDropped(n string) bool {
	if _, ok := droppedExact[n]; ok {
		return true
	}
	for _, p := range droppedPrefixes {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// normHeader lower-cases a header name and reads "_" as "-", the way
// CGI-style servers (and many frameworks) fold names.
func normHeader(k string) string {
	var buf nameBuf
	if len(k) > len(buf) {
		return strings.ReplaceAll(strings.ToLower(k), "_", "-")
	}
	return string(normInto(&buf, k))
}

// nameBuf holds a normalised header name on the stack: longer names than
// any real header (and than the server's default header limits make
// likely) take the allocating path.
type nameBuf [256]byte

func normInto(buf *nameBuf, k string) []byte {
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		buf[i] = c
	}
	return buf[:len(k)]
}

// scrubOpts are the per-request choices of scrubRequestHeaders.
type scrubOpts struct {
	// methodOverride keeps the method-override headers (the route opted in).
	methodOverride bool
	// trace keeps traceparent/tracestate/baggage (the peer is a trusted proxy).
	trace bool
}

// scrubRequestHeaders removes every header the client must not be able to
// send upstream, in any spelling. Go canonicalises header keys but keeps
// "X_Forwarded_User" distinct from "X-Forwarded-User", so each key is
// normalised before the lookup. credNames holds the normalised names of every
// route's header credential: a client-sent copy in any spelling is a
// credential no route names, so it goes too, on every route.
//
// Every name containing "_" is dropped as well (nginx's default): CGI-style
// upstreams read X_Tenant as X-Tenant, so a second spelling beside the one
// a policy checked would let the upstream act on a value the policy never
// saw. Policies do not see such names either (policy.RequestInfo.Header).
func scrubRequestHeaders(h http.Header, credNames map[string]struct{}, o scrubOpts) {
	var buf nameBuf
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
			continue
		}
		var drop bool
		if len(k) > len(buf) {
			n := normHeader(k)
			_, cred := credNames[n]
			drop = isDropped(n) || cred || optionalDrop(n, o)
		} else {
			n := normInto(&buf, k)
			// string(n) in a map lookup or comparison does not allocate.
			_, exact := droppedExact[string(n)]
			_, cred := credNames[string(n)]
			drop = exact || cred || hasDroppedPrefix(n)
			if !drop && !o.methodOverride {
				_, drop = methodOverrides[string(n)]
			}
			if !drop && !o.trace {
				_, drop = traceHeaders[string(n)]
			}
		}
		if drop {
			delete(h, k)
		}
	}
}

func optionalDrop(n string, o scrubOpts) bool {
	_, mo := methodOverrides[n]
	_, tr := traceHeaders[n]
	return mo && !o.methodOverride || tr && !o.trace
}

func hasDroppedPrefix(n []byte) bool {
	for _, p := range droppedPrefixes {
		if len(n) >= len(p) && string(n[:len(p)]) == p {
			return true
		}
	}
	return false
}

// hasUpgrade reports whether the request asks to switch protocols (the
// Connection header names "upgrade" and an Upgrade header is present), the
// same test httputil.ReverseProxy applies.
func hasUpgrade(h http.Header) bool {
	if len(h["Upgrade"]) == 0 {
		return false
	}
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// overrideQueryKey reports whether a (still escaped) query key is a method
// override parameter: _method (Rails, Laravel, Symfony, express
// method-override) or a header name some frameworks also read from the
// query, in any case and with "_" or "-".
func overrideQueryKey(key string) bool {
	if strings.ContainsAny(key, "%+") {
		k, err := url.QueryUnescape(key)
		if err != nil {
			return true // undecodable: an upstream may still read it as one
		}
		key = k
	}
	key = strings.TrimSpace(key)
	if len(key) > 64 {
		return false // longer than any override name
	}
	var buf nameBuf
	n := normInto(&buf, key)
	if string(n) == "-method" {
		return true
	}
	_, ok := methodOverrides[string(n)]
	return ok
}

// methodOverrideQuery calls fn with each method override parameter of a raw
// query (split on "&" and ";", as different upstreams do) and its escaped
// value; it stops when fn returns false.
func methodOverrideQuery(raw string, fn func(value string) bool) {
	for raw != "" {
		var kv string
		if i := strings.IndexAny(raw, "&;"); i >= 0 {
			kv, raw = raw[:i], raw[i+1:]
		} else {
			kv, raw = raw, ""
		}
		k, v, _ := strings.Cut(kv, "=")
		if overrideQueryKey(k) && !fn(v) {
			return
		}
	}
}

// checkMethodOverride applies the method-override rule before anything is
// forwarded. On a route without AllowMethodOverride the headers are dropped
// by scrubRequestHeaders, and a _method query parameter (which cannot be
// dropped without the upstream seeing another query than the policy did)
// is refused. On a route that opts in, every override must name a method
// the route allows, so the override never widens the route's method list.
func checkMethodOverride(rt *route, r *http.Request) (status int, code, msg string) {
	if !rt.methodOverride {
		found := false
		methodOverrideQuery(r.URL.RawQuery, func(string) bool { found = true; return false })
		if found {
			return http.StatusBadRequest, "method_override", "route " + rt.name + " does not accept method overrides (_method); send the real method"
		}
		return 0, "", ""
	}
	bad := false
	allowed := func(m string) bool {
		m = strings.ToUpper(strings.TrimSpace(m))
		return slices.Contains(rt.methods, m)
	}
	methodOverrideQuery(r.URL.RawQuery, func(v string) bool {
		d, err := url.QueryUnescape(v)
		bad = err != nil || !allowed(d)
		return !bad
	})
	for k, vs := range r.Header {
		if bad {
			break
		}
		if _, ok := methodOverrides[normHeader(k)]; ok {
			for _, v := range vs {
				if !allowed(v) {
					bad = true
				}
			}
		}
	}
	if bad {
		return http.StatusMethodNotAllowed, "method_not_allowed", "route " + rt.name + " allows " + rt.allow + " (method overrides included)"
	}
	return 0, "", ""
}

// trustedPeer reports whether the request's direct peer is a trusted proxy.
func (p *Proxy) trustedPeer(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && p.trusted(ap.Addr().Unmap())
}

package proxy

import (
	"net/http"
	"strings"
)

// droppedExact are client request headers that never reach an upstream, by
// normalised name (lower case, "_" read as "-"): credentials and identity or
// forwarding claims an upstream might trust, and method overrides that would
// get around a route's method list.
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
	"x-auth-user":            {},
	"x-authenticated-user":   {},
	"x-authenticated-userid": {},
	"x-authenticated-scope":  {},
	"x-userinfo":             {},
	"x-id-token":             {},
	"x-access-token":         {},
	"x-http-method-override": {},
	"x-http-method":          {},
	"x-method-override":      {},
	"proxy-connection":       {},
	"keep-alive":             {},
}

// droppedPrefixes cover header families: X-Forwarded-For/-Host/-Proto/-User/
// -Email/-Access-Token/..., X-Original-URL/-Host/..., X-Auth-Request-*,
// X-Remote-User/-Email/-Groups, and the identity headers of cloud load
// balancers and identity-aware proxies (AWS ALB X-Amzn-Oidc-*, Google IAP
// X-Goog-Authenticated-User-*, Azure X-Ms-Client-Principal*, Kong
// X-Consumer-*), which an upstream may trust when deployed behind them too.
var droppedPrefixes = [...]string{"x-forwarded-", "x-original-", "x-auth-request-", "x-remote-",
	"x-amzn-oidc-", "x-goog-authenticated-user-", "x-ms-client-principal", "x-consumer-"}

// isDropped reports whether a normalised header name is never forwarded.
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
	var buf [64]byte
	if len(k) > len(buf) {
		return strings.ReplaceAll(strings.ToLower(k), "_", "-")
	}
	return string(normInto(&buf, k))
}

func normInto(buf *[64]byte, k string) []byte {
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

// scrubRequestHeaders removes every header the client must not be able to
// send upstream, in any spelling. Go canonicalises header keys but keeps
// "X_Forwarded_User" distinct from "X-Forwarded-User", so each key is
// normalised before the lookup. credNames holds the normalised names of every
// route's header credential: a client-sent copy in any spelling is a
// credential no route names, so it goes too, on every route.
func scrubRequestHeaders(h http.Header, credNames map[string]struct{}) {
	var buf [64]byte
	for k := range h {
		var drop bool
		if len(k) > len(buf) {
			n := normHeader(k)
			_, cred := credNames[n]
			drop = isDropped(n) || cred
		} else {
			n := normInto(&buf, k)
			// string(n) in a map lookup or comparison does not allocate.
			_, exact := droppedExact[string(n)]
			_, cred := credNames[string(n)]
			drop = exact || cred || hasDroppedPrefix(n)
		}
		if drop {
			delete(h, k)
		}
	}
}

func hasDroppedPrefix(n []byte) bool {
	for _, p := range droppedPrefixes {
		if len(n) >= len(p) && string(n[:len(p)]) == p {
			return true
		}
	}
	return false
}

// scrubResponseHeaders removes what an upstream must not send the browser.
func scrubResponseHeaders(h http.Header, allowSetCookie bool) {
	if !allowSetCookie {
		delete(h, "Set-Cookie")
	}
	// A challenge would make the browser prompt for credentials meant for
	// Gatehouse's upstream credential, never for the user.
	delete(h, "Www-Authenticate")
	delete(h, "Proxy-Authenticate")
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

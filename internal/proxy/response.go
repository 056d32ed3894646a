package proxy

import (
	"net/http"
	"strings"
)

// responseRules are the proxy-wide inputs of response hygiene, shared by
// every route (built once in New).
type responseRules struct {
	// credNames are the normalised names of every route's header credential.
	credNames map[string]struct{}
	// cookies are the lower-case base names (prefix stripped) of
	// Gatehouse's own cookies, which no upstream may set.
	cookies []string
}

// Header values set on authenticated answers, built once: ReverseProxy
// copies values out of res.Header, and Header.Set/Add never write into an
// existing slice, so sharing them costs no allocation and no aliasing.
var (
	noStoreValue = []string{"no-store"}
	privateValue = []string{"private"}
	cookieValue  = []string{"Cookie"}
)

// scrubResponseHeaders removes what an upstream must not send the browser
// and fixes caching of authenticated answers.
func scrubResponseHeaders(h http.Header, rt *route) {
	if !rt.setCookie {
		delete(h, "Set-Cookie")
	} else if rt.resp != nil && len(h["Set-Cookie"]) > 0 {
		h["Set-Cookie"] = filterSetCookies(h["Set-Cookie"], rt.resp.cookies)
		if len(h["Set-Cookie"]) == 0 {
			delete(h, "Set-Cookie")
		}
	}
	// A challenge would make the browser prompt for credentials meant for
	// Gatehouse's upstream credential, never for the user. Credentials an
	// upstream echoes (Authorization, a route's API key) are Gatehouse's and
	// never the browser's; Clear-Site-Data would let an upstream wipe
	// Gatehouse's own cookies and storage (logging the user out) or, with
	// "executionContexts", reload every tab of the origin.
	var buf nameBuf
	for k := range h {
		var n []byte
		if len(k) <= len(buf) {
			n = normInto(&buf, k)
		} else {
			n = []byte(normHeader(k))
		}
		switch string(n) {
		case "www-authenticate", "proxy-authenticate", "authorization", "proxy-authorization",
			"authentication-info", "proxy-authentication-info", "clear-site-data":
			delete(h, k)
			continue
		}
		if rt.resp != nil {
			if _, cred := rt.resp.credNames[string(n)]; cred {
				delete(h, k)
			}
		}
	}
	if !rt.anonymous {
		cacheAuthenticated(h, rt.allowCaching)
	}
}

// cacheAuthenticated makes an answer given for a session uncacheable by
// shared caches: by default no cache keeps it at all (no-store); a route
// that allows caching keeps the upstream's directives, but never "public"
// or "s-maxage", and gets "private" when it sent none. Vary: Cookie keeps a
// cache from answering one user's request with another's response.
// CDN-specific cache headers take precedence over Cache-Control in the CDNs
// that read them, so they go too.
func cacheAuthenticated(h http.Header, allowCaching bool) {
	delete(h, "Cdn-Cache-Control")
	delete(h, "Surrogate-Control")
	delete(h, "Cloudflare-Cdn-Cache-Control")
	if !allowCaching {
		h["Cache-Control"] = noStoreValue
		delete(h, "Expires")
	} else if cc := h["Cache-Control"]; len(cc) == 0 {
		h["Cache-Control"] = privateValue
	} else if sharedCacheable(cc) {
		h["Cache-Control"] = []string{privateDirectives(cc)}
	}
	vary := h["Vary"]
	if len(vary) == 0 {
		h["Vary"] = cookieValue
		return
	}
	for _, v := range vary {
		for tok := range strings.SplitSeq(v, ",") {
			if t := strings.TrimSpace(tok); t == "*" || strings.EqualFold(t, "cookie") {
				return
			}
		}
	}
	h["Vary"] = append(vary[:len(vary):len(vary)], "Cookie")
}

// cacheDirective is one directive's name, lower-cased, without its value.
func cacheDirective(tok string) string {
	tok = strings.TrimSpace(tok)
	if i := strings.IndexByte(tok, '='); i >= 0 {
		tok = strings.TrimSpace(tok[:i])
	}
	return strings.ToLower(tok)
}

// sharedCacheable reports whether the directives let a shared cache store
// the answer: "public" or "s-maxage" (which implies it), or no "private".
func sharedCacheable(cc []string) bool {
	private := false
	for _, v := range cc {
		for tok := range strings.SplitSeq(v, ",") {
			switch cacheDirective(tok) {
			case "public", "s-maxage":
				return true
			case "private", "no-store":
				private = true
			}
		}
	}
	return !private
}

// privateDirectives rewrites directives for private caches only: "public"
// and "s-maxage" go, "private" comes first.
func privateDirectives(cc []string) string {
	var b strings.Builder
	b.WriteString("private")
	for _, v := range cc {
		for tok := range strings.SplitSeq(v, ",") {
			switch d := cacheDirective(tok); d {
			case "", "public", "s-maxage", "private", "proxy-revalidate":
			default:
				b.WriteString(", ")
				b.WriteString(strings.TrimSpace(tok))
			}
		}
	}
	return b.String()
}

// filterSetCookies drops every Set-Cookie that names one of Gatehouse's own
// cookies in any spelling: any letter case, with or without the __Host-,
// __Secure-, __Http- or __Host-Http- prefix (browsers compare prefixes
// case-insensitively), with spaces around the name, or as a nameless cookie
// ("=__Host-gh=x") that browsers send back as "__Host-gh=x". An upstream
// that could set them would fix the user's session (session fixation) or
// log the user out.
func filterSetCookies(vs []string, protected []string) []string {
	for i, v := range vs {
		if !setsProtectedCookie(v, protected) {
			continue
		}
		out := append(make([]string, 0, len(vs)), vs[:i]...)
		for _, w := range vs[i+1:] {
			if !setsProtectedCookie(w, protected) {
				out = append(out, w)
			}
		}
		return out
	}
	return vs // nothing dropped: no allocation
}

func setsProtectedCookie(v string, protected []string) bool {
	pair, _, _ := strings.Cut(v, ";")
	name, value, found := strings.Cut(pair, "=")
	if !found { // "gh" alone is a nameless cookie whose value is "gh"
		name, value = "", name
	}
	if name = strings.TrimSpace(name); name == "" {
		// A nameless cookie: the browser sends its value alone, which the
		// server then parses as name=value.
		name, _, _ = strings.Cut(value, "=")
		name = strings.TrimSpace(name)
	}
	base := cookieBase(name)
	for _, p := range protected {
		if strings.EqualFold(base, p) {
			return true
		}
	}
	return false
}

// cookieBase strips the cookie-name prefixes browsers give meaning to.
func cookieBase(name string) string {
	for {
		stripped := false
		for _, pre := range [...]string{"__host-http-", "__host-", "__secure-", "__http-"} {
			if len(name) >= len(pre) && strings.EqualFold(name[:len(pre)], pre) {
				name, stripped = name[len(pre):], true
			}
		}
		if !stripped {
			return strings.TrimSpace(name)
		}
	}
}

// newResponseRules builds the response hygiene from the credential names
// (filled in as routes are built) and Gatehouse's cookie names.
func newResponseRules(credNames map[string]struct{}, cookies []string) responseRules {
	r := responseRules{credNames: credNames}
	for _, c := range cookies {
		if b := cookieBase(strings.TrimSpace(c)); b != "" {
			r.cookies = append(r.cookies, b)
		}
	}
	return r
}

package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// csrfStatus answers a request that fails the CSRF check: 401, as Duende BFF
// does, so an SPA written for it treats a refused call like a lost session
// (re-login) rather than an authorization decision. A forged cross-site
// request cannot read the answer either way.
const csrfStatus = http.StatusUnauthorized

// userCredential reports whether a route's credential is the user's (their
// token, or one exchanged from it): an upstream refusing it answers 401 so
// the SPA signs in again. Gatehouse's own credentials (client credentials,
// a static header) are not the user's to renew: a refusal stays a 502.
func userCredential(k CredentialKind) bool {
	return k == CredentialUserToken || k == CredentialTokenExchange
}

// CSRFOptions configures the CSRF check every API request passes.
type CSRFOptions struct {
	// Header must be present with Value on every request (default "X-CSRF"
	// with value "1", the Duende BFF convention SPAs already speak). Browsers
	// cannot add custom headers to cross-site requests without a CORS
	// preflight, which Gatehouse never grants.
	Header string
	Value  string
	// AllowedOrigins are accepted in the Origin header besides PublicURL's
	// origin (scheme://host[:port]).
	AllowedOrigins []string
}

type csrfCheck struct {
	header  string // canonical
	value   string
	origins map[string]struct{}
	// Refusal messages naming the header, built once: the check allocates
	// nothing, refusals included.
	msgMissing, msgInvalid string
}

func newCSRFCheck(publicURL *url.URL, o CSRFOptions) (*csrfCheck, error) {
	c := &csrfCheck{header: o.Header, value: o.Value, origins: map[string]struct{}{}}
	if c.header == "" {
		c.header = "X-CSRF"
	}
	if !validHeaderName(c.header) {
		return nil, fmt.Errorf("csrf header %q is not a valid header name", c.header)
	}
	c.header = http.CanonicalHeaderKey(c.header)
	if c.value == "" {
		c.value = "1"
	}
	c.msgMissing = "API requests must carry the " + c.header + " header"
	c.msgInvalid = "the " + c.header + " header must be " + c.value
	if publicURL == nil {
		return nil, fmt.Errorf("public URL is missing: the CSRF check compares Origin with it")
	}
	all := append([]string{publicURL.String()}, o.AllowedOrigins...)
	for _, s := range all {
		origin, err := canonicalOrigin(s)
		if err != nil {
			return nil, err
		}
		c.origins[origin] = struct{}{}
	}
	return c, nil
}

// canonicalOrigin serialises an origin the way browsers send it: lower-case
// scheme and host, default port omitted, no path.
func canonicalOrigin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("origin %q must look like https://app.example.com", s)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("origin %q must have no path, query or user info", s)
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == "" || (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		return scheme + "://" + host, nil
	}
	return scheme + "://" + host + ":" + port, nil
}

// check returns an error code and message when the request fails the CSRF
// check, or "" when it passes. A WebSocket handshake cannot carry a custom
// header, so for it a matching Origin (which browsers always send) is
// required instead.
func (c *csrfCheck) check(h http.Header, websocket bool) (code, msg string) {
	for _, v := range h["Sec-Fetch-Site"] {
		if strings.EqualFold(strings.TrimSpace(v), "cross-site") {
			return "csrf_cross_site", "cross-site requests are not allowed"
		}
	}
	origins := h["Origin"]
	switch len(origins) {
	case 0:
		if websocket {
			return "csrf_origin_missing", "WebSocket handshakes must carry an Origin header"
		}
	case 1:
		if _, ok := c.origins[origins[0]]; !ok {
			return "csrf_origin_mismatch", "the request's Origin is not the application's origin"
		}
	default:
		return "csrf_origin_mismatch", "the request carries more than one Origin header"
	}
	if websocket {
		return "", ""
	}
	vals := h[c.header]
	if len(vals) == 0 {
		return "csrf_header_missing", c.msgMissing
	}
	if len(vals) != 1 || vals[0] != c.value {
		return "csrf_header_invalid", c.msgInvalid
	}
	return "", ""
}

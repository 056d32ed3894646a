package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// Defaults for RouteSpec fields left zero.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultMaxBodyBytes = 10 << 20
	// DefaultMaxIdleConns is the idle keep-alive connections a route keeps
	// to its upstream (Go's default is 2, which at any concurrency above 2
	// opens a new connection for most requests).
	DefaultMaxIdleConns = 256
)

// CredentialKind names the one credential a route attaches upstream.
type CredentialKind string

// The credential kinds.
const (
	CredentialNone              CredentialKind = "none"
	CredentialUserToken         CredentialKind = "user_token"
	CredentialTokenExchange     CredentialKind = "token_exchange"
	CredentialClientCredentials CredentialKind = "client_credentials"
	CredentialHeader            CredentialKind = "header"
)

// Credential is a route's credential. Only the fields of its Kind may be set.
type Credential struct {
	Kind CredentialKind

	// token_exchange: RFC 8693 parameters (Audience required).
	Audience string
	Scope    string
	Resource string

	// client_credentials: the route's token source (scope/audience are the
	// source's business).
	Source TokenSource

	// header: a static secret sent as HeaderName: HeaderValue.Get(), read on
	// every request so a rotated file takes effect on the next one.
	HeaderName  string
	HeaderValue *secret.Value
}

// RouteSpec describes one API route of the allow-list.
type RouteSpec struct {
	// Name identifies the route in policies, audit records and errors.
	Name string
	// Path is matched against the cleaned request path. Ending in "/", it is
	// a prefix matching itself and everything below it ("/api/profile/"
	// matches "/api/profile/me" but not "/api/profile" nor "/api/profilex");
	// otherwise it matches exactly that path.
	Path string
	// Upstream is the base URL requests are forwarded to (http or https, no
	// query, no fragment, no user info).
	Upstream *url.URL
	// KeepPrefix forwards the full cleaned path. By default (false) Path is
	// stripped: "/api/profile/me" reaches upstream "http://p/" as "/me".
	KeepPrefix bool
	// Methods allowed; empty means GET (and HEAD). HEAD is allowed with GET.
	Methods []string
	// Timeout bounds the wait for the upstream's response headers (so
	// streams may run longer); 0 means DefaultTimeout. Exceeded: 504.
	Timeout time.Duration
	// MaxBodyBytes limits the request body; 0 means DefaultMaxBodyBytes,
	// negative means unlimited. Exceeded: 413.
	MaxBodyBytes int64
	// WebSocket allows WebSocket upgrades (GET only, Origin checked instead
	// of the CSRF header). Upgrades on other routes are refused.
	WebSocket bool
	// AllowSetCookie passes the upstream's Set-Cookie headers to the browser.
	AllowSetCookie bool
	// MaxIdleConns is how many idle keep-alive connections to the upstream
	// the route keeps for reuse; 0 means DefaultMaxIdleConns.
	MaxIdleConns int
	// Anonymous routes need no session (CSRF still applies).
	Anonymous bool
	// AllowCaching keeps the upstream's Cache-Control on authenticated
	// answers (made private: never "public" or "s-maxage"). By default they
	// get "Cache-Control: no-store". Both get "Vary: Cookie".
	AllowCaching bool
	// AllowMethodOverride forwards X-HTTP-Method-Override, X-Method-Override,
	// X-HTTP-Method and accepts a _method query parameter, as long as each
	// names a method of Methods. By default the headers are dropped and the
	// parameter refused (400).
	AllowMethodOverride bool
	// Credential is the one credential attached upstream.
	Credential Credential
	// Authorizer decides each request (required; AllowAll for the default
	// policy).
	Authorizer Authorizer
}

// route is a RouteSpec built for serving: everything parsed once.
type route struct {
	name       string
	path       string
	prefix     bool
	keepPrefix bool
	upstream   *url.URL
	upBase     string // upstream path without trailing slash
	upString   string // upstream URL for audit records
	methods    []string
	allow      string // Allow header value
	timeout    time.Duration
	maxBody    int64
	maxIdle    int
	websocket  bool
	setCookie  bool
	anonymous  bool
	// allowCaching and methodOverride are RouteSpec.AllowCaching and
	// AllowMethodOverride.
	allowCaching   bool
	methodOverride bool
	// resp is the proxy's response hygiene, shared by all routes.
	resp       *responseRules
	cred       Credential
	credHeader string // canonical header name for CredentialHeader
	credNorm   string // normalised header name dropped from client headers
	authz      Authorizer
	transport  *http.Transport
	proxy      http.Handler
	// endpoint marks the stand-in for an Options.Endpoints request.
	endpoint bool
}

// table finds routes by longest prefix without scanning them: one map lookup
// per "/" of the path.
type table struct {
	exact  map[string]*route
	prefix map[string]*route
}

func (t *table) match(p string) *route {
	if r, ok := t.exact[p]; ok {
		return r
	}
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != '/' {
			continue
		}
		if r, ok := t.prefix[p[:i+1]]; ok {
			return r
		}
	}
	return nil
}

var knownMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// buildRoute validates spec and returns every problem found.
func buildRoute(spec RouteSpec, o *Options) (*route, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if spec.Name == "" {
		bad("route has no name")
	}
	r := &route{
		name: spec.Name, path: spec.Path, keepPrefix: spec.KeepPrefix,
		timeout: spec.Timeout, maxBody: spec.MaxBodyBytes, maxIdle: spec.MaxIdleConns, websocket: spec.WebSocket,
		setCookie: spec.AllowSetCookie, anonymous: spec.Anonymous, cred: spec.Credential,
		allowCaching: spec.AllowCaching, methodOverride: spec.AllowMethodOverride,
		authz: spec.Authorizer,
	}
	if spec.Path == "" || spec.Path[0] != '/' {
		bad("path must start with /")
	} else if !isCleanPath(spec.Path) {
		bad("path %q is not clean (no dot segments, //, escapes, ; or backslashes)", spec.Path)
	} else if spec.Path == "/" {
		bad("path / would proxy everything: give the API its own prefix such as /api/")
	} else if reservedPath(spec.Path) {
		bad("path %s is reserved for Gatehouse's own endpoints (/bff, /.well-known)", spec.Path)
	}
	r.prefix = strings.HasSuffix(spec.Path, "/")
	if u := spec.Upstream; u == nil {
		bad("upstream is missing")
	} else {
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			bad("upstream scheme must be http or https")
		case u.Host == "":
			bad("upstream has no host")
		case u.User != nil:
			bad("upstream must not contain user info: use a header credential")
		case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
			bad("upstream must not have a query or fragment")
		case u.RawPath != "":
			bad("upstream path must not contain percent-encoded characters")
		case u.Path != "" && !isCleanPath(u.Path):
			bad("upstream path must be clean (no dot segments, //, ; or backslashes)")
		}
		cu := *u
		if cu.Path == "" {
			cu.Path = "/"
		}
		r.upstream = &cu
		r.upString = cu.String()
		r.upBase = strings.TrimSuffix(cu.Path, "/")
	}
	if len(spec.Methods) == 0 {
		r.methods = []string{http.MethodGet, http.MethodHead}
	} else {
		for _, m := range spec.Methods {
			if !slices.Contains(knownMethods, m) {
				bad("method %q is not supported (use upper-case GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)", m)
				continue
			}
			if !slices.Contains(r.methods, m) {
				r.methods = append(r.methods, m)
			}
		}
		if slices.Contains(r.methods, http.MethodGet) && !slices.Contains(r.methods, http.MethodHead) {
			r.methods = append(r.methods, http.MethodHead)
		}
	}
	r.allow = strings.Join(r.methods, ", ")
	if spec.WebSocket && !slices.Contains(r.methods, http.MethodGet) {
		bad("websocket routes must allow GET (the upgrade request's method)")
	}
	if r.timeout == 0 {
		r.timeout = DefaultTimeout
	} else if r.timeout < 0 {
		bad("timeout must be positive")
	}
	if r.maxBody == 0 {
		r.maxBody = DefaultMaxBodyBytes
	}
	if r.maxIdle == 0 {
		r.maxIdle = DefaultMaxIdleConns
	} else if r.maxIdle < 0 {
		bad("max idle connections must be positive")
	}
	if spec.Authorizer == nil {
		bad("no authorizer: every route needs a policy (proxy.AllowAll{} for the default one)")
	}
	errs = append(errs, checkCredential(r, spec, o)...)
	if len(errs) > 0 {
		name := spec.Name
		if name == "" {
			name = spec.Path
		}
		return nil, fmt.Errorf("route %q: %w", name, errors.Join(errs...))
	}
	return r, nil
}

func checkCredential(r *route, spec RouteSpec, o *Options) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	c := spec.Credential
	if c.Kind != CredentialTokenExchange && (c.Audience != "" || c.Scope != "" || c.Resource != "") {
		bad("audience/scope/resource apply only to token_exchange credentials")
	}
	if c.Kind != CredentialClientCredentials && c.Source != nil {
		bad("a token source applies only to client_credentials credentials")
	}
	if c.Kind != CredentialHeader && (c.HeaderName != "" || c.HeaderValue != nil) {
		bad("header name/value apply only to header credentials")
	}
	needUser := func() {
		if spec.Anonymous {
			bad("credential %s needs a signed-in user but the route is anonymous", c.Kind)
		}
		if o.UserTokens == nil {
			bad("credential %s needs Options.UserTokens", c.Kind)
		}
	}
	switch c.Kind {
	case CredentialNone:
	case CredentialUserToken:
		needUser()
	case CredentialTokenExchange:
		needUser()
		if c.Audience == "" {
			bad("token_exchange needs an audience")
		}
		if o.Exchanger == nil {
			bad("token_exchange needs Options.Exchanger")
		}
	case CredentialClientCredentials:
		if c.Source == nil {
			bad("client_credentials needs a token source")
		}
	case CredentialHeader:
		if !validHeaderName(c.HeaderName) {
			bad("header credential needs a valid header name")
		} else {
			r.credHeader = http.CanonicalHeaderKey(c.HeaderName)
			r.credNorm = normHeader(c.HeaderName)
			if _, reserved := reservedHeaders[r.credNorm]; reserved || (isDropped(r.credNorm) && r.credNorm != "authorization") {
				bad("header credential cannot use the reserved header %s", r.credHeader)
			}
		}
		if c.HeaderValue == nil || c.HeaderValue.Get().IsZero() {
			bad("header credential needs a non-empty value")
		}
	case "":
		bad("no credential: name one of none, user_token, token_exchange, client_credentials, header")
	default:
		bad("credential kind %q is not supported", c.Kind)
	}
	return errs
}

// reservedHeaders may not carry a header credential: they are hop-by-hop,
// framing or set by the proxy itself.
var reservedHeaders = map[string]struct{}{
	"host": {}, "connection": {}, "keep-alive": {}, "te": {}, "trailer": {},
	"transfer-encoding": {}, "upgrade": {}, "content-length": {}, "content-type": {},
	"proxy-connection": {}, "user-agent": {},
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isCleanPath reports whether p is already in CleanPath's output form.
func isCleanPath(p string) bool {
	clean, err := CleanPath((&url.URL{Path: p}).EscapedPath())
	return err == nil && clean == p
}

// reservedPath reports whether a route path lies in a space Gatehouse keeps
// for itself: /bff (its endpoints) and /.well-known (its discovery
// documents), compared case-insensitively so no spelling of them can be
// routed to an upstream.
func reservedPath(p string) bool {
	for _, r := range [...]string{"/bff", "/.well-known"} {
		if len(p) >= len(r) && strings.EqualFold(p[:len(r)], r) && (len(p) == len(r) || p[len(r)] == '/') {
			return true
		}
	}
	return false
}

// Owns reports whether a request path (escaped or cleaned) belongs to the
// proxy: it lies below a prefix route's first segment ("/api/" for
// "/api/profile/"), or it is exactly a one-segment route or a mount point
// without its slash ("/api"). A one-segment exact route such as "/b" owns
// "/b" only, never "/bff/login" or "/b/x": comparing bare string prefixes
// would hand Gatehouse's own endpoints to the proxy.
func (p *Proxy) Owns(path string) bool {
	for _, pre := range p.prefixes {
		if strings.HasSuffix(pre, "/") {
			if strings.HasPrefix(path, pre) || path+"/" == pre {
				return true
			}
		} else if path == pre {
			return true
		}
	}
	return false
}

// Package config loads, checks and defaults Gatehouse's YAML configuration,
// reporting every problem at once with file:line and the key path.
package config

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"log/slog"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// Config is one loaded, checked and defaulted configuration file: the BFF of
// one frontend. Every field holds its effective value (defaults filled in,
// relative paths made absolute, secret references resolved).
type Config struct {
	// File is the configuration file's name as given to Load or Parse.
	File string
	// BaseDir is the directory relative paths were resolved against.
	BaseDir string

	// Client names the frontend in policies (`client`) and audit records. Default "web".
	Client string
	// Listen is the public listener's host:port. Default 127.0.0.1:8080.
	Listen string
	// AdminListen is the admin listener's host:port. Default 127.0.0.1:9090.
	AdminListen string
	// PublicURL is the frontend's URL as browsers see it: scheme://host[:port]
	// (the scheme's default port dropped) and, for a path-bound frontend, a
	// path prefix without a trailing slash ("/shop"); Path is "" otherwise.
	PublicURL *url.URL
	// TrustedProxies may set X-Forwarded-*; empty means no one may.
	TrustedProxies []netip.Prefix

	Frontend Frontend
	Identity Identity
	Session  Session
	CSRF     CSRF
	Routes   []Route
	// RateLimits is the rate_limits section (defaults filled in).
	RateLimits RateLimits
	// Composites are checked against Routes when the gateway builds them.
	Composites []Composite
	// OAuth is nil when the oauth section is absent (no front door).
	OAuth *OAuth
	// Agents is nil when the agents section is absent (no delegation).
	Agents    *Agents
	Policy    Policy
	Audit     Audit
	Server    Server
	Telemetry Telemetry
	Admin     Admin
	// SecurityHeaders overrides the response security headers (security_headers:).
	SecurityHeaders SecurityHeaders
	// TLS, when set, makes the public listener serve HTTPS itself.
	TLS *TLS

	// Key is where a frontend's settings are in the file: "frontends[i]",
	// or "" in the one-frontend form.
	Key string

	warnings []Problem
	// frontends are the entries of the frontends: form (see Frontends);
	// nil in the one-frontend form.
	frontends []*Config
	// clientNode and urlNode place a frontends[] entry's client and
	// public_url, for problems found across entries.
	clientNode, urlNode *yaml.Node
}

// TLS is the public listener's certificate and key (PEM files). Both files
// are re-read when they change, so a renewed certificate takes effect
// without a restart.
type TLS struct {
	CertFile, KeyFile string
}

// Frontend says where the SPA is served from. At most one field is set; both
// empty means Gatehouse serves no frontend.
type Frontend struct {
	// StaticDir is an absolute path to a directory of static files.
	StaticDir string
	// Upstream is a dev server (or any HTTP server) that serves the SPA.
	Upstream *url.URL
}

// ClientAuth is how Gatehouse authenticates to the IdP's token endpoint.
type ClientAuth string

// Supported client authentication methods.
const (
	ClientSecretBasic ClientAuth = "client_secret_basic"
	ClientSecretPost  ClientAuth = "client_secret_post"
	// PrivateKeyJWT signs a JWT with Identity.PrivateKey (RFC 7523): no
	// shared secret.
	PrivateKeyJWT ClientAuth = "private_key_jwt"
)

// PARMode says when to use Pushed Authorization Requests (RFC 9126).
type PARMode string

// PAR modes.
const (
	PARAuto   PARMode = "auto"   // use PAR when discovery advertises it
	PARAlways PARMode = "always" // fail the login when the IdP has no PAR endpoint
	PARNever  PARMode = "never"
)

// Identity is the OpenID Provider and Gatehouse's client registration there.
type Identity struct {
	// Issuer is the issuer identifier exactly as written (OIDC compares it byte for byte).
	Issuer       string
	ClientID     string
	ClientSecret *secret.Value // nil with PrivateKeyJWT
	ClientAuth   ClientAuth
	// PrivateKey is the PEM private key for PrivateKeyJWT, by reference;
	// re-read on rotation. PrivateKeyID is the assertions' kid (default:
	// the key's JWK thumbprint).
	PrivateKey   *secret.Value
	PrivateKeyID string
	// Scopes requested at login. Default [openid profile email offline_access].
	Scopes                      []string
	PushedAuthorizationRequests PARMode
	// PostLogoutRedirect is the absolute URL the IdP sends the browser to
	// after logout. Default: public_url + "/".
	PostLogoutRedirect *url.URL
}

// StoreKind names a session store.
type StoreKind string

// Session stores.
const (
	StoreMemory StoreKind = "memory"
	StoreBolt   StoreKind = "bolt"
	StoreRedis  StoreKind = "redis"
)

// Session configures server-side sessions and the session cookie.
type Session struct {
	Store StoreKind
	Bolt  BoltStore
	Redis RedisStore
	// CookieName as configured; use Config.EffectiveCookieName for the name to set.
	CookieName          string
	SameSite            http.SameSite // http.SameSiteStrictMode or http.SameSiteLaxMode
	IdleTimeout         time.Duration
	AbsoluteTimeout     time.Duration
	RefreshBeforeExpiry time.Duration
	// CacheMemory bounds the estimated heap bytes of the frontend's cache
	// of decrypted sessions.
	CacheMemory int64
	// CookieKeys encrypt the login-state cookie: the first key seals, every
	// key opens. Empty means a random key per process (see Warnings).
	CookieKeys []*secret.Value
}

// BoltStore is the embedded store's settings.
type BoltStore struct {
	Path string // absolute
}

// RedisMode is how Gatehouse reaches Redis.
type RedisMode string

// Redis modes, decided by which keys are set.
const (
	RedisStandalone RedisMode = "standalone" // url
	RedisSentinel   RedisMode = "sentinel"   // addrs + master_name
	RedisCluster    RedisMode = "cluster"    // addrs without master_name
)

// RedisStore is the Redis store's settings. Mode tells which fields apply:
// standalone uses URL (whose /N path, if any, is already reflected in DB);
// sentinel uses Addrs (the sentinels) and MasterName; cluster uses Addrs.
type RedisStore struct {
	Mode       RedisMode // empty when session.redis is not configured
	URL        string    // redis:// or rediss://, never with a password in it
	Addrs      []string  // host:port
	MasterName string
	Password   *secret.Value // nil when not set
	DB         int
	KeyPrefix  string
}

// CSRF configures cross-site request forgery checks.
type CSRF struct {
	// Header every cookie-borne API request must carry, as written (header
	// names match case-insensitively). Default X-CSRF.
	Header string
	// AllowedOrigins are the ASCII-serialised origins accepted in Origin:
	// public_url's origin first, then csrf.allowed_origins.
	AllowedOrigins []string
}

// Route is one entry of the API allow-list.
type Route struct {
	// Pos is where the route's list item starts; Key is "routes[i]".
	Pos         Pos
	Key         string
	Name        string
	Path        string // clean, starts with "/"
	Upstream    *url.URL
	StripPrefix bool // default true
	// Methods allowed (upper case). Default [GET]; the proxy allows HEAD
	// wherever GET is allowed.
	Methods    []string
	Credential Credential
	// Allow is the route's CEL expression; Allow.Source is empty when not set.
	Allow          Expr
	Anonymous      bool
	Timeout        time.Duration // wait for the upstream's response headers; default 30s
	MaxBody        int64         // bytes; default 10 MiB
	WebSocket      bool
	AllowSetCookie bool
	// AllowCaching keeps the upstream's (private) caching of authenticated
	// answers instead of Cache-Control: no-store. Default false.
	AllowCaching bool
	// AllowMethodOverride forwards method-override headers and _method
	// naming one of Methods. Default false (dropped / refused).
	AllowMethodOverride bool
	// MaxIdleConns is how many idle keep-alive connections to the upstream
	// are kept for reuse; default DefaultMaxIdleConns.
	MaxIdleConns int
}

// Expr is an expression kept with its position so that the stage compiling
// it can report errors as "file:line: key: message" (see Expr.Problem).
type Expr struct {
	Source string
	Pos    Pos
	Key    string // e.g. routes[0].allow
	// segs place each run of Source in the file: a block scalar's lines
	// start on the lines after the key, and a folded block joins lines.
	segs []exprSeg
}

// exprSeg says that Source[off:] starts at file line, column col.
type exprSeg struct{ off, line, col int }

// Problem returns a Problem about the expression, formatted like the
// loader's own: Problem.String() gives "file:line: routes[0].allow: message".
func (e Expr) Problem(message string) Problem { return e.Pos.Problem(e.Key, message) }

// ProblemAt returns a Problem at a position inside the expression (line and
// column 1-based within Source, as expression compilers report them),
// translated to the file's line and column.
func (e Expr) ProblemAt(line, col int, message string) Problem {
	p := e.Problem(message)
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(e.Source[off:], '\n')
		if i < 0 {
			return p
		}
		off += i + 1
	}
	if col > 1 {
		off += col - 1
	}
	for i := len(e.segs) - 1; i >= 0; i-- {
		if s := e.segs[i]; s.off <= off {
			p.Line, p.Column = s.line, s.col+(off-s.off)
			// Problems print file:line; an expression's problem also
			// says where on the line, as CEL positions are precise.
			p.Message = fmt.Sprintf("column %d: %s", p.Column, message)
			return p
		}
	}
	return p
}

// CredentialKind is the one kind of credential a route attaches.
type CredentialKind string

// Credential kinds.
const (
	CredUserToken         CredentialKind = "user_token"
	CredTokenExchange     CredentialKind = "token_exchange"
	CredClientCredentials CredentialKind = "client_credentials"
	CredHeader            CredentialKind = "header"
	CredNone              CredentialKind = "none"
)

// Credential is a route's credential. Exactly the pointer matching Kind is
// set (ClientCredentials is set, possibly empty, for client_credentials).
type Credential struct {
	Kind              CredentialKind
	TokenExchange     *TokenExchange
	ClientCredentials *ClientCredentials
	Header            *HeaderCredential
}

// TokenExchange asks the IdP (RFC 8693) for a token for one audience/resource
// in exchange for the user's access token.
type TokenExchange struct {
	Audience string // required
	Scope    string // space-separated; optional
	Resource string // absolute URI; optional
}

// ClientCredentials obtains Gatehouse's own token (client credentials grant).
type ClientCredentials struct {
	Scope    string
	Audience string
}

// HeaderCredential is a static header (an API key) added to the request.
type HeaderCredential struct {
	Name  string // canonical header name
	Value *secret.Value
}

// Policy configures authorization beyond each route's CEL expression.
type Policy struct {
	PDP *PDP // nil when no external PDP is configured
}

// PDP is an external OpenID AuthZEN 1.0 policy decision point.
type PDP struct {
	URL      *url.URL
	Token    *secret.Value // nil when not set
	Timeout  time.Duration // default 200ms
	CacheTTL time.Duration // default 0: no caching
}

// AuditSink names where audit records go.
type AuditSink string

// Audit sinks.
const (
	AuditStdout AuditSink = "stdout"
	AuditFile   AuditSink = "file"
)

// AuditFailure is what happens to a request whose audit record cannot be written.
type AuditFailure string

// Audit failure modes.
const (
	// AuditFailDeny refuses the request (503): nothing happens unaudited.
	AuditFailDeny AuditFailure = "deny"
	// AuditFailContinue serves the request and logs the failure: records
	// are lost while the sink fails.
	AuditFailContinue AuditFailure = "continue"
)

// Server configures the listeners' limits and shutdown.
type Server struct {
	// ShutdownTimeout is how long in-flight requests get after SIGTERM; streams still open then
	// are closed (their records written). Default 30s.
	ShutdownTimeout time.Duration
	// DrainDelay keeps accepting (with Connection: close, /readyz 503) after SIGTERM. Default 0.
	DrainDelay time.Duration
	// BodyReadTimeout is the idle timeout per request body read (408 when it passes). Default 10s.
	BodyReadTimeout time.Duration
	// MaxConnections caps the public listener's open connections; 0 derives it from the fd limit.
	MaxConnections int
	// ReadyRequiresIdP makes /readyz 503 while the IdP is unreachable. Default false: the IdP
	// state is reported, but existing sessions still work, so the instance stays in rotation.
	ReadyRequiresIdP bool
}

// Audit configures the hash-chained audit log.
type Audit struct {
	Sink AuditSink
	Path string // absolute; set when Sink is file
	// Durability is what a request waits for before it is forwarded: "written" (default: its
	// decision record is written to the file, so a crash of the process loses none), "sync"
	// (... and fsynced, so a crash of the machine loses none either) or "interval" (nothing;
	// records are fsynced every FsyncInterval).
	Durability    string
	FsyncInterval time.Duration // upper bound on unsynced records; default 1s
	MaxSize       int64         // bytes before rotation; 0 means never rotate
	Buffer        int           // records accepted but not yet written; default 4096
	OnFailure     AuditFailure
}

// Telemetry configures logs, metrics and traces.
type Telemetry struct {
	OTLPEndpoint *url.URL // nil: no trace export
	LogLevel     slog.Level
}

// Admin configures the admin API on admin_listen.
type Admin struct {
	// Token is the bearer token for /admin/*; nil disables the admin API
	// (health, readiness and metrics stay available).
	Token *secret.Value
}

// Warnings returns what is allowed but probably not intended (a secret
// written in the file, a per-process cookie key, development cookie
// settings). `gatehouse check` and start-up print them.
func (c *Config) Warnings() []Problem { return append([]Problem(nil), c.warnings...) }

// Secrets lists every secret value the configuration holds, for the
// rotation watcher (secret.Watch).
func (c *Config) Secrets() []*secret.Value {
	var out []*secret.Value
	add := func(v *secret.Value) {
		if v != nil {
			out = append(out, v)
		}
	}
	add(c.Session.Redis.Password)
	if c.Policy.PDP != nil {
		add(c.Policy.PDP.Token)
	}
	add(c.Admin.Token)
	for _, f := range c.Frontends() {
		add(f.Identity.ClientSecret)
		add(f.Identity.PrivateKey)
		for _, k := range f.Session.CookieKeys {
			add(k)
		}
		for _, r := range f.Routes {
			if r.Credential.Header != nil {
				add(r.Credential.Header.Value)
			}
		}
	}
	return out
}

// Development reports whether public_url is plain http on a loopback host,
// where browsers refuse __Host-/__Secure- cookies and Secure cookies are not
// needed.
func (c *Config) Development() bool {
	return c.PublicURL != nil && c.PublicURL.Scheme == "http"
}

// SecureCookies reports whether cookies get the Secure attribute (false only
// in development, see Development).
func (c *Config) SecureCookies() bool { return !c.Development() }

// EffectiveCookieName is the session cookie's name as set on responses: the
// configured name, without its __Host- or __Secure- prefix in development.
func (c *Config) EffectiveCookieName() string {
	if c.Development() {
		return stripCookiePrefix(c.Session.CookieName)
	}
	return c.Session.CookieName
}

// RandomCookieKeys reports whether the login-state cookie key is random per
// process (session.cookie_keys not set): correct only with a single instance.
func (c *Config) RandomCookieKeys() bool { return len(c.Session.CookieKeys) == 0 }

// CookieKeyRing builds the login-state cookie's key ring from the current
// values of session.cookie_keys (first seals, all open), or a random
// per-process ring when none are configured. Call it again after a key file
// changes (see secret.Value.OnChange).
func (s *Session) CookieKeyRing() (*secret.KeyRing, error) {
	if len(s.CookieKeys) == 0 {
		return secret.RandomKeyRing(), nil
	}
	keys := make([]secret.Secret, len(s.CookieKeys))
	for i, k := range s.CookieKeys {
		keys[i] = k.Get()
	}
	kr, err := secret.NewKeyRing(keys...)
	if err != nil {
		return nil, fmt.Errorf("session.cookie_keys: %w", err)
	}
	return kr, nil
}

// Frontends lists every frontend of the process, each a complete Config:
// its own per-frontend settings plus the shared process-wide ones. In the
// top-level one-frontend form it is []*Config{c} (the Config itself); in the
// frontends: form the root Config holds only the process-wide settings (its
// per-frontend fields are zero) and the entries come back in file order.
// Serving code iterates Frontends; process-wide code (listeners, store,
// audit, admin) reads the root. The slice is the caller's.
func (c *Config) Frontends() []*Config {
	if len(c.frontends) == 0 {
		return []*Config{c}
	}
	return slices.Clone(c.frontends)
}

// MultiFrontend reports whether the file uses the frontends: form.
func (c *Config) MultiFrontend() bool { return len(c.frontends) > 0 }

// PathPrefix is a path-bound frontend's prefix ("/shop"), or "" when the
// frontend is served at the root of its host.
func (c *Config) PathPrefix() string {
	if c.PublicURL == nil {
		return ""
	}
	return c.PublicURL.Path
}

// CookiePath is the Path attribute of the frontend's cookies: its prefix,
// or "/".
func (c *Config) CookiePath() string {
	if p := c.PathPrefix(); p != "" {
		return p
	}
	return "/"
}

// Origin returns public_url's origin, e.g. "https://app.example.com".
func (c *Config) Origin() string { return c.PublicURL.Scheme + "://" + c.PublicURL.Host }

// Route returns the route named name, or nil.
func (c *Config) Route(name string) *Route {
	for i := range c.Routes {
		if c.Routes[i].Name == name {
			return &c.Routes[i]
		}
	}
	return nil
}

// Package oidc makes Gatehouse the OpenID Connect confidential client of one
// SPA: login, callback, user info, logout and back-channel logout endpoints,
// plus the token service (refresh, token exchange, client credentials) the
// proxy uses to attach credentials.
package oidc

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// Client authentication methods at the IdP's token, PAR and revocation endpoints.
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
)

// PAR modes (RFC 9126 pushed authorization requests).
const (
	PARAuto   = "auto"   // use PAR when the IdP advertises it (default)
	PARAlways = "always" // refuse to start unless the IdP advertises it
	PARNever  = "never"
)

// Defaults for Options fields left zero. They equal the configuration's
// defaults (config.DefaultRefreshBeforeExpiry, config.DefaultCSRFHeader);
// gateway's TestDefaultsAgree keeps them so.
const (
	DefaultRefreshBeforeExpiry = 30 * time.Second
	DefaultCSRFHeader          = "X-CSRF"
)

// Options configure the OIDC client. The caller maps its configuration onto
// it; zero values take the documented defaults.
type Options struct {
	// Issuer is the IdP's issuer URL; discovery reads Issuer/.well-known/openid-configuration.
	Issuer string
	// ClientID and ClientSecret identify Gatehouse at the IdP. ClientSecret is
	// read on every use so a rotated secret takes effect without restart.
	ClientID     string
	ClientSecret *secret.Value
	// ClientAuth is AuthClientSecretBasic (default), AuthClientSecretPost or
	// AuthPrivateKeyJWT.
	ClientAuth string
	// PrivateKey is the PEM private key for AuthPrivateKeyJWT (then
	// ClientSecret is not needed). It is read on every use, so a rotated
	// key file takes effect without a restart.
	PrivateKey *secret.Value
	// PrivateKeyID is the kid of the client assertions; default the key's
	// RFC 7638 JWK thumbprint.
	PrivateKeyID string
	// Scopes requested at login; default openid, profile, email, offline_access.
	// "openid" is added when missing.
	Scopes []string
	// PAR is PARAuto (default), PARAlways or PARNever.
	PAR string
	// PARLimits bounds how often /bff/login pushes an authorization request.
	PARLimits PARLimits
	// ClientIP names the client for per-client limits (after trusted-proxy
	// resolution); default the peer address.
	ClientIP func(*http.Request) string

	// PublicURL is Gatehouse's external origin (https://app.example.com).
	// The callback is PublicURL/bff/callback unless RedirectURL is set.
	PublicURL   string
	RedirectURL string
	// PostLogoutRedirectURL is sent to the IdP's end-session endpoint;
	// default PublicURL + "/". It must be registered at the IdP.
	PostLogoutRedirectURL string

	// CookieName is the session cookie's name (e.g. "__Host-gatehouse"; for
	// plain-http local development a name without the __Host- prefix).
	CookieName string
	// PathPrefix is a path-bound frontend's prefix ("/shop"; PublicURL then
	// ends with it): the cookies get Path=PathPrefix (so the name must use
	// __Secure-, never __Host-), and returnUrl must stay under it. Empty for
	// a frontend at the root of its host.
	PathPrefix string
	// CookieSameSite defaults to http.SameSiteStrictMode.
	CookieSameSite http.SameSite
	// CookieKeys encrypts and authenticates the login-state cookie.
	CookieKeys *secret.KeyRing

	// Sessions is the session manager (session.Manager satisfies it).
	Sessions Sessions
	// HTTPClient talks to the IdP; default a client with a 10s timeout.
	HTTPClient *http.Client
	// Clock defaults to time.Now.
	Clock func() time.Time
	// RefreshBeforeExpiry: an access token this close to expiry is refreshed
	// before use; default 60s.
	RefreshBeforeExpiry time.Duration
	// CSRFHeader is the configured CSRF header (csrf.header): a request
	// carrying it is an XHR and gets JSON answers. Default DefaultCSRFHeader.
	CSRFHeader string
	// LoginStateTTL bounds the time between /bff/login and /bff/callback; default 10m.
	LoginStateTTL time.Duration
	// KeyRefreshInterval is the least time between two fetches of the IdP's
	// JWKS prompted by a token whose key we do not know; default 1m.
	KeyRefreshInterval time.Duration

	// Handoff takes the sessions of logins started with StartHandoff; nil
	// when nothing starts such logins.
	Handoff Handoff

	// Logger receives operational messages (never a token or secret); default slog.Default().
	Logger *slog.Logger
	// Auditor receives security events; optional.
	Auditor Auditor
}

// Sessions is the part of session.Manager this package uses (consumer-side
// interface, so tests and the lead's wiring can pass the real Manager).
type Sessions interface {
	Create(ctx context.Context, s *session.Session) (session.Handle, error)
	Load(ctx context.Context, h session.Handle, slide bool) (*session.Session, error)
	// LoadFresh reads the session from the store, bypassing (and then
	// replacing) any cached copy; used under the refresh lock.
	LoadFresh(ctx context.Context, h session.Handle) (*session.Session, error)
	Update(ctx context.Context, h session.Handle, s *session.Session) error
	// End* end sessions with a cause; the session manager tells every
	// per-session cache (session.Manager.OnEnd).
	End(ctx context.Context, id string, cause session.EndCause) error
	EndBySubject(ctx context.Context, sub string, cause session.EndCause) ([]string, error)
	EndByIdPSession(ctx context.Context, sid string, cause session.EndCause) ([]string, error)
	Lock(ctx context.Context, name string, ttl time.Duration) (func(), error)
	Once(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// Handoff takes over a login started with Handler.StartHandoff (the OAuth
// front door for native apps): the session the login produced is handed to
// it, not stored as the browser's session, and no session cookie is set.
type Handoff interface {
	// FinishLogin receives the login's state (as given to StartHandoff's
	// keep) and the new session, not yet stored; it stores what it needs
	// and answers the browser. The login is already audited.
	FinishLogin(w http.ResponseWriter, r *http.Request, state string, s *session.Session)
	// FailLogin is told that the IdP refused the login (its error code,
	// checked to be a plain token); it answers the browser and reports
	// true, or reports false when it has nothing pending for state.
	FailLogin(w http.ResponseWriter, r *http.Request, state, idpError string) bool
	// FinishBrowserLogin answers a browser handoff login: the session is
	// stored and its cookie set on w already.
	FinishBrowserLogin(w http.ResponseWriter, r *http.Request, state string, h session.Handle, s *session.Session)
}

// Auditor receives security events (audit.EventLogin, EventLoginFailed,
// EventLogout, EventBackchannelLogout, EventTokenRefresh, EventRefreshFailed,
// EventTokenExchange). *audit.Logger satisfies it. Records never hold a token
// or secret. A failed Log makes a login fail (503, session removed); events
// that end sessions or renew tokens proceed and the failure is logged.
type Auditor interface {
	Log(ctx context.Context, rec audit.Record) error
}

// providerMeta holds the discovery fields go-oidc does not expose.
type providerMeta struct {
	PAREndpoint        string   `json:"pushed_authorization_request_endpoint"`
	RequirePAR         bool     `json:"require_pushed_authorization_requests"`
	PromptValues       []string `json:"prompt_values_supported"`
	ISSParameter       bool     `json:"authorization_response_iss_parameter_supported"`
	RevocationEndpoint string   `json:"revocation_endpoint"`
	EndSessionEndpoint string   `json:"end_session_endpoint"`
	CodeChallenge      []string `json:"code_challenge_methods_supported"`
	AuthMethods        []string `json:"token_endpoint_auth_methods_supported"`
	JWKSURI            string   `json:"jwks_uri"`
	IDTokenAlgs        []string `json:"id_token_signing_alg_values_supported"`
}

// Handler serves the /bff management endpoints and owns the token service.
type Handler struct {
	opts     Options
	provider *oidc.Provider
	meta     providerMeta
	endpoint oauth2.Endpoint
	verifier *oidc.IDTokenVerifier
	// logoutVerifier checks logout tokens: same keys, issuer and audience,
	// but expiry is checked by us with the injected clock and leeway.
	logoutVerifier *oidc.IDTokenVerifier
	usePAR         bool
	secureCookies  bool
	loginCookie    string
	postLogout     string
	log            *slog.Logger
	tokens         *Tokens
	parLimit       *parLimiter
	clientSigner   *clientSigner
}

// New discovers the IdP and builds the handler. It fails when discovery
// fails or the options are unusable; errors say which option to fix.
func New(ctx context.Context, o Options) (*Handler, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	h := &Handler{opts: o, log: o.Logger, clientSigner: &clientSigner{}}
	if o.ClientAuth == AuthPrivateKeyJWT {
		// Fail at start, not at the first login, when the key is unusable.
		if _, err := h.assertionSigner(); err != nil {
			return nil, fmt.Errorf("oidc options: %w", err)
		}
	}
	pub, _ := url.Parse(o.PublicURL)
	h.secureCookies = pub.Scheme == "https"
	h.loginCookie = o.CookieName + "-login"
	h.postLogout = o.PostLogoutRedirectURL

	p, err := oidc.NewProvider(h.idpContext(ctx), o.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover OIDC provider %s: %w", o.Issuer, err)
	}
	h.provider = p
	if err := p.Claims(&h.meta); err != nil {
		return nil, fmt.Errorf("read discovery document of %s: %w", o.Issuer, err)
	}
	if len(h.meta.CodeChallenge) > 0 && !slices.Contains(h.meta.CodeChallenge, "S256") {
		return nil, fmt.Errorf("IdP %s does not support PKCE S256 (code_challenge_methods_supported): Gatehouse requires it", o.Issuer)
	}
	switch o.PAR {
	case PARAlways:
		if h.meta.PAREndpoint == "" {
			return nil, fmt.Errorf("oidc.par is %q but IdP %s advertises no pushed_authorization_request_endpoint: use %q", PARAlways, o.Issuer, PARAuto)
		}
		h.usePAR = true
	case PARAuto:
		h.usePAR = h.meta.PAREndpoint != ""
	}
	if h.meta.RequirePAR && !h.usePAR {
		return nil, fmt.Errorf("IdP %s requires pushed authorization requests but oidc.par is %q", o.Issuer, PARNever)
	}
	h.endpoint = p.Endpoint()
	if o.ClientAuth == AuthClientSecretPost || o.ClientAuth == AuthPrivateKeyJWT {
		h.endpoint.AuthStyle = oauth2.AuthStyleInParams
	} else {
		h.endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	if h.meta.JWKSURI == "" {
		return nil, fmt.Errorf("the discovery document of %s has no jwks_uri", o.Issuer)
	}
	// One key set for ID and logout tokens: a forged token's unknown kid
	// re-fetches the JWKS at most once per KeyRefreshInterval.
	keys := &keySet{url: h.meta.JWKSURI, client: o.HTTPClient, now: o.Clock, interval: o.KeyRefreshInterval}
	algs := signingAlgs(h.meta.IDTokenAlgs)
	h.verifier = oidc.NewVerifier(o.Issuer, keys, &oidc.Config{ClientID: o.ClientID, Now: o.Clock, SupportedSigningAlgs: algs})
	h.logoutVerifier = oidc.NewVerifier(o.Issuer, keys, &oidc.Config{ClientID: o.ClientID, SkipExpiryCheck: true, SupportedSigningAlgs: algs})
	h.tokens = &Tokens{h: h}
	h.parLimit = newPARLimiter(o.PARLimits, o.Clock, o.ClientIP)
	return h, nil
}

func (o *Options) defaults() error {
	var problems []string
	if o.Issuer == "" {
		problems = append(problems, "issuer is required")
	}
	if o.ClientID == "" {
		problems = append(problems, "client_id is required")
	}
	switch o.ClientAuth {
	case "":
		o.ClientAuth = AuthClientSecretBasic
	case AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT:
	default:
		problems = append(problems, fmt.Sprintf("client_auth %q is not supported: use %s, %s or %s", o.ClientAuth, AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT))
	}
	if o.ClientAuth == AuthPrivateKeyJWT {
		if o.PrivateKey == nil || o.PrivateKey.Get().IsZero() {
			problems = append(problems, "private_key is required with client_auth private_key_jwt")
		}
	} else if o.ClientSecret == nil || o.ClientSecret.Get().IsZero() {
		problems = append(problems, "client_secret is required (Gatehouse is a confidential client)")
	}
	switch o.PAR {
	case "":
		o.PAR = PARAuto
	case PARAuto, PARAlways, PARNever:
	default:
		problems = append(problems, fmt.Sprintf("par %q is not one of auto, always, never", o.PAR))
	}
	pub, err := url.Parse(o.PublicURL)
	if o.PublicURL == "" || err != nil || (pub.Scheme != "https" && pub.Scheme != "http") || pub.Host == "" || strings.TrimSuffix(pub.Path, "/") != o.PathPrefix {
		problems = append(problems, "public_url must be an origin such as https://app.example.com, followed by the path prefix for a path-bound frontend")
	} else {
		o.PublicURL = strings.TrimSuffix(o.PublicURL, "/")
		if o.RedirectURL == "" {
			o.RedirectURL = o.PublicURL + "/bff/callback"
		}
		if o.PostLogoutRedirectURL == "" {
			o.PostLogoutRedirectURL = o.PublicURL + "/"
		}
		switch {
		case o.PathPrefix != "" && strings.HasPrefix(o.CookieName, "__Host-"):
			problems = append(problems, "a path-bound frontend's cookie has Path="+o.PathPrefix+", which __Host- forbids: use the __Secure- prefix")
		case o.PathPrefix != "" && pub.Scheme == "https" && !strings.HasPrefix(o.CookieName, "__Secure-"):
			problems = append(problems, "cookie name must start with __Secure- for a path-bound frontend on https")
		case o.PathPrefix == "" && pub.Scheme == "https" && !strings.HasPrefix(o.CookieName, "__Host-"):
			problems = append(problems, "cookie name must start with __Host- when public_url is https")
		}
		if pub.Scheme == "http" && strings.HasPrefix(o.CookieName, "__Host-") {
			problems = append(problems, "a __Host- cookie needs https: use a name without the prefix for http development")
		}
	}
	if o.CookieName == "" || strings.ContainsAny(o.CookieName, "=;, \t\r\n") {
		problems = append(problems, "cookie name is required and must be a plain token")
	}
	if o.CookieSameSite == 0 || o.CookieSameSite == http.SameSiteDefaultMode {
		o.CookieSameSite = http.SameSiteStrictMode
	}
	if o.CookieSameSite == http.SameSiteNoneMode {
		problems = append(problems, "cookie SameSite=None is refused: use Strict or Lax")
	}
	if o.CookieKeys == nil {
		problems = append(problems, "cookie keys are required (they encrypt the login-state cookie)")
	}
	if o.Sessions == nil {
		problems = append(problems, "a session manager is required")
	}
	if len(problems) > 0 {
		return fmt.Errorf("oidc options: %s", strings.Join(problems, "; "))
	}
	if len(o.Scopes) == 0 {
		o.Scopes = []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess}
	} else if !slices.Contains(o.Scopes, oidc.ScopeOpenID) {
		o.Scopes = append([]string{oidc.ScopeOpenID}, o.Scopes...)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.RefreshBeforeExpiry <= 0 {
		o.RefreshBeforeExpiry = DefaultRefreshBeforeExpiry
	}
	if o.CSRFHeader == "" {
		o.CSRFHeader = DefaultCSRFHeader
	}
	if o.LoginStateTTL <= 0 {
		o.LoginStateTTL = 10 * time.Minute
	}
	if o.KeyRefreshInterval <= 0 {
		o.KeyRefreshInterval = defaultKeyRefreshInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// ValidateOptions reports what New would refuse in o without contacting the
// IdP (`gatehouse check`, and the gateway before it starts retrying
// discovery in the background).
func ValidateOptions(o Options) error { return o.defaults() }

// Tokens returns the token service the proxy uses.
func (h *Handler) Tokens() *Tokens { return h.tokens }

// Register adds the /bff endpoints to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /bff/login", h.Login)
	mux.HandleFunc("GET /bff/callback", h.Callback)
	mux.HandleFunc("GET /bff/user", h.User)
	mux.HandleFunc("GET /bff/silent-login", h.SilentLogin)
	mux.HandleFunc("GET "+silentCallbackPath, h.SilentLoginCallback)
	mux.HandleFunc("GET /bff/logout", h.Logout)
	mux.HandleFunc("POST /bff/backchannel", h.Backchannel)
}

// Ready reports whether the IdP's discovery document is reachable, for /readyz.
func (h *Handler) Ready(ctx context.Context) error {
	_, err := oidc.NewProvider(h.idpContext(ctx), h.opts.Issuer)
	if err != nil {
		return fmt.Errorf("IdP discovery %s: %w", h.opts.Issuer, err)
	}
	return nil
}

// oauthConfig is built per use so that the current client secret is used.
func (h *Handler) oauthConfig() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     h.opts.ClientID,
		ClientSecret: h.clientSecret(),
		Endpoint:     h.endpoint,
		RedirectURL:  h.opts.RedirectURL,
		Scopes:       h.opts.Scopes,
	}
}

// clientSecret is the current client secret; empty with private_key_jwt
// (x/oauth2 then sends only client_id, and we add the assertion).
func (h *Handler) clientSecret() string {
	if h.opts.ClientAuth == AuthPrivateKeyJWT || h.opts.ClientSecret == nil {
		return ""
	}
	return h.opts.ClientSecret.Get().Reveal()
}

// idpContext makes x/oauth2 and go-oidc use the configured HTTP client.
func (h *Handler) idpContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, h.opts.HTTPClient)
}

// audit records rec; r, when given, supplies method and path.
func (h *Handler) audit(ctx context.Context, r *http.Request, rec audit.Record) error {
	if h.opts.Auditor == nil {
		return nil
	}
	if r != nil {
		rec.Method, rec.Path = r.Method, r.URL.Path
	}
	if err := h.opts.Auditor.Log(ctx, rec); err != nil {
		h.log.ErrorContext(ctx, "audit record not written", "event", string(rec.Event), "error", err)
		return err
	}
	return nil
}

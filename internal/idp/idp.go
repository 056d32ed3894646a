// Package idp is a development and test OpenID Provider built on github.com/zitadel/oidc/v3.
//
// WARNING: DEVELOPMENT AND TEST ONLY. NEVER RUN THIS IN PRODUCTION.
// It keeps everything in memory, stores plain-text demo passwords, shows them
// on its login page, serves plain HTTP and refuses any issuer that is not a
// loopback address. It exists so Gatehouse's end-to-end tests and
// `gatehouse demo` talk to a real, standards-following OP in-process.
package idp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Grant type names accepted by Count.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantClientCredentials = "client_credentials"
)

// BackChannelLogoutEvent is the events member a logout token must carry.
const BackChannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// Options configures a Provider.
type Options struct {
	// Issuer is the OP's issuer URL, e.g. http://127.0.0.1:9998. Its host must be a loopback
	// address. Start fills it in from the listener when empty.
	Issuer string
	// Clients are the registered confidential clients (client_secret_basic or client_secret_post,
	// or private_key_jwt for a client with Keys).
	// At least one is required.
	Clients []Client
	// AccessTokenTTL is the lifetime of access tokens (default 5m).
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of each (rotating) refresh token (default 8h).
	RefreshTokenTTL time.Duration
	// IDTokenTTL is the lifetime of ID tokens (default 1h).
	IDTokenTTL time.Duration
	// Users are the accounts that can sign in (default: DefaultUsers()).
	Users []User
	// ClaimsInIDToken puts profile and email claims into the ID token as well. By default, like
	// many real IdPs, they are only served by the userinfo endpoint.
	ClaimsInIDToken bool
	// Addr is where Start listens (default 127.0.0.1:0). It must be a loopback address.
	Addr string
	// Logger receives this package's log lines, e.g. failed back-channel deliveries (default:
	// discard). zitadel itself logs to slog.Default(); we do not replace the global logger.
	Logger *slog.Logger
}

// Client is a registered confidential client.
type Client struct {
	ID     string
	Secret string
	// Keys are the client's registered public keys (each with its kid). A client with keys
	// authenticates with private_key_jwt (RFC 7523) only; its Secret may be empty.
	Keys                   []jose.JSONWebKey
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	// BackChannelLogoutURI receives logout tokens (OIDC Back-Channel Logout 1.0) when a session
	// this client took part in ends. Empty: no back-channel notification.
	BackChannelLogoutURI string
}

// User is an account that can sign in at the login page.
type User struct {
	ID            string // the sub claim
	Username      string
	Password      string // plain text: development only
	Email         string
	EmailVerified bool
	Name          string
	GivenName     string
	FamilyName    string
}

// DefaultUsers returns the two demo users used when Options.Users is empty.
func DefaultUsers() []User {
	return []User{
		{ID: "user-alice", Username: "alice", Password: "wonderland", Email: "alice@example.com", EmailVerified: true,
			Name: "Alice Liddell", GivenName: "Alice", FamilyName: "Liddell"},
		{ID: "user-bob", Username: "bob", Password: "builder", Email: "bob@example.com", EmailVerified: true,
			Name: "Bob Builder", GivenName: "Bob", FamilyName: "Builder"},
	}
}

// Provider is a running development OP.
type Provider struct {
	issuer   string
	opts     Options
	logger   *slog.Logger
	store    *storage
	op       *op.Provider
	handler  http.Handler
	login    *loginUI
	bcClient *http.Client

	countMu sync.Mutex
	counts  map[string]int

	foreignOnce sync.Once
	foreignKey  *rsa.PrivateKey
	foreignErr  error

	// Serving state of Start; guarded by srvMu.
	srvMu    sync.Mutex
	addr     string // the address Start bound, reused by Resume
	srv      *http.Server
	serveErr chan error
	closed   bool
	stop     context.CancelFunc
}

// New builds a Provider for opts.Issuer without listening anywhere; serve Handler() yourself
// on a loopback address, or use Start.
func New(ctx context.Context, opts Options) (*Provider, error) {
	if err := checkLoopbackURL(opts.Issuer); err != nil {
		return nil, fmt.Errorf("idp: issuer: %w", err)
	}
	opts.Issuer = strings.TrimSuffix(opts.Issuer, "/")
	if len(opts.Clients) == 0 {
		return nil, errors.New("idp: at least one client is required (Options.Clients)")
	}
	seen := map[string]bool{}
	for i, c := range opts.Clients {
		if c.ID == "" || (c.Secret == "" && len(c.Keys) == 0) {
			return nil, fmt.Errorf("idp: client %d: ID and Secret (or Keys) are required", i)
		}
		if seen[c.ID] {
			return nil, fmt.Errorf("idp: client %q registered twice", c.ID)
		}
		seen[c.ID] = true
	}
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = 5 * time.Minute
	}
	if opts.RefreshTokenTTL <= 0 {
		opts.RefreshTokenTTL = 8 * time.Hour
	}
	if opts.IDTokenTTL <= 0 {
		opts.IDTokenTTL = time.Hour
	}
	if len(opts.Users) == 0 {
		opts.Users = DefaultUsers()
	}
	for i, u := range opts.Users {
		if u.ID == "" || u.Username == "" {
			return nil, fmt.Errorf("idp: user %d: ID and Username are required", i)
		}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	p := &Provider{
		issuer:   opts.Issuer,
		opts:     opts,
		logger:   logger,
		counts:   map[string]int{},
		bcClient: &http.Client{Timeout: 5 * time.Second},
	}
	store, err := newStorage(opts, p.backChannelLogout)
	if err != nil {
		return nil, err
	}
	p.store = store

	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		return nil, fmt.Errorf("idp: generate token encryption key: %w", err)
	}
	config := &op.Config{
		CryptoKey:                         cryptoKey,
		CryptoKeyId:                       "dev-op-aes",
		DefaultLogoutRedirectURI:          pathLoggedOut,
		CodeMethodS256:                    true,
		AuthMethodPost:                    true,
		AuthMethodPrivateKeyJWT:           true,
		GrantTypeRefreshToken:             true,
		SupportedUILocales:                []language.Tag{language.English},
		BackChannelLogoutSupported:        true,
		BackChannelLogoutSessionSupported: true,
		SupportedClaims: []string{
			"sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "acr", "amr", "c_hash", "at_hash", "azp", "sid",
			"act", "name", "given_name", "family_name", "preferred_username", "email", "email_verified",
		},
	}
	provider, err := op.NewProvider(config, store, op.StaticIssuer(opts.Issuer),
		op.WithAllowInsecure(), // plain http is fine: loopback only, enforced above
		op.WithLogger(logger),
	)
	if err != nil {
		return nil, fmt.Errorf("idp: create zitadel OP: %w", err)
	}
	p.op = provider
	p.login = newLoginUI(p, op.AuthCallbackURL(provider))

	mux := http.NewServeMux()
	mux.Handle("/login", op.NewIssuerInterceptor(provider.IssuerFromRequest).Handler(p.login))
	mux.HandleFunc(pathLoggedOut, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("signed out of the Gatehouse development OP\n"))
	})
	mux.Handle("/", p.wrapOP(provider))
	p.handler = mux
	_ = ctx // reserved: nothing in construction blocks today
	return p, nil
}

const pathLoggedOut = "/logged-out"

// Handler serves discovery, JWKS, the OIDC endpoints and the login page.
func (p *Provider) Handler() http.Handler { return p.handler }

// Issuer returns the issuer URL (no trailing slash).
func (p *Provider) Issuer() string { return p.issuer }

// URL returns the issuer URL; an alias of Issuer for tests.
func (p *Provider) URL() string { return p.issuer }

// Users returns a copy of the accounts that can sign in.
func (p *Provider) Users() []User { return append([]User(nil), p.opts.Users...) }

// Count returns how many token-endpoint requests with this grant_type succeeded (HTTP 200).
func (p *Provider) Count(grantType string) int {
	p.countMu.Lock()
	defer p.countMu.Unlock()
	return p.counts[grantType]
}

// Start listens on opts.Addr (default 127.0.0.1:0), sets the issuer to the listener's URL when
// opts.Issuer is empty, and serves until Close or ctx is done.
func Start(ctx context.Context, opts Options) (*Provider, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("idp: listen address %q: %w", addr, err)
	}
	if !isLoopbackHost(host) {
		return nil, fmt.Errorf("idp: listen address %q is not loopback; the development OP binds only to 127.0.0.1, ::1 or localhost", addr)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("idp: listen on %s: %w", addr, err)
	}
	if opts.Issuer == "" {
		opts.Issuer = "http://" + ln.Addr().String()
	}
	p, err := New(ctx, opts)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	p.addr = ln.Addr().String()
	p.serveLocked(ln)
	ctx, p.stop = context.WithCancel(ctx)
	go func() {
		<-ctx.Done() // ctx ended or Close called
		if err := p.Close(); err != nil {
			p.logger.Warn("close development OP", "err", err)
		}
	}()
	return p, nil
}

// TB is the part of testing.TB that MustStart uses (kept small so this package does not
// import "testing").
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// MustStart is Start for tests: it fails the test on error and closes the OP at cleanup.
func MustStart(t TB, opts Options) *Provider {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, opts)
	if err != nil {
		cancel()
		t.Fatalf("start development OP: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Fatalf("close development OP: %v", err)
		}
		cancel()
	})
	return p
}

func (p *Provider) serveLocked(ln net.Listener) {
	p.srv = &http.Server{Handler: p.handler, ReadHeaderTimeout: 10 * time.Second}
	p.serveErr = make(chan error, 1)
	srv, done := p.srv, p.serveErr
	go func() { done <- srv.Serve(ln) }()
}

// shutdownLocked closes the listener and every connection, and waits for Serve to return.
func (p *Provider) shutdownLocked() error {
	if p.srv == nil {
		return nil
	}
	err := p.srv.Close()
	if serr := <-p.serveErr; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	p.srv = nil
	return err
}

// Close stops the server started by Start (idempotent). It is a no-op for a Provider from New.
func (p *Provider) Close() error {
	p.srvMu.Lock()
	defer p.srvMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.stop != nil {
		p.stop()
	}
	return p.shutdownLocked()
}

// Suspend makes the OP unreachable (connections refused) while keeping its state, keys,
// sessions and tokens, so tests can check how a client behaves while its IdP is down.
// Only for a Provider from Start.
func (p *Provider) Suspend() error {
	p.srvMu.Lock()
	defer p.srvMu.Unlock()
	if p.closed || p.addr == "" {
		return errors.New("idp: Suspend needs a running Provider from Start")
	}
	return p.shutdownLocked()
}

// Resume listens again on the same address after Suspend.
func (p *Provider) Resume(ctx context.Context) error {
	p.srvMu.Lock()
	defer p.srvMu.Unlock()
	if p.closed || p.addr == "" {
		return errors.New("idp: Resume needs a Provider from Start that is not closed")
	}
	if p.srv != nil {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", p.addr)
	if err != nil {
		return fmt.Errorf("idp: listen again on %s: %w", p.addr, err)
	}
	p.serveLocked(ln)
	return nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkLoopbackURL(raw string) error {
	if raw == "" {
		return errors.New("empty; set Options.Issuer (e.g. http://127.0.0.1:9998) or use Start")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	if u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return errors.New("must be scheme://host:port without path, query or fragment")
	}
	if !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("host %q is not loopback; the development OP serves only 127.0.0.1, ::1 or localhost", u.Hostname())
	}
	return nil
}

// wrapOP adds what zitadel does not do itself: per-grant counting at the token endpoint,
// the RFC 9207 iss authorization-response parameter, and its discovery flag.
func (p *Provider) wrapOP(next http.Handler) http.Handler {
	tokenPath := p.op.TokenEndpoint().Relative()
	authPath := p.op.AuthorizationEndpoint().Relative()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == tokenPath:
			// ParseForm caches the body in r.PostForm; zitadel's own ParseForm then is a no-op.
			grant := ""
			if err := r.ParseForm(); err == nil {
				grant = r.PostForm.Get("grant_type")
			}
			rec := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			if rec.status() == http.StatusOK && grant != "" {
				p.countMu.Lock()
				p.counts[grant]++
				p.countMu.Unlock()
			}
		case r.URL.Path == authPath || strings.HasPrefix(r.URL.Path, authPath+"/"):
			next.ServeHTTP(&issRedirectWriter{ResponseWriter: w, issuer: p.issuer, loginPrefix: p.issuer + "/login"}, r)
		case r.URL.Path == oidc.DiscoveryEndpoint:
			p.serveDiscovery(w, r, next)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (p *Provider) serveDiscovery(w http.ResponseWriter, r *http.Request, next http.Handler) {
	buf := &bufferWriter{header: http.Header{}}
	next.ServeHTTP(buf, r)
	code := buf.code
	if code == 0 {
		code = http.StatusOK
	}
	body := buf.body.Bytes()
	if code == http.StatusOK {
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err == nil {
			doc["authorization_response_iss_parameter_supported"] = true
			if b, err := json.Marshal(doc); err == nil {
				body = b
			}
		}
	}
	for k, v := range buf.header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// issRedirectWriter appends iss (RFC 9207) to every authorization response redirect that
// goes back to the client, successful or not.
type issRedirectWriter struct {
	http.ResponseWriter
	issuer      string
	loginPrefix string
	wrote       bool
}

func (i *issRedirectWriter) WriteHeader(code int) {
	if !i.wrote && (code == http.StatusFound || code == http.StatusSeeOther) {
		if loc := i.Header().Get("Location"); loc != "" && !strings.HasPrefix(loc, i.loginPrefix) && !strings.HasPrefix(loc, "/") {
			if u, err := url.Parse(loc); err == nil {
				q := u.Query()
				if q.Get("iss") == "" && (q.Has("code") || q.Has("error")) {
					q.Set("iss", i.issuer)
					u.RawQuery = q.Encode()
					i.Header().Set("Location", u.String())
				}
			}
		}
	}
	i.wrote = true
	i.ResponseWriter.WriteHeader(code)
}

func (i *issRedirectWriter) Write(b []byte) (int, error) {
	i.wrote = true
	return i.ResponseWriter.Write(b)
}

type bufferWriter struct {
	header http.Header
	body   bytes.Buffer
	code   int
}

func (b *bufferWriter) Header() http.Header { return b.header }
func (b *bufferWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}
func (b *bufferWriter) Write(p []byte) (int, error) { return b.body.Write(p) }

// UpdateUser replaces the account with u.ID (matched by ID; the username may
// change too), as when a directory changes a user's e-mail or name. Tokens
// issued afterwards, and userinfo answers, carry the new values.
func (p *Provider) UpdateUser(u User) error {
	s := p.store
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.usersByID[u.ID]
	if !ok {
		return fmt.Errorf("idp: no user %q", u.ID)
	}
	delete(s.usersByName, old.Username)
	s.usersByID[u.ID] = u
	s.usersByName[u.Username] = u
	return nil
}

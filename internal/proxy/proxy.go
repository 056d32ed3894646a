package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/server"
)

// Options are the proxy's dependencies and global settings.
type Options struct {
	// PublicURL is the frontend's origin as browsers see it (required).
	PublicURL *url.URL
	// CSRF configures the CSRF check.
	CSRF CSRFOptions
	// TrustedProxies may set X-Forwarded-For/-Host/-Proto; from any other
	// peer those headers are discarded. Default: none.
	TrustedProxies []netip.Prefix

	// Authenticator is required unless every route is anonymous.
	Authenticator Authenticator
	// UserTokens is required by user_token and token_exchange routes.
	UserTokens UserTokens
	// Exchanger is required by token_exchange routes.
	Exchanger Exchanger
	// Auditor is required.
	Auditor Auditor
	// Stages is the request path, in order (internal/gateway/stages.go
	// writes the frontend's). Default: DefaultStages(Authenticator).
	Stages []Stage
	// Counter counts refusals and upstream failures by code and route
	// (optional).
	Counter pipeline.Counter
	// Endpoints are the API endpoints Gatehouse answers itself
	// (composites); nil when there are none. See the Endpoint stage.
	Endpoints Endpoints

	// ExchangeSkew is how long before expiry a cached exchanged token is
	// replaced (default 30s).
	ExchangeSkew time.Duration
	// MaxPathLength bounds the escaped path (default DefaultMaxPathLength).
	MaxPathLength int
	// Transport is cloned for each route (default http.DefaultTransport).
	Transport *http.Transport
	// WrapTransport, when set, wraps each route's transport (e.g. tracing).
	// The wrapper must return the transport's errors unchanged (wrapped is
	// fine) so timeouts still map to 504.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Logger receives upstream and audit-sink errors (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// ProtectedCookies are the names of Gatehouse's own cookies (session,
	// login state). On allow_set_cookie routes an upstream's Set-Cookie for
	// any spelling of them (case, __Host-/__Secure- prefix) is dropped.
	ProtectedCookies []string
}

// Proxy serves API routes. Build it with New; it is safe for concurrent use.
type Proxy struct {
	opts      Options
	routes    table
	all       []*route
	csrf      *csrfCheck
	log       *slog.Logger
	now       func() time.Time
	exchanges *exchangeCache
	prefixes  []string
	buffers   bufferPool
	stages    []Stage
	// reqPool recycles the per-request state (one fewer allocation).
	reqPool   sync.Pool
	credNames map[string]struct{} // normalised header-credential names
	fold      foldIndex           // routes by folded path (route confusion)
	resp      responseRules       // response hygiene shared by all routes
	// fwdHost is public_url's host, the only X-Forwarded-Host upstreams
	// see: the Host header is the client's to choose.
	fwdHost []string
}

// New validates routes and options and builds the proxy. It reports every
// problem found, each naming its route.
func New(routes []RouteSpec, opts Options) (*Proxy, error) {
	p := &Proxy{
		opts:      opts,
		routes:    table{exact: map[string]*route{}, prefix: map[string]*route{}},
		log:       opts.Logger,
		now:       opts.Now,
		buffers:   newBufferPool(),
		credNames: map[string]struct{}{},
		fold:      newFoldIndex(),
	}
	p.resp = newResponseRules(p.credNames, opts.ProtectedCookies)
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if opts.PublicURL != nil {
		p.fwdHost = []string{opts.PublicURL.Host}
	}
	if p.opts.ExchangeSkew <= 0 {
		p.opts.ExchangeSkew = 30 * time.Second
	}
	p.exchanges = newExchangeCache(p.opts.ExchangeSkew, p.now)
	var errs []error
	csrf, err := newCSRFCheck(opts.PublicURL, opts.CSRF)
	if err != nil {
		errs = append(errs, err)
	}
	p.csrf = csrf
	p.stages = opts.Stages
	if p.stages == nil {
		p.stages = DefaultStages(opts.Authenticator)
	}
	if opts.Auditor == nil {
		errs = append(errs, errors.New("no auditor: every decision must be audited"))
	}
	// No routes is a valid allow-list: nothing is proxied (a login-only BFF).
	base := opts.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport)
	}
	names := map[string]bool{}
	for i, spec := range routes {
		rt, err := buildRoute(spec, &p.opts)
		if err != nil {
			errs = append(errs, &RouteError{Index: i, Err: err})
			continue
		}
		if names[rt.name] {
			errs = append(errs, &RouteError{Index: i, Err: fmt.Errorf("route %q: name used twice", rt.name)})
			continue
		}
		names[rt.name] = true
		m := p.routes.exact
		if rt.prefix {
			m = p.routes.prefix
		}
		if other, dup := m[rt.path]; dup {
			errs = append(errs, &RouteError{Index: i, Err: fmt.Errorf("route %q: path %s is already routed to %q", rt.name, rt.path, other.name)})
			continue
		}
		m[rt.path] = rt
		if err := p.fold.add(rt); err != nil {
			errs = append(errs, &RouteError{Index: i, Err: err})
		}
		rt.resp = &p.resp
		if !rt.anonymous && opts.Authenticator == nil && opts.Stages == nil {
			errs = append(errs, &RouteError{Index: i, Err: fmt.Errorf("route %q: needs a session but Options.Authenticator is nil", rt.name)})
		}
		if rt.credNorm != "" {
			p.credNames[rt.credNorm] = struct{}{}
		}
		p.buildForwarder(rt, base)
		p.all = append(p.all, rt)
		if pre := mountPrefix(rt.path); !slices.Contains(p.prefixes, pre) {
			p.prefixes = append(p.prefixes, pre)
		}
	}
	if opts.Endpoints != nil {
		for _, path := range opts.Endpoints.Paths() {
			if pre := mountPrefix(path); !slices.Contains(p.prefixes, pre) {
				p.prefixes = append(p.prefixes, pre)
			}
		}
	}
	if len(errs) > 0 {
		p.Close()
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// RouteError is a problem with one route spec; Index is its place in the
// list given to New, so callers can point at the route's position in the
// configuration file.
type RouteError struct {
	Index int
	Err   error
}

// Error returns the problem, naming the route.
func (e *RouteError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying problem.
func (e *RouteError) Unwrap() error { return e.Err }

// mountPrefix is the first path segment of a route as a subtree pattern
// ("/api/profile/" -> "/api/"), or the route path itself for a one-segment
// exact route.
func mountPrefix(path string) string {
	if i := strings.IndexByte(path[1:], '/'); i >= 0 {
		return path[:i+2]
	}
	return path
}

// Prefixes returns the paths to mount the proxy on (e.g. "/api/"): every
// request below them belongs to the proxy, which answers 404 for paths no
// route matches. Mount them so that no path cleaning or redirect happens
// before the proxy: it cleans the path itself and must see the raw one.
func (p *Proxy) Prefixes() []string { return slices.Clone(p.prefixes) }

// ForgetSession drops the exchanged tokens cached for a session; call it when
// the session ends (logout, back-channel logout, revocation).
func (p *Proxy) ForgetSession(sessionID string) { p.exchanges.forget(sessionID) }

// ExchangeCached reports whether an exchanged token is cached for the
// session (tests and diagnostics: every session end must drop them).
func (p *Proxy) ExchangeCached(sessionID string) bool { return p.exchanges.holds(sessionID) }

// Close releases idle upstream connections.
func (p *Proxy) Close() {
	for _, rt := range p.all {
		rt.transport.CloseIdleConnections()
	}
}

// ServeHTTP runs the stage list (Options.Stages). Every check comes before
// any downstream is contacted; the first stage that refuses ends the
// request, and its Refusal is written, audited and counted by refuse.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	x, _ := p.reqPool.Get().(*exchange)
	if x == nil {
		x = new(exchange)
	}
	x.w = w
	x.req = pipeline.Request{HTTP: r, ID: newRequestID(), Start: p.now(), ClientIP: p.clientIP(r)}
	x.req.Caller.IP = x.req.ClientIP
	x.ev = AuditEvent{Time: x.req.Start, Method: r.Method, ClientIP: x.req.ClientIP, RequestID: x.req.ID}
	// One slice for the answer's and the upstream request's header: neither
	// is appended to in place, and it saves an allocation per request.
	x.rid = []string{x.req.ID}
	w.Header()["X-Request-Id"] = x.rid
	for _, s := range p.stages {
		if ref := s.run(ctx, p, x); ref != nil {
			p.refuse(ctx, w, &x.ev, ref, !x.noAudit)
			break
		}
		if x.done {
			break
		}
	}
	*x = exchange{}
	p.reqPool.Put(x)
}

// admit runs authorize, credential and the audit reservation for an
// identified request (Call). On refusal, audit says whether the refusal can
// still be recorded (not when the audit log itself refused).
func (p *Proxy) admit(ctx context.Context, rt *route, ev *AuditEvent, in *AuthzInput, id *Identity) (cred secret.Secret, res Reservation, ref *pipeline.Refusal, audit bool) {
	if ref = p.authorize(ctx, rt, ev, in); ref != nil {
		return cred, nil, ref, true
	}
	if cred, ref = p.obtain(ctx, rt, id); ref != nil {
		return cred, nil, ref, true
	}
	if res, ref = p.reserve(ctx, rt, ev); ref != nil {
		return cred, nil, ref, false
	}
	return cred, res, nil, false
}

// authorize evaluates the route's policy; errors deny.
func (p *Proxy) authorize(ctx context.Context, rt *route, ev *AuditEvent, in *AuthzInput) *pipeline.Refusal {
	allow, err := rt.authz.Authorize(ctx, in)
	ev.Reason = in.Reason
	if err != nil {
		p.log.ErrorContext(ctx, "policy evaluation failed", "route", rt.name, "err", err)
		return &pipeline.Refusal{Status: http.StatusServiceUnavailable, Code: "policy_unavailable", Message: "the policy could not be evaluated; try again shortly", Err: err}
	}
	if !allow {
		return &pipeline.Refusal{Status: http.StatusForbidden, Code: "policy_denied", Message: "the route's policy does not allow this request"}
	}
	return nil
}

// obtain gets exactly the route's one credential.
func (p *Proxy) obtain(ctx context.Context, rt *route, id *Identity) (secret.Secret, *pipeline.Refusal) {
	cred, err := p.credential(ctx, rt, id)
	if err == nil {
		return cred, nil
	}
	if errors.Is(err, ErrNoSession) {
		return cred, &pipeline.Refusal{Status: http.StatusUnauthorized, Code: "session_expired", Message: "the session has ended; sign in again (/bff/login)", Err: err}
	}
	code, msg := "credential_failed", "the route's credential could not be obtained"
	var ce *credError
	if errors.As(err, &ce) {
		code, msg = ce.code, ce.msg
	}
	p.log.ErrorContext(ctx, "credential failed", "route", rt.name, "code", code, "err", err)
	p.upstreamFailed(rt.name, "credential")
	return cred, &pipeline.Refusal{Status: http.StatusBadGateway, Code: code, Message: msg, Err: err}
}

// reserve reserves the audit record before forwarding, so nothing is
// served unaudited.
func (p *Proxy) reserve(ctx context.Context, rt *route, ev *AuditEvent) (Reservation, *pipeline.Refusal) {
	ev.Decision = "allow"
	res, err := p.opts.Auditor.Reserve(ctx, ev)
	if err != nil {
		p.log.ErrorContext(ctx, "audit reserve failed", "route", rt.name, "err", err)
		return nil, &pipeline.Refusal{Status: http.StatusServiceUnavailable, Code: "audit_unavailable", Message: "the audit log is unavailable; try again shortly", Err: err}
	}
	return res, nil
}

// refuse writes a refusal and accounts for it.
func (p *Proxy) refuse(ctx context.Context, w http.ResponseWriter, ev *AuditEvent, ref *pipeline.Refusal, audit bool) {
	ref.Write(w)
	p.account(ctx, ev, ref, audit)
}

// account is the one place a refusal is audited and counted, whether it
// was answered over HTTP (refuse) or returned to Go code (Call). audit is
// false only when the audit log itself refused (audit_unavailable).
func (p *Proxy) account(ctx context.Context, ev *AuditEvent, ref *pipeline.Refusal, audit bool) {
	ev.Decision = "deny"
	ev.Status, ev.Code = ref.Status, ref.Code
	ev.AuditReason = ref.AuditReason
	if p.opts.Counter != nil {
		p.opts.Counter.Refused(ev.Route, ref.Code, ref.Status)
	}
	if !audit || ref.Unaudited {
		return
	}
	if err := p.opts.Auditor.Record(context.WithoutCancel(ctx), ev); err != nil {
		p.log.ErrorContext(ctx, "audit record failed", "route", ev.Route, "err", err)
	}
}

// upstreamFailed counts a failed upstream round trip or credential.
func (p *Proxy) upstreamFailed(route, kind string) {
	if p.opts.Counter != nil {
		p.opts.Counter.UpstreamError(route, kind)
	}
}

// clientIP is the peer's address, or, when the peer is a trusted proxy, the
// nearest untrusted address it reports in X-Forwarded-For.
func (p *Proxy) clientIP(r *http.Request) netip.Addr { return ClientIP(r, p.opts.TrustedProxies) }

func (p *Proxy) trusted(ip netip.Addr) bool { return isTrusted(ip, p.opts.TrustedProxies) }

// upstreamPath is the path sent upstream for a cleaned request path.
func upstreamPath(rt *route, clean string) string {
	switch {
	case rt.keepPrefix:
		return rt.upBase + clean
	case rt.prefix:
		return rt.upBase + clean[len(rt.path)-1:]
	default:
		return rt.upstream.Path
	}
}

// forwarding carries one request's state from ServeHTTP into the
// ReverseProxy hooks.
type forwarding struct {
	path      string
	requestID []string // X-Request-Id's value
	cred      secret.Secret
	limited   *limitedBody
	status    int
	code      string
	// id is the caller (nil on anonymous routes); replay keeps the body
	// and retried is set once a 401 was retried (retry401).
	id      *Identity
	replay  *replayBody
	retried bool
}

type forwardingKey struct{}

func forwardingOf(ctx context.Context) *forwarding {
	st, _ := ctx.Value(forwardingKey{}).(*forwarding)
	return st
}

// limitedBody remembers that the body limit was hit, because the transport
// reports the failed upload as a generic write error.
type limitedBody struct {
	io.ReadCloser
	exceeded atomic.Bool
}

func (b *limitedBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			b.exceeded.Store(true)
		}
	}
	return n, err
}

// buildForwarder builds the route's transport and ReverseProxy once.
func (p *Proxy) buildForwarder(rt *route, base *http.Transport) {
	tr := base.Clone()
	// The route timeout bounds connecting and waiting for response headers,
	// not the body, so streams (SSE, downloads, WebSockets) may run longer.
	tr.ResponseHeaderTimeout = rt.timeout
	dialer := &net.Dialer{Timeout: min(rt.timeout, 30*time.Second), KeepAlive: 30 * time.Second}
	tr.DialContext = dialer.DialContext
	if tr.TLSHandshakeTimeout == 0 || tr.TLSHandshakeTimeout > rt.timeout {
		tr.TLSHandshakeTimeout = rt.timeout
	}
	// Keep as many idle keep-alive connections as the route may have
	// requests in flight: with Go's default of 2 per host, every request
	// above the second concurrent one opens a new connection and leaves one
	// in TIME_WAIT, which on a real network exhausts ephemeral ports. Each
	// route has its own transport, so the per-host and total caps are the
	// same number.
	tr.MaxIdleConnsPerHost = rt.maxIdle
	tr.MaxIdleConns = rt.maxIdle
	if tr.IdleConnTimeout == 0 {
		tr.IdleConnTimeout = 90 * time.Second
	}
	rt.transport = tr
	var rtp http.RoundTripper = tr
	if p.opts.WrapTransport != nil {
		rtp = p.opts.WrapTransport(tr)
	}
	if rt.refreshable() {
		rtp = &retry401{next: rtp, p: p, rt: rt}
	}
	rt.proxy = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { p.rewrite(rt, pr) },
		Transport:      rtp,
		ModifyResponse: func(res *http.Response) error { return modifyResponse(rt, res) },
		ErrorHandler:   func(w http.ResponseWriter, r *http.Request, err error) { p.upstreamError(rt, w, r, err) },
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		BufferPool:     p.buffers,
	}
}

// rewrite builds the outgoing request: the cleaned path, the scrubbed
// headers, forwarding headers from the connection, then the credential.
func (p *Proxy) rewrite(rt *route, pr *httputil.ProxyRequest) {
	st := forwardingOf(pr.In.Context())
	out := pr.Out
	// A fresh URL: nothing of the client's URL but the query survives.
	// RawPath stays empty so the path is sent as the canonical escaping of
	// exactly the path that was matched.
	// out.URL is ReverseProxy's own copy: overwritten in place.
	*out.URL = url.URL{Scheme: rt.upstream.Scheme, Host: rt.upstream.Host, Path: st.path, RawQuery: out.URL.RawQuery}
	out.Host = ""
	if st.limited != nil {
		out.Body = st.limited
	}
	if rt.refreshable() && st.id != nil && out.Body != nil && out.Body != http.NoBody {
		st.replay = &replayBody{rc: out.Body}
		out.Body = st.replay
	}
	// Request trailers would arrive after the header checks below: a client
	// could smuggle any header through them.
	out.Trailer = nil
	trusted := p.trustedPeer(pr.In)
	scrubRequestHeaders(out.Header, p.credNames, scrubOpts{methodOverride: rt.methodOverride, trace: trusted})
	p.setForwarded(pr, trusted)
	out.Header["X-Request-Id"] = st.requestID
	switch rt.cred.Kind {
	case CredentialNone:
	case CredentialHeader:
		out.Header[rt.credHeader] = []string{st.cred.Reveal()}
	default:
		out.Header["Authorization"] = []string{"Bearer " + st.cred.Reveal()}
	}
}

// setForwarded sets X-Forwarded-For/-Proto from the connection, keeping
// earlier hops' values only when the peer is a trusted proxy, and
// X-Forwarded-Host from public_url. The Host header (and a proxy's
// X-Forwarded-Host) is client-controlled: an upstream building absolute
// links, redirects or password-reset URLs from it would point users at an
// attacker's host. Gatehouse serves one frontend at one origin, so
// public_url's host is the only right answer.
func (p *Proxy) setForwarded(pr *httputil.ProxyRequest, trusted bool) {
	if trusted {
		if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			pr.Out.Header["X-Forwarded-For"] = slices.Clone(prior)
		}
	}
	pr.SetXForwarded()
	pr.Out.Header["X-Forwarded-Host"] = p.fwdHost
	if trusted {
		if proto := pr.In.Header.Get("X-Forwarded-Proto"); proto == "http" || proto == "https" {
			pr.Out.Header.Set("X-Forwarded-Proto", proto)
		}
	}
}

// Upstream 401/403 challenges become Gatehouse errors.
var (
	errUpstreamUnauthorized = errors.New("upstream rejected the route's credential (401)")
	errUpstreamForbidden    = errors.New("upstream refused the route's credential (403 with challenge)")
)

// modifyResponse applies response hygiene. An upstream 401 means the
// credential Gatehouse attached was refused: that is a gateway-side failure
// (502), not the user's, and must not make the SPA drop a valid session or
// the browser prompt for a password.
func modifyResponse(rt *route, res *http.Response) error {
	switch {
	case res.StatusCode == http.StatusUnauthorized:
		return errUpstreamUnauthorized
	case res.StatusCode == http.StatusForbidden && len(res.Header["Www-Authenticate"]) > 0:
		return errUpstreamForbidden
	}
	scrubResponseHeaders(res.Header, rt)
	// The client already has Gatehouse's request id.
	delete(res.Header, "X-Request-Id")
	if st := forwardingOf(res.Request.Context()); st != nil {
		st.status = res.StatusCode
	}
	return nil
}

// upstreamError answers for a request whose forwarding failed.
func (p *Proxy) upstreamError(rt *route, w http.ResponseWriter, r *http.Request, err error) {
	st := forwardingOf(r.Context())
	// kind is the upstream-failure metric's label; "" when the upstream is
	// not at fault (the client went away, or sent too much).
	status, code, kind, msg := http.StatusBadGateway, "upstream_unavailable", "unavailable", "the upstream of route "+rt.name+" could not be reached"
	var maxErr *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.Is(err, errUpstreamUnauthorized) && userCredential(rt.cred.Kind):
		// The user's token was refused even after one refresh and retry
		// (retry401): the SPA re-logins on 401, as with Duende BFF.
		status, code, msg = http.StatusUnauthorized, "upstream_unauthorized", "the upstream of route "+rt.name+" refused the user's token; sign in again (/bff/login)"
	case errors.Is(err, errUpstreamUnauthorized):
		code, kind, msg = "upstream_unauthorized", "unauthorized", "the upstream of route "+rt.name+" rejected Gatehouse's credential"
	case errors.Is(err, errUpstreamForbidden):
		status, code, kind, msg = http.StatusForbidden, "upstream_forbidden", "forbidden", "the upstream of route "+rt.name+" refused the request"
	case server.BodyTimedOut(r, err):
		// The client stopped sending its body (server.body_read_timeout): its
		// fault, not the upstream's.
		status, code, kind, msg = http.StatusRequestTimeout, "body_timeout", "", "the request body was not sent in time"
	case st != nil && st.limited != nil && st.limited.exceeded.Load(), errors.As(err, &maxErr):
		status, code, kind, msg = http.StatusRequestEntityTooLarge, "body_too_large", "", fmt.Sprintf("route %s accepts request bodies up to %d bytes", rt.name, rt.maxBody)
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		code, kind, msg = "client_closed_request", "", "the client closed the request"
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		status, code, kind, msg = http.StatusGatewayTimeout, "upstream_timeout", "timeout", "the upstream of route "+rt.name+" did not answer in time"
	}
	if kind != "" {
		p.log.WarnContext(r.Context(), "upstream request failed", "route", rt.name, "code", code, "err", err)
		p.upstreamFailed(rt.name, kind)
	}
	if p.opts.Counter != nil {
		p.opts.Counter.Refused(rt.name, code, status)
	}
	if st != nil {
		st.status, st.code = status, code
	}
	apierror.Write(w, status, code, msg)
}

// newRequestID returns a random request id. It only correlates log lines, so
// the fast non-cryptographic generator is enough.
func newRequestID() string {
	var b [16]byte
	const hex = "0123456789abcdef"
	v := rand.Uint64()
	for i := range b {
		b[i] = hex[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// bufferPool recycles the 32 KiB copy buffers ReverseProxy uses per
// response. A buffered channel rather than a sync.Pool: Put receives a bare
// slice, and boxing it for a sync.Pool would allocate on every response.
// It keeps at most bufferPoolSize buffers (8 MiB); beyond that they are
// left to the GC.
type bufferPool struct{ free chan []byte }

const bufferPoolSize = 256

func newBufferPool() bufferPool { return bufferPool{free: make(chan []byte, bufferPoolSize)} }

func (bp bufferPool) Get() []byte {
	select {
	case b := <-bp.free:
		return b
	default:
		return make([]byte, 32<<10)
	}
}

func (bp bufferPool) Put(b []byte) {
	if cap(b) < 32<<10 {
		return
	}
	select {
	case bp.free <- b[:32<<10]:
	default:
	}
}

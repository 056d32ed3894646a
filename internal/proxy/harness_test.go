package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hit is what a test upstream saw of one request.
type hit struct {
	Method     string
	RequestURI string
	Path       string // as the upstream's server decoded it
	RawQuery   string
	Host       string
	Header     http.Header
	Body       string
	Trailer    http.Header
}

// upstream is a test-owned downstream API that records every request.
type upstream struct {
	*httptest.Server
	mu      sync.Mutex
	hits    []hit
	handler atomic.Pointer[http.HandlerFunc]
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.hits = append(u.hits, hit{r.Method, r.RequestURI, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Clone(), string(body), r.Trailer.Clone()})
		u.mu.Unlock()
		if h := u.handler.Load(); h != nil {
			(*h)(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) handle(h http.HandlerFunc) { u.handler.Store(&h) }

func (u *upstream) Hits() []hit {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]hit(nil), u.hits...)
}

func (u *upstream) reset() {
	u.mu.Lock()
	u.hits = nil
	u.mu.Unlock()
}

func (u *upstream) url(t testing.TB, path string) *url.URL {
	p, err := url.Parse(u.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Test doubles for the proxy's own seams.

type testAuth struct {
	err      atomic.Pointer[error]
	sessions map[string]*Identity
}

func (a *testAuth) Authenticate(_ context.Context, r *http.Request) (*Identity, error) {
	if e := a.err.Load(); e != nil {
		return nil, *e
	}
	c, err := r.Cookie("gh")
	if err != nil {
		return nil, ErrNoSession
	}
	id, ok := a.sessions[c.Value]
	if !ok {
		return nil, ErrNoSession
	}
	return id, nil
}

type testUserTokens struct {
	err atomic.Pointer[error]
}

func (u *testUserTokens) AccessToken(_ context.Context, id *Identity) (secret.Secret, error) {
	if e := u.err.Load(); e != nil {
		return secret.Secret{}, *e
	}
	return secret.New("user-at-" + id.Subject), nil
}

type testExchanger struct {
	calls atomic.Int64
	err   atomic.Pointer[error]
	ttl   time.Duration
	now   func() time.Time
	delay time.Duration
}

func (x *testExchanger) Exchange(_ context.Context, subject secret.Secret, audience, scope, resource string) (secret.Secret, time.Time, error) {
	n := x.calls.Add(1)
	if x.delay > 0 {
		time.Sleep(x.delay)
	}
	if e := x.err.Load(); e != nil {
		return secret.Secret{}, time.Time{}, *e
	}
	return secret.New(fmt.Sprintf("xchg-%d-%s-for-%s", n, audience, subject.Reveal())), x.now().Add(x.ttl), nil
}

type testAuditor struct {
	mu         sync.Mutex
	reserved   []AuditEvent
	committed  []AuditEvent
	recorded   []AuditEvent
	reserveErr atomic.Pointer[error]
}

func (a *testAuditor) Reserve(_ context.Context, ev *AuditEvent) (Reservation, error) {
	if e := a.reserveErr.Load(); e != nil {
		return nil, *e
	}
	a.mu.Lock()
	a.reserved = append(a.reserved, *ev)
	a.mu.Unlock()
	return a, nil
}

func (a *testAuditor) Commit(_ context.Context, ev *AuditEvent) {
	a.mu.Lock()
	a.committed = append(a.committed, *ev)
	a.mu.Unlock()
}

func (a *testAuditor) Record(_ context.Context, ev *AuditEvent) error {
	a.mu.Lock()
	a.recorded = append(a.recorded, *ev)
	a.mu.Unlock()
	return nil
}

func (a *testAuditor) last() (reserved, committed, recorded []AuditEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AuditEvent(nil), a.reserved...), append([]AuditEvent(nil), a.committed...), append([]AuditEvent(nil), a.recorded...)
}

// harness is a proxy with one recording upstream per route.
type harness struct {
	t        testing.TB
	p        *Proxy
	srv      *httptest.Server
	ups      map[string]*upstream
	auth     *testAuth
	tokens   *testUserTokens
	xchg     *testExchanger
	audit    *testAuditor
	ccErr    atomic.Pointer[error]
	apiKey   *secret.Value
	denyAll  atomic.Bool
	authzErr atomic.Pointer[error]
	clock    *testClock
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	publicURL   = "https://app.example.com"
	aliceCookie = "alice-handle"
	adminCookie = "admin-handle"
)

type harnessOpt func(h *harness, specs []RouteSpec, o *Options) []RouteSpec

func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, ups: map[string]*upstream{}, clock: &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	h.auth = &testAuth{sessions: map[string]*Identity{
		aliceCookie: {SessionID: "sid-alice", Subject: "alice", Claims: map[string]any{"email": "alice@example.com"}},
		adminCookie: {SessionID: "sid-admin", Subject: "root", Claims: map[string]any{"admin": true}},
	}}
	h.tokens = &testUserTokens{}
	h.xchg = &testExchanger{ttl: 5 * time.Minute, now: h.clock.Now}
	h.audit = &testAuditor{}
	h.apiKey = secret.Static("weather-key-1")
	policy := AuthorizerFunc(func(_ context.Context, in *AuthzInput) (bool, error) {
		if e := h.authzErr.Load(); e != nil {
			return false, *e
		}
		return !h.denyAll.Load(), nil
	})
	adminOnly := AuthorizerFunc(func(_ context.Context, in *AuthzInput) (bool, error) {
		return in.Identity != nil && in.Identity.Claims["admin"] == true, nil
	})
	cc := TokenSourceFunc(func(context.Context) (secret.Secret, error) {
		if e := h.ccErr.Load(); e != nil {
			return secret.Secret{}, *e
		}
		return secret.New("gatehouse-cc-token"), nil
	})
	for _, n := range []string{"profile", "billing", "catalog", "weather", "public", "admin", "exact", "keep", "ws", "stream", "slow", "down"} {
		h.ups[n] = newUpstream(t)
	}
	specs := []RouteSpec{
		{Name: "profile", Path: "/api/profile/", Upstream: h.ups["profile"].url(t, "/"), Methods: []string{"GET", "POST"}, Credential: Credential{Kind: CredentialUserToken}, Authorizer: policy},
		{Name: "billing", Path: "/api/billing/", Upstream: h.ups["billing"].url(t, "/v1/"), Methods: []string{"GET", "POST"}, Credential: Credential{Kind: CredentialTokenExchange, Audience: "billing-api", Scope: "billing:read"}, Authorizer: policy},
		{Name: "catalog", Path: "/api/catalog/", Upstream: h.ups["catalog"].url(t, "/"), Anonymous: true, Credential: Credential{Kind: CredentialClientCredentials, Source: cc}, Authorizer: policy},
		{Name: "weather", Path: "/api/weather/", Upstream: h.ups["weather"].url(t, "/"), Credential: Credential{Kind: CredentialHeader, HeaderName: "X-Api-Key", HeaderValue: h.apiKey}, Authorizer: policy, MaxBodyBytes: 1024, Methods: []string{"GET", "POST"}},
		{Name: "public", Path: "/api/public/", Upstream: h.ups["public"].url(t, "/"), Anonymous: true, Credential: Credential{Kind: CredentialNone}, Authorizer: policy, Methods: []string{"GET", "POST"}},
		{Name: "admin", Path: "/api/admin/", Upstream: h.ups["admin"].url(t, "/"), Credential: Credential{Kind: CredentialUserToken}, Authorizer: adminOnly},
		{Name: "exact", Path: "/api/time", Upstream: h.ups["exact"].url(t, "/now"), Anonymous: true, Credential: Credential{Kind: CredentialNone}, Authorizer: policy},
		{Name: "keep", Path: "/api/keep/", Upstream: h.ups["keep"].url(t, "/base"), KeepPrefix: true, Anonymous: true, Credential: Credential{Kind: CredentialNone}, Authorizer: policy},
		{Name: "ws", Path: "/api/ws/", Upstream: h.ups["ws"].url(t, "/"), WebSocket: true, Credential: Credential{Kind: CredentialUserToken}, Authorizer: policy},
		{Name: "stream", Path: "/api/stream/", Upstream: h.ups["stream"].url(t, "/"), Credential: Credential{Kind: CredentialUserToken}, Authorizer: policy, Methods: []string{"GET", "POST"}, MaxBodyBytes: 1 << 10},
		{Name: "slow", Path: "/api/slow/", Upstream: h.ups["slow"].url(t, "/"), Credential: Credential{Kind: CredentialNone}, Authorizer: policy, Timeout: 200 * time.Millisecond},
		{Name: "down", Path: "/api/down/", Upstream: h.ups["down"].url(t, "/"), Credential: Credential{Kind: CredentialNone}, Authorizer: policy},
	}
	pu, _ := url.Parse(publicURL)
	o := Options{
		PublicURL:     pu,
		CSRF:          CSRFOptions{AllowedOrigins: []string{"https://admin.example.com"}},
		Authenticator: h.auth,
		UserTokens:    h.tokens,
		Exchanger:     h.xchg,
		Auditor:       h.audit,
		Now:           h.clock.Now,
	}
	for _, fn := range opts {
		specs = fn(h, specs, &o)
	}
	p, err := New(specs, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.p = p
	h.srv = httptest.NewServer(p)
	t.Cleanup(func() {
		h.srv.Close()
		p.Close()
	})
	return h
}

// req builds a well-formed SPA request: session cookie and CSRF header.
func (h *harness) req(method, path string, body io.Reader) *http.Request {
	r, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	r.Header.Set("X-CSRF", "1")
	r.AddCookie(&http.Cookie{Name: "gh", Value: aliceCookie})
	return r
}

func (h *harness) do(r *http.Request) (*http.Response, string) {
	h.t.Helper()
	res, err := h.srv.Client().Do(r)
	if err != nil {
		h.t.Fatalf("do: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// raw sends a request line and headers exactly as given over TCP.
func (h *harness) raw(requestTarget string, headers ...string) (int, string) {
	h.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: app.example.com\r\nX-CSRF: 1\r\nCookie: gh=%s\r\nConnection: close\r\n", requestTarget, aliceCookie)
	for _, hd := range headers {
		b.WriteString(hd + "\r\n")
	}
	b.WriteString("\r\n")
	return h.rawRequest(b.String())
}

// rawRequest sends msg as the whole request.
func (h *harness) rawRequest(msg string) (int, string) {
	h.t.Helper()
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, msg); err != nil {
		h.t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		h.t.Fatalf("read response: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func (h *harness) totalHits() int {
	n := 0
	for _, u := range h.ups {
		n += len(u.Hits())
	}
	return n
}

func (h *harness) resetHits() {
	for _, u := range h.ups {
		u.reset()
	}
}

// wantNothingForwarded fails if any upstream saw a request.
func (h *harness) wantNothingForwarded() {
	h.t.Helper()
	for name, u := range h.ups {
		if hs := u.Hits(); len(hs) > 0 {
			h.t.Fatalf("upstream %s was contacted %d times (first: %s)", name, len(hs), hs[0].RequestURI)
		}
	}
}

func wantError(t testing.TB, res *http.Response, body string, status int, code string) {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("status = %d, want %d (body %s)", res.StatusCode, status, body)
	}
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("content-type = %q, want JSON", res.Header.Get("Content-Type"))
	}
	if code != "" && !strings.Contains(body, `"error":"`+code+`"`) {
		t.Fatalf("body = %s, want error code %s", body, code)
	}
}

var errBoom = errors.New("boom")

func ptr[T any](v T) *T { return &v }

type netipPrefix = netip.Prefix

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func secretStatic(s string) *secret.Value { return secret.Static(s) }

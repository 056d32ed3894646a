package oidc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/idp"
	"github.com/gatehouse-dev/gatehouse/internal/oidc"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

const (
	clientID     = "gatehouse"
	clientSecret = "gatehouse-test-client-secret"
	cookieName   = "gatehouse"
)

// auditLog records audit events; fail makes Log return audit.ErrUnavailable.
// endLog records the session ends the Manager reports (OnEnd).
type endLog struct {
	mu   sync.Mutex
	ends []session.SessionEnd
}

func (l *endLog) record(_ context.Context, e session.SessionEnd) {
	l.mu.Lock()
	l.ends = append(l.ends, e)
	l.mu.Unlock()
}

// causes returns the causes reported for session id, in order.
func (l *endLog) causes(id string) []session.EndCause {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []session.EndCause
	for _, e := range l.ends {
		if e.ID == id {
			out = append(out, e.Cause)
		}
	}
	return out
}

func (l *endLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ends)
}

type auditLog struct {
	mu     sync.Mutex
	events []audit.Record
	fail   atomic.Bool
}

func (a *auditLog) Log(_ context.Context, rec audit.Record) error {
	if a.fail.Load() {
		return audit.ErrUnavailable
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, rec)
	return nil
}

func (a *auditLog) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var sb strings.Builder
	for _, r := range a.events {
		fmt.Fprintf(&sb, "%+v\n", r)
	}
	return sb.String()
}

func (a *auditLog) has(event audit.Event) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.events {
		if e.Event == event {
			return true
		}
	}
	return false
}

// wire records every response Gatehouse sends (status line, headers, body).
type wire struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

type recWriter struct {
	http.ResponseWriter
	w      *wire
	status int
	body   bytes.Buffer
}

func (r *recWriter) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }
func (r *recWriter) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (w *wire) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		rec := &recWriter{ResponseWriter: rw, w: w}
		next.ServeHTTP(rec, req)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.buf.WriteString(req.Method + " " + req.URL.Path + "\n")
		for k, vs := range rw.Header() {
			for _, v := range vs {
				// The one documented exception: id_token_hint on the logout
				// redirect to the IdP. Recorded separately so the leak scan
				// can check it is the only one.
				if k == "Location" && strings.Contains(v, "id_token_hint=") {
					w.buf.WriteString("Location: <end-session redirect>\n")
					continue
				}
				w.buf.WriteString(k + ": " + v + "\n")
			}
		}
		w.buf.Write(rec.body.Bytes())
		w.buf.WriteString("\n")
	})
}

func (w *wire) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

type env struct {
	t      *testing.T
	op     *idp.Provider
	gw     *httptest.Server
	h      *oidc.Handler
	mgr    *session.Manager
	ends   *endLog
	store  *session.MemoryStore
	clock  *testclock.Clock
	logs   *syncbuf.Buffer
	audit  *auditLog
	wire   *wire
	secret *secret.Value
	par    *parShim
	// writes counts the store writes Gatehouse makes through Options.Sessions.
	writes *countingSessions
	// lastCallback is the callback URL of the last login (it holds the code).
	lastCallback string
}

type envOpts struct {
	accessTTL time.Duration
	// par serves the real OP behind parShim, which adds RFC 9126 pushed
	// authorization requests and prompt_values_supported to it.
	par    bool
	secret *secret.Value // default: a static client secret
	// cacheTTL is the session Manager's CacheTTL (0: its default; negative: off).
	cacheTTL time.Duration
	// csrfHeader is Options.CSRFHeader (default X-CSRF).
	csrfHeader string
	// privateKey switches Gatehouse to private_key_jwt with this PEM key;
	// the OP's client then has no secret, only clientKeys.
	privateKey *secret.Value
	clientKeys []jose.JSONWebKey
}

func newEnv(t *testing.T, eo envOpts) *env {
	t.Helper()
	e := &env{t: t, clock: &testclock.Clock{}, logs: &syncbuf.Buffer{}, audit: &auditLog{}, wire: &wire{}}
	var mux http.Handler = http.NotFoundHandler()
	var muxMu sync.RWMutex
	e.gw = httptest.NewServer(e.wire.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		muxMu.RLock()
		m := mux
		muxMu.RUnlock()
		m.ServeHTTP(w, r)
	})))
	t.Cleanup(e.gw.Close)
	opSecret := clientSecret
	if eo.privateKey != nil {
		opSecret = ""
	}
	opOpts := idp.Options{
		Clients: []idp.Client{{
			ID: clientID, Secret: opSecret, Keys: eo.clientKeys,
			RedirectURIs:           []string{e.gw.URL + "/bff/callback"},
			PostLogoutRedirectURIs: []string{e.gw.URL + "/"},
			BackChannelLogoutURI:   e.gw.URL + "/bff/backchannel",
		}},
		AccessTokenTTL: eo.accessTTL,
	}
	if eo.par {
		e.par = &parShim{requests: map[string]url.Values{}}
		srv := httptest.NewServer(e.par)
		t.Cleanup(srv.Close)
		opOpts.Issuer = srv.URL
		op, err := idp.New(context.Background(), opOpts)
		if err != nil {
			t.Fatal(err)
		}
		e.par.set(op.Handler())
		e.op = op
	} else {
		e.op = idp.MustStart(t, opOpts)
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.store = session.NewMemoryStore(e.clock.Now)
	e.mgr = session.NewManager(e.store, session.Options{Now: e.clock.Now, Logger: logger, HealthInterval: -1, CacheTTL: eo.cacheTTL})
	t.Cleanup(func() { _ = e.mgr.Close() })
	e.ends = &endLog{}
	e.mgr.OnEnd(e.ends.record)
	e.writes = &countingSessions{Sessions: e.mgr}
	e.secret = eo.secret
	if e.secret == nil && eo.privateKey == nil {
		e.secret = secret.Static(clientSecret)
	}
	keys, err := secret.NewKeyRing(secret.New("login-state-cookie-key-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	clientAuth := ""
	if eo.privateKey != nil {
		clientAuth = oidc.AuthPrivateKeyJWT
	}
	e.h, err = oidc.New(context.Background(), oidc.Options{
		Issuer:       e.op.Issuer(),
		ClientID:     clientID,
		ClientSecret: e.secret,
		ClientAuth:   clientAuth,
		PrivateKey:   eo.privateKey,
		PublicURL:    e.gw.URL,
		CookieName:   cookieName,
		CookieKeys:   keys,
		Sessions:     e.writes,
		Clock:        e.clock.Now,
		Logger:       logger,
		Auditor:      e.audit,
		CSRFHeader:   eo.csrfHeader,
	})
	if err != nil {
		t.Fatalf("oidc.New: %v", err)
	}
	m := http.NewServeMux()
	e.h.Register(m)
	m.HandleFunc("GET /app", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "app") })
	muxMu.Lock()
	mux = m
	muxMu.Unlock()
	return e
}

// browser is a cookie-keeping client that does not follow redirects, so each
// hop can be inspected.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}
}

func (e *env) get(c *http.Client, path string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	target := path
	if strings.HasPrefix(path, "/") {
		target = e.gw.URL + path
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// startLogin calls /bff/login and returns the IdP authorization URL.
func (e *env) startLogin(c *http.Client, returnURL string) string {
	e.t.Helper()
	resp, body := e.get(c, "/bff/login?returnUrl="+url.QueryEscape(returnURL))
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("/bff/login: %d %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

// authorize signs alice in at the OP and returns the callback URL (not yet requested).
func (e *env) authorize(c *http.Client, authURL, user, pass string) string {
	e.t.Helper()
	cb, err := e.op.Login(context.Background(), c, authURL, user, pass)
	if err != nil {
		e.t.Fatalf("OP login: %v", err)
	}
	return cb
}

// login runs the whole flow and returns the callback response.
func (e *env) login(c *http.Client, user, pass string) *http.Response {
	e.t.Helper()
	cb := e.authorize(c, e.startLogin(c, "/app"), user, pass)
	e.lastCallback = cb
	resp, body := e.get(c, cb)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app" {
		e.t.Fatalf("callback: %d %s (Location %q)", resp.StatusCode, body, resp.Header.Get("Location"))
	}
	return resp
}

func (e *env) sessionCookie(c *http.Client) *http.Cookie {
	u, _ := url.Parse(e.gw.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == cookieName {
			return ck
		}
	}
	return nil
}

// session loads the server-side session of a browser (test-side view).
func (e *env) session(c *http.Client) (session.Handle, *session.Session) {
	e.t.Helper()
	ck := e.sessionCookie(c)
	if ck == nil {
		e.t.Fatal("browser has no session cookie")
	}
	h, err := session.ParseHandle(ck.Value)
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := e.mgr.Load(context.Background(), h, false)
	if err != nil {
		e.t.Fatalf("load session: %v", err)
	}
	return h, s
}

// assertNoLeak checks that none of the given secret values appears in any
// response Gatehouse sent, any log line or any audit record.
func (e *env) assertNoLeak(values ...string) {
	e.t.Helper()
	haystacks := map[string]string{"responses": e.wire.String(), "logs": e.logs.String(), "audit": e.audit.String()}
	for i, v := range values {
		if len(v) < 8 {
			continue
		}
		for name, hs := range haystacks {
			if at := strings.Index(hs, v); at >= 0 {
				// Show only where, never the value itself.
				from := max(0, at-80)
				e.t.Errorf("secret value #%d appears in %s after %q", i, name, hs[from:at])
			}
		}
	}
}

// parShim serves the real OP and adds what it lacks: a pushed authorization
// request endpoint (RFC 9126: client-authenticated, one-time request_uri)
// and prompt_values_supported in discovery. Everything else is the OP.
type parShim struct {
	mu       sync.Mutex
	next     http.Handler
	requests map[string]url.Values
	pushed   int
	direct   int // authorization requests that did not use a request_uri
	paths    map[string]int
	// posts records the forms and Authorization headers of POSTs to the OP.
	posts []postedForm
}

type postedForm struct {
	Path          string
	Form          url.Values
	Authorization string
}

// postsTo returns the recorded POSTs to path.
func (p *parShim) postsTo(path string) []postedForm {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []postedForm
	for _, f := range p.posts {
		if f.Path == path {
			out = append(out, f)
		}
	}
	return out
}

// hits returns how many requests reached the OP at path.
func (p *parShim) hits(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paths[path]
}

func (p *parShim) set(h http.Handler) {
	p.mu.Lock()
	p.next = h
	p.mu.Unlock()
}

func (p *parShim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	next := p.next
	if p.paths == nil {
		p.paths = map[string]int{}
	}
	p.paths[r.URL.Path]++
	p.mu.Unlock()
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		p.mu.Lock()
		p.posts = append(p.posts, postedForm{Path: r.URL.Path, Form: form, Authorization: r.Header.Get("Authorization")})
		p.mu.Unlock()
	}
	switch {
	case r.URL.Path == "/.well-known/openid-configuration":
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var doc map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			http.Error(w, "bad discovery", http.StatusBadGateway)
			return
		}
		doc["pushed_authorization_request_endpoint"] = doc["issuer"].(string) + "/par"
		doc["prompt_values_supported"] = []string{"none", "login"}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	case r.URL.Path == "/par" && r.Method == http.MethodPost:
		id, sec, ok := r.BasicAuth()
		if ok {
			id, _ = url.QueryUnescape(id)
			sec, _ = url.QueryUnescape(sec)
		}
		// private_key_jwt: this shim only checks the assertion is there; the
		// real OP verifies assertions at its token and revocation endpoints.
		if r.PostFormValue("client_assertion") != "" && r.PostFormValue("client_id") == clientID {
			id, sec, ok = clientID, clientSecret, true
		}
		if !ok || id != clientID || sec != clientSecret {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		if err := r.ParseForm(); err != nil || r.PostForm.Has("request_uri") || r.PostForm.Get("client_id") != clientID {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		uri := "urn:ietf:params:oauth:request_uri:" + strconv.Itoa(int(time.Now().UnixNano()))
		p.mu.Lock()
		p.requests[uri] = r.PostForm
		p.pushed++
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"request_uri": uri, "expires_in": 60})
	case r.URL.Path == "/authorize":
		q := r.URL.Query()
		if !q.Has("request_uri") {
			p.mu.Lock()
			p.direct++
			p.mu.Unlock()
			next.ServeHTTP(w, r)
			return
		}
		p.mu.Lock()
		params, ok := p.requests[q.Get("request_uri")]
		delete(p.requests, q.Get("request_uri"))
		p.mu.Unlock()
		if !ok || q.Get("client_id") != params.Get("client_id") || len(q) != 2 {
			http.Error(w, "invalid request_uri", http.StatusBadRequest)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.RawQuery = params.Encode()
		next.ServeHTTP(w, r2)
	default:
		next.ServeHTTP(w, r)
	}
}

func (a *auditLog) all() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.events)
}

// countingSessions is the real session manager, counting the calls that
// write something to the store (a new session, an update, a one-time key, a
// lock).
type countingSessions struct {
	oidc.Sessions
	n atomic.Int64
}

func (c *countingSessions) Create(ctx context.Context, s *session.Session) (session.Handle, error) {
	c.n.Add(1)
	return c.Sessions.Create(ctx, s)
}

func (c *countingSessions) Update(ctx context.Context, h session.Handle, s *session.Session) error {
	c.n.Add(1)
	return c.Sessions.Update(ctx, h, s)
}

func (c *countingSessions) Once(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	c.n.Add(1)
	return c.Sessions.Once(ctx, key, ttl)
}

func (c *countingSessions) Lock(ctx context.Context, name string, ttl time.Duration) (func(), error) {
	c.n.Add(1)
	return c.Sessions.Lock(ctx, name, ttl)
}

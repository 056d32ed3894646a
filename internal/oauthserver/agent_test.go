package oauthserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// fakeGrants stands in for internal/agent's broker: it records grants and
// revocations.
type fakeGrants struct {
	mu      sync.Mutex
	granted map[string]string // grant id -> client
	revoked []string
}

func (f *fakeGrants) Offer(_ *session.Session, routes []string) ([]RouteScope, time.Duration) {
	var out []RouteScope
	for _, r := range routes {
		if r == "profile" || r == "dashboard" {
			out = append(out, RouteScope{Route: r, Methods: []string{"GET"}})
		}
	}
	return out, 5 * time.Minute
}

func (f *fakeGrants) Grant(_ context.Context, _ session.Handle, s *session.Session, clientID string, routes []string) (AgentToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := "grant-" + randomString()[:8]
	f.granted[id] = clientID
	return AgentToken{Value: secret.New(AgentPrefix + id), GrantID: id, SessionID: s.ID, Expires: time.Now().Add(5 * time.Minute), Routes: routes}, nil
}

func (f *fakeGrants) RevokeID(_ context.Context, _, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, id)
	delete(f.granted, id)
	return nil
}

func (f *fakeGrants) RevokeToken(ctx context.Context, tok, clientID string) (bool, error) {
	id := strings.TrimPrefix(tok, AgentPrefix)
	f.mu.Lock()
	owner, ok := f.granted[id]
	f.mu.Unlock()
	if !ok || owner != clientID {
		return false, nil
	}
	return true, f.RevokeID(ctx, "", id)
}

type agentFixture struct {
	*fixture
	grants  *fakeGrants
	browser session.Handle
	mux     *http.ServeMux
}

func newAgentFixture(t *testing.T) *agentFixture {
	t.Helper()
	f := newFixture(t)
	g := &fakeGrants{granted: map[string]string{}}
	f.srv.o.Agents = g
	f.srv.o.BrowserSession = func(r *http.Request) (session.Handle, *session.Session, error) {
		c, err := r.Cookie("bs")
		if err != nil {
			return session.Handle{}, nil, session.ErrNotFound
		}
		h, err := session.ParseHandle(c.Value)
		if err != nil {
			return session.Handle{}, nil, session.ErrNotFound
		}
		s, err := f.sessions.Load(r.Context(), h, true)
		return h, s, err
	}
	h, err := f.sessions.Create(context.Background(), &session.Session{Subject: "alice", Claims: map[string]any{"email": "alice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	f.srv.Register(mux)
	return &agentFixture{fixture: f, grants: g, browser: h, mux: mux}
}

func agentQuery() url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {"travel-agent"}, "redirect_uri": {"http://127.0.0.1:5555/callback"},
		"state": {"st"}, "code_challenge": {challengeOf(verifier)}, "code_challenge_method": {"S256"}, "scope": {"profile billing"}}
}

var (
	consentField = regexp.MustCompile(`name="consent" value="([^"]+)"`)
	csrfField    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// consentPage asks for the consent page with the browser session and
// returns its consent id and CSRF token.
func (a *agentFixture) consentPage(t *testing.T) (id, csrf string, rec *httptest.ResponseRecorder) {
	t.Helper()
	req := httptest.NewRequest("GET", AuthorizePath+"?"+agentQuery().Encode(), nil)
	req.AddCookie(&http.Cookie{Name: "bs", Value: a.browser.Cookie().Reveal()})
	rec = httptest.NewRecorder()
	a.mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("consent page: %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	m1, m2 := consentField.FindStringSubmatch(body), csrfField.FindStringSubmatch(body)
	if m1 == nil || m2 == nil {
		t.Fatalf("consent page without its fields: %s", body)
	}
	return m1[1], m2[1], rec
}

func (a *agentFixture) decide(t *testing.T, form url.Values, cookie string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", ConsentPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "bs", Value: cookie})
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	a.mux.ServeHTTP(rec, req)
	return rec
}

func TestConsentPageNamesTheGrantAndCannotBeFramed(t *testing.T) {
	a := newAgentFixture(t)
	_, _, rec := a.consentPage(t)
	body := rec.Body.String()
	for _, want := range []string{`<form method="post" action="/bff/oauth/consent">`, "travel-agent", "profile", "GET", "5m0s",
		`name="decision" value="approve"`, `name="decision" value="deny"`, "alice@example.com"} {
		if !strings.Contains(body, want) {
			t.Errorf("the consent page lacks %q", want)
		}
	}
	if strings.Contains(body, "billing") {
		t.Error("the consent page offers a route the client may not have")
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || rec.Header().Get("X-Frame-Options") != "DENY" {
		t.Fatalf("the consent page can be framed: CSP %q", csp)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatal("the consent page may be cached")
	}
}

func TestConsentApprovedGivesANarrowedAgentToken(t *testing.T) {
	a := newAgentFixture(t)
	id, csrf, _ := a.consentPage(t)
	rec := a.decide(t, url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"approve"}}, a.browser.Cookie().Reveal(), nil)
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusFound || loc.Host != "127.0.0.1:5555" || loc.Query().Get("iss") != "https://app.example.com" || loc.Query().Get("state") != "st" {
		t.Fatalf("approve: %d %s", rec.Code, loc)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {"travel-agent"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {"http://127.0.0.1:5555/callback"}, "code_verifier": {verifier}}
	redeem := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", TokenPath, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rr := httptest.NewRecorder()
		a.mux.ServeHTTP(rr, req)
		return rr
	}
	tr := redeem()
	if tr.Code != 200 || !strings.Contains(tr.Body.String(), `"access_token":"gha_`) || !strings.Contains(tr.Body.String(), `"token_type":"Bearer"`) ||
		!strings.Contains(tr.Body.String(), `"scope":"profile"`) {
		t.Fatalf("token: %d %s", tr.Code, tr.Body)
	}
	if len(a.grants.granted) != 1 {
		t.Fatalf("%d grants", len(a.grants.granted))
	}
	// The code comes back: the grant it produced ends.
	if rr := redeem(); rr.Code != http.StatusBadRequest || len(a.grants.granted) != 0 {
		t.Fatalf("reused code: %d, %d grants live", rr.Code, len(a.grants.granted))
	}
}

func TestConsentDeniedRedirectsAccessDenied(t *testing.T) {
	a := newAgentFixture(t)
	id, csrf, _ := a.consentPage(t)
	rec := a.decide(t, url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"deny"}}, a.browser.Cookie().Reveal(), nil)
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusFound || loc.Query().Get("error") != "access_denied" || loc.Query().Get("iss") != "https://app.example.com" ||
		loc.Query().Get("state") != "st" || loc.Query().Get("code") != "" || len(a.grants.granted) != 0 {
		t.Fatalf("deny: %d %s", rec.Code, loc)
	}
}

func TestConsentFormRefusesForgedDecisions(t *testing.T) {
	a := newAgentFixture(t)
	other, _ := a.sessions.Create(context.Background(), &session.Session{Subject: "mallory"})
	cases := []struct {
		name   string
		form   func(id, csrf string) url.Values
		cookie func() string
		hdr    map[string]string
	}{
		{"missing CSRF token", func(id, _ string) url.Values { return url.Values{"consent": {id}, "decision": {"approve"}} }, nil, nil},
		{"wrong CSRF token", func(id, _ string) url.Values {
			return url.Values{"consent": {id}, "csrf": {randomString()}, "decision": {"approve"}}
		}, nil, nil},
		{"another user's session", func(id, csrf string) url.Values {
			return url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"approve"}}
		}, func() string { return other.Cookie().Reveal() }, nil},
		{"no session", func(id, csrf string) url.Values {
			return url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"approve"}}
		}, func() string { return "" }, nil},
		{"cross-site origin", func(id, csrf string) url.Values {
			return url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"approve"}}
		}, nil, map[string]string{"Origin": "https://evil.example"}},
		{"cross-site fetch", func(id, csrf string) url.Values {
			return url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"approve"}}
		}, nil, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"two decisions", func(id, csrf string) url.Values {
			return url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"deny", "approve"}}
		}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, csrf, _ := a.consentPage(t)
			cookie := a.browser.Cookie().Reveal()
			if tc.cookie != nil {
				cookie = tc.cookie()
			}
			rec := a.decide(t, tc.form(id, csrf), cookie, tc.hdr)
			if rec.Code != http.StatusForbidden && rec.Code != http.StatusBadRequest {
				t.Fatalf("%d %s", rec.Code, rec.Header().Get("Location"))
			}
			if len(a.grants.granted) != 0 {
				t.Fatal("a forged decision made a grant")
			}
		})
	}
}

// Without a browser session the user signs in first (a browser login handed
// back to the front door), then sees the consent page.
func TestAgentAuthorizeWithoutSessionSignsInFirst(t *testing.T) {
	a := newAgentFixture(t)
	rec := httptest.NewRecorder()
	a.mux.ServeHTTP(rec, httptest.NewRequest("GET", AuthorizePath+"?"+agentQuery().Encode(), nil))
	if rec.Code != http.StatusFound || a.login.state == "" {
		t.Fatalf("no login started: %d", rec.Code)
	}
	s, err := a.sessions.Load(context.Background(), a.browser, false)
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	a.srv.FinishBrowserLogin(rec, httptest.NewRequest("GET", "/bff/callback", nil), a.login.state, a.browser, s)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `name="decision" value="approve"`) {
		t.Fatalf("after login: %d %s", rec.Code, rec.Body)
	}
	// The pending request is single use.
	rec = httptest.NewRecorder()
	a.srv.FinishBrowserLogin(rec, httptest.NewRequest("GET", "/bff/callback", nil), a.login.state, a.browser, s)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("second finish: %d", rec.Code)
	}
}

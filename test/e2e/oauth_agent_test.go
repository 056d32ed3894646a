package e2e

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// agentOAuthYAML: profile and mcp are delegable; the travel-agent client
// may be granted profile at most.
const agentOAuthYAML = `
agents:
  delegable_routes: [profile, mcp]
oauth:
  clients:
    - client_id: ios-app
      kind: native
      redirect_uris: ["com.example.app:/oauth/callback"]
    - client_id: travel-agent
      kind: agent
      redirect_uris: ["http://127.0.0.1/callback"]
      routes: [profile]
`

var (
	e2eConsentField = regexp.MustCompile(`name="consent" value="([^"]+)"`)
	e2eCSRFField    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

type agentClient struct {
	t        *testing.T
	e        *gwEnv
	verifier string
	redirect string
}

func newAgentClient(t *testing.T, e *gwEnv) *agentClient {
	return &agentClient{t: t, e: e, verifier: randomB64(t, 32), redirect: "http://127.0.0.1:49152/callback"}
}

func (a *agentClient) query(state string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {"travel-agent"}, "redirect_uri": {a.redirect}, "state": {state},
		"code_challenge": {s256(a.verifier)}, "code_challenge_method": {"S256"}, "scope": {"profile billing mcp"},
		"resource": {a.e.URL}}
}

// consent loads the consent page in browser b and returns it with its fields.
func (a *agentClient) consent(b *http.Client, resp *http.Response) (id, csrf string, body string) {
	a.t.Helper()
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body = string(raw)
	if resp.StatusCode != 200 {
		a.t.Fatalf("consent page: %d %s", resp.StatusCode, body)
	}
	m1, m2 := e2eConsentField.FindStringSubmatch(body), e2eCSRFField.FindStringSubmatch(body)
	if m1 == nil || m2 == nil {
		a.t.Fatalf("consent page without its fields: %s", body)
	}
	return m1[1], m2[1], body
}

func (a *agentClient) decide(b *http.Client, form url.Values) *http.Response {
	a.t.Helper()
	req, _ := http.NewRequest("POST", a.e.URL+"/bff/oauth/consent", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", a.e.URL)
	resp, err := b.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (a *agentClient) token(code string) (int, map[string]any) {
	a.t.Helper()
	app := &nativeApp{t: a.t, e: a.e}
	st, body, _ := app.tokenRequest(url.Values{"grant_type": {"authorization_code"}, "client_id": {"travel-agent"}, "code": {code},
		"redirect_uri": {a.redirect}, "code_verifier": {a.verifier}, "resource": {a.e.URL}})
	return st, body
}

// An agent client (an MCP client, say): the user approves on the consent
// page; the agent token is narrowed to the approved routes, reaches the
// upstream with the user's credential, and dies with the browser session.
func TestOAuthAgentConsentApproved(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: strings.ReplaceAll(oauthRoutes, "{{.Upstream}}", up.URL) + agentOAuthYAML})
	b := e.login("alice", "wonderland")
	ag := newAgentClient(t, e)

	resp, err := b.Get(e.URL + "/bff/oauth/authorize?" + ag.query("st-1").Encode())
	if err != nil {
		t.Fatal(err)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("the consent page can be framed: %q", csp)
	}
	id, csrf, page := ag.consent(b, resp)
	for _, want := range []string{"travel-agent", "profile", "GET", `<form method="post"`, `value="approve"`, `value="deny"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the consent page lacks %q", want)
		}
	}
	if strings.Contains(page, "billing") || strings.Contains(page, "<strong>mcp</strong>") {
		t.Error("the consent page offers routes the client may not have")
	}
	r := ag.decide(b, url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"approve"}})
	loc, _ := url.Parse(r.Header.Get("Location"))
	if r.StatusCode != http.StatusFound || loc.Host != "127.0.0.1:49152" || loc.Query().Get("state") != "st-1" || loc.Query().Get("iss") != e.URL {
		t.Fatalf("approve: %d %s", r.StatusCode, loc)
	}
	st, body := ag.token(loc.Query().Get("code"))
	tok, _ := body["access_token"].(string)
	if st != 200 || !strings.HasPrefix(tok, "gha_") || body["token_type"] != "Bearer" || body["scope"] != "profile" {
		t.Fatalf("token: %d %v", st, body)
	}
	call := func(path string) int {
		req, _ := http.NewRequest("GET", e.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := call("/api/profile/me"); st != 200 {
		t.Fatalf("agent call: %d", st)
	}
	if auth := up.last(t).Header.Get("Authorization"); !strings.HasPrefix(auth, "Bearer ") || strings.Contains(auth, "gha_") {
		t.Fatalf("the upstream got %q", auth)
	}
	up.reset()
	if st := call("/api/mcp"); st != http.StatusForbidden {
		t.Fatalf("a route outside the approved grant: %d", st)
	}
	// The browser session ends: so does the agent token.
	sid := e.sessPublicID(b)
	if code, body := e.api(b, "GET", "/bff/logout?sid="+url.QueryEscape(sid), nil); code != 302 && code != 303 {
		t.Fatalf("logout: %d %s", code, body)
	}
	if st := call("/api/profile/me"); st != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", st)
	}
	if up.count() != 0 {
		t.Fatal("refused agent requests reached the upstream")
	}
}

// Denied → access_denied at the redirect URI; a forged decision (no or a
// wrong CSRF token, another browser) grants nothing.
func TestOAuthAgentConsentDeniedAndForged(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: strings.ReplaceAll(oauthRoutes, "{{.Upstream}}", up.URL) + agentOAuthYAML})
	b := e.login("alice", "wonderland")
	ag := newAgentClient(t, e)
	page := func() (string, string) {
		resp, err := b.Get(e.URL + "/bff/oauth/authorize?" + ag.query("st").Encode())
		if err != nil {
			t.Fatal(err)
		}
		id, csrf, _ := ag.consent(b, resp)
		return id, csrf
	}
	id, csrf := page()
	r := ag.decide(b, url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"deny"}})
	loc, _ := url.Parse(r.Header.Get("Location"))
	if r.StatusCode != http.StatusFound || loc.Query().Get("error") != "access_denied" || loc.Query().Get("iss") != e.URL || loc.Query().Get("code") != "" {
		t.Fatalf("deny: %d %s", r.StatusCode, loc)
	}
	mallory := e.login("bob", "builder")
	for name, form := range map[string]func(id, csrf string) (url.Values, *http.Client){
		"missing CSRF token": func(id, _ string) (url.Values, *http.Client) {
			return url.Values{"consent": {id}, "decision": {"approve"}}, b
		},
		"wrong CSRF token": func(id, _ string) (url.Values, *http.Client) {
			return url.Values{"consent": {id}, "csrf": {"x" + randomB64(t, 32)}, "decision": {"approve"}}, b
		},
		"another user's browser": func(id, csrf string) (url.Values, *http.Client) {
			return url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"approve"}}, mallory
		},
	} {
		t.Run(name, func(t *testing.T) {
			id, csrf := page()
			f, client := form(id, csrf)
			r := ag.decide(client, f)
			if r.StatusCode != http.StatusForbidden || r.Header.Get("Location") != "" {
				t.Fatalf("%d %s", r.StatusCode, r.Header.Get("Location"))
			}
		})
	}
	infos, err := e.GW.Sessions().List(context.Background(), "user-alice")
	if err != nil || len(infos) != 1 {
		t.Fatalf("alice's sessions: %v %v", infos, err)
	}
	if n := up.count(); n != 0 {
		t.Fatalf("the upstream received %d requests", n)
	}
}

// Without a browser session the user signs in at the IdP first and comes
// back to the consent page, which is answered in the callback itself (no
// SameSite=Strict cookie is needed on the way back).
func TestOAuthAgentSignsInFirst(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: strings.ReplaceAll(oauthRoutes, "{{.Upstream}}", up.URL) + agentOAuthYAML})
	b := newHTTPBrowser(t)
	ag := newAgentClient(t, e)
	cb, err := e.IdP.Login(context.Background(), b, e.URL+"/bff/oauth/authorize?"+ag.query("st-2").Encode(), "alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.Get(cb)
	if err != nil {
		t.Fatal(err)
	}
	id, csrf, _ := ag.consent(b, resp)
	r := ag.decide(b, url.Values{"consent": {id}, "csrf": {csrf}, "decision": {"approve"}})
	loc, _ := url.Parse(r.Header.Get("Location"))
	if r.StatusCode != http.StatusFound || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st-2" {
		t.Fatalf("approve: %d %s", r.StatusCode, loc)
	}
	if st, body := ag.token(loc.Query().Get("code")); st != 200 || body["token_type"] != "Bearer" {
		t.Fatalf("token: %d %v", st, body)
	}
	e.sessWant(b, "/bff/user", 200) // the sign-in was the browser's own
}

// A stolen native handle (without the app's key) set as the session cookie
// cannot mint agent tokens, nor reach the consent page as the user.
func TestOAuthNativeHandleCannotMintAgentTokens(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: strings.ReplaceAll(oauthRoutes, "{{.Upstream}}", up.URL) + agentOAuthYAML})
	app := newNativeApp(t, e)
	app.signIn(newHTTPBrowser(t))
	thief := newHTTPBrowser(t)
	u, _ := url.Parse(e.URL)
	thief.Jar.SetCookies(u, []*http.Cookie{{Name: e.Cfg.EffectiveCookieName(), Value: strings.TrimPrefix(app.handle, "ghn_"), Path: "/"}})
	if st, body := e.mint(thief, `{"name":"x","routes":["profile"]}`); st != http.StatusUnauthorized {
		t.Fatalf("mint with a native handle as cookie: %d %v", st, body)
	}
	ag := newAgentClient(t, e)
	resp := func() *http.Response {
		r, err := thief.Get(e.URL + "/bff/oauth/authorize?" + ag.query("s").Encode())
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r
	}()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("the consent page was shown for a native handle used as a cookie")
	}
}

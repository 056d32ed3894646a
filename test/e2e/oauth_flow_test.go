package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/oauthserver"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// oauthRoutes: profile (user_token) and billing, which the app is not
// granted when it asks for profile only.
const oauthRoutes = `
routes:
  - name: profile
    path: /api/profile/
    upstream: "{{.Upstream}}/"
    credential: user_token
  - name: billing
    path: /api/billing/
    upstream: "{{.Upstream}}/"
    credential: user_token
  - name: mcp
    path: /api/mcp
    upstream: "{{.Upstream}}/"
    methods: [GET, POST, DELETE]
    credential: user_token
`

func startOAuthGW(t *testing.T, up *recorder, extra string) *gwEnv {
	t.Helper()
	return startGW(t, gwOptions{Config: strings.ReplaceAll(oauthRoutes, "{{.Upstream}}", up.URL) + oauthClientsYAML + extra})
}

// The metadata documents strict clients (oauth4webapi, the MCP SDK) read.
func TestOAuthMetadataDocuments(t *testing.T) {
	up := newRecorder(t, nil)
	e := startOAuthGW(t, up, "")
	get := func(path string) map[string]any {
		resp, err := http.Get(e.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	as := get("/.well-known/oauth-authorization-server")
	want := map[string]any{"issuer": e.URL, "authorization_endpoint": e.URL + "/bff/oauth/authorize",
		"token_endpoint": e.URL + "/bff/oauth/token", "revocation_endpoint": e.URL + "/bff/oauth/revoke",
		"authorization_response_iss_parameter_supported": true}
	for k, v := range want {
		if as[k] != v {
			t.Errorf("AS metadata %s = %v, want %v", k, as[k], v)
		}
	}
	for k, v := range map[string]string{"response_types_supported": "code", "grant_types_supported": "authorization_code",
		"code_challenge_methods_supported": "S256", "token_endpoint_auth_methods_supported": "none",
		"dpop_signing_alg_values_supported": "ES256", "scopes_supported": "profile"} {
		list, _ := as[k].([]any)
		found := false
		for _, x := range list {
			found = found || x == v
		}
		if !found {
			t.Errorf("AS metadata %s = %v, want it to list %s", k, as[k], v)
		}
	}
	pr := get("/.well-known/oauth-protected-resource")
	if pr["resource"] != e.URL || pr["authorization_servers"].([]any)[0] != e.URL {
		t.Errorf("protected resource metadata %v", pr)
	}
}

// The whole flow up to the handle: authorize in a browser that is signed in
// to Gatehouse, the redirect to the app's scheme with code, state and iss,
// the token request with a DPoP proof. The browser's own session is left as
// it was, and no IdP token reaches the app.
func TestOAuthNativeCodeFlow(t *testing.T) {
	up := newRecorder(t, nil)
	e := startOAuthGW(t, up, "")
	b := e.login("alice", "wonderland")
	browserSID := e.sessPublicID(b)
	app := newNativeApp(t, e)

	u := app.authorize(b, app.authQuery("state-123"))
	q := u.Query()
	if u.Scheme != "com.example.app" || u.Path != "/oauth/callback" || q.Get("state") != "state-123" || q.Get("iss") != e.URL || q.Get("code") == "" {
		t.Fatalf("redirect to the app: %s", u)
	}
	if e.sessPublicID(b) != browserSID {
		t.Fatal("the browser's own session changed")
	}
	st, body, hdr := app.tokenRequest(app.tokenForm(q.Get("code")), app.tokenProof())
	if st != http.StatusOK {
		t.Fatalf("token: %d %v", st, body)
	}
	if hdr.Get("Cache-Control") != "no-store" || hdr.Get("WWW-Authenticate") != "" {
		t.Fatalf("token answer headers: %v", hdr)
	}
	tok, _ := body["access_token"].(string)
	if !strings.HasPrefix(tok, "ghn_") || body["token_type"] != "DPoP" || body["scope"] != "profile" || body["expires_in"].(float64) <= 0 {
		t.Fatalf("token answer %v", body)
	}
	for k := range body { // no IdP token, no refresh token, nothing else
		if k != "access_token" && k != "token_type" && k != "expires_in" && k != "scope" {
			t.Fatalf("token answer carries %s", k)
		}
	}
	// The app's session is a session of its own, listed for the user.
	if n := len(e.sessionsOf("user-alice")); n != 2 {
		t.Fatalf("alice has %d sessions, want 2 (browser and app)", n)
	}
}

// Attacks on the code flow, each refused.
func TestOAuthCodeFlowAttacks(t *testing.T) {
	up := newRecorder(t, nil)
	e := startOAuthGW(t, up, "")
	newCode := func(app *nativeApp, q url.Values) string {
		t.Helper()
		b := newHTTPBrowser(t)
		return app.authorize(b, q).Query().Get("code")
	}
	t.Run("wrong code_verifier", func(t *testing.T) {
		app := newNativeApp(t, e)
		f := app.tokenForm(newCode(app, app.authQuery("s")))
		f.Set("code_verifier", randomB64(t, 32))
		wantTokenError(t, app, f, "invalid_grant", app.tokenProof())
	})
	t.Run("wrong redirect_uri", func(t *testing.T) {
		app := newNativeApp(t, e)
		f := app.tokenForm(newCode(app, app.authQuery("s")))
		f.Set("redirect_uri", "http://127.0.0.1/cb")
		wantTokenError(t, app, f, "invalid_grant", app.tokenProof())
	})
	t.Run("unregistered client at the token endpoint", func(t *testing.T) {
		app := newNativeApp(t, e)
		f := app.tokenForm(newCode(app, app.authQuery("s")))
		f.Set("client_id", "evil-app")
		wantTokenError(t, app, f, "invalid_client", app.tokenProof())
	})
	t.Run("no DPoP proof", func(t *testing.T) {
		app := newNativeApp(t, e)
		wantTokenError(t, app, app.tokenForm(newCode(app, app.authQuery("s"))), "invalid_dpop_proof")
	})
	t.Run("code for one dpop_jkt redeemed with another key", func(t *testing.T) {
		app := newNativeApp(t, e)
		q := app.authQuery("s")
		q.Set("dpop_jkt", jkt(app.key))
		code := newCode(app, q)
		thief := newNativeApp(t, e)
		thief.verifier = app.verifier // even with the verifier
		wantTokenError(t, thief, thief.tokenForm(code), "invalid_grant", thief.tokenProof())
	})
	t.Run("reused code revokes what the first redemption produced", func(t *testing.T) {
		app := newNativeApp(t, e)
		code := newCode(app, app.authQuery("s"))
		st, body, _ := app.tokenRequest(app.tokenForm(code), app.tokenProof())
		if st != 200 {
			t.Fatalf("first redemption: %d %v", st, body)
		}
		app.handle = body["access_token"].(string)
		if !e.hasSession("user-alice", app.handleID()) {
			t.Fatal("the first redemption made no session")
		}
		wantTokenError(t, app, app.tokenForm(code), "invalid_grant", app.tokenProof())
		if e.hasSession("user-alice", app.handleID()) {
			t.Fatal("the session of a reused code lives on")
		}
	})
	// Refused at the authorization endpoint, without redirecting where the
	// request is not trusted.
	for name, mod := range map[string]func(url.Values){
		"unregistered client":   func(q url.Values) { q.Set("client_id", "evil-app") },
		"unregistered redirect": func(q url.Values) { q.Set("redirect_uri", "com.evil.app:/cb") },
	} {
		t.Run(name, func(t *testing.T) {
			app := newNativeApp(t, e)
			q := app.authQuery("s")
			mod(q)
			resp := noRedirectGet(t, e.URL+"/bff/oauth/authorize?"+q.Encode())
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Fatalf("%d Location=%q", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
	t.Run("plain PKCE", func(t *testing.T) {
		app := newNativeApp(t, e)
		q := app.authQuery("s")
		q.Set("code_challenge_method", "plain")
		q.Set("code_challenge", app.verifier)
		resp := noRedirectGet(t, e.URL+"/bff/oauth/authorize?"+q.Encode())
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc.Scheme != "com.example.app" || loc.Query().Get("error") != "invalid_request" ||
			loc.Query().Get("iss") != e.URL || loc.Query().Get("state") != "s" {
			t.Fatalf("%d %s", resp.StatusCode, loc)
		}
	})
}

func wantTokenError(t *testing.T, app *nativeApp, f url.Values, code string, proofs ...string) {
	t.Helper()
	st, body, hdr := app.tokenRequest(f, proofs...)
	if st < 400 || body["error"] != code || body["access_token"] != nil || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("got %d %v, want error %s", st, body, code)
	}
}

func noRedirectGet(t *testing.T, target string) *http.Response {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// revokeStatus posts the app's handle to the revocation endpoint.
func (a *nativeApp) revokeStatus() int {
	a.t.Helper()
	f := url.Values{"client_id": {appClientID}, "token": {a.handle}}
	resp, err := http.Post(a.e.URL+"/bff/oauth/revoke", "application/x-www-form-urlencoded", strings.NewReader(f.Encode()))
	if err != nil {
		a.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sessionsOf lists a subject's live sessions.
func (e *gwEnv) sessionsOf(sub string) []session.Info {
	e.t.Helper()
	infos, err := e.GW.Sessions().List(context.Background(), sub)
	if err != nil {
		e.t.Fatal(err)
	}
	return infos
}

func (e *gwEnv) hasSession(sub, id string) bool {
	for _, in := range e.sessionsOf(sub) {
		if in.ID == id {
			return true
		}
	}
	return false
}

// handleID is the public session id behind the app's handle.
func (a *nativeApp) handleID() string {
	a.t.Helper()
	h, err := oauthserver.ParseNativeHandle(a.handle)
	if err != nil {
		a.t.Fatal(err)
	}
	return h.ID()
}

// Unauthenticated authorization requests each keep a pending request in the
// store: one client address cannot add them without bound.
func TestOAuthAuthorizeFloodIsBounded(t *testing.T) {
	up := newRecorder(t, nil)
	e := startOAuthGW(t, up, "")
	app := newNativeApp(t, e)
	limited := 0
	for range 30 {
		resp := noRedirectGet(t, e.URL+"/bff/oauth/authorize?"+app.authQuery("s").Encode())
		switch resp.StatusCode {
		case http.StatusFound:
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("authorize: %d", resp.StatusCode)
		}
	}
	if limited < 15 {
		t.Fatalf("%d of 30 rapid authorization requests were limited, want most of those beyond the burst", limited)
	}
}

// The IdP refuses the sign-in (the user cancels): the app hears it at its
// redirect URI — error=access_denied with state and iss — not on a page in
// the system browser; and no session is made.
func TestOAuthIdPRefusalGoesToTheApp(t *testing.T) {
	up := newRecorder(t, nil)
	e := startOAuthGW(t, up, "")
	app := newNativeApp(t, e)
	b := newHTTPBrowser(t)
	cb, err := e.IdP.Login(context.Background(), b, e.URL+"/bff/oauth/authorize?"+app.authQuery("st-9").Encode(), "alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Del("code")
	q.Set("error", "access_denied")
	u.RawQuery = q.Encode()
	resp, err := b.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Scheme != "com.example.app" || loc.Query().Get("error") != "access_denied" ||
		loc.Query().Get("state") != "st-9" || loc.Query().Get("iss") != e.URL || loc.Query().Get("code") != "" {
		t.Fatalf("%d %s", resp.StatusCode, loc)
	}
	if n := len(e.sessionsOf("user-alice")); n != 0 {
		t.Fatalf("alice has %d sessions after a refused sign-in", n)
	}
}

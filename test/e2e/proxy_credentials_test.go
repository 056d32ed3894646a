package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
)

// proxyHostileHeaders are what a malicious page, extension or client adds to
// a signed-in request to smuggle identity, credentials or forwarding claims
// past Gatehouse: duplicates, "_" for "-", odd case, hop-by-hop tricks.
var proxyHostileHeaders = []string{
	"Authorization: Bearer attacker-token",
	"Authorization: Bearer attacker-token-2",
	"authorization: Basic YXR0YWNrZXI6cHc=",
	"Proxy-Authorization: Basic YXR0YWNrZXI6cHc=",
	"X-Forwarded-User: attacker-root",
	"X_Forwarded_User: attacker-root",
	"x-fOrWaRdEd-uSeR: attacker-root",
	"X-Forwarded-Email: attacker@evil.example",
	"X_Forwarded_Access_Token: attacker-stolen",
	"X-Forwarded-For: 6.6.6.6",
	"X-Forwarded-For: 6.6.6.7",
	"X-Forwarded-Host: evil.example",
	"X-Forwarded-Proto: https",
	"X-Forwarded-Prefix: /attacker",
	"Forwarded: for=6.6.6.6;host=evil.example;proto=https",
	"X-Real-IP: 6.6.6.6",
	"X_Real_IP: 6.6.6.6",
	"X-Original-URL: /attacker/admin",
	"X-Rewrite-URL: /attacker/admin",
	"X-Auth-Request-User: attacker-root",
	"X_Auth_Request_Email: attacker@evil.example",
	"X-Auth-Request-Access-Token: attacker-stolen",
	"X-Amzn-Oidc-Accesstoken: attacker-stolen",
	"X_Goog_Authenticated_User_Email: attacker@evil.example",
	"X-Ms-Client-Principal-Name: attacker-root",
	"X-Remote-User: attacker-root",
	"Remote-Groups: attacker-admins",
	"X-Api-Key: attacker-key",
	"x_api_key: attacker-key",
	"X-API-KEY: attacker-key",
	"Cookie: other=attacker-cookie",
	// Hop-by-hop tricks: a client naming the credential header (or the
	// request id) in Connection must not make the proxy strip what it sets.
	"Connection: X-Api-Key, Authorization, X-Request-Id, keep-alive",
	"Keep-Alive: timeout=5",
	"X-Request-Id: attacker-request-id",
}

// proxyForbiddenValues must not appear in any header an upstream receives.
var proxyForbiddenValues = []string{"attacker", "YXR0YWNrZXI", "6.6.6.", "evil.example"}

// proxyForbiddenNames are header names (lower case, "_" read as "-") that
// carry client identity or browser state and must never reach an upstream.
var proxyForbiddenNames = []string{"cookie", "proxy-authorization", "forwarded", "x-real-ip", "x-original-url",
	"x-rewrite-url", "x-forwarded-user", "x-forwarded-email", "x-forwarded-access-token", "x-forwarded-prefix",
	"x-auth-request-user", "x-auth-request-email", "x-auth-request-access-token", "keep-alive",
	"x-amzn-oidc-accesstoken", "x-goog-authenticated-user-email", "x-ms-client-principal-name", "x-remote-user", "remote-groups"}

// For each credential kind, through the real gateway and the real OP, the
// upstream receives exactly the route's one credential and nothing of the
// browser's, whatever the client adds.
func TestProxyEachCredentialKindReachesUpstreamAloneDespiteHostileHeaders(t *testing.T) {
	verifyNoLeaks(t)
	ups := map[string]*recorder{}
	for _, n := range []string{"profile", "billing", "catalog", "weather", "public"} {
		ups[n] = newRecorder(t, nil)
	}
	dir := t.TempDir()
	const apiKey = "weather-key-from-file-1"
	if err := os.WriteFile(filepath.Join(dir, "weather-key"), []byte(apiKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startGW(t, gwOptions{Dir: dir, Config: `
session:
  store: bolt
  bolt: { path: sessions.db }
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + ups["profile"].URL + `/"
    credential: user_token
  - name: billing
    path: /api/billing/
    upstream: "` + ups["billing"].URL + `/v1/"
    credential:
      token_exchange:
        audience: billing-api
  - name: catalog
    path: /api/catalog/
    upstream: "` + ups["catalog"].URL + `/"
    anonymous: true
    credential: client_credentials
  - name: weather
    path: /api/weather/
    upstream: "` + ups["weather"].URL + `/"
    credential:
      header:
        name: X-Api-Key
        value: ${file:weather-key}
  - name: public
    path: /api/public/
    upstream: "` + ups["public"].URL + `/"
    anonymous: true
    credential: none
`})
	b := e.login("alice", "wonderland")
	cookie := e.cookieHeader(b)
	cookieValue := e.sessionCookie(b)
	// A well-formed SPA request: session cookie, CSRF header, same Origin.
	spa := []string{cookie, "X-CSRF: 1", "Origin: " + e.URL}
	hostile := append(slices.Clone(spa), proxyHostileHeaders...)

	paths := map[string]string{"profile": "/api/profile/me", "billing": "/api/billing/plan",
		"catalog": "/api/catalog/items", "weather": "/api/weather/today", "public": "/api/public/news"}
	wantPath := map[string]string{"profile": "/me", "billing": "/v1/plan", "catalog": "/items", "weather": "/today", "public": "/news"}
	order := []string{"profile", "billing", "catalog", "weather", "public"}
	for _, name := range order {
		for _, hdrs := range [][]string{spa, hostile} {
			r := e.raw("GET", paths[name], hdrs...)
			if r.Status != http.StatusOK {
				t.Fatalf("%s: status %d %s\nlogs:\n%s", name, r.Status, r.Body, e.Logs.String())
			}
		}
	}

	// Nothing of the browser's, on every request every upstream received.
	for _, name := range order {
		reqs := ups[name].requests()
		if len(reqs) != 2 {
			t.Fatalf("%s upstream received %d requests, want 2", name, len(reqs))
		}
		for _, rq := range reqs {
			if rq.Path != wantPath[name] {
				t.Errorf("%s upstream path %q, want %q", name, rq.Path, wantPath[name])
			}
			assertNothingOfTheBrowsers(t, name, rq.Header, cookieValue, e.host())
		}
	}

	// user_token: the user's access token from the real OP.
	userTok := bearerOf(t, ups["profile"].requests()[0].Header)
	uc := jwtClaims(t, userTok)
	if uc["sub"] != "user-alice" || !slices.Contains(audiences(uc), gwClientID) {
		t.Fatalf("user_token route got a token for sub=%v aud=%v, want alice's token issued to %s", uc["sub"], audiences(uc), gwClientID)
	}
	if got := bearerOf(t, ups["profile"].requests()[1].Header); got != userTok {
		t.Fatal("the hostile request reached the user_token upstream with a different bearer token")
	}

	// token_exchange: an RFC 8693 token from the real OP for audience
	// billing-api, verified against the OP's JWKS; never the user's token.
	xTok := bearerOf(t, ups["billing"].requests()[0].Header)
	if xTok == userTok {
		t.Fatal("the token_exchange route received the user's own access token")
	}
	ctx := context.Background()
	prov, err := gooidc.NewProvider(ctx, e.IdP.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	verified, err := prov.VerifierContext(ctx, &gooidc.Config{SkipClientIDCheck: true}).Verify(ctx, xTok)
	if err != nil {
		t.Fatalf("the exchanged token does not verify against the OP's keys: %v", err)
	}
	if !slices.Equal(verified.Audience, []string{"billing-api"}) || verified.Subject != "user-alice" {
		t.Fatalf("exchanged token aud=%v sub=%q, want aud=[billing-api] sub=user-alice", verified.Audience, verified.Subject)
	}
	if got := bearerOf(t, ups["billing"].requests()[1].Header); got != xTok {
		t.Fatal("the exchanged token was not reused from the cache for the second request")
	}
	if n := e.IdP.Count(idp.GrantTokenExchange); n != 1 {
		t.Fatalf("token exchanges at the OP = %d, want 1 (cached per session and route)", n)
	}
	for _, rq := range ups["billing"].requests() {
		for k, vs := range rq.Header {
			for _, v := range vs {
				if strings.Contains(v, userTok) {
					t.Fatalf("the user's access token reached the token_exchange upstream in %s", k)
				}
			}
		}
	}

	// client_credentials: Gatehouse's own token, shared across requests.
	ccTok := bearerOf(t, ups["catalog"].requests()[0].Header)
	cc := jwtClaims(t, ccTok)
	if ccTok == userTok || ccTok == xTok || cc["sub"] != gwClientID {
		t.Fatalf("client_credentials route got sub=%v, want Gatehouse's own token (sub %s)", cc["sub"], gwClientID)
	}
	if got := bearerOf(t, ups["catalog"].requests()[1].Header); got != ccTok {
		t.Fatal("the client-credentials token was not shared across requests")
	}
	if n := e.IdP.Count(idp.GrantClientCredentials); n != 1 {
		t.Fatalf("client-credentials grants at the OP = %d, want 1", n)
	}

	// header: the file's content, one value, and no Authorization.
	for _, rq := range ups["weather"].requests() {
		if vs := rq.Header.Values("X-Api-Key"); len(vs) != 1 || vs[0] != apiKey {
			t.Fatalf("weather upstream X-Api-Key: %d value(s), want exactly the file's key", len(vs))
		}
		if len(rq.Header.Values("Authorization")) != 0 {
			t.Fatal("the header route's upstream received an Authorization header")
		}
	}
	// none: no credential at all.
	for _, rq := range ups["public"].requests() {
		if len(rq.Header.Values("Authorization")) != 0 || len(rq.Header.Values("X-Api-Key")) != 0 {
			t.Fatal("the none route's upstream received a credential")
		}
	}
	// Token routes carry no API key, and no route's upstream saw another
	// route's credential.
	for _, name := range []string{"profile", "billing", "catalog"} {
		for _, rq := range ups[name].requests() {
			if len(rq.Header.Values("X-Api-Key")) != 0 {
				t.Fatalf("%s upstream received an X-Api-Key", name)
			}
		}
	}
	for name, up := range ups {
		for _, rq := range up.requests() {
			for k, vs := range rq.Header {
				for _, v := range vs {
					for other, tok := range map[string]string{"profile": userTok, "billing": xTok, "catalog": ccTok, "weather": apiKey} {
						if other != name && strings.Contains(v, tok) {
							t.Errorf("%s upstream received the %s route's credential in %s", name, other, k)
						}
					}
				}
			}
		}
	}
	e.Stop()

	// No credential, no cookie and no client secret in a log line (debug
	// level) or an audit record.
	audit, err := os.ReadFile(e.Audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range order {
		if !strings.Contains(string(audit), `"route":"`+name+`"`) {
			t.Errorf("no audit record names route %s", name)
		}
	}
	for what, v := range map[string]string{"user token": userTok, "exchanged token": xTok, "client-credentials token": ccTok,
		"API key": apiKey, "session cookie": cookieValue, "client secret": gwClientSecret} {
		if strings.Contains(e.Logs.String(), v) {
			t.Errorf("the %s appears in the logs", what)
		}
		if strings.Contains(string(audit), v) {
			t.Errorf("the %s appears in the audit log", what)
		}
	}
}

// assertNothingOfTheBrowsers checks one upstream request's headers.
func assertNothingOfTheBrowsers(t *testing.T, route string, h http.Header, cookieValue, publicHost string) {
	t.Helper()
	for k, vs := range h {
		n := strings.ReplaceAll(strings.ToLower(k), "_", "-")
		if slices.Contains(proxyForbiddenNames, n) {
			t.Errorf("%s upstream received header %q", route, k)
		}
		if (n == "authorization" && k != "Authorization") || (n == "x-api-key" && k != "X-Api-Key") {
			t.Errorf("%s upstream received a second spelling of a credential header: %q", route, k)
		}
		for _, v := range vs {
			if strings.Contains(v, cookieValue) {
				t.Errorf("%s upstream received the session cookie in %s", route, k)
			}
			for _, bad := range proxyForbiddenValues {
				if strings.Contains(v, bad) {
					t.Errorf("%s upstream header %s carries the client's value %q", route, k, bad)
				}
			}
		}
	}
	if vs := h.Values("X-Forwarded-For"); len(vs) != 1 || vs[0] != "127.0.0.1" {
		t.Errorf("%s upstream X-Forwarded-For = %q, want only the connection's address", route, vs)
	}
	if vs := h.Values("X-Forwarded-Host"); len(vs) != 1 || vs[0] != publicHost {
		t.Errorf("%s upstream X-Forwarded-Host = %q, want public_url's host %q", route, vs, publicHost)
	}
	if vs := h.Values("X-Forwarded-Proto"); len(vs) != 1 || vs[0] != "http" {
		t.Errorf("%s upstream X-Forwarded-Proto = %q, want http (the connection's)", route, vs)
	}
	if vs := h.Values("X-Request-Id"); len(vs) != 1 || strings.Contains(vs[0], "attacker") {
		t.Errorf("%s upstream X-Request-Id = %q, want Gatehouse's own", route, vs)
	}
}

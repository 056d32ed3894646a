package idp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

const (
	testClientID     = "gatehouse"
	testClientSecret = "gatehouse-test-secret"
	testRedirect     = "http://127.0.0.1:1/bff/callback" // never requested: Login does not follow it
)

type logoutReceiver struct {
	mu     sync.Mutex
	tokens []string
	srv    *httptest.Server
}

func newLogoutReceiver(t *testing.T) *logoutReceiver {
	r := &logoutReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := req.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.tokens = append(r.tokens, req.PostForm.Get("logout_token"))
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *logoutReceiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens...)
}

type env struct {
	p        *Provider
	provider *oidc.Provider
	conf     *oauth2.Config
	recv     *logoutReceiver
	ctx      context.Context
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	recv := newLogoutReceiver(t)
	opts := Options{Clients: []Client{{
		ID: testClientID, Secret: testClientSecret,
		RedirectURIs:           []string{testRedirect},
		PostLogoutRedirectURIs: []string{"http://127.0.0.1:1/signed-out"},
		BackChannelLogoutURI:   recv.srv.URL + "/bff/backchannel",
	}}}
	if mod != nil {
		mod(&opts)
	}
	p := MustStart(t, opts)
	ctx := context.Background()
	prov, err := oidc.NewProvider(ctx, p.URL())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return &env{p: p, provider: prov, recv: recv, ctx: ctx, conf: &oauth2.Config{
		ClientID: testClientID, ClientSecret: testClientSecret, RedirectURL: testRedirect,
		Endpoint: prov.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess},
	}}
}

// login runs the code flow with PKCE up to the token response and verifies the ID token.
func (e *env) login(t *testing.T, user, pass string) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	state, nonce := "state-"+randomID(), "nonce-"+randomID()
	authURL := e.conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	cb, err := e.p.Login(e.ctx, nil, authURL, user, pass)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != testRedirect {
		t.Fatalf("callback went to %q, want %q", got, testRedirect)
	}
	q := u.Query()
	if q.Get("state") != state {
		t.Fatalf("state not echoed")
	}
	if q.Get("iss") != e.p.URL() {
		t.Fatalf("iss = %q, want %q (RFC 9207)", q.Get("iss"), e.p.URL())
	}
	tok, err := e.conf.Exchange(e.ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := e.provider.Verifier(&oidc.Config{ClientID: testClientID}).Verify(e.ctx, raw)
	if err != nil {
		t.Fatalf("verify ID token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Fatalf("nonce = %q, want %q", idt.Nonce, nonce)
	}
	return tok, idt
}

func idClaims(t *testing.T, idt *oidc.IDToken) map[string]any {
	t.Helper()
	var c map[string]any
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

func jwtClaims(t *testing.T, e *env, raw string) map[string]any {
	t.Helper()
	ks := oidc.NewRemoteKeySet(e.ctx, e.p.URL()+"/keys")
	payload, err := ks.VerifySignature(e.ctx, raw)
	if err != nil {
		t.Fatalf("verify JWT signature: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDiscoveryAdvertisesWhatGatehouseNeeds(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.p.URL() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != e.p.URL() {
		t.Errorf("issuer = %v", doc["issuer"])
	}
	for _, k := range []string{"authorization_response_iss_parameter_supported", "backchannel_logout_supported", "backchannel_logout_session_supported"} {
		if doc[k] != true {
			t.Errorf("%s = %v, want true", k, doc[k])
		}
	}
	for _, k := range []string{"authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "revocation_endpoint", "end_session_endpoint", "introspection_endpoint"} {
		if s, _ := doc[k].(string); !strings.HasPrefix(s, e.p.URL()+"/") {
			t.Errorf("%s = %v", k, doc[k])
		}
	}
	grants, _ := json.Marshal(doc["grant_types_supported"])
	for _, g := range []string{GrantAuthorizationCode, GrantRefreshToken, GrantTokenExchange, GrantClientCredentials} {
		if !strings.Contains(string(grants), g) {
			t.Errorf("grant_types_supported lacks %s: %s", g, grants)
		}
	}
	if m, _ := json.Marshal(doc["code_challenge_methods_supported"]); !strings.Contains(string(m), "S256") {
		t.Errorf("code_challenge_methods_supported = %s", m)
	}
}

func TestCodeFlowPKCEIDTokenHasNonceSidAuthTimeAMR(t *testing.T) {
	e := newEnv(t, nil)
	tok, idt := e.login(t, "alice", "wonderland")
	c := idClaims(t, idt)
	if idt.Subject != "user-alice" {
		t.Errorf("sub = %q", idt.Subject)
	}
	if sid, _ := c["sid"].(string); sid == "" {
		t.Errorf("sid missing: %v", c)
	}
	if _, ok := c["auth_time"]; !ok {
		t.Errorf("auth_time missing")
	}
	if amr, _ := json.Marshal(c["amr"]); string(amr) != `["pwd"]` {
		t.Errorf("amr = %s", amr)
	}
	if _, ok := c["email"]; ok {
		t.Errorf("email in ID token by default; it should come from userinfo only")
	}
	if tok.RefreshToken == "" {
		t.Errorf("no refresh token for offline_access")
	}
	ui, err := e.provider.UserInfo(e.ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uc map[string]any
	_ = ui.Claims(&uc)
	if ui.Email != "alice@example.com" || !ui.EmailVerified || uc["name"] != "Alice Liddell" || uc["given_name"] != "Alice" {
		t.Errorf("userinfo = %v", uc)
	}
	at := jwtClaims(t, e, tok.AccessToken)
	if aud, _ := json.Marshal(at["aud"]); !strings.Contains(string(aud), testClientID) {
		t.Errorf("access token aud = %s", aud)
	}
	if e.p.Count(GrantAuthorizationCode) != 1 {
		t.Errorf("Count(code) = %d", e.p.Count(GrantAuthorizationCode))
	}
}

func TestClaimsInIDTokenOption(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ClaimsInIDToken = true })
	_, idt := e.login(t, "bob", "builder")
	c := idClaims(t, idt)
	if c["email"] != "bob@example.com" || c["name"] != "Bob Builder" || c["sid"] == nil {
		t.Errorf("claims = %v", c)
	}
}

func TestAuthorizeWithoutPKCEIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	authURL := e.conf.AuthCodeURL("s", oidc.Nonce("n"))
	_, err := e.p.Login(e.ctx, nil, authURL, "alice", "wonderland")
	if err == nil || !strings.Contains(err.Error(), "invalid_request") {
		t.Fatalf("err = %v, want invalid_request before login", err)
	}
}

func TestWrongPasswordIsRejected(t *testing.T) {
	e := newEnv(t, nil)
	authURL := e.conf.AuthCodeURL("s", oidc.Nonce("n"), oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	if _, err := e.p.Login(e.ctx, nil, authURL, "alice", "nope"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
}

func TestLoginFormWithoutCSRFCookieIsRejected(t *testing.T) {
	e := newEnv(t, nil)
	// An attacker page posting the form cross-site carries neither our cookie nor our Origin.
	form := url.Values{"authRequestID": {"x"}, "csrf": {"guess"}, "username": {"alice"}, "password": {"wonderland"}}
	resp, err := http.PostForm(e.p.URL()+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status = %d, want 403", resp.StatusCode)
	}
}

func TestLoginPageShowsDemoUsers(t *testing.T) {
	e := newEnv(t, nil)
	authURL := e.conf.AuthCodeURL("s", oidc.Nonce("n"), oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	c := &http.Client{}
	resp, err := c.Get(authURL) // follows to the login page
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"alice", "wonderland", "bob", "builder", `name="csrf"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("login page lacks %q", want)
		}
	}
}

func TestRefreshRotatesAndIsCounted(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AccessTokenTTL = 2 * time.Second })
	tok, idt := e.login(t, "alice", "wonderland")
	sid := idClaims(t, idt)["sid"]
	old := tok.RefreshToken
	tok.Expiry = time.Now().Add(-time.Second) // force the refresh
	nt, err := e.conf.TokenSource(e.ctx, tok).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if nt.RefreshToken == "" || nt.RefreshToken == old {
		t.Fatalf("refresh token not rotated")
	}
	if got := e.p.Count(GrantRefreshToken); got != 1 {
		t.Fatalf("Count(refresh_token) = %d, want 1", got)
	}
	raw, _ := nt.Extra("id_token").(string)
	idt2, err := e.provider.Verifier(&oidc.Config{ClientID: testClientID}).Verify(e.ctx, raw)
	if err != nil {
		t.Fatalf("refreshed ID token: %v", err)
	}
	if idClaims(t, idt2)["sid"] != sid {
		t.Errorf("sid changed on refresh")
	}
	// Reusing the rotated-out refresh token fails with invalid_grant and is not counted.
	tok.RefreshToken = old
	_, err = e.conf.TokenSource(e.ctx, tok).Token()
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("reuse of old refresh token: err = %v, want invalid_grant", err)
	}
	if got := e.p.Count(GrantRefreshToken); got != 1 {
		t.Fatalf("Count(refresh_token) = %d after a failed refresh, want 1", got)
	}
}

func postToken(t *testing.T, e *env, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.provider.Endpoint().TokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestTokenExchangeAudienceScopeLifetimeAndActor(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.login(t, "alice", "wonderland")
	status, m := postToken(t, e, url.Values{
		"grant_type":         {GrantTokenExchange},
		"subject_token":      {tok.AccessToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {"orders-api"},
		"scope":              {"openid profile"},
	})
	if status != http.StatusOK {
		t.Fatalf("token exchange: %d %v", status, m)
	}
	c := jwtClaims(t, e, m["access_token"].(string))
	if aud, _ := json.Marshal(c["aud"]); string(aud) != `["orders-api"]` && string(aud) != `"orders-api"` {
		t.Errorf("exchanged aud = %s, want orders-api", aud)
	}
	if c["sub"] != "user-alice" {
		t.Errorf("exchanged sub = %v", c["sub"])
	}
	orig := jwtClaims(t, e, tok.AccessToken)
	if c["exp"].(float64) > orig["exp"].(float64) {
		t.Errorf("exchanged token outlives its subject token")
	}
	if e.p.Count(GrantTokenExchange) != 1 {
		t.Errorf("Count(token-exchange) = %d", e.p.Count(GrantTokenExchange))
	}

	// Scope escalation is refused.
	status, m = postToken(t, e, url.Values{
		"grant_type": {GrantTokenExchange}, "subject_token": {tok.AccessToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {"orders-api"}, "scope": {"openid admin"},
	})
	if status != http.StatusBadRequest || m["error"] != "invalid_scope" {
		t.Errorf("scope escalation: %d %v", status, m)
	}

	// An actor token yields act.
	_, cc := postToken(t, e, url.Values{"grant_type": {GrantClientCredentials}})
	status, m = postToken(t, e, url.Values{
		"grant_type": {GrantTokenExchange}, "subject_token": {tok.AccessToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"actor_token":        {cc["access_token"].(string)},
		"actor_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {"orders-api"},
	})
	if status != http.StatusOK {
		t.Fatalf("exchange with actor: %d %v", status, m)
	}
	if act, _ := jwtClaims(t, e, m["access_token"].(string))["act"].(map[string]any); act["sub"] != testClientID {
		t.Errorf("act = %v", act)
	}

	// An unsigned JWT actor assertion (what Gatehouse sends for an agent)
	// yields act with its sub; a signed-looking or expired one is refused.
	jwt := func(hdr, claims string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + "."
	}
	exp := strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)
	for _, tc := range []struct {
		name, actor string
		ok          bool
	}{
		{"unsigned agent assertion", jwt(`{"alg":"none","typ":"JWT"}`, `{"sub":"agent:abc","exp":`+exp+`}`), true},
		{"claims an algorithm", jwt(`{"alg":"RS256"}`, `{"sub":"agent:abc","exp":`+exp+`}`), false},
		{"expired", jwt(`{"alg":"none"}`, `{"sub":"agent:abc","exp":1}`), false},
		{"no sub", jwt(`{"alg":"none"}`, `{"exp":`+exp+`}`), false},
		{"signature part", jwt(`{"alg":"none"}`, `{"sub":"agent:abc","exp":`+exp+`}`) + "c2ln", false},
	} {
		status, m = postToken(t, e, url.Values{
			"grant_type": {GrantTokenExchange}, "subject_token": {tok.AccessToken},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			"actor_token":        {tc.actor},
			"actor_token_type":   {"urn:ietf:params:oauth:token-type:jwt"},
			"audience":           {"orders-api"},
		})
		if !tc.ok {
			if status == http.StatusOK {
				t.Errorf("%s: exchanged", tc.name)
			}
			continue
		}
		if status != http.StatusOK {
			t.Fatalf("%s: %d %v", tc.name, status, m)
		}
		if act, _ := jwtClaims(t, e, m["access_token"].(string))["act"].(map[string]any); act["sub"] != "agent:abc" {
			t.Errorf("%s: act = %v", tc.name, act)
		}
	}

	// A revoked subject token cannot be exchanged.
	if err := revoke(e, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	status, m = postToken(t, e, url.Values{
		"grant_type": {GrantTokenExchange}, "subject_token": {tok.AccessToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "audience": {"orders-api"},
	})
	if status == http.StatusOK {
		t.Errorf("revoked subject token was exchanged: %v", m)
	}
}

func TestClientCredentials(t *testing.T) {
	e := newEnv(t, nil)
	status, m := postToken(t, e, url.Values{"grant_type": {GrantClientCredentials}, "scope": {"orders.read"}})
	if status != http.StatusOK {
		t.Fatalf("client_credentials: %d %v", status, m)
	}
	c := jwtClaims(t, e, m["access_token"].(string))
	if c["sub"] != testClientID {
		t.Errorf("sub = %v", c["sub"])
	}
	if e.p.Count(GrantClientCredentials) != 1 {
		t.Errorf("Count = %d", e.p.Count(GrantClientCredentials))
	}
	// Wrong secret is refused.
	req, _ := http.NewRequest(http.MethodPost, e.provider.Endpoint().TokenURL, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, "wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("client_credentials with a wrong secret succeeded")
	}
}

func revoke(e *env, token string) error {
	form := url.Values{"token": {token}}
	req, _ := http.NewRequest(http.MethodPost, e.p.URL()+"/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &url.Error{Op: "revoke", URL: req.URL.String(), Err: io.ErrUnexpectedEOF}
	}
	return nil
}

func introspectActive(t *testing.T, e *env, token string) bool {
	t.Helper()
	form := url.Values{"token": {token}}
	req, _ := http.NewRequest(http.MethodPost, e.p.URL()+"/oauth/introspect", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m["active"] == true
}

func TestRevocation(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.login(t, "alice", "wonderland")
	if !introspectActive(t, e, tok.AccessToken) {
		t.Fatal("fresh access token not active")
	}
	if err := revoke(e, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	tok.Expiry = time.Now().Add(-time.Second)
	if _, err := e.conf.TokenSource(e.ctx, tok).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("refresh after revocation: %v, want invalid_grant", err)
	}
	if introspectActive(t, e, tok.AccessToken) {
		t.Error("access token issued with the revoked refresh token is still active")
	}
	tok2, _ := e.login(t, "alice", "wonderland")
	if err := revoke(e, tok2.AccessToken); err != nil {
		t.Fatal(err)
	}
	if introspectActive(t, e, tok2.AccessToken) {
		t.Error("revoked access token still active")
	}
	if _, err := e.provider.UserInfo(e.ctx, oauth2.StaticTokenSource(tok2)); err == nil {
		t.Error("userinfo accepted a revoked access token")
	}
}

func logoutVerifier(e *env) *oidc.IDTokenVerifier {
	return e.provider.Verifier(&oidc.Config{ClientID: testClientID})
}

func typHeader(t *testing.T, raw string) string {
	t.Helper()
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	typ, _ := jws.Signatures[0].Protected.ExtraHeaders["typ"].(string)
	return typ
}

func TestLogoutTokenValidAndInvalidVariants(t *testing.T) {
	e := newEnv(t, nil)
	good, err := e.p.LogoutToken(LogoutTokenClaims{Subject: "user-alice", SessionID: "sid-1", JTI: "jti-1"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := logoutVerifier(e).Verify(e.ctx, good)
	if err != nil {
		t.Fatalf("valid logout token does not verify: %v", err)
	}
	var c map[string]any
	_ = tok.Claims(&c)
	if _, ok := c["events"].(map[string]any)[BackChannelLogoutEvent]; !ok || c["sid"] != "sid-1" || c["jti"] != "jti-1" || c["nonce"] != nil {
		t.Errorf("claims = %v", c)
	}
	if typ := typHeader(t, good); typ != LogoutTokenType {
		t.Errorf("typ = %q", typ)
	}

	tests := []struct {
		name  string
		c     LogoutTokenClaims
		check func(t *testing.T, raw string)
	}{
		{"wrong audience", LogoutTokenClaims{Subject: "s", Audience: []string{"someone-else"}}, func(t *testing.T, raw string) {
			if _, err := logoutVerifier(e).Verify(e.ctx, raw); err == nil {
				t.Error("verified despite wrong aud")
			}
		}},
		{"foreign signature", LogoutTokenClaims{Subject: "s", SignWithForeignKey: true}, func(t *testing.T, raw string) {
			if _, err := logoutVerifier(e).Verify(e.ctx, raw); err == nil {
				t.Error("verified despite foreign key")
			}
		}},
		{"nonce present", LogoutTokenClaims{Subject: "s", Nonce: "n"}, func(t *testing.T, raw string) {
			tok, err := logoutVerifier(e).Verify(e.ctx, raw)
			if err != nil || tok.Nonce != "n" {
				t.Errorf("want a signature-valid token carrying nonce: %v", err)
			}
		}},
		{"missing events", LogoutTokenClaims{Subject: "s", OmitEvents: true}, func(t *testing.T, raw string) {
			tok, err := logoutVerifier(e).Verify(e.ctx, raw)
			var m map[string]any
			if err == nil {
				_ = tok.Claims(&m)
			}
			if err != nil || m["events"] != nil {
				t.Errorf("want a signature-valid token without events: %v %v", err, m)
			}
		}},
		{"wrong typ", LogoutTokenClaims{Subject: "s", Type: "JWT"}, func(t *testing.T, raw string) {
			if typHeader(t, raw) != "JWT" {
				t.Error("typ not overridden")
			}
		}},
		{"expired", LogoutTokenClaims{Subject: "s", IssuedAt: time.Now().Add(-time.Hour)}, func(t *testing.T, raw string) {
			if _, err := logoutVerifier(e).Verify(e.ctx, raw); err == nil {
				t.Error("expired token verified")
			}
		}},
		{"no iat", LogoutTokenClaims{Subject: "s", Extra: map[string]any{"iat": nil}}, func(t *testing.T, raw string) {
			tok, err := logoutVerifier(e).Verify(e.ctx, raw)
			if err != nil || !tok.IssuedAt.IsZero() {
				t.Errorf("want a token without iat: %v", err)
			}
		}},
		{"replayed jti", LogoutTokenClaims{Subject: "s", JTI: "jti-1"}, func(t *testing.T, raw string) {
			tok, err := logoutVerifier(e).Verify(e.ctx, raw)
			var m map[string]any
			if err == nil {
				_ = tok.Claims(&m)
			}
			if err != nil || m["jti"] != "jti-1" {
				t.Errorf("want a valid token reusing jti-1: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := e.p.LogoutToken(tt.c)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, raw)
		})
	}
}

func TestEndSessionSendsBackChannelLogout(t *testing.T) {
	e := newEnv(t, nil)
	tok, idt := e.login(t, "alice", "wonderland")
	sid := idClaims(t, idt)["sid"]
	raw, _ := tok.Extra("id_token").(string)

	endURL := e.p.URL() + "/end_session?" + url.Values{
		"id_token_hint":            {raw},
		"post_logout_redirect_uri": {"http://127.0.0.1:1/signed-out"},
		"state":                    {"xyz"},
	}.Encode()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(endURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "http://127.0.0.1:1/signed-out") || !strings.Contains(loc, "state=xyz") {
		t.Fatalf("end_session redirect = %d %q", resp.StatusCode, loc)
	}
	got := e.recv.received()
	if len(got) != 1 {
		t.Fatalf("back-channel POSTs = %d, want 1", len(got))
	}
	lt, err := logoutVerifier(e).Verify(e.ctx, got[0])
	if err != nil {
		t.Fatalf("logout token from end_session: %v", err)
	}
	var lc map[string]any
	_ = lt.Claims(&lc)
	if lc["sid"] != sid || lc["sub"] != "user-alice" || lc["events"] == nil || lc["nonce"] != nil || lc["jti"] == nil {
		t.Errorf("logout token claims = %v", lc)
	}
	if typHeader(t, got[0]) != LogoutTokenType {
		t.Errorf("typ header wrong")
	}
	// The session's tokens are gone.
	tok.Expiry = time.Now().Add(-time.Second)
	if _, err := e.conf.TokenSource(e.ctx, tok).Token(); err == nil {
		t.Error("refresh token survived logout")
	}
}

func TestProgrammaticEndSession(t *testing.T) {
	e := newEnv(t, nil)
	e.login(t, "bob", "builder")
	e.login(t, "bob", "builder")
	e.login(t, "alice", "wonderland")
	ids, err := e.p.EndSession(e.ctx, "user-bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || len(e.recv.received()) != 2 {
		t.Fatalf("ended %d sessions, %d notifications; want 2 and 2", len(ids), len(e.recv.received()))
	}
	if len(e.p.SessionIDs("user-alice")) != 1 {
		t.Error("alice's session was ended too")
	}
}

func TestNonLoopbackIssuerIsRefused(t *testing.T) {
	_, err := New(context.Background(), Options{Issuer: "http://example.com", Clients: []Client{{ID: "a", Secret: "b"}}})
	if err == nil {
		t.Fatal("non-loopback issuer accepted")
	}
	_, err = Start(context.Background(), Options{Addr: "0.0.0.0:0", Clients: []Client{{ID: "a", Secret: "b"}}})
	if err == nil {
		t.Fatal("non-loopback listen address accepted")
	}
}

func TestSuspendResumeKeepsState(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.login(t, "alice", "wonderland")
	if err := e.p.Suspend(); err != nil {
		t.Fatal(err)
	}
	tok.Expiry = time.Now().Add(-time.Second)
	if _, err := e.conf.TokenSource(e.ctx, tok).Token(); err == nil {
		t.Fatal("refresh succeeded while the OP was suspended")
	}
	if err := e.p.Resume(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conf.TokenSource(e.ctx, tok).Token(); err != nil {
		t.Fatalf("refresh after Resume: %v", err)
	}
}

func TestCloseIsIdempotentAndStopsServing(t *testing.T) {
	p, err := Start(context.Background(), Options{Clients: []Client{{ID: "a", Secret: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(p.URL() + "/.well-known/openid-configuration"); err == nil {
		t.Fatal("closed OP still answers")
	}
}

func TestConcurrentRefreshWithOneTokenSucceedsOnce(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.login(t, "alice", "wonderland")
	tok.Expiry = time.Now().Add(-time.Second)
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cp := *tok
			if _, err := e.conf.TokenSource(e.ctx, &cp).Token(); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 1 || e.p.Count(GrantRefreshToken) != 1 {
		t.Fatalf("successful refreshes = %d, Count = %d; want 1 and 1 (rotation consumes the token)", ok, e.p.Count(GrantRefreshToken))
	}
}

func FuzzCheckLoopbackURL(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:9998", "http://localhost:1", "https://[::1]:8443/", "http://example.com",
		"http://127.0.0.1.example.com", "http://127.0.0.1:1/path", "ftp://127.0.0.1", "", "http://[::ffff:8.8.8.8]:1", "http://0.0.0.0:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if checkLoopbackURL(raw) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || !isLoopbackHost(u.Hostname()) {
			t.Fatalf("accepted non-loopback issuer %q", raw)
		}
	})
}

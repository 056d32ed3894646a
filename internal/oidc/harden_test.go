package oidc_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/idp"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// Logout CSRF, from the attacker's side: a cross-site link or image to
// /bff/logout, with the session cookie (SameSite=Lax) or without it (Strict
// hides it on cross-site requests), and with no, an empty, a guessed or a
// repeated sid. None of them ends the session, none of them sets any
// cookie (a cookie-clearing Set-Cookie is a logout too), none is audited as
// a logout.
func TestLogoutCSRFChangesNothing(t *testing.T) {
	e := newEnv(t, envOpts{})
	victim := e.browser()
	e.login(victim, "alice", "wonderland")
	_, s := e.session(victim)

	noCookie := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		name   string
		client *http.Client
		path   string
	}{
		{"no cookie, no sid", noCookie, "/bff/logout"},
		{"no cookie, no sid, returnUrl", noCookie, "/bff/logout?returnUrl=/bye"},
		{"no cookie, guessed sid", noCookie, "/bff/logout?sid=guess"},
		{"no cookie, the real sid", noCookie, "/bff/logout?sid=" + s.ID},
		{"cookie, no sid", victim, "/bff/logout"},
		{"cookie, empty sid", victim, "/bff/logout?sid="},
		{"cookie, guessed sid", victim, "/bff/logout?sid=guess"},
		{"cookie, repeated sid", victim, "/bff/logout?sid=guess&sid=" + s.ID},
	} {
		resp, body := e.get(c.client, c.path, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Accept", "text/html")
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 400 or 403", c.name, resp.StatusCode, body)
		}
		if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("%s: the response sets cookies %q: a cross-site link must change nothing", c.name, sc)
		}
		if resp, _ := e.get(victim, "/bff/user"); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: the victim's session ended: /bff/user %d", c.name, resp.StatusCode)
		}
	}
	if e.audit.has(audit.EventLogout) {
		t.Errorf("a rejected logout was audited as a logout:\n%s", e.audit)
	}
}

// Re-login: signing in again on a browser that still has a session ends the
// earlier session, also when SameSite keeps the session cookie from the IdP's
// cross-site redirect to /bff/callback (the attacker's case: a stolen copy of
// the earlier cookie must die when the user signs in again).
func TestReloginEndsTheEarlierSessionEvenWhenTheCookieIsHidden(t *testing.T) {
	for _, hidden := range []bool{true, false} {
		e := newEnv(t, envOpts{})
		b := e.browser()
		e.login(b, "alice", "wonderland")
		oldH, _ := e.session(b)
		stolen := e.sessionCookie(b).Value

		cb := e.authorize(b, e.startLogin(b, "/app"), "alice", "wonderland")
		if hidden {
			// What SameSite=Strict does on the IdP's redirect: the session
			// cookie is not sent to the callback (the Lax login-state cookie is).
			gw, _ := url.Parse(e.gw.URL)
			b.Jar.SetCookies(gw, []*http.Cookie{{Name: cookieName, Value: "", Path: "/", MaxAge: -1}})
		}
		if resp, body := e.get(b, cb); resp.StatusCode != http.StatusFound {
			t.Fatalf("hidden=%v: callback %d %s", hidden, resp.StatusCode, body)
		}
		newH, _ := e.session(b)
		if newH.ID() == oldH.ID() {
			t.Fatalf("hidden=%v: the new login reused the old session", hidden)
		}
		if _, err := e.mgr.Load(context.Background(), oldH, false); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("hidden=%v: the earlier session is still alive after re-login (err %v)", hidden, err)
		}
		thief := e.browser()
		gw, _ := url.Parse(e.gw.URL)
		thief.Jar.SetCookies(gw, []*http.Cookie{{Name: cookieName, Value: stolen}})
		if resp, _ := e.get(thief, "/bff/user"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("hidden=%v: the earlier cookie still works: %d", hidden, resp.StatusCode)
		}
	}
}

// Login and callback floods write nothing to the session store: every
// callback that fails (no login state, wrong state, an IdP error, a forged
// code) is refused before any store write, and /bff/login writes nothing.
func TestLoginAndCallbackFloodsDoNotWriteToTheStore(t *testing.T) {
	e := newEnv(t, envOpts{})
	iss := "&iss=" + url.QueryEscape(e.op.Issuer())
	before := e.writes.n.Load()
	for i := range 10 {
		for _, forged := range []string{
			"&code=forged-code-" + strconv.Itoa(i) + iss,
			"&code=forged-code-" + strconv.Itoa(i),
			"&error=access_denied" + iss,
			"&code=forged-code&code=twice" + iss,
			"&code=forged-code&state=twice" + iss,
		} {
			b := e.browser()
			auth, _ := url.Parse(e.startLogin(b, "/app"))
			state := auth.Query().Get("state")
			if state == "" {
				t.Fatal("no state in the authorization URL")
			}
			if resp, _ := e.get(b, "/bff/callback?state="+url.QueryEscape(state)+forged); resp.StatusCode < 400 {
				t.Fatalf("forged callback %q: %d", forged, resp.StatusCode)
			}
			b = e.browser()
			e.startLogin(b, "/app")
			if resp, _ := e.get(b, "/bff/callback?state=wrong"+forged); resp.StatusCode < 400 {
				t.Fatalf("callback with a wrong state: %d", resp.StatusCode)
			}
			if resp, _ := e.get(e.browser(), "/bff/callback?state="+url.QueryEscape(state)+forged); resp.StatusCode < 400 {
				t.Fatalf("callback without login state: %d", resp.StatusCode)
			}
		}
	}
	if n := e.writes.n.Load() - before; n != 0 {
		t.Fatalf("the flood made %d store writes, want 0", n)
	}
	// A real login still works and writes.
	e.login(e.browser(), "alice", "wonderland")
	if e.writes.n.Load() == before {
		t.Fatal("the counting wrapper saw no write for a real login")
	}
}

// Forged back-channel logout tokens, each naming a key id the OP never
// published, make Gatehouse fetch the OP's JWKS at most once per refresh
// interval (counted at the real OP), not once per token; the valid token
// afterwards still works.
func TestForgedLogoutTokensDoNotEachFetchTheJWKS(t *testing.T) {
	e := newEnv(t, envOpts{par: true})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	_, s := e.session(b)
	jwksPath := jwksURIPath(t, e)
	if e.par.hits(jwksPath) == 0 {
		t.Fatal("the login did not fetch the JWKS (wrong path?)")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forge := func(i int) string {
		kid := fmt.Sprintf("attacker-kid-%d", i)
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
			(&jose.SignerOptions{}).WithType("logout+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		now := e.clock.Now()
		claims, _ := json.Marshal(map[string]any{"iss": e.op.Issuer(), "aud": clientID, "sub": "user-alice", "sid": s.IdPSessionID,
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": kid,
			"events": map[string]any{idp.BackChannelLogoutEvent: map[string]any{}}})
		jws, err := sig.Sign(claims)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := jws.CompactSerialize()
		return tok
	}
	for round := range 3 {
		before := e.par.hits(jwksPath)
		for i := range 30 {
			if resp, body := e.backchannel(forge(round*100 + i)); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("forged token: %d %s", resp.StatusCode, body)
			}
		}
		if n := e.par.hits(jwksPath) - before; n > 1 {
			t.Fatalf("round %d: 30 forged tokens caused %d JWKS fetches, want at most 1", round, n)
		}
		e.clock.Advance(61 * time.Second) // next interval: one more fetch is allowed
	}
	if resp, _ := e.get(b, "/bff/user?slide=false"); resp.StatusCode != http.StatusOK {
		t.Fatal("a forged token ended the session")
	}
	tok, err := e.op.LogoutToken(idp.LogoutTokenClaims{Subject: "user-alice", SessionID: s.IdPSessionID, IssuedAt: e.clock.Now(), Expiry: e.clock.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := e.backchannel(tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("the OP's real logout token: %d %s", resp.StatusCode, body)
	}
}

func jwksURIPath(t *testing.T, e *env) string {
	t.Helper()
	resp, body := e.get(http.DefaultClient, e.op.Issuer()+"/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK {
		t.Fatal("discovery")
	}
	var doc struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(doc.JWKS)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

// Stale claims: the directory changes alice's e-mail and name (think: a
// role removed). After the next token refresh the session's claims, which
// policies and /bff/user read, are the new ones, not those of the login.
func TestClaimsAreRefreshedWithTheTokens(t *testing.T) {
	e := newEnv(t, envOpts{accessTTL: 2 * time.Minute})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	h, s := e.session(b)
	if s.Claims["email"] != "alice@example.com" {
		t.Fatalf("login claims: %v", s.Claims)
	}
	u := idp.DefaultUsers()[0]
	u.Email, u.Name = "alice@demoted.example", "Alice (read-only)"
	if err := e.op.UpdateUser(u); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	if _, err := e.h.Tokens().AccessToken(context.Background(), h, s); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if e.op.Count(idp.GrantRefreshToken) != 1 {
		t.Fatal("no refresh happened")
	}
	_, s = e.session(b)
	if s.Claims["email"] != "alice@demoted.example" || s.Claims["name"] != "Alice (read-only)" {
		t.Errorf("claims after refresh are those of the login: email %v name %v", s.Claims["email"], s.Claims["name"])
	}
	if s.Claims["sub"] != "user-alice" {
		t.Errorf("sub lost: %v", s.Claims)
	}
	for _, k := range []string{"nonce", "at_hash", "c_hash"} {
		if _, ok := s.Claims[k]; ok {
			t.Errorf("token-binding claim %s kept", k)
		}
	}
	resp, body := e.get(b, "/bff/user?slide=false")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "alice@demoted.example") {
		t.Errorf("/bff/user after refresh: %d %s", resp.StatusCode, body)
	}
}

// A script hammering /bff/login does not make Gatehouse push one
// authorization request to the IdP per hit: pushes are bounded per client
// (the rest answer 429), and a user at another address still signs in.
func TestLoginFloodDoesNotPushUnboundedPARRequests(t *testing.T) {
	e := newEnv(t, envOpts{par: true})
	attacker := e.browser()
	limited := 0
	for range 100 {
		resp, _ := e.get(attacker, "/bff/login")
		switch resp.StatusCode {
		case http.StatusFound:
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("/bff/login: %d", resp.StatusCode)
		}
	}
	e.par.mu.Lock()
	pushed := e.par.pushed
	e.par.mu.Unlock()
	if pushed > 10 || limited < 90 {
		t.Fatalf("100 anonymous /bff/login hits pushed %d authorization requests (%d limited), want at most 10", pushed, limited)
	}
	// Another client (another source address) is not affected.
	user := e.browser()
	user.Transport = &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}
	e.login(user, "alice", "wonderland")
	// The flooding client gets its budget back with time.
	e.clock.Advance(time.Minute)
	if resp, _ := e.get(attacker, "/bff/login"); resp.StatusCode != http.StatusFound {
		t.Fatalf("after a minute: %d", resp.StatusCode)
	}
}

package oidc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/idp"
	"github.com/gatehouse-dev/gatehouse/internal/oidc"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// The real components satisfy this package's consumer-side interfaces.
var (
	_ oidc.Sessions = (*session.Manager)(nil)
	_ oidc.Auditor  = (*audit.Logger)(nil)
)

// userBody reads a /bff/user answer (Duende's claims array).
type userBody []oidc.UserClaim

// first is the value of the first claim of type typ, or nil.
func (u userBody) first(typ string) any {
	for _, c := range u {
		if c.Type == typ {
			return c.Value
		}
	}
	return nil
}

func (u userBody) seconds(typ string) int64 {
	f, _ := u.first(typ).(float64)
	return int64(f)
}

func TestLoginUserLogoutRoundTrip(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	resp := e.login(b, "alice", "wonderland")
	code := cbCode(e.lastCallback)

	var sessionSet, loginCleared bool
	for _, ck := range resp.Cookies() {
		switch ck.Name {
		case cookieName:
			sessionSet = ck.HttpOnly && ck.Path == "/" && ck.Domain == "" && ck.SameSite == http.SameSiteStrictMode && ck.Value != ""
		case cookieName + "-login":
			loginCleared = ck.MaxAge < 0
		}
	}
	if !sessionSet || !loginCleared {
		t.Fatalf("callback cookies: session set properly %v, login-state cleared %v: %v", sessionSet, loginCleared, resp.Header["Set-Cookie"])
	}
	_, s := e.session(b)
	tokens := []string{s.AccessToken.Reveal(), s.RefreshToken.Reveal(), s.IDToken.Reveal(), clientSecret, code}
	if s.AccessToken.IsZero() || s.RefreshToken.IsZero() || s.IDToken.IsZero() || s.IdPSessionID == "" {
		t.Fatalf("session lacks tokens or IdP sid")
	}
	oldCookie := e.sessionCookie(b).Value

	resp, body := e.get(b, "/bff/user")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("/bff/user: %d %q %s", resp.StatusCode, resp.Header.Get("Cache-Control"), body)
	}
	var u userBody
	if err := json.Unmarshal([]byte(body), &u); err != nil {
		t.Fatal(err)
	}
	if u.first("sub") != "user-alice" || u.first("email") != "alice@example.com" {
		t.Errorf("claims lack ID token sub or userinfo email: %v", u)
	}
	logoutURL, _ := u.first(oidc.ClaimLogoutURL).(string)
	if logoutURL != "/bff/logout?sid="+url.QueryEscape(s.ID) || u.seconds(oidc.ClaimSessionExpiresIn) <= 0 || u.seconds(oidc.ClaimAbsoluteExpiresIn) < u.seconds(oidc.ClaimSessionExpiresIn) {
		t.Errorf("session part: %v", u)
	}
	for _, k := range []string{"access_token", "refresh_token", "id_token", "nonce"} {
		if strings.Contains(body, k) {
			t.Errorf("/bff/user body mentions %s", k)
		}
	}

	// Logout-CSRF: a cross-site link without, or with a wrong, sid cannot log out.
	if resp, _ := e.get(b, "/bff/logout"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("logout without sid: %d, want 400", resp.StatusCode)
	}
	if resp, _ := e.get(b, "/bff/logout?sid=someone-elses-sid"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout with wrong sid: %d, want 403", resp.StatusCode)
	}
	if resp, _ := e.get(b, "/bff/user"); resp.StatusCode != http.StatusOK {
		t.Fatalf("session did not survive the rejected logouts: %d", resp.StatusCode)
	}

	resp, _ = e.get(b, logoutURL+"&returnUrl=/bye")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if !strings.HasPrefix(loc.String(), e.op.Issuer()) || loc.Query().Get("id_token_hint") != s.IDToken.Reveal() ||
		loc.Query().Get("post_logout_redirect_uri") != e.gw.URL+"/" {
		t.Errorf("logout redirect is not RP-initiated logout at the OP with id_token_hint: %s", loc.Redacted())
	}
	if ck := e.sessionCookie(b); ck != nil {
		t.Errorf("session cookie not cleared by logout")
	}
	// The old cookie, replayed, is dead.
	b2 := e.browser()
	gwURL, _ := url.Parse(e.gw.URL)
	b2.Jar.SetCookies(gwURL, []*http.Cookie{{Name: cookieName, Value: oldCookie}})
	if resp, body := e.get(b2, "/bff/user"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not_signed_in") {
		t.Errorf("old cookie after logout: %d %s, want 401", resp.StatusCode, body)
	}
	// The refresh token was revoked at the OP (RFC 7009): a session holding
	// it can no longer refresh.
	h3, err := e.mgr.Create(context.Background(), &session.Session{Subject: s.Subject, RefreshToken: s.RefreshToken,
		AccessToken: s.AccessToken, AccessTokenExpiry: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	s3, _ := e.mgr.Load(context.Background(), h3, false)
	if _, err := e.h.Tokens().AccessToken(context.Background(), h3, s3); !errors.Is(err, oidc.ErrSessionEnded) {
		t.Errorf("refresh token still usable after logout: %v", err)
	}
	if got := e.ends.causes(s.ID); !slices.Equal(got, []session.EndCause{session.EndLogout}) {
		t.Errorf("OnEnd causes for the logged-out session: %v, want [logout]", got)
	}
	if !e.audit.has(audit.EventLogin) || !e.audit.has(audit.EventLogout) {
		t.Errorf("audit events missing: %s", e.audit.String())
	}
	e.assertNoLeak(tokens...)
}

func TestRejectsTamperedUnknownAndExpiredCookies(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	good := e.sessionCookie(b).Value
	flip := []byte(good)
	if flip[10] == 'A' {
		flip[10] = 'B'
	} else {
		flip[10] = 'A'
	}
	other, _ := session.NewHandle()
	gwURL, _ := url.Parse(e.gw.URL)
	for name, v := range map[string]string{
		"tampered": string(flip),
		"unknown":  other.Cookie().Reveal(),
		"garbage":  "not-a-handle",
		"empty":    "",
	} {
		c := e.browser()
		c.Jar.SetCookies(gwURL, []*http.Cookie{{Name: cookieName, Value: v}})
		if resp, body := e.get(c, "/bff/user"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s cookie: %d %s, want 401", name, resp.StatusCode, body)
		}
	}
	if resp, _ := e.get(b, "/bff/user?slide=false"); resp.StatusCode != http.StatusOK {
		t.Fatalf("good cookie: %d", resp.StatusCode)
	}
	e.clock.Advance(session.DefaultIdleTimeout + time.Minute)
	if resp, _ := e.get(b, "/bff/user"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("idle-expired cookie: %d, want 401", resp.StatusCode)
	}
	if resp, _ := e.get(e.browser(), "/bff/user"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous: %d, want 401", resp.StatusCode)
	}
}

func TestUserSlideFalseDoesNotExtendIdle(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	idle := func(q string) int64 {
		_, body := e.get(b, "/bff/user"+q)
		var u userBody
		_ = json.Unmarshal([]byte(body), &u)
		return u.seconds(oidc.ClaimSessionExpiresIn)
	}
	start := idle("?slide=false")
	e.clock.Advance(10 * time.Minute)
	if got := idle("?slide=false"); got > start-500 {
		t.Errorf("slide=false extended idle expiry: %d -> %d", start, got)
	}
	if got := idle(""); got < start-60 {
		t.Errorf("default /bff/user did not slide: %d -> %d", start, got)
	}
}

func TestReplayedLoginResponseRejected(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	cb := e.authorize(b, e.startLogin(b, "/app"), "alice", "wonderland")
	gwURL, _ := url.Parse(e.gw.URL)
	loginCookies := b.Jar.Cookies(gwURL) // the attacker copies the login-state cookie
	if resp, _ := e.get(b, cb); resp.StatusCode != http.StatusFound {
		t.Fatalf("first callback: %d", resp.StatusCode)
	}
	replay := e.browser()
	replay.Jar.SetCookies(gwURL, loginCookies)
	resp, body := e.get(replay, cb, "Accept", "application/json")
	// Refused by the IdP's one-time code (the state is marked used only
	// after a successful exchange, so that failed callbacks write nothing).
	if resp.StatusCode != http.StatusBadRequest || !(strings.Contains(body, "code_rejected") || strings.Contains(body, "state_replayed")) {
		t.Errorf("replayed callback: %d %s, want 400 code_rejected or state_replayed", resp.StatusCode, body)
	}
	if e.sessionCookie(replay) != nil {
		t.Errorf("replayed callback set a session cookie")
	}
	if n := e.op.Count(idp.GrantAuthorizationCode); n != 1 {
		t.Errorf("code exchanges at the OP: %d, want 1", n)
	}
	if strings.Contains(body, url.QueryEscape(cbCode(cb))) || strings.Contains(body, cbCode(cb)) {
		t.Errorf("error body echoes the code")
	}
}

func cbCode(cb string) string {
	u, _ := url.Parse(cb)
	return u.Query().Get("code")
}

func TestCallbackWithoutLoginStateRejected(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	cb := e.authorize(b, e.startLogin(b, "/app"), "alice", "wonderland")
	// A different browser (the victim of login CSRF) receives the attacker's callback.
	resp, body := e.get(e.browser(), cb, "Accept", "application/json")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "login_state_missing") {
		t.Errorf("callback without login state: %d %s", resp.StatusCode, body)
	}
	if e.op.Count(idp.GrantAuthorizationCode) != 0 {
		t.Errorf("code was exchanged")
	}
}

func TestMixUpWrongIssRejectedBeforeCodeExchange(t *testing.T) {
	for name, mutate := range map[string]func(url.Values){
		"wrong iss":   func(q url.Values) { q.Set("iss", "http://127.0.0.1:1/evil") },
		"missing iss": func(q url.Values) { q.Del("iss") },
		"two iss":     func(q url.Values) { q.Add("iss", q.Get("iss")) },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			b := e.browser()
			cb := e.authorize(b, e.startLogin(b, "/app"), "alice", "wonderland")
			u, _ := url.Parse(cb)
			q := u.Query()
			mutate(q)
			u.RawQuery = q.Encode()
			resp, body := e.get(b, u.String())
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "issuer") {
				t.Errorf("%d %s, want 400 issuer mismatch", resp.StatusCode, body)
			}
			if n := e.op.Count(idp.GrantAuthorizationCode); n != 0 {
				t.Errorf("code exchanges at the OP: %d, want 0", n)
			}
			if e.sessionCookie(b) != nil {
				t.Errorf("session cookie set")
			}
		})
	}
}

func TestStateMismatchRejected(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	cb := e.authorize(b, e.startLogin(b, "/app"), "alice", "wonderland")
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Set("state", "attacker-state")
	u.RawQuery = q.Encode()
	if resp, body := e.get(b, u.String()); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "state") {
		t.Errorf("%d %s, want 400", resp.StatusCode, body)
	}
	if e.op.Count(idp.GrantAuthorizationCode) != 0 {
		t.Errorf("code was exchanged")
	}
}

func TestNonceMismatchRejected(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	authURL := e.startLogin(b, "/app")
	// The authorization request reaching the OP carries another nonce (an
	// injected ID token minted for a different login).
	u, _ := url.Parse(authURL)
	q := u.Query()
	if q.Get("nonce") == "" || q.Get("code_challenge_method") != "S256" || q.Get("state") == "" {
		t.Fatalf("authorization request lacks nonce, PKCE S256 or state: %v", q)
	}
	q.Set("nonce", "attacker-nonce")
	u.RawQuery = q.Encode()
	cb := e.authorize(b, u.String(), "alice", "wonderland")
	resp, body := e.get(b, cb, "Accept", "application/json")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "nonce_mismatch") {
		t.Errorf("%d %s, want 400 nonce_mismatch", resp.StatusCode, body)
	}
	if e.sessionCookie(b) != nil {
		t.Errorf("session cookie set")
	}
}

func TestLoginRejectsOffOriginReturnURL(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, ret := range []string{"//evil.example", "https://evil.example/", "/\\evil.example", "/%2f%2fevil.example"} {
		resp, _ := e.get(e.browser(), "/bff/login?returnUrl="+url.QueryEscape(ret))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("returnUrl %q: %d, want 400", ret, resp.StatusCode)
		}
	}
	if resp, _ := e.get(e.browser(), "/bff/login?prompt=bogus-prompt"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unsupported prompt passed: %d", resp.StatusCode)
	}
}

func TestConcurrentRefreshRefreshesOnce(t *testing.T) {
	e := newEnv(t, envOpts{accessTTL: 5 * time.Minute})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	h, s := e.session(b)
	old := s.AccessToken
	tk := e.h.Tokens()

	// Not near expiry: no refresh.
	if got, err := tk.AccessToken(context.Background(), h, s); err != nil || !got.Equal(old) {
		t.Fatalf("fresh token: %v", err)
	}
	e.clock.Advance(4*time.Minute + 30*time.Second)
	var wg sync.WaitGroup
	results := make([]secret.Secret, 50)
	errs := make([]error, 50)
	for i := range 50 {
		wg.Go(func() { results[i], errs[i] = tk.AccessToken(context.Background(), h, s) })
	}
	wg.Wait()
	for i := range 50 {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if results[i].Equal(old) || !results[i].Equal(results[0]) {
			t.Fatalf("call %d got a different or stale token", i)
		}
	}
	if n := e.op.Count(idp.GrantRefreshToken); n != 1 {
		t.Errorf("refreshes at the OP: %d, want exactly 1", n)
	}
	_, s2 := e.session(b)
	if !s2.AccessToken.Equal(results[0]) || s2.RefreshToken.Equal(s.RefreshToken) {
		t.Errorf("refreshed tokens not stored (or refresh token not rotated)")
	}
	// A stale copy of the session (another request loaded it before the
	// refresh) does not cause a second refresh: the store is re-read.
	if got, err := tk.AccessToken(context.Background(), h, s); err != nil || !got.Equal(results[0]) {
		t.Errorf("stale session copy: %v", err)
	}
	if n := e.op.Count(idp.GrantRefreshToken); n != 1 {
		t.Errorf("refreshes after stale call: %d, want 1", n)
	}
	if !e.audit.has(audit.EventTokenRefresh) {
		t.Errorf("no token_refresh audit event")
	}
	e.assertNoLeak(old.Reveal(), results[0].Reveal(), s.RefreshToken.Reveal(), s2.RefreshToken.Reveal(), s.IDToken.Reveal())
}

func TestRefreshInvalidGrantEndsSession(t *testing.T) {
	e := newEnv(t, envOpts{accessTTL: 5 * time.Minute})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	h, s := e.session(b)
	e.clock.Advance(4*time.Minute + 30*time.Second)
	// Refresh once so the session's refresh token rotates; then plant the
	// old (now invalid) refresh token in a fresh session.
	if _, err := e.h.Tokens().AccessToken(context.Background(), h, s); err != nil {
		t.Fatal(err)
	}
	h2, err := e.mgr.Create(context.Background(), &session.Session{Subject: s.Subject, RefreshToken: s.RefreshToken,
		AccessToken: s.AccessToken, AccessTokenExpiry: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := e.mgr.Load(context.Background(), h2, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.h.Tokens().AccessToken(context.Background(), h2, s2)
	if !errors.Is(err, oidc.ErrSessionEnded) {
		t.Fatalf("refresh with a dead refresh token: %v, want ErrSessionEnded", err)
	}
	if _, err := e.mgr.Load(context.Background(), h2, false); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("session survived invalid_grant: %v", err)
	}
	if got := e.ends.causes(h2.ID()); !slices.Equal(got, []session.EndCause{session.EndRefreshFailed}) {
		t.Errorf("OnEnd causes after invalid_grant: %v, want [refresh_failed]", got)
	}
	if !e.audit.has(audit.EventRefreshFailed) {
		t.Errorf("no refresh_failed audit event")
	}
	e.assertNoLeak(s.RefreshToken.Reveal())
}

func TestRefreshIdPDownIsUnavailableNotEnded(t *testing.T) {
	e := newEnv(t, envOpts{accessTTL: 5 * time.Minute})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	h, s := e.session(b)
	e.clock.Advance(4*time.Minute + 30*time.Second)
	_ = e.op.Close()
	_, err := e.h.Tokens().AccessToken(context.Background(), h, s)
	if !errors.Is(err, oidc.ErrIdPUnavailable) {
		t.Fatalf("refresh with IdP down: %v, want ErrIdPUnavailable", err)
	}
	if _, err := e.mgr.Load(context.Background(), h, false); err != nil {
		t.Errorf("session lost because the IdP was down: %v", err)
	}
	// An IdP outage ends nothing: no per-session cache is dropped.
	if n := e.ends.count(); n != 0 {
		t.Errorf("OnEnd fired %d times during an IdP outage, want 0: %v", n, e.ends.ends)
	}
}

func TestTokenExchangeAndClientCredentials(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	_, s := e.session(b)
	ctx := context.Background()
	tok, exp, err := e.h.Tokens().Exchange(ctx, s.AccessToken, clientID, "openid", "")
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.IsZero() || tok.Equal(s.AccessToken) || exp.IsZero() {
		t.Errorf("exchange returned no new token or no expiry")
	}
	if n := e.op.Count(idp.GrantTokenExchange); n != 1 {
		t.Errorf("exchanges at the OP: %d", n)
	}
	h, _ := e.session(b)
	tok2, exp2, err := e.h.Tokens().ExchangeForSession(ctx, h, s, clientID, "openid", "")
	if err != nil || tok2.IsZero() {
		t.Fatalf("exchange for session: %v", err)
	}
	if exp2.After(s.AccessTokenExpiry) {
		t.Errorf("exchanged token outlives its subject token: %v > %v", exp2, s.AccessTokenExpiry)
	}
	if _, _, err := e.h.Tokens().Exchange(ctx, secret.New("not-a-token-at-all"), clientID, "", ""); !errors.Is(err, oidc.ErrExchangeDenied) {
		t.Errorf("exchange of garbage: %v, want ErrExchangeDenied", err)
	}

	c1, err := e.h.Tokens().ClientCredentials(ctx, []string{"openid"}, "")
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	c2, err := e.h.Tokens().ClientCredentials(ctx, []string{"openid"}, "")
	if err != nil || !c1.Equal(c2) {
		t.Errorf("client credentials token not cached: %v", err)
	}
	if n := e.op.Count(idp.GrantClientCredentials); n != 1 {
		t.Errorf("client credentials requests: %d, want 1 (cached)", n)
	}
	e.clock.Advance(10 * time.Minute) // past the token's life: fetched again
	if _, err := e.h.Tokens().ClientCredentials(ctx, []string{"openid"}, ""); err != nil {
		t.Fatal(err)
	}
	if n := e.op.Count(idp.GrantClientCredentials); n != 2 {
		t.Errorf("client credentials requests after expiry: %d, want 2", n)
	}
	e.assertNoLeak(tok.Reveal(), c1.Reveal(), s.AccessToken.Reveal(), clientSecret)
}

func TestRotatedClientSecretTakesEffect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(path, []byte(clientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := secret.Resolve("${file:"+path+"}", "")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{secret: v})
	ctx := context.Background()
	if _, err := e.h.Tokens().ClientCredentials(ctx, []string{"openid"}, ""); err != nil {
		t.Fatalf("with the current secret: %v", err)
	}
	// Rotate to a secret the OP does not know: the next request uses it (and fails).
	if err := os.WriteFile(path, []byte("a-rotated-secret-the-op-does-not-know"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(10 * time.Minute)
	if _, err := e.h.Tokens().ClientCredentials(ctx, []string{"openid"}, ""); !errors.Is(err, oidc.ErrExchangeDenied) {
		t.Errorf("after rotation to an unknown secret: %v, want ErrExchangeDenied", err)
	}
	e.assertNoLeak("a-rotated-secret-the-op-does-not-know", clientSecret)
}

// backchannel posts a logout token to Gatehouse.
func (e *env) backchannel(token string) (*http.Response, string) {
	e.t.Helper()
	resp, err := http.PostForm(e.gw.URL+"/bff/backchannel", url.Values{"logout_token": {token}})
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := new(strings.Builder)
	_, _ = io.Copy(buf, resp.Body)
	return resp, buf.String()
}

func TestBackchannelLogout(t *testing.T) {
	e := newEnv(t, envOpts{})
	victim, bystander := e.browser(), e.browser()
	e.login(victim, "alice", "wonderland")
	e.login(bystander, "alice", "wonderland") // same user, another OP session
	_, vs := e.session(victim)
	_, bs := e.session(bystander)
	if vs.IdPSessionID == bs.IdPSessionID {
		t.Fatal("the two logins share an OP session id")
	}
	mint := func(c idp.LogoutTokenClaims) string {
		t.Helper()
		tok, err := e.op.LogoutToken(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alive := func(c interface {
		Do(*http.Request) (*http.Response, error)
	}) bool {
		resp, _ := e.get(c.(*http.Client), "/bff/user?slide=false")
		return resp.StatusCode == http.StatusOK
	}
	sid := vs.IdPSessionID
	replayJTI := "jti-replayed-once"
	invalid := map[string]string{
		"bad signature":     mint(idp.LogoutTokenClaims{SessionID: sid, SignWithForeignKey: true}),
		"wrong aud":         mint(idp.LogoutTokenClaims{SessionID: sid, Audience: []string{"another-client"}}),
		"wrong iss":         mint(idp.LogoutTokenClaims{SessionID: sid, Issuer: "http://127.0.0.1:1"}),
		"nonce present":     mint(idp.LogoutTokenClaims{SessionID: sid, Nonce: "n"}),
		"missing events":    mint(idp.LogoutTokenClaims{SessionID: sid, OmitEvents: true}),
		"event not object":  mint(idp.LogoutTokenClaims{SessionID: sid, Events: map[string]any{idp.BackChannelLogoutEvent: "yes"}}),
		"other event only":  mint(idp.LogoutTokenClaims{SessionID: sid, Events: map[string]any{"http://example.com/other": map[string]any{}}}),
		"no sub or sid":     mint(idp.LogoutTokenClaims{}),
		"missing jti":       mint(idp.LogoutTokenClaims{SessionID: sid, Extra: map[string]any{"jti": nil}}),
		"missing iat":       mint(idp.LogoutTokenClaims{SessionID: sid, Extra: map[string]any{"iat": nil}}),
		"missing exp":       mint(idp.LogoutTokenClaims{SessionID: sid, Extra: map[string]any{"exp": nil}}),
		"expired":           mint(idp.LogoutTokenClaims{SessionID: sid, IssuedAt: time.Now().Add(-20 * time.Minute), Expiry: time.Now().Add(-15 * time.Minute)}),
		"iat in the future": mint(idp.LogoutTokenClaims{SessionID: sid, IssuedAt: time.Now().Add(time.Hour)}),
		"typ JWT":           mint(idp.LogoutTokenClaims{SessionID: sid, Type: "JWT"}),
		"garbage":           "not.a.jwt",
	}
	for name, tok := range invalid {
		resp, body := e.backchannel(tok)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, resp.StatusCode, body)
		}
		if !alive(victim) {
			t.Fatalf("%s: the session was ended by an invalid logout token", name)
		}
	}

	// Valid: ends exactly the session with that sid.
	valid := mint(idp.LogoutTokenClaims{SessionID: sid, JTI: replayJTI})
	if resp, body := e.backchannel(valid); resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("valid logout token: %d %s", resp.StatusCode, body)
	}
	if alive(victim) {
		t.Errorf("session with the logged-out sid survived")
	}
	if !alive(bystander) {
		t.Errorf("another session of the same user was ended")
	}
	// Replay of the same jti, now aimed at the bystander: rejected, nothing changes.
	if resp, _ := e.backchannel(mint(idp.LogoutTokenClaims{SessionID: bs.IdPSessionID, JTI: replayJTI})); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("replayed jti: %d, want 400", resp.StatusCode)
	}
	if !alive(bystander) {
		t.Errorf("replayed jti ended a session")
	}
	// sub only: ends every session of the subject.
	if resp, _ := e.backchannel(mint(idp.LogoutTokenClaims{Subject: "user-alice", Type: "application/logout+jwt"})); resp.StatusCode != http.StatusOK {
		t.Errorf("sub-only logout token: %d", resp.StatusCode)
	}
	if alive(bystander) {
		t.Errorf("sub-only logout left a session")
	}
	if !e.audit.has(audit.EventBackchannelLogout) {
		t.Errorf("no backchannel_logout audit event")
	}
	// Every ended session was reported with its cause, and the audit
	// records name the sessions each logout token ended.
	var recorded []string
	for _, rec := range e.audit.all() {
		if rec.Event == audit.EventBackchannelLogout {
			recorded = append(recorded, rec.Sessions...)
		}
	}
	for _, id := range []string{vs.ID, bs.ID} {
		if got := e.ends.causes(id); !slices.Contains(got, session.EndBackchannel) {
			t.Errorf("OnEnd causes for %s: %v, want backchannel_logout", id, got)
		}
		if !slices.Contains(recorded, id) {
			t.Errorf("no backchannel_logout audit record names session %s (records name %v)", id, recorded)
		}
	}
	e.assertNoLeak(vs.AccessToken.Reveal(), vs.RefreshToken.Reveal(), vs.IDToken.Reveal(), bs.AccessToken.Reveal(), valid)
}

// TestBackchannelFromTheOP: the OP itself ends its session and notifies Gatehouse.
func TestBackchannelFromTheOP(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	if _, err := e.op.EndSession(context.Background(), "user-alice"); err != nil {
		t.Fatalf("OP end session (back-channel delivery): %v", err)
	}
	if resp, _ := e.get(b, "/bff/user"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("session survived the OP's back-channel logout: %d", resp.StatusCode)
	}
}

func TestPushedAuthorizationRequest(t *testing.T) {
	e := newEnv(t, envOpts{par: true})
	b := e.browser()
	authURL := e.startLogin(b, "/app")
	u, _ := url.Parse(authURL)
	if q := u.Query(); len(q) != 2 || q.Get("client_id") != clientID || q.Get("request_uri") == "" {
		t.Fatalf("with PAR the browser must carry only client_id and request_uri, got %v", q)
	}
	cb := e.authorize(b, authURL, "alice", "wonderland")
	if resp, body := e.get(b, cb); resp.StatusCode != http.StatusFound {
		t.Fatalf("callback after PAR: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.get(b, "/bff/user"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/bff/user after PAR login: %d", resp.StatusCode)
	}
	e.par.mu.Lock()
	pushed, direct := e.par.pushed, e.par.direct
	e.par.mu.Unlock()
	if pushed != 1 || direct != 0 {
		t.Errorf("pushed %d, direct %d; want 1, 0", pushed, direct)
	}
}

func TestPromptPassedOnlyWhenAdvertised(t *testing.T) {
	e := newEnv(t, envOpts{par: true}) // the shim advertises none and login
	b := e.browser()
	resp, _ := e.get(b, "/bff/login?prompt=login")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("prompt=login: %d", resp.StatusCode)
	}
	e.par.mu.Lock()
	var got string
	for _, v := range e.par.requests {
		got = v.Get("prompt")
	}
	e.par.mu.Unlock()
	if got != "login" {
		t.Errorf("pushed request prompt = %q, want login", got)
	}
	if resp, _ := e.get(b, "/bff/login?prompt=consent"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unadvertised prompt: %d, want 400", resp.StatusCode)
	}
}

func TestLoginAgainEndsPreviousSession(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	first := e.sessionCookie(b).Value
	e.login(b, "bob", "builder")
	if second := e.sessionCookie(b).Value; second == first {
		t.Fatal("login reused the session handle (fixation)")
	}
	c := e.browser()
	gwURL, _ := url.Parse(e.gw.URL)
	c.Jar.SetCookies(gwURL, []*http.Cookie{{Name: cookieName, Value: first}})
	if resp, _ := e.get(c, "/bff/user"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("previous session still valid after a new login: %d", resp.StatusCode)
	}
}

func TestExpiredLoginStateRejected(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	cb := e.authorize(b, e.startLogin(b, "/app"), "alice", "wonderland")
	e.clock.Advance(11 * time.Minute)
	if resp, body := e.get(b, cb, "Accept", "application/json"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "login_state_invalid") {
		t.Errorf("expired login state: %d %s", resp.StatusCode, body)
	}
	if e.op.Count(idp.GrantAuthorizationCode) != 0 {
		t.Errorf("code was exchanged")
	}
}

func TestIdPErrorResponseIsNotASession(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	cb := e.authorize(b, e.startLogin(b, "/app"), "alice", "wonderland")
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Del("code")
	q.Set("error", "access_denied")
	q.Set("error_description", "<script>alert(1)</script>")
	u.RawQuery = q.Encode()
	resp, body := e.get(b, u.String(), "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("IdP error: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if strings.Contains(body, "<script>") || e.sessionCookie(b) != nil {
		t.Errorf("error page echoes the request or a session was created")
	}
}

// TestConcurrentRefreshAcrossInstancesRefreshesOnce: two Gatehouse instances
// share one session store; 25 requests on each find the token expiring.
// The store lock and re-read make exactly one refresh reach the IdP.
func TestConcurrentRefreshAcrossInstancesRefreshesOnce(t *testing.T) {
	e := newEnv(t, envOpts{accessTTL: 5 * time.Minute, cacheTTL: -1})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	h, s := e.session(b)

	// Instance two: its own Manager and Handler over the same store and OP.
	// Both caches are off: over a memory store there is no pub/sub to tell
	// one instance of the other's update (redis has it).
	mgr2 := session.NewManager(e.store, session.Options{Now: e.clock.Now, CacheTTL: -1, HealthInterval: -1})
	t.Cleanup(func() { _ = mgr2.Close() })
	h2, err := oidc.New(context.Background(), oidc.Options{
		Issuer: e.op.Issuer(), ClientID: clientID, ClientSecret: e.secret, PublicURL: e.gw.URL,
		CookieName: cookieName, CookieKeys: secret.RandomKeyRing(), Sessions: mgr2, Clock: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := mgr2.Load(context.Background(), h, false)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(4*time.Minute + 30*time.Second)
	var wg sync.WaitGroup
	results := make([]secret.Secret, 50)
	errs := make([]error, 50)
	for i := range 50 {
		tk, sess := e.h.Tokens(), s
		if i%2 == 1 {
			tk, sess = h2.Tokens(), s2
		}
		wg.Go(func() { results[i], errs[i] = tk.AccessToken(context.Background(), h, sess) })
	}
	wg.Wait()
	for i := range 50 {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if results[i].Equal(s.AccessToken) || !results[i].Equal(results[0]) {
			t.Fatalf("call %d got a different or stale token", i)
		}
	}
	if n := e.op.Count(idp.GrantRefreshToken); n != 1 {
		t.Errorf("refreshes at the OP: %d, want exactly 1", n)
	}
}

func TestLoginFailsClosedWhenAuditIsDown(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	cb := e.authorize(b, e.startLogin(b, "/app"), "alice", "wonderland")
	e.audit.fail.Store(true)
	resp, body := e.get(b, cb, "Accept", "application/json")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "audit_unavailable") {
		t.Errorf("login with audit down: %d %s, want 503", resp.StatusCode, body)
	}
	if e.sessionCookie(b) != nil {
		t.Errorf("unaudited login set a session cookie")
	}
	if n, err := e.mgr.List(context.Background(), "user-alice"); err != nil || len(n) != 0 {
		t.Errorf("unaudited login left %d sessions (%v)", len(n), err)
	}
}

// The configured CSRF header (not a hard-coded X-CSRF) marks an XHR that
// gets JSON errors from /bff endpoints, even when it also accepts HTML.
func TestConfiguredCSRFHeaderMeansJSON(t *testing.T) {
	e := newEnv(t, envOpts{csrfHeader: "X-Requested-By"})
	for _, tc := range []struct {
		header   string
		wantJSON bool
	}{{"X-Requested-By", true}, {"X-CSRF", false}} {
		req, _ := http.NewRequest("GET", e.gw.URL+"/bff/callback?code=x&state=y", nil)
		req.Header.Set(tc.header, "1")
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		isJSON := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
		if resp.StatusCode < 400 || isJSON != tc.wantJSON {
			t.Errorf("%s: %d %s, want JSON %v", tc.header, resp.StatusCode, resp.Header.Get("Content-Type"), tc.wantJSON)
		}
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
)

// The OP ends alice's session (as if she signed out there): it POSTs a real
// logout token to the gateway's /bff/backchannel, alice's Gatehouse session
// ends (401, nothing upstream) and bob's survives.
func TestSessionBackchannelLogoutFromTheOPEndsOnlyThatUsersSession(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: strings.ReplaceAll(refreshRoute, "{{.Upstream}}", up.URL)})
	alice := e.login("alice", "wonderland")
	bob := e.login("bob", "builder")
	e.sessWant(alice, "/api/profile/me", 200)
	e.sessWant(bob, "/api/profile/me", 200)

	ended, err := e.IdP.EndSession(context.Background(), "user-alice")
	if err != nil {
		t.Fatalf("OP back-channel delivery: %v\nlogs:\n%s", err, sessTail(e.Logs.String(), 4000))
	}
	if len(ended) == 0 {
		t.Fatal("the OP ended no session of alice")
	}
	up.reset()
	for _, p := range []string{"/api/profile/me", "/bff/user"} {
		sessErrCode(t, e.sessWant(alice, p, 401))
	}
	if up.count() != 0 {
		t.Fatal("the upstream received alice's request after back-channel logout")
	}
	e.sessWant(bob, "/api/profile/me", 200)
	e.sessWant(bob, "/bff/user", 200)
}

// Each invalid logout token POSTed to /bff/backchannel gets 400 and the
// session it names survives; a valid token's replay (same jti) is refused
// too, after the first delivery worked.
func TestSessionBackchannelRejectsInvalidLogoutTokens(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: strings.ReplaceAll(refreshRoute, "{{.Upstream}}", up.URL)})
	alice := e.login("alice", "wonderland")
	sids := e.IdP.SessionIDs("user-alice")
	if len(sids) != 1 {
		t.Fatalf("OP sessions of alice: %v", sids)
	}
	valid := idp.LogoutTokenClaims{Subject: "user-alice", SessionID: sids[0]}
	variants := map[string]func(c *idp.LogoutTokenClaims){
		"bad signature":  func(c *idp.LogoutTokenClaims) { c.SignWithForeignKey = true },
		"wrong aud":      func(c *idp.LogoutTokenClaims) { c.Audience = []string{"some-other-client"} },
		"nonce present":  func(c *idp.LogoutTokenClaims) { c.Nonce = "n-0S6_WzA2Mj" },
		"missing events": func(c *idp.LogoutTokenClaims) { c.OmitEvents = true },
		"wrong event": func(c *idp.LogoutTokenClaims) {
			c.Events = map[string]any{"http://example.com/other": map[string]any{}}
		},
		"wrong iss": func(c *idp.LogoutTokenClaims) { c.Issuer = "http://127.0.0.1:1/not-the-op" },
		"wrong typ": func(c *idp.LogoutTokenClaims) { c.Type = "JWT" },
		"expired": func(c *idp.LogoutTokenClaims) {
			c.IssuedAt = time.Now().Add(-time.Hour)
			c.Expiry = time.Now().Add(-50 * time.Minute)
		},
		"no sub, no sid": func(c *idp.LogoutTokenClaims) { c.Subject, c.SessionID = "", "" },
		"no iat":         func(c *idp.LogoutTokenClaims) { c.Extra = map[string]any{"iat": nil} },
		"no jti":         func(c *idp.LogoutTokenClaims) { c.Extra = map[string]any{"jti": nil} },
	}
	for name, mutate := range variants {
		c := valid
		mutate(&c)
		tok, err := e.IdP.LogoutToken(c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		code, body := e.sessPost("/bff/backchannel", url.Values{"logout_token": {tok}})
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, code, body)
		}
		if code, _ := e.api(alice, "GET", "/bff/user?slide=false", nil); code != 200 {
			t.Fatalf("%s: alice's session did not survive (%d)", name, code)
		}
	}
	if code, _ := e.sessPost("/bff/backchannel", url.Values{"logout_token": {"not.a.jwt"}}); code != 400 {
		t.Errorf("garbage token: %d", code)
	}
	if code, _ := e.sessPost("/bff/backchannel", url.Values{}); code != 400 {
		t.Errorf("no token: %d", code)
	}

	// Replay: bob's token ends bob's session; bob signs in again; the same
	// token (same jti) posted again is refused and his new session lives.
	bob := e.login("bob", "builder")
	replay, err := e.IdP.LogoutToken(idp.LogoutTokenClaims{Subject: "user-bob", JTI: "jti-replay-0001"})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := e.sessPost("/bff/backchannel", url.Values{"logout_token": {replay}}); code != 200 {
		t.Fatalf("first delivery: %d %s", code, body)
	}
	e.sessWant(bob, "/bff/user", 401)
	bob2 := e.login("bob", "builder")
	if code, body := e.sessPost("/bff/backchannel", url.Values{"logout_token": {replay}}); code != 400 {
		t.Fatalf("replayed logout token: %d %s, want 400", code, body)
	}
	e.sessWant(bob2, "/api/profile/me", 200)
	e.sessWant(alice, "/api/profile/me", 200)

	// The unmodified claims every variant started from are valid: alice's
	// session ends only now.
	tok, err := e.IdP.LogoutToken(valid)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := e.sessPost("/bff/backchannel", url.Values{"logout_token": {tok}}); code != 200 {
		t.Fatalf("the valid base token: %d %s", code, body)
	}
	e.sessWant(alice, "/bff/user", 401)
	e.sessWant(bob2, "/bff/user", 200)
}

// The admin API on the admin listener: list a user's sessions (no tokens in
// the answer), revoke one (that browser gets 401, the other lives), revoke
// all of a subject (others' sessions live). Without the token: 401.
func TestSessionAdminListAndRevoke(t *testing.T) {
	const adminToken = "admin-token-e2e-0123456789abcdefghij"
	up := newRecorder(t, nil)
	dir := t.TempDir()
	sessWriteFile(t, dir, "admin-token", adminToken)
	e := startGW(t, gwOptions{Dir: dir, Config: strings.ReplaceAll(refreshRoute, "{{.Upstream}}", up.URL) + `
admin:
  token: ${file:admin-token}
`})
	a1 := e.login("alice", "wonderland")
	a2 := e.login("alice", "wonderland")
	bob := e.login("bob", "builder")
	id1, id2 := e.sessPublicID(a1), e.sessPublicID(a2)

	for _, tok := range []string{"", "wrong-token", adminToken + "x"} {
		if code, body := e.sessAdmin(nil, "GET", "/admin/sessions?sub=user-alice", tok); code != 401 {
			t.Fatalf("admin list with token %q: %d %s", tok, code, body)
		}
	}
	if code, _ := e.sessAdmin(nil, "DELETE", "/admin/sessions/"+id1, ""); code != 401 {
		t.Fatalf("revoke without token: %d", code)
	}
	e.sessWant(a1, "/bff/user", 200)
	// The admin API is not on the public listener.
	if code, _ := e.api(a1, "GET", "/admin/sessions?sub=user-alice", map[string]string{"Authorization": "Bearer " + adminToken}); code == 200 {
		t.Fatal("the admin API answers on the public listener")
	}

	code, body := e.sessAdmin(nil, "GET", "/admin/sessions?sub=user-alice", adminToken)
	if code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	var list struct {
		Sessions []map[string]any `json:"sessions"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, s := range list.Sessions {
		id, _ := s["id"].(string)
		got[id] = true
		if s["sub"] != "user-alice" {
			t.Fatalf("listed a session of %v", s["sub"])
		}
		for k := range s {
			if strings.Contains(k, "token") {
				t.Fatalf("the session listing has a %q field", k)
			}
		}
	}
	if len(got) != 2 || !got[id1] || !got[id2] {
		t.Fatalf("listed %v, want alice's two sessions %s and %s", got, id1, id2)
	}

	if code, body := e.sessAdmin(nil, "DELETE", "/admin/sessions/"+id1, adminToken); code != 200 {
		t.Fatalf("revoke one: %d %s", code, body)
	}
	up.reset()
	e.sessWant(a1, "/api/profile/me", 401)
	e.sessWant(a1, "/bff/user", 401)
	if up.count() != 0 {
		t.Fatal("the revoked session's request reached the upstream")
	}
	e.sessWant(a2, "/api/profile/me", 200)

	if code, body := e.sessAdmin(nil, "POST", "/admin/sessions/revoke?sub=user-alice", adminToken); code != 200 || !strings.Contains(string(body), `"revoked":1`) {
		t.Fatalf("revoke all of alice: %d %s", code, body)
	}
	e.sessWant(a2, "/api/profile/me", 401)
	e.sessWant(bob, "/api/profile/me", 200)
	code, body = e.sessAdmin(nil, "GET", "/admin/sessions?sub=user-alice", adminToken)
	if code != 200 || strings.Contains(string(body), `"id"`) {
		t.Fatalf("alice still has sessions: %d %s", code, body)
	}
}

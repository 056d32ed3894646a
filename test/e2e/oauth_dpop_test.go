package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// API calls with the handle and fresh proofs reach the upstream with the
// user's credential; the handle alone gets 401; a request without any
// credential gets the Bearer challenge with resource_metadata first.
func TestOAuthNativeAPICalls(t *testing.T) {
	up := newRecorder(t, nil)
	e := startOAuthGW(t, up, "")
	app := newNativeApp(t, e)
	app.signIn(newHTTPBrowser(t))

	for range 3 {
		st, hdr, body := app.call("GET", "/api/profile/me", app.honest("GET", "/api/profile/me"))
		if st != 200 || hdr.Get("WWW-Authenticate") != "" {
			t.Fatalf("honest call: %d %s %v", st, body, hdr)
		}
	}
	got := up.last(t)
	auth := got.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "Bearer ") || strings.Contains(auth, "ghn_") || got.Header.Get("Dpop") != "" {
		t.Fatalf("the upstream got Authorization %q, DPoP %q: want the user's access token only", auth, got.Header.Get("Dpop"))
	}
	if claims := jwtClaims(t, strings.TrimPrefix(auth, "Bearer ")); claims["sub"] != "user-alice" {
		t.Fatalf("upstream token for %v", claims["sub"])
	}
	up.reset()

	// The handle alone (no key) and a request without any credential.
	for name, hdr := range map[string]http.Header{
		"handle without proof": {"Authorization": {"DPoP " + app.handle}},
		"no credential":        {},
	} {
		st, h, body := app.call("GET", "/api/profile/me", hdr)
		if st != http.StatusUnauthorized {
			t.Fatalf("%s: %d %s", name, st, body)
		}
		ch := h.Values("WWW-Authenticate")
		if name == "no credential" {
			if len(ch) < 2 || !strings.HasPrefix(ch[0], `Bearer resource_metadata="`+e.URL+`/.well-known/oauth-protected-resource"`) || !strings.HasPrefix(ch[1], "DPoP ") {
				t.Fatalf("%s: challenges %q", name, ch)
			}
		} else if len(ch) == 0 || !strings.HasPrefix(ch[0], "DPoP ") || !strings.Contains(ch[0], `error="invalid_dpop_proof"`) {
			t.Fatalf("%s: challenges %q", name, ch)
		}
		var m map[string]any
		if json.Unmarshal(body, &m) != nil || m["error"] == nil {
			t.Fatalf("%s: body %s is not a JSON error", name, body)
		}
	}
	// A route outside the granted scope.
	if st, _, body := app.call("GET", "/api/billing/x", app.honest("GET", "/api/billing/x")); st != http.StatusForbidden {
		t.Fatalf("ungranted route: %d %s", st, body)
	}
	if n := up.count(); n != 0 {
		t.Fatalf("refused requests reached the upstream %d times", n)
	}

	// Revocation ends the session.
	if st := app.revokeStatus(); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	if st, _, _ := app.call("GET", "/api/profile/me", app.honest("GET", "/api/profile/me")); st != http.StatusUnauthorized {
		t.Fatalf("after revocation: %d", st)
	}
	if up.count() != 0 {
		t.Fatal("a revoked handle reached the upstream")
	}
}

// Hostile proofs and handles, through the gateway: each 401, nothing forwarded.
func TestOAuthHostileProofs(t *testing.T) {
	up := newRecorder(t, nil)
	e := startOAuthGW(t, up, "")
	app := newNativeApp(t, e)
	app.signIn(newHTTPBrowser(t))
	const path = "/api/profile/me"
	htu := e.URL + path
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := e.Clock.Now()
	wrong := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	replayed := app.proof(proofSpec{htm: "GET", htu: htu}, app.handle)
	if st, _, body := app.call("GET", path, http.Header{"Authorization": {"DPoP " + app.handle}, "Dpop": {replayed}}); st != 200 {
		t.Fatalf("the proof to replay was refused the first time: %d %s", st, body)
	}
	up.reset()
	privJWK := publicJWK(app.key)
	privJWK["d"] = b64(pad32(app.key.D))
	withProof := func(p string) http.Header {
		return http.Header{"Authorization": {"DPoP " + app.handle}, "Dpop": {p}}
	}
	cases := map[string]http.Header{
		"wrong htm":                withProof(app.proof(proofSpec{htm: "POST", htu: htu}, app.handle)),
		"htu of another host":      withProof(app.proof(proofSpec{htm: "GET", htu: "https://evil.example" + path}, app.handle)),
		"htu of another path":      withProof(app.proof(proofSpec{htm: "GET", htu: e.URL + "/api/profile/other"}, app.handle)),
		"htu with a query":         withProof(app.proof(proofSpec{htm: "GET", htu: htu + "?a=1"}, app.handle)),
		"replayed jti":             withProof(replayed),
		"stale iat":                withProof(app.proof(proofSpec{htm: "GET", htu: htu, iat: now.Add(-5 * time.Minute)}, app.handle)),
		"future iat":               withProof(app.proof(proofSpec{htm: "GET", htu: htu, iat: now.Add(5 * time.Minute)}, app.handle)),
		"alg none":                 withProof(app.proof(proofSpec{htm: "GET", htu: htu, alg: "none"}, app.handle)),
		"HS256 with public key":    withProof(app.proof(proofSpec{htm: "GET", htu: htu, alg: "HS256"}, app.handle)),
		"jwk with private key":     withProof(app.proof(proofSpec{htm: "GET", htu: htu, jwk: privJWK}, app.handle)),
		"missing ath":              withProof(app.proof(proofSpec{htm: "GET", htu: htu, noATH: true}, app.handle)),
		"wrong ath":                withProof(app.proof(proofSpec{htm: "GET", htu: htu, ath: &wrong}, app.handle)),
		"another key":              withProof(app.proof(proofSpec{htm: "GET", htu: htu, signer: other, jwk: publicJWK(other)}, app.handle)),
		"signature by another key": withProof(app.proof(proofSpec{htm: "GET", htu: htu, signer: other}, app.handle)),
		"wrong typ":                withProof(app.proof(proofSpec{htm: "GET", htu: htu, typ: "jwt"}, app.handle)),
		"two DPoP headers": {"Authorization": {"DPoP " + app.handle}, "Dpop": {
			app.proof(proofSpec{htm: "GET", htu: htu}, app.handle), app.proof(proofSpec{htm: "GET", htu: htu}, app.handle)}},
		"oversize header":        withProof(app.proof(proofSpec{htm: "GET", htu: htu, jti: strings.Repeat("a", 5000)}, app.handle)),
		"bound handle as Bearer": {"Authorization": {"Bearer " + app.handle}, "Dpop": {app.proof(proofSpec{htm: "GET", htu: htu}, app.handle)}},
		"forged handle":          {"Authorization": {"DPoP ghn_" + strings.Repeat("A", 64)}, "Dpop": {app.proof(proofSpec{htm: "GET", htu: htu}, "ghn_"+strings.Repeat("A", 64))}},
	}
	for name, hdr := range cases {
		t.Run(name, func(t *testing.T) {
			st, h, body := app.call("GET", path, hdr)
			if st != http.StatusUnauthorized {
				t.Fatalf("%d %s", st, body)
			}
			ch := h.Get("WWW-Authenticate")
			if !strings.HasPrefix(ch, "DPoP ") || !(strings.Contains(ch, `error="invalid_dpop_proof"`) || strings.Contains(ch, `error="invalid_token"`)) {
				t.Fatalf("WWW-Authenticate %q", ch)
			}
			var m map[string]any
			if json.Unmarshal(body, &m) != nil || m["error"] == nil {
				t.Fatalf("body %s is not a JSON error", body)
			}
		})
	}
	if n := up.count(); n != 0 {
		t.Fatalf("hostile requests reached the upstream %d times", n)
	}
	// Each refusal is audited (the audit file is synced every 50ms).
	deadline := time.Now().Add(3 * time.Second)
	for {
		denied := 0
		for _, rec := range auParse(t, auLines(t, e.Audit)) {
			if rec["event"] == "access" && rec["outcome"] == "deny" && (rec["reason"] == "invalid_dpop_proof" || rec["reason"] == "invalid_token") {
				denied++
			}
		}
		if denied >= len(cases) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d DPoP refusals audited, want %d", denied, len(cases))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The htu is public_url + path: a Host or X-Forwarded-Host naming what
	// the proof says changes nothing.
	evil := app.proof(proofSpec{htm: "GET", htu: "https://evil.example" + path}, app.handle)
	h := withProof(evil)
	h.Set("X-Forwarded-Host", "evil.example")
	h.Set("X-Forwarded-Proto", "https")
	if st, _, _ := app.call("GET", path, h); st != http.StatusUnauthorized || up.count() != 0 {
		t.Fatalf("a forwarded host made the proof valid: %d", st)
	}
	// Still usable after all that, with a fresh proof.
	if st, _, body := app.call("GET", path, app.honest("GET", path)); st != 200 {
		t.Fatalf("honest call after the attacks: %d %s", st, body)
	}
}

// A native handle is a credential for DPoP only: as a cookie, or with a
// cookie beside it, it is refused.
func TestOAuthNativeHandleIsNoCookie(t *testing.T) {
	up := newRecorder(t, nil)
	e := startOAuthGW(t, up, "")
	app := newNativeApp(t, e)
	app.signIn(newHTTPBrowser(t))
	raw := strings.TrimPrefix(app.handle, "ghn_")
	if st, body := e.sessWithCookie(raw, "/api/profile/me"); st != http.StatusUnauthorized {
		t.Fatalf("native handle as a cookie: %d %s", st, body)
	}
	if st, body := e.sessWithCookie(raw, "/bff/user"); st != http.StatusUnauthorized {
		t.Fatalf("native handle as a cookie at /bff/user: %d %s", st, body)
	}
	b := e.login("alice", "wonderland")
	h := app.honest("GET", "/api/profile/me")
	h.Set("Cookie", e.cookieHeader(b))
	if st, _, body := app.call("GET", "/api/profile/me", h); st != http.StatusBadRequest {
		t.Fatalf("cookie and DPoP together: %d %s", st, body)
	}
	if n := up.count(); n != 0 {
		t.Fatalf("refused requests reached the upstream %d times", n)
	}
}

// An MCP server behind a route: POST and DELETE with Mcp-Session-Id and
// MCP-Protocol-Version reach it, and its Mcp-Session-Id comes back.
func TestOAuthMCPThroughARoute(t *testing.T) {
	up := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Mcp-Session-Id", "mcp-session-1")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	})
	e := startOAuthGW(t, up, "")
	app := newNativeApp(t, e)
	q := app.authQuery("s")
	q.Set("scope", "mcp openid") // openid is no route: narrowed away, not refused
	u := app.authorize(newHTTPBrowser(t), q)
	st, body, _ := app.tokenRequest(app.tokenForm(u.Query().Get("code")), app.tokenProof())
	if st != 200 || body["scope"] != "mcp" {
		t.Fatalf("token: %d %v", st, body)
	}
	app.handle = body["access_token"].(string)
	for _, method := range []string{"POST", "DELETE", "GET"} {
		h := app.honest(method, "/api/mcp")
		h.Set("Mcp-Session-Id", "mcp-session-1")
		h.Set("MCP-Protocol-Version", "2025-06-18")
		st, rh, b := app.call(method, "/api/mcp", h)
		if st != 200 || rh.Get("Mcp-Session-Id") != "mcp-session-1" {
			t.Fatalf("%s: %d %s %v", method, st, b, rh)
		}
		got := up.last(t)
		if got.Method != method || got.Header.Get("Mcp-Session-Id") != "mcp-session-1" || got.Header.Get("Mcp-Protocol-Version") != "2025-06-18" {
			t.Fatalf("%s: the upstream got %s %v", method, got.Method, got.Header)
		}
	}
}

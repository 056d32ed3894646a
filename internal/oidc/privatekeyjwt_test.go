package oidc_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
	"github.com/gatehouse-dev/gatehouse/internal/oidc"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

func newECKey(t *testing.T) (*ecdsa.PrivateKey, string, jose.JSONWebKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: &k.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return k, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), pub
}

// private_key_jwt (RFC 7523) against the real OP, whose client has no secret
// at all, only a registered public key. Gatehouse starts with a key the OP
// does not know: the OP refuses the code (an attacker holding a wrong key
// gets nowhere). The key file is rotated and reloaded without a restart:
// sign-in, refresh and logout (revocation) now work, every assertion is
// fresh (unique jti, aud = issuer, short exp, kid = the new key's
// thumbprint) and no secret or Authorization header is ever sent.
func TestPrivateKeyJWTAgainstTheRealOPWithRotation(t *testing.T) {
	_, oldPEM, _ := newECKey(t)
	_, newPEM, newPub := newECKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(path, []byte(oldPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := secret.Resolve("${file:client-key.pem}", dir)
	if err != nil {
		t.Fatal(err)
	}
	// An access token lifetime within RefreshBeforeExpiry: the first use
	// refreshes, without moving the clock (the OP checks the assertion's
	// iat against its own).
	e := newEnv(t, envOpts{par: true, accessTTL: 20 * time.Second, privateKey: key, clientKeys: []jose.JSONWebKey{newPub}})

	b := e.browser()
	cb := e.authorize(b, e.startLogin(b, "/app"), "alice", "wonderland")
	if resp, body := e.get(b, cb, "Accept", "application/json"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "code_rejected") {
		t.Fatalf("login with a key the OP does not know: %d %s, want 400 code_rejected", resp.StatusCode, body)
	}
	if e.sessionCookie(b) != nil {
		t.Fatal("a session was created with an unregistered key")
	}

	if err := os.WriteFile(path, []byte(newPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := key.Reload(); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	b = e.browser()
	e.login(b, "alice", "wonderland")
	h, s := e.session(b)
	if _, err := e.h.Tokens().AccessToken(context.Background(), h, s); err != nil {
		t.Fatalf("refresh with private_key_jwt: %v\n%s\n%s", err, e.audit, e.logs)
	}
	if e.op.Count(idp.GrantRefreshToken) != 1 {
		t.Fatal("no refresh happened at the OP")
	}
	_, s = e.session(b)
	if resp, _ := e.get(b, "/bff/logout?sid="+url.QueryEscape(s.ID)); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d", resp.StatusCode)
	}

	token := jwtPath(t, e, "token_endpoint")
	posts := e.par.postsTo(token)
	if len(posts) < 3 {
		t.Fatalf("token endpoint POSTs: %d, want the failed and the good code exchange and the refresh", len(posts))
	}
	jtis := map[string]bool{}
	var checked int
	for _, p := range append(posts, e.par.postsTo(jwtPath(t, e, "revocation_endpoint"))...) {
		if p.Authorization != "" || p.Form.Has("client_secret") {
			t.Errorf("%s: a shared secret was sent", p.Path)
		}
		if p.Form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			t.Errorf("%s: client_assertion_type %q", p.Path, p.Form.Get("client_assertion_type"))
			continue
		}
		jws, err := jose.ParseSigned(p.Form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("%s: assertion: %v", p.Path, err)
		}
		var c struct {
			Iss, Sub, Aud, Jti string
			Iat, Exp           int64
		}
		if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
			t.Fatal(err)
		}
		if c.Iss != clientID || c.Sub != clientID || c.Aud != e.op.Issuer() || c.Exp-c.Iat > 60 || c.Exp <= c.Iat || c.Jti == "" || jtis[c.Jti] {
			t.Errorf("%s: assertion claims %+v (seen jtis %d)", p.Path, c, len(jtis))
		}
		jtis[c.Jti] = true
		if kid := jws.Signatures[0].Header.KeyID; checked > 0 && kid != newPub.KeyID {
			// The first one was signed with the old key.
			t.Errorf("%s: kid %q, want the rotated key's thumbprint %q", p.Path, kid, newPub.KeyID)
		}
		checked++
	}
	if len(e.par.postsTo(jwtPath(t, e, "revocation_endpoint"))) == 0 {
		t.Error("logout did not revoke the refresh token at the OP")
	}
}

// A private_key_jwt configuration without a usable key fails at start, with
// a message that names the problem and never the key.
func TestPrivateKeyJWTNeedsAUsableKey(t *testing.T) {
	keys, _ := secret.NewKeyRing(secret.New("login-state-cookie-key-0123456789abcdef"))
	for name, c := range map[string]struct {
		key  *secret.Value
		want string
	}{
		"missing":    {nil, "private_key is required"},
		"not PEM":    {secret.Static("not-a-pem-SECRETVALUE"), "not PEM"},
		"public key": {secret.Static(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("SECRETVALUE")}))), "not a private key"},
		"garbage":    {secret.Static(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("SECRETVALUE")}))), "does not parse"},
	} {
		_, err := oidc.New(context.Background(), oidc.Options{Issuer: "http://127.0.0.1:1", ClientID: "c", ClientAuth: oidc.AuthPrivateKeyJWT,
			PrivateKey: c.key, PublicURL: "http://127.0.0.1:2", CookieName: "g", CookieKeys: keys, Sessions: &countingSessions{}})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "SECRETVALUE") {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
}

func jwtPath(t *testing.T, e *env, field string) string {
	t.Helper()
	resp, body := e.get(http.DefaultClient, e.op.Issuer()+"/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK {
		t.Fatal("discovery")
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	s, _ := doc[field].(string)
	u, err := url.Parse(s)
	if err != nil || s == "" {
		t.Fatalf("discovery has no %s", field)
	}
	return u.Path
}

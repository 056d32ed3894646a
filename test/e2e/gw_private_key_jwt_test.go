package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
)

func e2eECKey(t *testing.T) (pemText string, pub jose.JSONWebKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub = jose.JSONWebKey{Key: &k.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), pub
}

// The whole gateway with identity.client_auth: private_key_jwt and a key
// file, against an OP client that has no secret. The key Gatehouse starts
// with is not registered: sign-in fails at the code exchange. The key file
// is replaced while Gatehouse runs; the secret watcher picks it up and
// sign-in and an API call with the user's token work, without a restart.
func TestGatewayPrivateKeyJWTRotatesWithoutRestart(t *testing.T) {
	oldPEM, _ := e2eECKey(t)
	newPEM, newPub := e2eECKey(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	p := idp.MustStart(t, idp.Options{Clients: []idp.Client{{ID: gwClientID, Keys: []jose.JSONWebKey{newPub},
		RedirectURIs: []string{base + "/bff/callback"}, PostLogoutRedirectURIs: []string{base + "/"}}}})
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(keyPath, []byte(oldPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	up := newRecorder(t, nil)
	e := startGWWith(t, gwOptions{Dir: dir, Header: `public_url: "{{.Base}}"
identity:
  issuer: "{{.Issuer}}"
  client_id: ` + gwClientID + `
  client_auth: private_key_jwt
  private_key: ${file:client-key.pem}
audit:
  sink: file
  path: audit.jsonl
  fsync_interval: 50ms
`, Config: `routes:
  - name: profile
    path: /api/profile/
    upstream: ` + up.URL + `/
    credential: user_token
`}, p, ln, base)

	callback := func() int {
		b := newHTTPBrowser(t)
		cb, err := e.IdP.Login(context.Background(), b, e.URL+"/bff/login?returnUrl=/", "alice", "wonderland")
		if err != nil {
			t.Fatalf("OP login: %v", err)
		}
		resp, err := b.Get(cb)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := callback(); code != http.StatusBadRequest {
		t.Fatalf("sign-in with an unregistered key: %d, want 400", code)
	}
	if err := os.WriteFile(keyPath, []byte(newPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for callback() != http.StatusFound {
		if time.Now().After(deadline) {
			t.Fatalf("the rotated key was not picked up\nlogs:\n%s", sessTail(e.Logs.String(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	b := e.login("alice", "wonderland")
	if code, body := e.api(b, "GET", "/api/profile/me", nil); code != http.StatusOK {
		t.Fatalf("API call: %d %s", code, body)
	}
	if got := up.last(t).Header.Get("Authorization"); !strings.HasPrefix(got, "Bearer ") {
		t.Errorf("upstream got no user token: %q", got)
	}
	if strings.Contains(e.Logs.String(), "BEGIN PRIVATE KEY") {
		t.Error("the private key reached the log")
	}
}

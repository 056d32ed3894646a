package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// private_key_jwt: the key comes from a secret reference (so it rotates
// like any other secret and is scrubbed from errors), no client_secret is
// needed, and private_key_id is optional.
func TestPrivateKeyJWTConfig(t *testing.T) {
	dir := t.TempDir()
	const pemText = "-----BEGIN PRIVATE KEY-----\nTUlHSEFnRUFNQk1HQnlxR1NNNDlBZ0VHQ0NxR1NNNDlBd0VIQkcwd2F3SUJBUVFn\n-----END PRIVATE KEY-----\n"
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte(pemText), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `public_url: https://app.example.com
identity:
  issuer: https://idp.example.com
  client_id: web
  client_auth: private_key_jwt
  private_key: ${file:key.pem}
  private_key_id: key-2026
`
	c, err := Parse([]byte(src), "t.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	id := c.Identity
	if id.ClientAuth != PrivateKeyJWT || id.ClientSecret != nil || id.PrivateKeyID != "key-2026" ||
		id.PrivateKey == nil || !id.PrivateKey.Reloadable() || id.PrivateKey.Get().Reveal() != strings.TrimSpace(pemText) && id.PrivateKey.Get().Reveal() != pemText {
		t.Fatalf("identity: auth %v secret %v kid %q key %v", id.ClientAuth, id.ClientSecret, id.PrivateKeyID, id.PrivateKey)
	}
	found := false
	for _, s := range c.Secrets() {
		found = found || s == id.PrivateKey
	}
	if !found {
		t.Error("the private key is not among Secrets() (reload and scrubbing use that list)")
	}
}

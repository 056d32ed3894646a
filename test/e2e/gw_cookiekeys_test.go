package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Rotating a session.cookie_keys file takes effect without a restart: a
// login state sealed under the replaced key no longer opens, and a login
// started after the rotation completes.
func TestGatewayCookieKeyRotationTakesEffectLive(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{"k1": "cookie-key-one-0123456789", "k2": "cookie-key-two-0123456789"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := startGW(t, gwOptions{Dir: dir, Config: `
session:
  store: memory
  cookie_keys: ["${file:k1}", "${file:k2}"]
`})
	// Start a login: its state cookie is sealed under k1.
	b := newHTTPBrowser(t)
	cb, err := e.IdP.Login(context.Background(), b, e.URL+"/bff/login?returnUrl=/", "alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	// Rotate: k1's file now holds a new key; the old k1 is gone from the ring.
	if err := os.WriteFile(filepath.Join(dir, "k1.tmp"), []byte("cookie-key-three-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "k1.tmp"), filepath.Join(dir, "k1")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The rotation is audited once it has been picked up.
		if b, _ := os.ReadFile(e.Audit); len(b) > 0 && strings.Contains(string(b), `"event":"secret_rotated"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rotation not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := b.Get(cb)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "login_state_invalid") {
		t.Fatalf("a login state sealed under the removed key: %d %s", resp.StatusCode, body)
	}
	// A login started after the rotation works.
	fresh := e.login("alice", "wonderland")
	if code, _ := e.user(fresh); code != 200 {
		t.Fatalf("login after rotation: %d", code)
	}
	// This gateway has no routes (a login-only BFF): nothing under /api is proxied.
	if code, _ := e.api(fresh, "GET", "/api/anything", nil); code != http.StatusNotFound {
		t.Fatalf("/api with no routes: %d", code)
	}
}

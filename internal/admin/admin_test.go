package admin

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

func setup(t *testing.T, token *secret.Value) (*httptest.Server, *session.Manager, *syncbuf.Buffer, *audit.Logger) {
	t.Helper()
	m := session.NewManager(session.NewMemoryStore(time.Now), session.Options{HealthInterval: -1})
	t.Cleanup(func() { m.Close() })
	var out syncbuf.Buffer
	al, err := audit.Open(context.Background(), audit.Options{Sink: "stdout", Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Register(mux, Options{Token: token, Sessions: m, Audit: al, Client: "web"})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, m, &out, al
}

func newSession(t *testing.T, m *session.Manager, sub string) session.Handle {
	t.Helper()
	h, err := m.Create(context.Background(), &session.Session{Subject: sub, AccessToken: secret.New("at-" + sub)})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func do(t *testing.T, method, url, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestAdminRequiresTheBearerToken(t *testing.T) {
	srv, _, _, _ := setup(t, secret.Static("admin-token-0123456789"))
	for _, tok := range []string{"", "wrong", "admin-token-012345678", "admin-token-01234567890"} {
		if code, _ := do(t, "GET", srv.URL+"/admin/sessions?sub=alice", tok); code != http.StatusUnauthorized {
			t.Errorf("token %q: got %d, want 401", tok, code)
		}
		if code, _ := do(t, "POST", srv.URL+"/admin/sessions/revoke?sub=alice", tok); code != http.StatusUnauthorized {
			t.Errorf("revoke with token %q: got %d, want 401", tok, code)
		}
	}
}

func TestProfilesNeedTheAdminToken(t *testing.T) {
	srv, _, _, _ := setup(t, secret.Static("admin-token-0123456789"))
	for _, p := range []string{"/admin/debug/pprof/", "/admin/debug/pprof/heap", "/admin/debug/pprof/profile?seconds=1", "/admin/debug/pprof/goroutine?debug=2"} {
		if code, _ := do(t, "GET", srv.URL+p, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", p, code)
		}
		if code, _ := do(t, "GET", srv.URL+p, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", p, code)
		}
	}
	req, _ := http.NewRequest("GET", srv.URL+"/admin/debug/pprof/heap", nil)
	req.Header.Set("Authorization", "Bearer admin-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(b) == 0 {
		t.Fatalf("heap profile with the token: %d, %d bytes", resp.StatusCode, len(b))
	}
	srv2, _, _, _ := setup(t, nil)
	if code, _ := do(t, "GET", srv2.URL+"/admin/debug/pprof/heap", ""); code != http.StatusForbidden {
		t.Fatalf("profiles without admin.token configured: %d, want 403", code)
	}
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	srv, _, _, _ := setup(t, nil)
	if code, body := do(t, "GET", srv.URL+"/admin/sessions?sub=alice", ""); code != http.StatusForbidden || body["error"] != "admin_disabled" {
		t.Fatalf("got %d %v", code, body)
	}
}

func TestAdminListsAndRevokes(t *testing.T) {
	const tok = "admin-token-0123456789"
	srv, m, auditOut, al := setup(t, secret.Static(tok))
	a1 := newSession(t, m, "alice")
	a2 := newSession(t, m, "alice")
	b1 := newSession(t, m, "bob")

	code, body := do(t, "GET", srv.URL+"/admin/sessions?sub=alice", tok)
	if code != 200 || len(body["sessions"].([]any)) != 2 {
		t.Fatalf("list: %d %v", code, body)
	}
	if code, _ := do(t, "GET", srv.URL+"/admin/sessions", tok); code != 400 {
		t.Fatalf("list without sub: %d", code)
	}

	if code, _ := do(t, "DELETE", srv.URL+"/admin/sessions/"+a1.ID(), tok); code != 200 {
		t.Fatalf("revoke one: %d", code)
	}
	if _, err := m.Load(context.Background(), a1, false); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("revoked session still loads: %v", err)
	}
	if _, err := m.Load(context.Background(), a2, false); err != nil {
		t.Fatalf("other session of the same user must survive: %v", err)
	}

	code, body = do(t, "POST", srv.URL+"/admin/sessions/revoke?sub=alice", tok)
	if code != 200 || body["revoked"].(float64) != 1 {
		t.Fatalf("revoke subject: %d %v", code, body)
	}
	if _, err := m.Load(context.Background(), a2, false); !errors.Is(err, session.ErrNotFound) {
		t.Fatal("alice's sessions must all be gone")
	}
	if _, err := m.Load(context.Background(), b1, false); err != nil {
		t.Fatalf("bob's session must survive: %v", err)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	log := auditOut.String()
	if n := strings.Count(log, `"event":"session_revoked"`); n != 2 {
		t.Fatalf("want 2 revocation records, got %d:\n%s", n, log)
	}
	if strings.Contains(log, tok) || strings.Contains(log, "at-alice") {
		t.Fatal("audit record leaks a secret")
	}
}

// The admin token is read on every request: rotating its file takes effect
// without a restart, and the old token stops working.
func TestAdminTokenRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(path, []byte("old-admin-token-0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := secret.Resolve("${file:admin-token}", dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, _, _, _ := setup(t, v)
	if code, _ := do(t, "GET", srv.URL+"/admin/sessions?sub=x", "old-admin-token-0123"); code != 200 {
		t.Fatalf("old token: %d", code)
	}
	if err := os.WriteFile(path, []byte("new-admin-token-4567"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _ := do(t, "GET", srv.URL+"/admin/sessions?sub=x", "old-admin-token-0123"); code != 401 {
		t.Fatalf("old token after rotation: %d", code)
	}
	if code, _ := do(t, "GET", srv.URL+"/admin/sessions?sub=x", "new-admin-token-4567"); code != 200 {
		t.Fatalf("new token: %d", code)
	}
}

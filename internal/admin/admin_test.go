package admin

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
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
	m, out, al := newSessionsAndAudit(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) })
	Register(mux, Options{Token: token, Sessions: m, Audit: al, Client: "web", ListenAddr: "admin.internal:9090"})
	srv := httptest.NewServer(CheckHost(mux, "admin.internal:9090"))
	t.Cleanup(srv.Close)
	return srv, m, out, al
}

// newSessionsAndAudit returns an in-memory session manager and an audit log writing to the
// returned buffer: what every admin test serves from.
func newSessionsAndAudit(t *testing.T) (*session.Manager, *syncbuf.Buffer, *audit.Logger) {
	t.Helper()
	m := session.NewManager(session.NewMemoryStore(time.Now), session.Options{HealthInterval: -1})
	t.Cleanup(func() { m.Close() })
	out := &syncbuf.Buffer{}
	al, err := audit.Open(context.Background(), audit.Options{Sink: "stdout", Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	return m, out, al
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

// An operator (or a script with a stale id) revoking a session that does not
// exist gets 404, and the audit log does not claim a revocation happened.
func TestAdminRevokeUnknownSessionIs404AndUnaudited(t *testing.T) {
	const tok = "admin-token-0123456789"
	srv, m, auditOut, al := setup(t, secret.Static(tok))
	live := newSession(t, m, "alice")
	dead := newSession(t, m, "alice")
	if err := m.Delete(context.Background(), dead.ID()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"no-such-session", dead.ID(), live.ID() + "x"} {
		if code, body := do(t, "DELETE", srv.URL+"/admin/sessions/"+id, tok); code != http.StatusNotFound || body["error"] != "session_not_found" {
			t.Errorf("revoke %q: %d %v, want 404 session_not_found", id, code, body)
		}
	}
	if code, _ := do(t, "DELETE", srv.URL+"/admin/sessions/"+live.ID(), tok); code != http.StatusOK {
		t.Fatalf("revoke live: %d", code)
	}
	if code, _ := do(t, "DELETE", srv.URL+"/admin/sessions/"+live.ID(), tok); code != http.StatusNotFound {
		t.Errorf("second revoke of the same session: %d, want 404", code)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(auditOut.String(), `"event":"session_revoked"`); n != 1 {
		t.Fatalf("want exactly 1 revocation record (the live session), got %d:\n%s", n, auditOut.String())
	}
}

// DNS rebinding: a page on the attacker's domain, re-bound to the admin
// listener's address, sends its own name as Host. Those requests are refused
// before the token check and reach no handler (not even /metrics); requests
// naming the configured host, an IP address or localhost are served.
func TestAdminRefusesForeignHostHeaders(t *testing.T) {
	const tok = "admin-token-0123456789"
	srv, m, _, _ := setup(t, secret.Static(tok))
	h := newSession(t, m, "alice")
	send := func(method, path, host string) int {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, host := range []string{"rebind.attacker.example", "rebind.attacker.example:9090", "admin.internal.attacker.example",
		"localhost.attacker.example", "127.0.0.1.nip.io", "ADMIN.internal.evil", "evil", "xn--localhost-"} {
		for _, p := range []struct{ method, path string }{{"GET", "/admin/sessions?sub=alice"}, {"DELETE", "/admin/sessions/" + h.ID()}, {"GET", "/metrics"}} {
			if code := send(p.method, p.path, host); code != http.StatusMisdirectedRequest {
				t.Errorf("Host %q %s %s: %d, want 421", host, p.method, p.path, code)
			}
		}
	}
	if _, err := m.Load(context.Background(), h, false); err != nil {
		t.Fatalf("a rebound request revoked the session: %v", err)
	}
	for _, host := range []string{"admin.internal:9090", "Admin.Internal.", "127.0.0.1:9090", "[::1]:9090", "localhost:9090", "10.0.0.7"} {
		if code := send("GET", "/admin/sessions?sub=alice", host); code != http.StatusOK {
			t.Errorf("Host %q: %d, want 200", host, code)
		}
	}
}

// FuzzHostCheck: whatever the Host header, the check never panics and
// accepts only the configured host, localhost names or an IP literal.
func FuzzHostCheck(f *testing.F) {
	for _, s := range []string{"", "admin.internal:9090", "evil.example", "[::1]:9090", "127.0.0.1", "localhost.", "a.localhost", "[", "]:", "ADMIN.INTERNAL.", "1.2.3.4.nip.io"} {
		f.Add(s)
	}
	ok := hostChecker("admin.internal:9090")
	f.Fuzz(func(t *testing.T, host string) {
		if !ok(host) {
			return
		}
		h := host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			h = hh
		}
		h = normHost(h)
		if _, err := netip.ParseAddr(h); err != nil && h != "admin.internal" && h != "localhost" && !strings.HasSuffix(h, ".localhost") {
			t.Fatalf("accepted Host %q", host)
		}
	})
}

package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/config"
)

// Profiles are served on the admin listener behind the admin token only:
// the public handler has no such endpoint under any spelling.
func TestProfilesAreNotOnThePublicListener(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte("pprof-admin-token-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := `public_url: "http://127.0.0.1:8080"
identity:
  issuer: "http://127.0.0.1:1"
  client_id: c
  client_secret: pprof-test-secret
session:
  store: bolt
  bolt: { path: sessions.db }
audit:
  sink: file
  path: audit.jsonl
admin:
  token: ${file:admin-token}
`
	cfg, err := config.Parse([]byte(yaml), filepath.Join(dir, "g.yaml"), dir)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(context.Background(), cfg, Options{PublicListener: listen(t), AdminListener: listen(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/admin/debug/pprof/heap", "/admin/debug/pprof/profile?seconds=1"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "http://127.0.0.1:8080"+p, nil)
		req.Header.Set("Authorization", "Bearer pprof-admin-token-0123456789")
		g.PublicHandler().ServeHTTP(rec, req)
		if rec.Code == http.StatusOK || strings.Contains(rec.Body.String(), "goroutine") || strings.Contains(rec.Header().Get("Content-Type"), "octet-stream") {
			t.Fatalf("public %s answered %d %q: profiles must not be on the public listener", p, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://"+cfg.AdminListen+"/admin/debug/pprof/heap", nil)
	req.Header.Set("Authorization", "Bearer pprof-admin-token-0123456789")
	g.AdminHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("admin heap profile with the token: %d %s", rec.Code, rec.Body.String())
	}
}

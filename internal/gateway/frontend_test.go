package gateway

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestStaticFrontendServesTheSPAButNoHiddenFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"index.html": "<html>spa</html>", "app.js": "js", ".env": "SECRET=1", ".git/config": "[core]",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := staticFrontend(dir)
	tests := []struct {
		path string
		code int
		body string
	}{
		{"/", 200, "<html>spa</html>"},
		{"/app.js", 200, "js"},
		{"/settings/profile", 200, "<html>spa</html>"}, // client-side route
		{"/missing.png", 404, ""},
		{"/.env", 404, ""},
		{"/.git/config", 404, ""},
		{"/assets/../.env", 404, ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
		if rec.Code != tt.code || (tt.body != "" && rec.Body.String() != tt.body) {
			t.Errorf("%s: %d %q", tt.path, rec.Code, rec.Body.String())
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

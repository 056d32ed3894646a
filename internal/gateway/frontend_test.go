package gateway

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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

// A directory without index.html never renders a listing, in any spelling
// of its path: FileServer's listing would publish every file of the build.
func TestStaticFrontendListsNoDirectory(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"index.html": "<html>spa</html>", "assets/app.js": "js", "assets/app.js.map": "map",
		"docs/index.html": "<html>docs</html>", "nested/deeper/x.txt": "x",
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
	for _, p := range []string{"/assets/", "/assets", "/assets//", "/nested/", "/nested/deeper/", "/assets/./", "/docs/../assets/", "/nested/deeper"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if body := rec.Body.String(); strings.Contains(body, "app.js") || strings.Contains(body, "x.txt") || strings.Contains(body, "<pre>") {
			t.Errorf("%s: %d lists the directory: %q", p, rec.Code, body)
		}
		if loc := rec.Header().Get("Location"); loc != "" {
			// Follow one redirect (FileServer adds the trailing slash).
			rec2 := httptest.NewRecorder()
			h.ServeHTTP(rec2, httptest.NewRequest("GET", loc, nil))
			if strings.Contains(rec2.Body.String(), "app.js") || strings.Contains(rec2.Body.String(), "x.txt") {
				t.Errorf("%s -> %s lists the directory", p, loc)
			}
		}
	}
	for p, want := range map[string]string{"/docs/": "<html>docs</html>", "/assets/app.js": "js"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("%s: %d %q, want %q", p, rec.Code, rec.Body.String(), want)
		}
	}
}

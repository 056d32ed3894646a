package server

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestHeaderSetDefaultsAndOverrides(t *testing.T) {
	tests := []struct {
		name string
		o    HeaderOptions
		want map[string]string // "" = header absent
	}{
		{"defaults", HeaderOptions{FrameSources: []string{"https://idp.example.com"}}, map[string]string{
			"X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Resource-Policy": "same-origin",
			"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Strict-Transport-Security": "",
			"Content-Security-Policy": DefaultCSP + "; frame-src 'self' https://idp.example.com",
		}},
		{"everything off", HeaderOptions{CSP: Off, FrameOptions: Off, COOP: Off, CORP: Off, ReferrerPolicy: Off}, map[string]string{
			"X-Frame-Options": "", "Cross-Origin-Opener-Policy": "", "Cross-Origin-Resource-Policy": "", "Referrer-Policy": "",
			"Content-Security-Policy": "", "X-Content-Type-Options": "nosniff",
		}},
		{"custom values", HeaderOptions{CSP: "default-src 'self' https://cdn.example.com", FrameOptions: "SAMEORIGIN", COOP: "same-origin-allow-popups", CORP: "same-site"}, map[string]string{
			"Content-Security-Policy": "default-src 'self' https://cdn.example.com", "X-Frame-Options": "SAMEORIGIN",
			"Cross-Origin-Opener-Policy": "same-origin-allow-popups", "Cross-Origin-Resource-Policy": "same-site",
		}},
		{"hsts default", HeaderOptions{HSTS: true, HSTSMaxAge: 2 * 365 * 24 * time.Hour, HSTSIncludeSubDomains: true}, map[string]string{
			"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
		}},
		{"hsts preload", HeaderOptions{HSTS: true, HSTSMaxAge: 365 * 24 * time.Hour, HSTSIncludeSubDomains: true, HSTSPreload: true}, map[string]string{
			"Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
		}},
		{"hsts without subdomains", HeaderOptions{HSTS: true, HSTSMaxAge: time.Hour}, map[string]string{
			"Strict-Transport-Security": "max-age=3600",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), NewHeaderSet(tt.o)).
				ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			for k, want := range tt.want {
				got := rec.Header().Values(k)
				if want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestDevServerCSPAllowsInlineModulesAndHMR(t *testing.T) {
	csp, _ := NewHeaderSet(HeaderOptions{DevServer: "http://127.0.0.1:5173"}).Values("Content-Security-Policy")
	for _, want := range []string{"script-src 'self' 'unsafe-inline' http://127.0.0.1:5173", "connect-src 'self' ws: wss: http://127.0.0.1:5173 ws://127.0.0.1:5173", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("dev CSP %q lacks %q", csp, want)
		}
	}
}

// A proxied upstream's own security headers never make Gatehouse send a header twice: the
// configured value wins; a header configured off passes the upstream's through; a handler
// that sets its own value (the silent-login callback) keeps it.
func TestSecurityHeadersNeverSentTwice(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		w.Header().Set("Content-Security-Policy", "default-src *")
		w.Header().Set("Cross-Origin-Resource-Policy", "cross-origin")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write([]byte("<p>dev server</p>"))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	mux := http.NewServeMux()
	mux.Handle("/", rp)
	mux.HandleFunc("/own", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		w.Write([]byte("own"))
	})
	gw := httptest.NewServer(SecurityHeaders(mux, NewHeaderSet(HeaderOptions{CORP: Off})))
	defer gw.Close()

	get := func(path string) http.Header {
		res, err := http.Get(gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header
	}
	h := get("/app")
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "Content-Security-Policy": DefaultCSP + "; frame-src 'self'",
		"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "cross-origin"} {
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("proxied %s = %q, want exactly [%q]", k, got, want)
		}
	}
	if got := get("/own").Values("X-Frame-Options"); len(got) != 1 || got[0] != "SAMEORIGIN" {
		t.Errorf("handler's own X-Frame-Options = %q, want [SAMEORIGIN]", got)
	}
}

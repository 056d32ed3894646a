package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// headerWriter is a ResponseWriter whose header map is reused, so that what
// AllocsPerRun counts is SecurityHeaders itself.
type headerWriter struct{ h http.Header }

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *headerWriter) WriteHeader(int)             {}

func TestSecurityHeaders(t *testing.T) {
	for _, hsts := range []bool{false, true} {
		h := SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// A handler adding to a header must not change the shared
			// value other responses get.
			w.Header().Add("X-Frame-Options", "SAMEORIGIN")
		}), hsts)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		got := rec.Header()
		if got.Get("X-Content-Type-Options") != "nosniff" || got.Get("Referrer-Policy") != "no-referrer" ||
			got.Get("Cross-Origin-Opener-Policy") != "same-origin" || got.Get("Content-Security-Policy") == "" {
			t.Fatalf("headers %v", got)
		}
		if (got.Get("Strict-Transport-Security") != "") != hsts {
			t.Fatalf("hsts %v: Strict-Transport-Security %q", hsts, got.Get("Strict-Transport-Security"))
		}
		if v := got.Values("X-Frame-Options"); len(v) != 2 || denyValue[0] != "DENY" || len(denyValue) != 1 {
			t.Fatalf("X-Frame-Options %v, shared value %v", v, denyValue)
		}
		rec2 := httptest.NewRecorder()
		SecurityHeaders(http.NotFoundHandler(), hsts).ServeHTTP(rec2, httptest.NewRequest("GET", "/", nil))
		if v := rec2.Header().Values("X-Frame-Options"); len(v) != 1 || v[0] != "DENY" {
			t.Fatalf("the next response's X-Frame-Options is %v: a handler changed the shared value", v)
		}
	}
	// A handler's own CSP is kept.
	h := SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), false)
	w := &headerWriter{h: http.Header{"Content-Security-Policy": {"default-src 'none'"}}}
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.h.Get("Content-Security-Policy") != "default-src 'none'" {
		t.Fatalf("CSP overwritten: %q", w.h.Get("Content-Security-Policy"))
	}
}

func TestSecurityHeadersDoNotAllocate(t *testing.T) {
	h := SecurityHeaders(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), true)
	w := &headerWriter{h: http.Header{}}
	r := httptest.NewRequest("GET", "/", nil)
	h.ServeHTTP(w, r)
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, r) }); n != 0 {
		t.Fatalf("security headers allocate %.0f times per response", n)
	}
}

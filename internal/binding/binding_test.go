package binding

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u
}

func testBinder(t testing.TB) *Binder[string] {
	t.Helper()
	var fs []Frontend[string]
	for _, f := range []struct{ name, url string }{
		{"web", "https://app.example.com"},
		{"shop", "https://app.example.com/shop"},
		{"shop-admin", "https://app.example.com/shop/admin"},
		{"partners", "https://partners.example.com"},
		{"dev", "http://127.0.0.1:8080"},
		{"alt", "https://app.example.com:8443"},
		{"v6", "http://[::1]:9000/p"},
	} {
		fs = append(fs, Frontend[string]{URL: mustURL(t, f.url), Value: f.name})
	}
	b, err := New(fs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBind(t *testing.T) {
	b := testBinder(t)
	tests := []struct {
		host, path   string
		want, prefix string // want "" means no frontend
	}{
		{"app.example.com", "/", "web", ""},
		{"APP.Example.COM", "/api/profile/", "web", ""},
		{"app.example.com:443", "/", "web", ""},
		{"app.example.com:80", "/", "", ""}, // https frontend, another port
		{"app.example.com:8443", "/x", "alt", ""},
		{"app.example.com", "/shop", "shop", "/shop"},
		{"app.example.com", "/shop/", "shop", "/shop"},
		{"app.example.com", "/shop/bff/login", "shop", "/shop"},
		{"app.example.com", "/shopping", "web", ""}, // segment boundary
		{"app.example.com", "/shop/admin/x", "shop-admin", "/shop/admin"},
		{"app.example.com", "/shop/administrator", "shop", "/shop"},
		{"app.example.com", "/Shop/x", "web", ""},   // paths are case-sensitive
		{"app.example.com", "/sh%6Fp/x", "web", ""}, // an escaped prefix is not the prefix
		{"app.example.com", "/shop%2Fadmin", "web", ""},
		{"partners.example.com", "/shop/x", "partners", ""},
		{"evil.example.com", "/", "", ""},
		{"app.example.com.", "/", "", ""},
		{"", "/", "", ""},
		{"127.0.0.1:8080", "/bff/user", "dev", ""},
		{"127.0.0.1", "/", "", ""},
		{"localhost:8080", "/", "", ""},
		{"[::1]:9000", "/p/x", "v6", "/p"},
		{"[::1]:9000", "/q", "", ""},
		{"app.example.com\x00", "/", "", ""},
	}
	for _, tt := range tests {
		got, prefix, ok := b.Bind(tt.host, tt.path)
		if ok != (tt.want != "") || got != tt.want || prefix != tt.prefix {
			t.Errorf("Bind(%q, %q) = %q, %q, %v; want %q, %q", tt.host, tt.path, got, prefix, ok, tt.want, tt.prefix)
		}
	}
}

// One frontend at the root answers on every Host, as Gatehouse always has.
func TestSingleRootFrontendBindsEverything(t *testing.T) {
	b, err := New([]Frontend[string]{{URL: mustURL(t, "https://app.example.com"), Value: "web"}})
	if err != nil {
		t.Fatal(err)
	}
	if v, p, ok := b.Bind("other.example", "/x"); !ok || v != "web" || p != "" {
		t.Fatalf("Bind = %q %q %v", v, p, ok)
	}
	// A single path-bound frontend still binds strictly.
	b, err = New([]Frontend[string]{{URL: mustURL(t, "https://app.example.com/shop"), Value: "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := b.Bind("app.example.com", "/x"); ok {
		t.Fatal("a request outside the only frontend's prefix was bound")
	}
}

func TestNewRefusesTwoClaimsOnOneHostAndPrefix(t *testing.T) {
	_, err := New([]Frontend[string]{
		{URL: mustURL(t, "https://app.example.com"), Value: "a"},
		{URL: mustURL(t, "https://app.example.com:443"), Value: "b"},
	})
	if err == nil {
		t.Fatal("accepted two frontends on one host and prefix")
	}
}

func TestStripPrefix(t *testing.T) {
	tests := []struct{ target, prefix, path, raw string }{
		{"/shop/bff/login", "/shop", "/bff/login", ""},
		{"/shop", "/shop", "/", ""},
		{"/shop/a%2Fb", "/shop", "/a/b", "/a%2Fb"},
		{"/x", "", "/x", ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", tt.target, nil)
		orig := r.URL.Path
		r2 := StripPrefix(r, tt.prefix)
		if r2.URL.Path != tt.path || r2.URL.RawPath != tt.raw || r.URL.Path != orig {
			t.Errorf("StripPrefix(%q, %q) = %q raw %q (original now %q)", tt.target, tt.prefix, r2.URL.Path, r2.URL.RawPath, r.URL.Path)
		}
	}
}

func BenchmarkBind(b *testing.B) {
	bd := testBinder(b)
	b.ReportAllocs()
	for b.Loop() {
		bd.Bind("app.example.com", "/shop/api/cart/1")
	}
}

package binding

import (
	"strings"
	"testing"
)

// FuzzBind feeds untrusted Host headers and paths to the binder: it never
// panics, binds a request only to a frontend on exactly that host (compared
// case-insensitively), and only under that frontend's prefix at a segment
// boundary.
func FuzzBind(f *testing.F) {
	for _, s := range [][2]string{
		{"app.example.com", "/shop/x"}, {"APP.EXAMPLE.COM:443", "/"}, {"[::1]:9000", "/p"},
		{"app.example.com", "/shop"}, {"app.example.com", "/sh%6Fp"}, {"", ""}, {"\xff\xfe", "/\x00"},
		{"partners.example.com", "//shop/../x"}, {"app.example.com:8443", "/shop/admin"},
	} {
		f.Add(s[0], s[1])
	}
	b := testBinder(f)
	hosts := map[string]bool{}
	for _, h := range b.Hosts() {
		hosts[h] = true
	}
	f.Fuzz(func(t *testing.T, host, path string) {
		v, prefix, ok := b.Bind(host, path)
		if !ok {
			if v != "" || prefix != "" {
				t.Fatalf("unbound request returned %q %q", v, prefix)
			}
			return
		}
		if !hosts[strings.ToLower(host)] {
			t.Fatalf("Bind(%q) bound to %q, but no frontend is on that host", host, v)
		}
		if prefix != "" && path != prefix && !strings.HasPrefix(path, prefix+"/") {
			t.Fatalf("Bind(%q, %q) bound to %q under prefix %q the path is not under", host, path, v, prefix)
		}
		v2, p2, ok2 := b.Bind(host, path)
		if v2 != v || p2 != prefix || !ok2 {
			t.Fatal("Bind is not deterministic")
		}
	})
}

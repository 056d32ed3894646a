package jsonscan

import (
	"strings"
	"testing"
)

// BenchmarkScanStr reads one string: a short one (a member name) and a
// token's length, from a string and from bytes.
func BenchmarkScanStr(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"name", `"jti"`},
		{"token", `"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.` + strings.Repeat("x", 600) + `.sig"`},
		{"escaped", `"https:\/\/example.com\/?a=1\u0026b=2"`},
		{"pair", `"a\"b\u00e9\ud83d\ude00"`},
	} {
		b.Run(bc.name+"/string", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s := New(bc.in, 0)
				if _, ok := s.Str(); !ok {
					b.Fatal("refused")
				}
			}
		})
		in := []byte(bc.in)
		b.Run(bc.name+"/bytes", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s := New(in, 0)
				if _, ok := s.ScanStr(); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}

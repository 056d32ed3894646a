package dpop

import "testing"

// BenchmarkParseClaims is the claims read of one proof, alone: the part of
// BenchmarkVerifyProof that the signature check hides.
func BenchmarkParseClaims(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"plain", `{"jti":"e1j3V_bKic8-LAEB","htm":"GET","htu":"https://app.example.com/api/profile/me","iat":1700000000,"ath":"fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"}`},
		{"escapes and extras", `{"jti":"a\"b\u00e9\ud83d\ude00","htm":"GET","htu":"https:\/\/app.example.com\/api","iat":1.7e9,"x":{"a":[1,-2.5e-3,true,null,"s"]}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := parseClaims(bc.in); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}

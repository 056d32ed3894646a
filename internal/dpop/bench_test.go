package dpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerifyProof is one API request's proof check (ES256, ath and key
// binding, replay key in memory), a fresh proof per iteration signed before
// the timer starts, as one client's proofs: same key, new jti.
func BenchmarkVerifyProof(b *testing.B) {
	s := newSigner(b, jose.ES256)
	const htu = "https://app.example.com/api/profile/me"
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = s.sign(b, nil, "dpop+jwt", claimsFor("GET", htu, t0))
	}
	v, err := NewVerifier(Options{Replay: &memReplay{}, Now: func() time.Time { return t0 }})
	if err != nil {
		b.Fatal(err)
	}
	c := Check{Method: "GET", URL: mustURL(htu), AccessToken: handle, JKT: s.jkt(b)}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := v.VerifyProof(ctx, proofs[i], c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkP256Floor is the floor the proof check cannot go below: one
// P-256 signature verification.
func BenchmarkP256Floor(b *testing.B) {
	s := newSigner(b, jose.ES256)
	k := s.priv.(*ecdsa.PrivateKey)
	sum := sha256.Sum256([]byte("header.payload"))
	sig, err := ecdsa.SignASN1(nil, k, sum[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.VerifyASN1(&k.PublicKey, sum[:], sig) {
			b.Fatal("no")
		}
	}
}

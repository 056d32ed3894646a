package dpop

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const cacheHTU = "https://app.example.com/api/profile/me"

func fixedVerifier(t *testing.T) *Verifier {
	t.Helper()
	v, err := NewVerifier(Options{Replay: &memReplay{}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A client's later proofs carry the header its first one did: they are
// checked against the cached header, and every one's signature still is.
func TestEveryAlgorithmFromTheHeaderCache(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.PS256, jose.RS256} {
		t.Run(string(alg), func(t *testing.T) {
			s := newSigner(t, alg)
			v := fixedVerifier(t)
			c := Check{Method: "GET", URL: mustURL(cacheHTU), AccessToken: handle, JKT: s.jkt(t)}
			for i := range 3 {
				if _, err := v.VerifyProof(context.Background(), s.sign(t, nil, "dpop+jwt", claimsFor("GET", cacheHTU, t0)), c); err != nil {
					t.Fatalf("proof %d: %v", i, err)
				}
			}
			enc, _, _ := strings.Cut(s.sign(t, nil, "dpop+jwt", claimsFor("GET", cacheHTU, t0)), ".")
			if v.headers.get(enc) == nil {
				t.Fatal("the header was not cached")
			}
			// Same header, signed by another key of the same kind.
			other := newSigner(t, alg)
			forged := other.sign(t, &s.pub, "dpop+jwt", claimsFor("GET", cacheHTU, t0))
			if _, err := v.VerifyProof(context.Background(), forged, c); !isInvalidProof(err) {
				t.Fatalf("forged signature under a cached header: %v", err)
			}
		})
	}
}

func isInvalidProof(err error) bool {
	var de *Error
	return errors.As(err, &de) && de.Code == CodeInvalidProof
}

// With the honest client's header cached, tampered proofs are refused.
func TestTamperedProofsUnderACachedHeader(t *testing.T) {
	s := newSigner(t, jose.ES256)
	v := fixedVerifier(t)
	c := Check{Method: "GET", URL: mustURL(cacheHTU), AccessToken: handle, JKT: s.jkt(t)}
	if _, err := v.VerifyProof(context.Background(), s.sign(t, nil, "dpop+jwt", claimsFor("GET", cacheHTU, t0)), c); err != nil {
		t.Fatal(err)
	}
	honest := s.sign(t, nil, "dpop+jwt", claimsFor("GET", cacheHTU, t0))
	h, rest, _ := strings.Cut(honest, ".")
	p, sig, _ := strings.Cut(rest, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(sig)
	flipped := append([]byte(nil), raw...)
	flipped[10] ^= 1
	cl := claimsFor("POST", cacheHTU, t0)
	otherPayload := b64(cl)
	highS := make([]byte, 64) // r = s = 0xff…: out of range
	for i := range highS {
		highS[i] = 0xff
	}
	for name, proof := range map[string]string{
		"other payload, old signature": h + "." + otherPayload + "." + sig,
		"flipped signature bit":        h + "." + p + "." + base64.RawURLEncoding.EncodeToString(flipped),
		"signature one byte short":     h + "." + p + "." + base64.RawURLEncoding.EncodeToString(raw[:63]),
		"signature one byte long":      h + "." + p + "." + base64.RawURLEncoding.EncodeToString(append(raw[:64:64], 0)),
		"zero signature":               h + "." + p + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64)),
		"out-of-range signature":       h + "." + p + "." + base64.RawURLEncoding.EncodeToString(highS),
		"ASN.1 signature":              h + "." + p + "." + base64.RawURLEncoding.EncodeToString(derSignature(nil, raw[:32], raw[32:])),
		"signature not base64url":      h + "." + p + "." + sig[:len(sig)-1] + "*",
		"payload not base64url":        h + "." + p + "!." + sig,
		"no signature":                 h + "." + p + ".",
		"four parts":                   h + "." + p + "." + sig + ".x",
		"two parts":                    h + "." + p,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := v.VerifyProof(context.Background(), proof, c); !isInvalidProof(err) {
				t.Fatalf("err = %v, want invalid_dpop_proof", err)
			}
		})
	}
	// The honest proof itself is still good (nothing above burned its jti).
	if _, err := v.VerifyProof(context.Background(), honest, c); err != nil {
		t.Fatalf("honest proof after the attempts: %v", err)
	}
}

// A header is cached only once its key has signed a proof: a stranger's
// unsigned headers take no place.
func TestUnverifiedHeadersAreNotCached(t *testing.T) {
	s := newSigner(t, jose.ES256)
	v := fixedVerifier(t)
	proof := s.sign(t, nil, "dpop+jwt", claimsFor("GET", cacheHTU, t0))
	h, _, _ := strings.Cut(proof, ".")
	bad := proof[:len(proof)-4] + "AAAA"
	if _, err := v.VerifyProof(context.Background(), bad, Check{Method: "GET", URL: mustURL(cacheHTU)}); !isInvalidProof(err) {
		t.Fatalf("bad signature: %v", err)
	}
	if v.headers.get(h) != nil {
		t.Fatal("a header whose signature failed was cached")
	}
}

// RFC 7515 crit and RFC 7797 b64 (an unencoded payload) are refused: a
// proof's payload is always base64url.
func TestCriticalAndUnencodedPayloadHeadersAreRefused(t *testing.T) {
	s := newSigner(t, jose.ES256)
	sign := func(opts *jose.SignerOptions, payload string) string {
		opts = opts.WithType("dpop+jwt").WithHeader("jwk", s.pub)
		sg, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.priv}, opts)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := sg.Sign([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		out, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	claims := fmt.Sprintf(`{"jti":"j1","htm":"GET","htu":%q,"iat":%d}`, cacheHTU, t0.Unix())
	for name, proof := range map[string]string{
		// An unencoded payload that is also base64url, so that it parses.
		"b64 false":    sign((&jose.SignerOptions{}).WithBase64(false), base64.RawURLEncoding.EncodeToString([]byte(claims))),
		"crit unknown": sign((&jose.SignerOptions{}).WithCritical("exp").WithHeader("exp", 1), claims),
	} {
		t.Run(name, func(t *testing.T) {
			v := fixedVerifier(t)
			_, err := v.Verify(context.Background(), http.Header{"Dpop": {proof}}, Check{Method: "GET", URL: mustURL(cacheHTU)})
			var de *Error
			if !errors.As(err, &de) || de.Code != CodeInvalidProof || !strings.Contains(de.Description, "must not carry") {
				t.Fatalf("err = %v, want invalid_dpop_proof for the header", err)
			}
		})
	}
}

// The cache stays within its bounds whatever headers arrive.
func TestHeaderCacheIsBounded(t *testing.T) {
	var c headerCache
	h := &header{}
	for i := range 3 * maxCachedHeaders {
		c.put(fmt.Sprintf("header-%d", i), h)
	}
	if n := len(c.m); n > maxCachedHeaders {
		t.Fatalf("%d headers cached, bound %d", n, maxCachedHeaders)
	}
	c.put(strings.Repeat("h", maxCachedHeaderBytes+1), h)
	if c.get(strings.Repeat("h", maxCachedHeaderBytes+1)) != nil {
		t.Fatal("an oversize header was cached")
	}
}

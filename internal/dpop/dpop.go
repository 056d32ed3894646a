// Package dpop verifies DPoP proofs (RFC 9449) presented with API requests
// and token requests, and computes the key thumbprints handles are bound to.
//
// go-jose parses the JWS and its jwk, once per distinct encoded header (a
// client's proofs share theirs; the result is cached by the exact bytes);
// every proof's signature is verified here with the standard library, and
// its claims are read by a small strict JSON reader (claims.go, on
// internal/jsonscan), so that a request costs one signature verification
// and little else. The checks RFC 9449 §4.3 adds (one header, typ, public
// key only, htm, htu, iat window, jti replay, ath, key binding) are written
// here because the Go DPoP libraries we looked at miss replay,
// multiple-header or query handling.
package dpop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Error codes of RFC 9449 §7.1 and RFC 6750 §3.1.
const (
	// CodeInvalidProof is the proof itself being unacceptable.
	CodeInvalidProof = "invalid_dpop_proof"
	// CodeInvalidToken is the access token not being bound to the proof's key
	// (or not being usable as presented).
	CodeInvalidToken = "invalid_token"
	// CodeUseNonce asks the client to retry with the server's nonce.
	CodeUseNonce = "use_dpop_nonce"
)

const (
	// DefaultMaxProofBytes bounds one DPoP header. A P-256 or Ed25519 proof is
	// about 500-700 bytes; an RSA-4096 one about 1.6 KiB.
	DefaultMaxProofBytes = 4096
	// DefaultMaxAge is how old a proof's iat may be.
	DefaultMaxAge = 60 * time.Second
	// DefaultFutureSkew is how far in the future a proof's iat may be
	// (client clocks run ahead).
	DefaultFutureSkew = 5 * time.Second
	// maxJTIBytes bounds the jti kept in the replay cache.
	maxJTIBytes = 128
	// minRSABits is the smallest RSA modulus accepted.
	minRSABits = 2048
)

// Algorithms are the signature algorithms accepted, in the order advertised
// as dpop_signing_alg_values_supported. Asymmetric only: never none, never
// HMAC (an HMAC "signature" keyed with the public key proves nothing).
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.ES384, jose.PS256, jose.RS256}

// Algorithms returns the accepted algorithm names, for metadata documents.
func Algorithms() []string {
	out := make([]string, len(algorithms))
	for i, a := range algorithms {
		out[i] = string(a)
	}
	return out
}

// Error is a refused proof. Code is one of the Code constants; Description is
// safe to show the client (it never echoes the proof or a token).
type Error struct {
	Code        string
	Description string
}

func (e *Error) Error() string { return "dpop: " + e.Code + ": " + e.Description }

func invalid(format string, a ...any) *Error {
	return &Error{Code: CodeInvalidProof, Description: fmt.Sprintf(format, a...)}
}

// ErrReplayUnavailable wraps a replay cache failure: the proof cannot be
// accepted (fail closed) and the caller answers 503, not 401.
var ErrReplayUnavailable = errors.New("dpop: replay cache unavailable")

// ReplayCache remembers proof ids for as long as they could be accepted. It
// must be shared by every instance that accepts the same handles
// (session.Manager.Once is one).
type ReplayCache interface {
	// Once reports whether key is seen for the first time, remembering it
	// for ttl.
	Once(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
}

// WindowReplayCache is a ReplayCache that is also told when a proof could
// first have been presented (session.Manager is one): a store serving one
// instance then keeps proof ids in memory rather than writing each, and
// still knows which proofs a crashed predecessor may have seen.
type WindowReplayCache interface {
	ReplayCache
	// OnceWithin reports whether key is seen for the first time, remembering
	// it until until; from is the earliest time it could have been presented.
	OnceWithin(ctx context.Context, key string, from, until time.Time) (first bool, err error)
}

// Options configure a Verifier.
type Options struct {
	// Replay is required: without it a captured proof could be replayed
	// within its window.
	Replay ReplayCache
	// MaxProofBytes defaults to DefaultMaxProofBytes.
	MaxProofBytes int
	// MaxAge and FutureSkew bound iat (defaults DefaultMaxAge, DefaultFutureSkew).
	MaxAge, FutureSkew time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Verifier checks proofs. It is safe for concurrent use.
type Verifier struct {
	replay             ReplayCache
	window             WindowReplayCache // replay, when it is one
	headers            headerCache
	maxBytes           int
	maxAge, futureSkew time.Duration
	now                func() time.Time
}

// NewVerifier validates opts and returns a Verifier.
func NewVerifier(opts Options) (*Verifier, error) {
	if opts.Replay == nil {
		return nil, errors.New("dpop: a replay cache is required")
	}
	v := &Verifier{replay: opts.Replay, maxBytes: opts.MaxProofBytes, maxAge: opts.MaxAge, futureSkew: opts.FutureSkew, now: opts.Now}
	if v.maxBytes <= 0 {
		v.maxBytes = DefaultMaxProofBytes
	}
	if v.maxAge <= 0 {
		v.maxAge = DefaultMaxAge
	}
	if v.futureSkew <= 0 {
		v.futureSkew = DefaultFutureSkew
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.window, _ = opts.Replay.(WindowReplayCache)
	return v, nil
}

// Check is what one proof must match.
type Check struct {
	// Method is the request's method (htm).
	Method string
	// URL is the expected htu: the frontend's public origin plus the request
	// path as received, never derived from Host or X-Forwarded-*. Any query
	// or fragment is ignored.
	URL *url.URL
	// AccessToken, when set, must be hashed in the proof's ath.
	AccessToken string
	// JKT, when set, is the thumbprint the access token is bound to; the
	// proof's key must have it.
	JKT string
}

// Proof is an accepted proof.
type Proof struct {
	// JKT is the base64url SHA-256 JWK thumbprint (RFC 7638) of the key.
	JKT string
	// JTI is the proof's unique id.
	JTI string
	// IssuedAt is the proof's iat.
	IssuedAt time.Time
}

// Verify checks the request's DPoP header (exactly one) against c.
func (v *Verifier) Verify(ctx context.Context, h http.Header, c Check) (Proof, error) {
	vals := h.Values("Dpop")
	switch len(vals) {
	case 0:
		return Proof{}, invalid("the request carries no DPoP proof: send one DPoP header")
	case 1:
	default:
		return Proof{}, invalid("the request carries %d DPoP headers: send exactly one", len(vals))
	}
	return v.VerifyProof(ctx, vals[0], c)
}

// VerifyProof checks one proof value against c.
func (v *Verifier) VerifyProof(ctx context.Context, proof string, c Check) (Proof, error) {
	if len(proof) > v.maxBytes {
		return Proof{}, invalid("the DPoP proof is longer than %d bytes", v.maxBytes)
	}
	encHeader, rest, _ := strings.Cut(proof, ".")
	encPayload, encSig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(encSig, ".") {
		return Proof{}, invalid("the DPoP proof is not a compact JWS")
	}
	hdr := v.headers.get(encHeader)
	cached := hdr != nil
	if !cached {
		var err error
		if hdr, err = parseHeader(proof); err != nil {
			return Proof{}, err
		}
	}
	if !hdr.verify(proof[:len(encHeader)+1+len(encPayload)], encSig) {
		return Proof{}, invalid("the DPoP proof's signature does not verify with its jwk")
	}
	if !cached { // only a header whose key has signed a proof takes a place
		v.headers.put(encHeader, hdr)
	}
	jkt := hdr.jkt
	var buf [1024]byte // a proof's claims are a few hundred bytes
	payload := buf[:]
	if n := base64.RawURLEncoding.DecodedLen(len(encPayload)); n > len(buf) {
		payload = make([]byte, n)
	}
	n, err := base64.RawURLEncoding.Decode(payload, []byte(encPayload))
	if err != nil {
		return Proof{}, invalid("the DPoP proof's claims are not base64url")
	}
	cl, ok := parseClaims(string(payload[:n])) // the one copy: claims are substrings of it
	if !ok {
		return Proof{}, invalid("the DPoP proof's claims are not a JSON object with string jti, htm, htu, ath and a numeric iat")
	}
	if cl.JTI == "" || len(cl.JTI) > maxJTIBytes {
		return Proof{}, invalid("the DPoP proof needs a jti of 1 to %d bytes", maxJTIBytes)
	}
	if cl.HTM != c.Method {
		return Proof{}, invalid("the DPoP proof's htm does not match the request method")
	}
	if !htuMatches(cl.HTU, c.URL) {
		return Proof{}, invalid("the DPoP proof's htu does not match the request URL (scheme, host and path, without query or fragment)")
	}
	iat, ok := unixSeconds(cl.IAT, cl.HasIAT)
	if !ok {
		return Proof{}, invalid("the DPoP proof needs a numeric iat")
	}
	now := v.now()
	if iat.Before(now.Add(-v.maxAge)) {
		return Proof{}, invalid("the DPoP proof is too old: make a fresh proof for each request")
	}
	if iat.After(now.Add(v.futureSkew)) {
		return Proof{}, invalid("the DPoP proof's iat is in the future: check the client's clock")
	}
	if c.AccessToken != "" {
		if !cl.HasATH {
			return Proof{}, invalid("the DPoP proof needs ath, the hash of the access token")
		}
		if !athMatches(cl.ATH, c.AccessToken) {
			return Proof{}, invalid("the DPoP proof's ath does not match the access token")
		}
	}
	if c.JKT != "" && subtle.ConstantTimeCompare([]byte(jkt), []byte(c.JKT)) != 1 {
		return Proof{}, &Error{Code: CodeInvalidToken, Description: "the access token is bound to another key"}
	}
	// The replay check comes last, so a proof refused for another reason does
	// not burn a store write. The key includes the thumbprint: jti values are
	// unique per key, not across clients. It is kept until the proof is too
	// old; it could first have been presented futureSkew before its iat.
	rkey := "dpop:" + jkt + ":" + cl.JTI
	var first bool
	if v.window != nil {
		first, err = v.window.OnceWithin(ctx, rkey, iat.Add(-v.futureSkew), now.Add(v.maxAge+v.futureSkew))
	} else {
		first, err = v.replay.Once(ctx, rkey, v.maxAge+v.futureSkew)
	}
	if err != nil {
		return Proof{}, fmt.Errorf("%w: %w", ErrReplayUnavailable, err)
	}
	if !first {
		return Proof{}, invalid("the DPoP proof was already used: make a fresh proof (new jti) for each request")
	}
	return Proof{JKT: jkt, JTI: cl.JTI, IssuedAt: iat}, nil
}

// header is what a proof's protected header establishes: the algorithm,
// the public key and its thumbprint. A client's proofs differ only in their
// claims, so the header is checked once per distinct encoded form and the
// result is reused for proofs carrying exactly those bytes; every proof's
// signature is still verified with the key.
type header struct {
	alg jose.SignatureAlgorithm
	key crypto.PublicKey // *ecdsa.PublicKey, ed25519.PublicKey or *rsa.PublicKey, matching alg
	jkt string
}

// parseHeader parses the proof with go-jose and checks its header: typ,
// an allowed alg, a public jwk of matching type and strength, no crit or b64
// (the payload is always base64url, RFC 9449 §4.2).
func parseHeader(proof string) (*header, error) {
	jws, err := jose.ParseSignedCompact(proof, algorithms)
	if err != nil {
		return nil, invalid("the DPoP proof is not a JWS signed with one of %s", strings.Join(Algorithms(), ", "))
	}
	if len(jws.Signatures) != 1 {
		return nil, invalid("the DPoP proof must carry exactly one signature")
	}
	hdr := jws.Signatures[0].Protected
	if typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return nil, invalid(`the DPoP proof's typ must be "dpop+jwt"`)
	}
	for _, k := range []jose.HeaderKey{"crit", "b64"} {
		if _, ok := hdr.ExtraHeaders[k]; ok {
			return nil, invalid("the DPoP proof's header must not carry %s", k)
		}
	}
	key := hdr.JSONWebKey
	if key == nil {
		return nil, invalid("the DPoP proof's header carries no jwk")
	}
	if !key.IsPublic() {
		// A proof that ships its private key proves possession of nothing.
		return nil, invalid("the DPoP proof's jwk must be a public key")
	}
	if err := acceptableKey(key, hdr.Algorithm); err != nil {
		return nil, err
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, invalid("the DPoP proof's jwk has no thumbprint")
	}
	return &header{alg: jose.SignatureAlgorithm(hdr.Algorithm), key: key.Key, jkt: base64.RawURLEncoding.EncodeToString(tp)}, nil
}

// verify checks the JWS signature encSig over signing (the encoded header
// and payload) as go-jose does: ECDSA as r||s of the curve's size, RSA
// PKCS #1 v1.5 or PSS (salt length from the signature), Ed25519.
func (h *header) verify(signing, encSig string) bool {
	var buf [512]byte // an RSA-4096 signature; ES256 needs 64 bytes
	sig := buf[:]
	if n := base64.RawURLEncoding.DecodedLen(len(encSig)); n > len(buf) {
		sig = make([]byte, n)
	}
	n, err := base64.RawURLEncoding.Decode(sig, []byte(encSig))
	if err != nil {
		return false
	}
	sig = sig[:n]
	switch h.alg {
	case jose.ES256, jose.ES384:
		pub, ok := h.key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size || (h.alg == jose.ES256) != (size == 32) { // acceptableKey paired them
			return false
		}
		var der [2 + 2*(3+48)]byte
		if h.alg == jose.ES256 {
			d := sha256.Sum256([]byte(signing))
			return ecdsa.VerifyASN1(pub, d[:], derSignature(der[:0], sig[:size], sig[size:]))
		}
		d := sha512.Sum384([]byte(signing))
		return ecdsa.VerifyASN1(pub, d[:], derSignature(der[:0], sig[:size], sig[size:]))
	case jose.EdDSA:
		pub, ok := h.key.(ed25519.PublicKey)
		return ok && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, []byte(signing), sig) // Verify panics on another size
	case jose.RS256, jose.PS256:
		pub, ok := h.key.(*rsa.PublicKey)
		if !ok {
			return false
		}
		d := sha256.Sum256([]byte(signing))
		if h.alg == jose.RS256 {
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil
		}
		return rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, nil) == nil
	}
	return false
}

// derSignature appends the ASN.1 form of the ECDSA signature (r, s), given
// as unsigned big-endian integers of at most 48 bytes, to b.
func derSignature(b, r, s []byte) []byte {
	var ints [2 * (3 + 48)]byte
	body := derInteger(derInteger(ints[:0], r), s)
	return append(append(b, 0x30, byte(len(body))), body...)
}

func derInteger(b, x []byte) []byte {
	for len(x) > 1 && x[0] == 0 {
		x = x[1:]
	}
	if x[0]&0x80 != 0 {
		return append(append(b, 0x02, byte(len(x)+1), 0), x...)
	}
	return append(append(b, 0x02, byte(len(x))), x...)
}

// Bounds of a Verifier's header cache: a header longer than a large RSA
// key's is not kept, and a full cache drops an arbitrary entry (a miss only
// costs the full parse).
const (
	maxCachedHeaders     = 4096
	maxCachedHeaderBytes = 1024
)

// headerCache maps an encoded protected header, byte for byte, to what it
// establishes.
type headerCache struct {
	mu sync.RWMutex
	m  map[string]*header
}

func (c *headerCache) get(enc string) *header {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[enc]
}

func (c *headerCache) put(enc string, h *header) {
	if len(enc) > maxCachedHeaderBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*header)
	}
	if len(c.m) >= maxCachedHeaders {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[strings.Clone(enc)] = h // not a substring keeping the whole proof alive
}

// acceptableKey checks the key's type and strength against the algorithm
// (header.verify relies on the pairing).
func acceptableKey(k *jose.JSONWebKey, alg string) error {
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		want := ""
		switch alg {
		case string(jose.ES256):
			want = "P-256"
		case string(jose.ES384):
			want = "P-384"
		}
		if pub.Curve == nil || pub.Curve.Params().Name != want {
			return invalid("the DPoP proof's %s key does not match alg %s", curveName(pub), alg)
		}
	case ed25519.PublicKey:
		if alg != string(jose.EdDSA) {
			return invalid("an Ed25519 key signs with EdDSA, not %s", alg)
		}
	case *rsa.PublicKey:
		if alg != string(jose.RS256) && alg != string(jose.PS256) {
			return invalid("an RSA key cannot sign with %s", alg)
		}
		if pub.N.BitLen() < minRSABits {
			return invalid("the DPoP proof's RSA key is shorter than %d bits", minRSABits)
		}
	default:
		return invalid("the DPoP proof's jwk is not an EC, OKP or RSA public key")
	}
	return nil
}

func curveName(k *ecdsa.PublicKey) string {
	if k.Curve == nil {
		return "unknown"
	}
	return k.Curve.Params().Name
}

// unixSeconds reads iat, a JSON number, as seconds since the epoch.
// Fractions are allowed (NumericDate is a JSON number); out-of-range values
// are not.
func unixSeconds(f float64, present bool) (time.Time, bool) {
	if !present || math.IsNaN(f) || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// htuMatches compares a proof's htu with the expected URL: scheme and host
// compared as a URL parser writes them (lowercase, default port dropped), the
// path byte for byte. An htu carrying a query or fragment is refused: RFC 9449
// §4.2 defines htu without them, and accepting one would let a proof made for
// one query be sent with another.
func htuMatches(htu string, want *url.URL) bool {
	if want == nil || htu == "" || len(htu) > 8192 {
		return false
	}
	if htuIsWant(htu, want) {
		return true
	}
	u, err := url.Parse(htu)
	if err != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(htu, "?#") || u.User != nil || u.Opaque != "" {
		return false
	}
	if !strings.EqualFold(u.Scheme, want.Scheme) || origin(u) != origin(want) {
		return false
	}
	return u.EscapedPath() == want.EscapedPath()
}

// htuIsWant reports whether htu is want written out exactly (scheme "://"
// host, escaped path): what clients send, accepted without parsing. want
// has no user info, query or fragment (public_url's origin and a request
// path), so the parse below would accept the same string.
func htuIsWant(htu string, want *url.URL) bool {
	rest, ok := strings.CutPrefix(htu, want.Scheme)
	if !ok || want.Scheme == "" || want.User != nil || want.Opaque != "" {
		return false
	}
	if rest, ok = strings.CutPrefix(rest, "://"); !ok {
		return false
	}
	if rest, ok = strings.CutPrefix(rest, want.Host); !ok || want.Host == "" {
		return false
	}
	return rest == want.EscapedPath() && !strings.ContainsAny(rest, "?#")
}

// origin is host[:port] lowercased, without the scheme's default port.
func origin(u *url.URL) string {
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	scheme := strings.ToLower(u.Scheme)
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		return host + ":" + port
	}
	return host
}

// athMatches compares ath with the token's hash in constant time, without
// building a string.
func athMatches(ath, token string) bool {
	sum := sha256.Sum256([]byte(token))
	var want [43]byte // base64url of 32 bytes, unpadded
	base64.RawURLEncoding.Encode(want[:], sum[:])
	return subtle.ConstantTimeCompare([]byte(ath), want[:]) == 1
}

// AccessTokenHash is ath: base64url of the SHA-256 of the token's ASCII form.
func AccessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ValidJKT reports whether s has the form of a SHA-256 JWK thumbprint
// (43 characters of unpadded base64url), as dpop_jkt must.
func ValidJKT(s string) bool {
	if len(s) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// Challenge is the WWW-Authenticate value for a refused DPoP request. The
// description must not contain a double quote (Error descriptions do not).
func Challenge(code, description string) string {
	var b strings.Builder
	b.WriteString(`DPoP algs="`)
	b.WriteString(strings.Join(Algorithms(), " "))
	b.WriteString(`"`)
	if code != "" {
		b.WriteString(`, error="`)
		b.WriteString(code)
		b.WriteString(`"`)
	}
	if description != "" {
		b.WriteString(`, error_description="`)
		b.WriteString(strings.ReplaceAll(description, `"`, "'"))
		b.WriteString(`"`)
	}
	return b.String()
}

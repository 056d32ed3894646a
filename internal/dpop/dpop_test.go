package dpop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
)

// memReplay is a ReplayCache for unit tests; the gateway uses the session
// store's Once, tested with every store.
type memReplay struct {
	mu   sync.Mutex
	seen map[string]bool
	err  error
}

func (m *memReplay) Once(_ context.Context, key string, _ time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false, m.err
	}
	if m.seen == nil {
		m.seen = map[string]bool{}
	}
	if m.seen[key] {
		return false, nil
	}
	m.seen[key] = true
	return true, nil
}

// t0 is the proofs' issue time; testclock.Clock runs on from it.
var t0 = time.Now()

type signer struct {
	alg  jose.SignatureAlgorithm
	priv any
	pub  jose.JSONWebKey
}

func newSigner(t testing.TB, alg jose.SignatureAlgorithm) signer {
	t.Helper()
	var priv, pub any
	switch alg {
	case jose.ES256:
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		priv, pub = k, &k.PublicKey
	case jose.ES384:
		k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		priv, pub = k, &k.PublicKey
	case jose.EdDSA:
		p, k, _ := ed25519.GenerateKey(rand.Reader)
		priv, pub = k, p
	case jose.PS256, jose.RS256:
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		priv, pub = k, &k.PublicKey
	default:
		t.Fatalf("no signer for %s", alg)
	}
	return signer{alg: alg, priv: priv, pub: jose.JSONWebKey{Key: pub}}
}

func (s signer) jkt(t testing.TB) string {
	tp, err := s.pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// sign makes a proof with the given header jwk (default: s's public key),
// typ and claims.
func (s signer) sign(t testing.TB, jwk *jose.JSONWebKey, typ string, cl map[string]any) string {
	t.Helper()
	if jwk == nil {
		jwk = &s.pub
	}
	opts := (&jose.SignerOptions{EmbedJWK: false}).WithHeader("jwk", jwk)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(cl)
	obj, err := sg.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const handle = "ghn_exampleHandleValue"

func claimsFor(method, htu string, iat time.Time) map[string]any {
	return map[string]any{"jti": base64.RawURLEncoding.EncodeToString(randBytes(16)), "htm": method, "htu": htu,
		"iat": iat.Unix(), "ath": AccessTokenHash(handle)}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func newVerifier(t *testing.T, clock *testclock.Clock, replay ReplayCache) *Verifier {
	t.Helper()
	v, err := NewVerifier(Options{Replay: replay, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidProofsForEveryAlgorithm(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.PS256, jose.RS256} {
		t.Run(string(alg), func(t *testing.T) {
			s := newSigner(t, alg)
			clock := &testclock.Clock{}
			v := newVerifier(t, clock, &memReplay{})
			proof := s.sign(t, nil, "dpop+jwt", claimsFor("GET", "https://app.example.com/api/profile/me", t0))
			h := http.Header{"Dpop": {proof}}
			got, err := v.Verify(context.Background(), h, Check{Method: "GET", URL: mustURL("https://app.example.com/api/profile/me?x=1"), AccessToken: handle, JKT: s.jkt(t)})
			if err != nil {
				t.Fatalf("valid proof refused: %v", err)
			}
			if got.JKT != s.jkt(t) || !ValidJKT(got.JKT) {
				t.Fatalf("jkt = %q, want %q", got.JKT, s.jkt(t))
			}
		})
	}
}

// TestHostileProofs is the attacker's list: each proof is refused with
// invalid_dpop_proof (or invalid_token for a key mismatch).
func TestHostileProofs(t *testing.T) {
	s := newSigner(t, jose.ES256)
	other := newSigner(t, jose.ES256)
	const htu = "https://app.example.com/api/profile/me"
	want := Check{Method: "GET", URL: mustURL(htu), AccessToken: handle, JKT: s.jkt(t)}

	hs256 := func() string { // HMAC keyed with the public key, the classic confusion
		hdr := map[string]any{"typ": "dpop+jwt", "alg": "HS256", "jwk": s.pub}
		signing := b64(hdr) + "." + b64(claimsFor("GET", htu, t0))
		pubJSON, _ := json.Marshal(s.pub)
		m := hmac.New(sha256.New, pubJSON)
		m.Write([]byte(signing))
		return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	none := func() string {
		return b64(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": s.pub}) + "." + b64(claimsFor("GET", htu, t0)) + "."
	}
	privJWK := func() string {
		priv := jose.JSONWebKey{Key: s.priv}
		return s.sign(t, &priv, "dpop+jwt", claimsFor("GET", htu, t0))
	}
	with := func(mod func(map[string]any)) string {
		cl := claimsFor("GET", htu, t0)
		mod(cl)
		return s.sign(t, nil, "dpop+jwt", cl)
	}
	cases := []struct {
		name   string
		header http.Header
		code   string
	}{
		{"no proof", http.Header{}, CodeInvalidProof},
		{"two DPoP headers", http.Header{"Dpop": {with(func(map[string]any) {}), with(func(map[string]any) {})}}, CodeInvalidProof},
		{"oversize header", http.Header{"Dpop": {strings.Repeat("a", DefaultMaxProofBytes+1)}}, CodeInvalidProof},
		{"not a JWS", http.Header{"Dpop": {"not.a.jws"}}, CodeInvalidProof},
		{"JSON serialization", http.Header{"Dpop": {`{"payload":"e30","signatures":[]}`}}, CodeInvalidProof},
		{"wrong htm", http.Header{"Dpop": {with(func(c map[string]any) { c["htm"] = "POST" })}}, CodeInvalidProof},
		{"lowercase htm", http.Header{"Dpop": {with(func(c map[string]any) { c["htm"] = "get" })}}, CodeInvalidProof},
		{"htu other host", http.Header{"Dpop": {with(func(c map[string]any) { c["htu"] = "https://evil.example.com/api/profile/me" })}}, CodeInvalidProof},
		{"htu other scheme", http.Header{"Dpop": {with(func(c map[string]any) { c["htu"] = "http://app.example.com/api/profile/me" })}}, CodeInvalidProof},
		{"htu other port", http.Header{"Dpop": {with(func(c map[string]any) { c["htu"] = "https://app.example.com:8443/api/profile/me" })}}, CodeInvalidProof},
		{"htu other path", http.Header{"Dpop": {with(func(c map[string]any) { c["htu"] = "https://app.example.com/api/billing/me" })}}, CodeInvalidProof},
		{"htu path prefix only", http.Header{"Dpop": {with(func(c map[string]any) { c["htu"] = "https://app.example.com/api/profile/" })}}, CodeInvalidProof},
		{"htu with query", http.Header{"Dpop": {with(func(c map[string]any) { c["htu"] = htu + "?a=1" })}}, CodeInvalidProof},
		{"htu with empty query", http.Header{"Dpop": {with(func(c map[string]any) { c["htu"] = htu + "?" })}}, CodeInvalidProof},
		{"htu with fragment", http.Header{"Dpop": {with(func(c map[string]any) { c["htu"] = htu + "#f" })}}, CodeInvalidProof},
		{"htu with userinfo", http.Header{"Dpop": {with(func(c map[string]any) { c["htu"] = "https://app.example.com@evil.example.com/api/profile/me" })}}, CodeInvalidProof},
		{"htu missing", http.Header{"Dpop": {with(func(c map[string]any) { delete(c, "htu") })}}, CodeInvalidProof},
		{"stale iat", http.Header{"Dpop": {with(func(c map[string]any) { c["iat"] = t0.Add(-DefaultMaxAge - time.Second).Unix() })}}, CodeInvalidProof},
		{"future iat", http.Header{"Dpop": {with(func(c map[string]any) { c["iat"] = t0.Add(DefaultFutureSkew + 2*time.Second).Unix() })}}, CodeInvalidProof},
		{"iat as string", http.Header{"Dpop": {with(func(c map[string]any) { c["iat"] = "1700000000" })}}, CodeInvalidProof},
		{"iat missing", http.Header{"Dpop": {with(func(c map[string]any) { delete(c, "iat") })}}, CodeInvalidProof},
		{"jti missing", http.Header{"Dpop": {with(func(c map[string]any) { delete(c, "jti") })}}, CodeInvalidProof},
		{"jti huge", http.Header{"Dpop": {with(func(c map[string]any) { c["jti"] = strings.Repeat("j", 200) })}}, CodeInvalidProof},
		{"ath missing", http.Header{"Dpop": {with(func(c map[string]any) { delete(c, "ath") })}}, CodeInvalidProof},
		{"ath wrong", http.Header{"Dpop": {with(func(c map[string]any) { c["ath"] = AccessTokenHash("ghn_other") })}}, CodeInvalidProof},
		{"alg none", http.Header{"Dpop": {none()}}, CodeInvalidProof},
		{"HS256 with the public key as secret", http.Header{"Dpop": {hs256()}}, CodeInvalidProof},
		{"jwk carries the private key", http.Header{"Dpop": {privJWK()}}, CodeInvalidProof},
		{"typ missing", http.Header{"Dpop": {s.sign(t, nil, "", claimsFor("GET", htu, t0))}}, CodeInvalidProof},
		{"typ JWT", http.Header{"Dpop": {s.sign(t, nil, "JWT", claimsFor("GET", htu, t0))}}, CodeInvalidProof},
		{"signed by another key than its jwk", http.Header{"Dpop": {other.sign(t, &s.pub, "dpop+jwt", claimsFor("GET", htu, t0))}}, CodeInvalidProof},
		{"valid proof by another key (not the handle's)", http.Header{"Dpop": {other.sign(t, nil, "dpop+jwt", claimsFor("GET", htu, t0))}}, CodeInvalidToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A clock fixed at t0: the iat cases must not depend on how long
			// the package has been running.
			v, err := NewVerifier(Options{Replay: &memReplay{}, Now: func() time.Time { return t0 }})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), tc.header, want)
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a dpop.Error", err)
			}
			if de.Code != tc.code {
				t.Fatalf("code = %s (%s), want %s", de.Code, de.Description, tc.code)
			}
			if strings.Contains(de.Error(), handle) {
				t.Fatal("error text carries the handle")
			}
		})
	}
}

func TestReplayedJTIIsRefusedEvenAfterAnotherRequest(t *testing.T) {
	s := newSigner(t, jose.EdDSA)
	clock := &testclock.Clock{}
	v := newVerifier(t, clock, &memReplay{})
	const htu = "https://app.example.com/api/profile/me"
	c := Check{Method: "GET", URL: mustURL(htu), AccessToken: handle, JKT: s.jkt(t)}
	proof := s.sign(t, nil, "dpop+jwt", claimsFor("GET", htu, t0))
	if _, err := v.VerifyProof(context.Background(), proof, c); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyProof(context.Background(), s.sign(t, nil, "dpop+jwt", claimsFor("GET", htu, t0)), c); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Second)
	_, err := v.VerifyProof(context.Background(), proof, c)
	var de *Error
	if !errors.As(err, &de) || de.Code != CodeInvalidProof || !strings.Contains(de.Description, "already used") {
		t.Fatalf("replay: err = %v", err)
	}
}

func TestReplayCacheDownFailsClosed(t *testing.T) {
	s := newSigner(t, jose.ES256)
	v := newVerifier(t, &testclock.Clock{}, &memReplay{err: errors.New("redis: connection refused")})
	const htu = "https://app.example.com/x"
	_, err := v.VerifyProof(context.Background(), s.sign(t, nil, "dpop+jwt", claimsFor("GET", htu, t0)), Check{Method: "GET", URL: mustURL(htu), AccessToken: handle})
	if !errors.Is(err, ErrReplayUnavailable) {
		t.Fatalf("err = %v, want ErrReplayUnavailable", err)
	}
}

func TestHTUComparedAsAURLParserWritesIt(t *testing.T) {
	cases := []struct {
		htu, want string
		ok        bool
	}{
		{"https://APP.example.com/p", "https://app.example.com/p", true},
		{"HTTPS://app.example.com/p", "https://app.example.com/p", true},
		{"https://app.example.com:443/p", "https://app.example.com/p", true},
		{"http://127.0.0.1:8080/p", "http://127.0.0.1:8080/p", true},
		{"http://[::1]:8080/p", "http://[::1]:8080/p", true},
		{"http://127.0.0.1:8081/p", "http://127.0.0.1:8080/p", false},
		{"https://app.example.com/P", "https://app.example.com/p", false},
		{"https://app.example.com/p/", "https://app.example.com/p", false},
		{"https://app.example.com/a%2Fb", "https://app.example.com/a/b", false},
		{"//app.example.com/p", "https://app.example.com/p", false},
		{"/p", "https://app.example.com/p", false},
	}
	for _, tc := range cases {
		if got := htuMatches(tc.htu, mustURL(tc.want)); got != tc.ok {
			t.Errorf("htuMatches(%q, %q) = %v, want %v", tc.htu, tc.want, got, tc.ok)
		}
	}
}

func TestWeakKeysAreRefused(t *testing.T) {
	k, _ := rsa.GenerateKey(rand.Reader, 1024)
	s := signer{alg: jose.RS256, priv: k, pub: jose.JSONWebKey{Key: &k.PublicKey}}
	const htu = "https://app.example.com/x"
	v := newVerifier(t, &testclock.Clock{}, &memReplay{})
	_, err := v.VerifyProof(context.Background(), s.sign(t, nil, "dpop+jwt", claimsFor("GET", htu, t0)), Check{Method: "GET", URL: mustURL(htu)})
	var de *Error
	if !errors.As(err, &de) || !strings.Contains(de.Description, "2048") {
		t.Fatalf("1024-bit RSA: err = %v", err)
	}
}

func TestChallengeNamesTheAlgorithmsAndError(t *testing.T) {
	got := Challenge(CodeInvalidProof, `bad "proof"`)
	for _, want := range []string{`DPoP algs="ES256 EdDSA`, `error="invalid_dpop_proof"`, `error_description="bad 'proof'"`} {
		if !strings.Contains(got, want) {
			t.Errorf("challenge %q lacks %q", got, want)
		}
	}
}

// FuzzVerifyProof feeds arbitrary header values: none may panic or be
// accepted without a valid signature by the bound key.
func FuzzVerifyProof(f *testing.F) {
	s := newSigner(f, jose.ES256)
	const htu = "https://app.example.com/api/x"
	f.Add(s.sign(f, nil, "dpop+jwt", claimsFor("GET", htu, t0)))
	f.Add("e30.e30.")
	f.Add(b64(map[string]any{"typ": "dpop+jwt", "alg": "none"}) + ".e30.")
	f.Add("a.b.c")
	jkt := s.jkt(f)
	f.Fuzz(func(t *testing.T, proof string) {
		v, _ := NewVerifier(Options{Replay: &memReplay{}, Now: func() time.Time { return t0 }})
		p, err := v.VerifyProof(context.Background(), proof, Check{Method: "GET", URL: mustURL(htu), AccessToken: handle, JKT: jkt})
		if err == nil && p.JKT != jkt {
			t.Fatalf("accepted a proof by another key")
		}
	})
}

// windowReplay records what a WindowReplayCache is told.
type windowReplay struct {
	memReplay
	from, until time.Time
	calls       int
}

func (w *windowReplay) OnceWithin(ctx context.Context, key string, from, until time.Time) (bool, error) {
	w.calls++
	w.from, w.until = from, until
	return w.Once(ctx, key, until.Sub(from))
}

// A cache that can use the proof's window is told it: from futureSkew
// before iat (the earliest any instance could have accepted the proof) to
// the end of the proof's acceptance; a replay is still refused, a failure
// still fails closed.
func TestWindowReplayCacheIsToldTheProofsWindow(t *testing.T) {
	s := newSigner(t, jose.ES256)
	const htu = "https://app.example.com/x"
	now := t0.Add(3 * time.Second)
	w := &windowReplay{}
	v, err := NewVerifier(Options{Replay: w, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	c := Check{Method: "GET", URL: mustURL(htu), AccessToken: handle, JKT: s.jkt(t)}
	proof := s.sign(t, nil, "dpop+jwt", claimsFor("GET", htu, t0))
	if _, err := v.VerifyProof(context.Background(), proof, c); err != nil {
		t.Fatal(err)
	}
	iat := time.Unix(t0.Unix(), 0)
	if w.calls != 1 || !w.from.Equal(iat.Add(-DefaultFutureSkew)) || !w.until.Equal(now.Add(DefaultMaxAge+DefaultFutureSkew)) {
		t.Fatalf("told %d times, window %v .. %v", w.calls, w.from, w.until)
	}
	var de *Error
	if _, err := v.VerifyProof(context.Background(), proof, c); !errors.As(err, &de) || !strings.Contains(de.Description, "already used") {
		t.Fatalf("replay: %v", err)
	}
	w.err = errors.New("ids lost in a crash")
	if _, err := v.VerifyProof(context.Background(), s.sign(t, nil, "dpop+jwt", claimsFor("GET", htu, t0)), c); !errors.Is(err, ErrReplayUnavailable) {
		t.Fatalf("err = %v, want ErrReplayUnavailable", err)
	}
}

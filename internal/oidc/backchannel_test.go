package oidc

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

const testIssuer = "https://idp.example.com"

type logoutSigner struct {
	key *rsa.PrivateKey
	h   *Handler
	now time.Time
}

func newLogoutSigner(t testing.TB) *logoutSigner {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ls := &logoutSigner{key: key, now: time.Unix(1_800_000_000, 0)}
	ls.h = &Handler{opts: Options{Issuer: testIssuer, ClientID: "gatehouse", Clock: func() time.Time { return ls.now }}}
	ls.h.logoutVerifier = oidc.NewVerifier(testIssuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{key.Public()}},
		&oidc.Config{ClientID: "gatehouse", SkipExpiryCheck: true, SupportedSigningAlgs: []string{"RS256"}})
	return ls
}

// sign returns a logout token with the given claims over valid defaults;
// a nil value deletes a claim.
func (s *logoutSigner) sign(t testing.TB, typ string, over map[string]any) string {
	t.Helper()
	claims := map[string]any{
		"iss": testIssuer, "aud": "gatehouse", "iat": s.now.Unix(), "exp": s.now.Add(2 * time.Minute).Unix(),
		"jti": "jti-1", "sid": "idp-sid-1",
		"events": map[string]any{backchannelEvent: map[string]any{}},
	}
	for k, v := range over {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := obj.CompactSerialize()
	return raw
}

func TestLogoutTokenValidation(t *testing.T) {
	s := newLogoutSigner(t)
	now := s.now
	ctx := context.Background()
	valid := []struct {
		name string
		typ  string
		over map[string]any
	}{
		{"defaults", "logout+jwt", nil},
		{"no typ header", "", nil},
		{"media type typ", "application/logout+jwt", nil},
		{"sub only", "logout+jwt", map[string]any{"sid": nil, "sub": "user-1"}},
		{"aud list", "logout+jwt", map[string]any{"aud": []string{"other", "gatehouse"}}},
		{"iat slightly ahead (skew)", "logout+jwt", map[string]any{"iat": now.Add(time.Minute).Unix()}},
		{"iat nine minutes ago", "logout+jwt", map[string]any{"iat": now.Add(-9 * time.Minute).Unix(), "exp": now.Add(time.Minute).Unix()}},
		{"event with members", "logout+jwt", map[string]any{"events": map[string]any{backchannelEvent: map[string]any{"x": 1}}}},
	}
	for _, c := range valid {
		lc, err := s.h.verifyLogoutToken(ctx, s.sign(t, c.typ, c.over))
		if err != nil {
			t.Errorf("%s: rejected: %v", c.name, err)
			continue
		}
		if lc.JTI == "" || (lc.SessionID == "" && lc.Subject == "") || lc.replayTTL < time.Minute {
			t.Errorf("%s: incomplete result %+v", c.name, lc)
		}
	}
	invalid := []struct {
		name string
		typ  string
		over map[string]any
	}{
		{"typ JWT", "JWT", nil},
		{"typ at+jwt", "at+jwt", nil},
		{"wrong aud", "logout+jwt", map[string]any{"aud": "other"}},
		{"wrong iss", "logout+jwt", map[string]any{"iss": "https://evil.example"}},
		{"nonce", "logout+jwt", map[string]any{"nonce": "n"}},
		{"empty nonce", "logout+jwt", map[string]any{"nonce": ""}},
		{"no events", "logout+jwt", map[string]any{"events": nil}},
		{"event is a string", "logout+jwt", map[string]any{"events": map[string]any{backchannelEvent: "logout"}}},
		{"event is an array", "logout+jwt", map[string]any{"events": map[string]any{backchannelEvent: []int{}}}},
		{"event is null", "logout+jwt", map[string]any{"events": map[string]any{backchannelEvent: nil}}},
		{"events not object", "logout+jwt", map[string]any{"events": "x"}},
		{"no sub no sid", "logout+jwt", map[string]any{"sid": nil}},
		{"no jti", "logout+jwt", map[string]any{"jti": nil}},
		{"no iat", "logout+jwt", map[string]any{"iat": nil}},
		{"no exp", "logout+jwt", map[string]any{"exp": nil}},
		{"iat far future", "logout+jwt", map[string]any{"iat": now.Add(time.Hour).Unix(), "exp": now.Add(2 * time.Hour).Unix()}},
		{"iat too old", "logout+jwt", map[string]any{"iat": now.Add(-11 * time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}},
		{"expired", "logout+jwt", map[string]any{"iat": now.Add(-6 * time.Minute).Unix(), "exp": now.Add(-3 * time.Minute).Unix()}},
		{"exp before iat", "logout+jwt", map[string]any{"iat": now.Unix(), "exp": now.Add(-time.Second).Unix()}},
	}
	for _, c := range invalid {
		if lc, err := s.h.verifyLogoutToken(ctx, s.sign(t, c.typ, c.over)); err == nil {
			t.Errorf("%s: accepted: %+v", c.name, lc)
		}
	}
	// Signed by a key the IdP does not publish.
	other := newLogoutSigner(t)
	if _, err := s.h.verifyLogoutToken(ctx, other.sign(t, "logout+jwt", nil)); err == nil {
		t.Errorf("foreign signature accepted")
	}
	// alg none.
	if _, err := s.h.verifyLogoutToken(ctx, "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbSJ9."); err == nil {
		t.Errorf("alg none accepted")
	}
}

func FuzzLogoutToken(f *testing.F) {
	s := newLogoutSigner(f)
	f.Add(s.sign(f, "logout+jwt", nil))
	f.Add(s.sign(f, "JWT", map[string]any{"nonce": "n"}))
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		lc, err := s.h.verifyLogoutToken(context.Background(), raw)
		if err != nil {
			return
		}
		// Nothing but a token we signed can pass (the fuzzer cannot sign);
		// and whatever passes is complete.
		if lc.JTI == "" || (lc.SessionID == "" && lc.Subject == "") {
			t.Fatalf("accepted an incomplete logout token")
		}
	})
}

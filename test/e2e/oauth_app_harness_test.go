package e2e

// The test-owned native "app": a P-256 DPoP key, PKCE, the authorization
// request through a real browser session at the real OP, the token request
// and API calls with fresh proofs. Proofs are assembled by hand so that the
// hostile ones (alg none, HMAC, private jwk, stale iat...) can be built too.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	appClientID = "ios-app"
	appRedirect = "com.example.app:/oauth/callback"
)

// oauthClientsYAML registers the test app for the profile route.
const oauthClientsYAML = `
oauth:
  clients:
    - client_id: ios-app
      kind: native
      redirect_uris: ["com.example.app:/oauth/callback", "http://127.0.0.1/cb"]
`

// nativeApp is the app: its key and what it learnt.
type nativeApp struct {
	t        *testing.T
	e        *gwEnv
	key      *ecdsa.PrivateKey
	verifier string
	handle   string
	// pub is the public_url proofs name in htu (default e.URL).
	pub string
}

func newNativeApp(t *testing.T, e *gwEnv) *nativeApp {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &nativeApp{t: t, e: e, key: k, verifier: randomB64(t, 32), pub: e.URL}
}

func randomB64(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func s256(v string) string { sum := sha256.Sum256([]byte(v)); return b64(sum[:]) }

// publicJWK is the app key's public JWK (members in RFC 7638 order).
func publicJWK(k *ecdsa.PrivateKey) map[string]any {
	return map[string]any{"crv": "P-256", "kty": "EC", "x": b64(pad32(k.X)), "y": b64(pad32(k.Y))}
}

func pad32(i *big.Int) []byte { b := make([]byte, 32); i.FillBytes(b); return b }

// jkt is the RFC 7638 thumbprint of k.
func jkt(k *ecdsa.PrivateKey) string {
	j := publicJWK(k)
	canon := `{"crv":"P-256","kty":"EC","x":"` + j["x"].(string) + `","y":"` + j["y"].(string) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return b64(sum[:])
}

// proofSpec describes one proof; zero fields take the honest values.
type proofSpec struct {
	htm, htu string
	ath      *string // nil: the hash of the handle when one is used
	noATH    bool
	iat      time.Time
	jti      string
	alg      string // "none", "HS256" or "" (ES256)
	signer   *ecdsa.PrivateKey
	jwk      map[string]any
	typ      string
}

// proof builds a DPoP proof for token (may be "").
func (a *nativeApp) proof(p proofSpec, token string) string {
	a.t.Helper()
	if p.iat.IsZero() {
		p.iat = a.e.Clock.Now()
	}
	if p.jti == "" {
		p.jti = randomB64(a.t, 16)
	}
	if p.typ == "" {
		p.typ = "dpop+jwt"
	}
	alg := p.alg
	if alg == "" {
		alg = "ES256"
	}
	jwk := p.jwk
	if jwk == nil {
		jwk = publicJWK(a.key)
	}
	hdr, _ := json.Marshal(map[string]any{"typ": p.typ, "alg": alg, "jwk": jwk})
	claims := map[string]any{"jti": p.jti, "htm": p.htm, "htu": p.htu, "iat": p.iat.Unix()}
	switch {
	case p.ath != nil:
		claims["ath"] = *p.ath
	case token != "" && !p.noATH:
		sum := sha256.Sum256([]byte(token))
		claims["ath"] = b64(sum[:])
	}
	body, _ := json.Marshal(claims)
	input := b64(hdr) + "." + b64(body)
	switch alg {
	case "none":
		return input + "."
	case "HS256": // the public key's JSON as the HMAC secret (key confusion)
		pub, _ := json.Marshal(jwk)
		m := hmac.New(sha256.New, pub)
		m.Write([]byte(input))
		return input + "." + b64(m.Sum(nil))
	}
	signer := p.signer
	if signer == nil {
		signer = a.key
	}
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, signer, sum[:])
	if err != nil {
		a.t.Fatal(err)
	}
	return input + "." + b64(append(pad32(r), pad32(s)...))
}

// authorize runs the authorization request in browser b (signing in at the
// OP) and returns the redirect to the app (code, state, iss).
func (a *nativeApp) authorize(b *http.Client, q url.Values) *url.URL {
	a.t.Helper()
	target := a.e.URL + "/bff/oauth/authorize?" + q.Encode()
	cb, err := a.e.IdP.Login(context.Background(), b, target, "alice", "wonderland")
	if err != nil {
		a.t.Fatalf("authorize at the OP: %v\nlogs:\n%s", err, sessTail(a.e.Logs.String(), 3000))
	}
	resp, err := b.Get(cb)
	if err != nil {
		a.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		a.t.Fatalf("callback for the app: %d %s", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == a.e.Cfg.EffectiveCookieName() && c.Value != "" {
			a.t.Fatal("the app's login set a browser session cookie")
		}
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		a.t.Fatal(err)
	}
	return u
}

// authQuery is an honest authorization request.
func (a *nativeApp) authQuery(state string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {appClientID}, "redirect_uri": {appRedirect},
		"state": {state}, "code_challenge": {s256(a.verifier)}, "code_challenge_method": {"S256"}, "scope": {"profile"}}
}

// tokenForm is an honest token request for code.
func (a *nativeApp) tokenForm(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "client_id": {appClientID}, "code": {code},
		"redirect_uri": {appRedirect}, "code_verifier": {a.verifier}}
}

// tokenRequest posts form with the given DPoP header values.
func (a *nativeApp) tokenRequest(form url.Values, proofs ...string) (int, map[string]any, http.Header) {
	a.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.e.URL+"/bff/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

// tokenProof is an honest proof for the token endpoint.
func (a *nativeApp) tokenProof() string {
	return a.proof(proofSpec{htm: "POST", htu: a.pub + "/bff/oauth/token"}, "")
}

// signIn runs the whole flow and keeps the handle.
func (a *nativeApp) signIn(b *http.Client) {
	a.t.Helper()
	u := a.authorize(b, a.authQuery("st"))
	code := u.Query().Get("code")
	st, body, _ := a.tokenRequest(a.tokenForm(code), a.tokenProof())
	if st != http.StatusOK {
		a.t.Fatalf("token: %d %v", st, body)
	}
	a.handle = body["access_token"].(string)
}

// at is the app talking to another instance (same key, same handle).
func (a *nativeApp) at(e *gwEnv) *nativeApp {
	cp := *a
	cp.e = e
	return &cp
}

// call makes an API request with extra headers (raw: Authorization and DPoP
// are exactly as given).
func (a *nativeApp) call(method, path string, hdr http.Header) (int, http.Header, []byte) {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.e.URL+path, nil)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// honest is the headers of an honest API call.
func (a *nativeApp) honest(method, path string) http.Header {
	return http.Header{"Authorization": {"DPoP " + a.handle},
		"Dpop": {a.proof(proofSpec{htm: method, htu: a.pub + path}, a.handle)}}
}

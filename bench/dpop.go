package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"
)

const nativeClientYAML = `oauth:
  clients:
    - client_id: bench-app
      kind: native
      redirect_uris: ["http://127.0.0.1/cb"]
`

// nativeApp is a native app's DPoP key (P-256, ES256).
type nativeApp struct {
	key *ecdsa.PrivateKey
	jwk string // public JWK, JSON
}

func newNativeApp() (*nativeApp, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	jwk := `{"crv":"P-256","kty":"EC","x":"` + b64(pad32(k.X)) + `","y":"` + b64(pad32(k.Y)) + `"}`
	return &nativeApp{key: k, jwk: jwk}, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func pad32(i *big.Int) []byte { b := make([]byte, 32); i.FillBytes(b); return b }

// proof is a fresh DPoP proof (RFC 9449) for one request; token, when set,
// is bound by its hash (ath).
func (a *nativeApp) proof(method, htu, token string) (string, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	hdr := `{"typ":"dpop+jwt","alg":"ES256","jwk":` + a.jwk + `}`
	claims := map[string]any{"jti": b64(jti), "htm": method, "htu": htu, "iat": time.Now().Unix()}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		claims["ath"] = b64(sum[:])
	}
	body, _ := json.Marshal(claims)
	input := b64([]byte(hdr)) + "." + b64(body)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, a.key, sum[:])
	if err != nil {
		return "", err
	}
	return input + "." + b64(append(pad32(r), pad32(s)...)), nil
}

// nativeHandle signs alice in as the native app through Gatehouse's OAuth
// front door (authorization code, PKCE S256, DPoP-bound token) and returns
// the ghn_ handle.
func (e *environment) nativeHandle(ctx context.Context, app *nativeApp) (string, error) {
	base := "http://" + e.gatehouseAddr
	verifierRaw := make([]byte, 32)
	if _, err := rand.Read(verifierRaw); err != nil {
		return "", err
	}
	verifier := b64(verifierRaw)
	ch := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {"bench-app"}, "redirect_uri": {"http://127.0.0.1/cb"},
		"state": {"st"}, "code_challenge": {b64(ch[:])}, "code_challenge_method": {"S256"}, "scope": {"profile"}}
	jar, _ := cookiejar.New(nil)
	b := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var cb string
	var err error
	for attempt := 0; attempt < 25; attempt++ { // IdP discovery may still be under way
		if cb, err = e.op.Login(ctx, b, base+"/bff/oauth/authorize?"+q.Encode(), "alice", "wonderland"); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return "", fmt.Errorf("authorize: %w", err)
	}
	resp, err := b.Get(cb)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		return "", fmt.Errorf("authorize answered %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {"bench-app"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {"http://127.0.0.1/cb"}, "code_verifier": {verifier}}
	p, err := app.proof(http.MethodPost, base+"/bff/oauth/token", "")
	if err != nil {
		return "", err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/bff/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("DPoP", p)
	tr, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer tr.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(tr.Body, 64<<10))
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if tr.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil || out.AccessToken == "" {
		return "", fmt.Errorf("token endpoint: %d %s", tr.StatusCode, raw)
	}
	return out.AccessToken, nil
}

// nativeDPoP measures a native app's GETs with its DPoP-bound handle: every
// request carries a fresh proof, which Gatehouse verifies (one ECDSA
// signature check) and remembers (jti replay check). The bare proxy gets the
// same headers and ignores them; the proofs are signed by the benchmark
// process for both.
func (e *environment) nativeDPoP(ctx context.Context) ([]result, error) {
	p, err := e.startPair(ctx, "get-dpop", gatehouseConfig{store: "bolt", extraYAML: nativeClientYAML}, 1)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	app, err := newNativeApp()
	if err != nil {
		return nil, err
	}
	handle, err := e.nativeHandle(ctx, app)
	if err != nil {
		return nil, err
	}
	htu := "http://" + e.gatehouseAddr + "/api/profile/me"
	w := func(*mrand.Rand) request {
		pr, _ := app.proof(http.MethodGet, htu, handle)
		return request{method: http.MethodGet, path: "/api/profile/me", auth: "DPoP " + handle, dpop: pr}
	}
	res, err := e.alternate(p, "get-dpop", "authenticated GET from a native app: DPoP-bound ghn_ handle, a fresh ES256 proof per request (signed by the benchmark for both targets), bolt", e.closedLoop(ctx, w))
	if err != nil {
		return nil, err
	}
	return []result{res}, nil
}

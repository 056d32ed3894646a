package oauthserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/dpop"
	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
)

// fakeLogin stands in for the IdP login: it keeps the pending request the
// way oidc.StartHandoff does and remembers the state.
type fakeLogin struct {
	mu    sync.Mutex
	state string
}

func (f *fakeLogin) StartHandoff(w http.ResponseWriter, r *http.Request, _ bool, keep func(context.Context, string) error) {
	st := base64.RawURLEncoding.EncodeToString([]byte(time.Now().String()))
	if err := keep(r.Context(), st); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	f.mu.Lock()
	f.state = st
	f.mu.Unlock()
	w.WriteHeader(http.StatusFound)
}

type auditRecorder struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (a *auditRecorder) Log(_ context.Context, r audit.Record) error {
	a.mu.Lock()
	a.recs = append(a.recs, r)
	a.mu.Unlock()
	return nil
}

type fixture struct {
	srv      *Server
	sessions *session.Manager
	login    *fakeLogin
	clock    *testclock.Clock
	key      *ecdsa.PrivateKey
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureOn(t, func(now func() time.Time) session.Store { return session.NewMemoryStore(now) })
}

// newFixtureOn is newFixture over the store open makes (with the fixture's
// clock).
func newFixtureOn(t testing.TB, open func(now func() time.Time) session.Store) *fixture {
	t.Helper()
	clk := &testclock.Clock{}
	m := session.NewManager(open(clk.Now), session.Options{Now: clk.Now, HealthInterval: -1})
	t.Cleanup(func() { _ = m.Close() })
	v, err := dpop.NewVerifier(dpop.Options{Replay: m, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := url.Parse("https://app.example.com")
	lg := &fakeLogin{}
	srv, err := New(Options{PublicURL: pub, Registry: testRegistry(t), Routes: routes, Sessions: m, Login: lg, DPoP: v,
		Auditor: &auditRecorder{}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &fixture{srv: srv, sessions: m, login: lg, clock: clk, key: k}
}

func (f *fixture) mux() *http.ServeMux {
	mux := http.NewServeMux()
	f.srv.Register(mux)
	return mux
}

// code runs authorize and the login's end, and returns the code.
func (f *fixture) code(t testing.TB) string {
	t.Helper()
	rec := httptest.NewRecorder()
	f.mux().ServeHTTP(rec, httptest.NewRequest("GET", AuthorizePath+"?"+authQuery(nil).Encode(), nil))
	if rec.Code != http.StatusFound {
		t.Fatalf("authorize: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	f.srv.FinishLogin(rec, httptest.NewRequest("GET", "/bff/callback", nil), f.login.state,
		&session.Session{Subject: "alice", IdPSessionID: "idp-sid"})
	u, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusFound || err != nil || u.Query().Get("iss") != "https://app.example.com" || u.Query().Get("state") != "xyz" {
		t.Fatalf("finish: %d %s", rec.Code, rec.Header().Get("Location"))
	}
	return u.Query().Get("code")
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// proof signs an honest ES256 proof.
func (f *fixture) proof(t testing.TB, htm, htu, token string) string {
	t.Helper()
	x, y := make([]byte, 32), make([]byte, 32)
	f.key.X.FillBytes(x)
	f.key.Y.FillBytes(y)
	hdr, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": map[string]string{"kty": "EC", "crv": "P-256", "x": b64url(x), "y": b64url(y)}})
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	cl := map[string]any{"jti": b64url(jti), "htm": htm, "htu": htu, "iat": f.clock.Now().Unix()}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		cl["ath"] = b64url(sum[:])
	}
	body, _ := json.Marshal(cl)
	in := b64url(hdr) + "." + b64url(body)
	sum := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, f.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + b64url(sig)
}

func (f *fixture) redeem(t testing.TB, code string) *httptest.ResponseRecorder {
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {"ios-app"}, "code": {code},
		"redirect_uri": {"com.example.app:/oauth/callback"}, "code_verifier": {verifier}}
	req := httptest.NewRequest("POST", TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("DPoP", f.proof(t, "POST", "https://app.example.com"+TokenPath, ""))
	rec := httptest.NewRecorder()
	f.mux().ServeHTTP(rec, req)
	return rec
}

// Eight racing redemptions of one code: never more than one handle.
func TestConcurrentRedemptionsHaveOneWinner(t *testing.T) {
	f := newFixture(t)
	code := f.code(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Go(func() {
			if rec := f.redeem(t, code); rec.Code == http.StatusOK {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// A loser that comes after the winner's redemption revokes what it
	// produced (the code was used twice), so the winner may lose too.
	if wins > 1 {
		t.Fatalf("%d redemptions succeeded, want at most 1", wins)
	}
	if infos, _ := f.sessions.List(context.Background(), "alice"); len(infos) > wins {
		t.Fatalf("%d sessions live after %d successful redemptions", len(infos), wins)
	}
}

// A code redeemed once, then again: the second is refused and ends the
// session the first produced.
func TestSecondRedemptionRevokesTheFirst(t *testing.T) {
	f := newFixture(t)
	code := f.code(t)
	if rec := f.redeem(t, code); rec.Code != http.StatusOK {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	if rec := f.redeem(t, code); rec.Code != http.StatusBadRequest {
		t.Fatalf("second: %d %s", rec.Code, rec.Body)
	}
	if infos, _ := f.sessions.List(context.Background(), "alice"); len(infos) != 0 {
		t.Fatal("the first redemption's session lives on")
	}
}

// An expired code is refused even though the store still held it, and its
// session does not outlive it.
func TestExpiredCodeIsRefusedAndItsSessionEnds(t *testing.T) {
	f := newFixture(t)
	code := f.code(t)
	infos, _ := f.sessions.List(context.Background(), "alice")
	if len(infos) != 1 {
		t.Fatalf("%d sessions", len(infos))
	}
	f.clock.Advance(CodeTTL + time.Second)
	if rec := f.redeem(t, code); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "invalid_grant") {
		t.Fatalf("expired code: %d %s", rec.Code, rec.Body)
	}
	if infos, _ := f.sessions.List(context.Background(), "alice"); len(infos) != 0 {
		t.Fatal("the session of a spent code lives on")
	}
}

func TestTokenEndpointRefusesMalformedRequests(t *testing.T) {
	f := newFixture(t)
	good := url.Values{"grant_type": {"authorization_code"}, "client_id": {"ios-app"}, "code": {"c"},
		"redirect_uri": {"com.example.app:/oauth/callback"}, "code_verifier": {verifier}}
	cases := []struct {
		name, ctype, query, body string
		status                   int
		code                     string
	}{
		{"JSON body", "application/json", "", `{"grant_type":"authorization_code"}`, 400, ErrInvalidRequest},
		{"parameters in the query", "application/x-www-form-urlencoded", "code=c", good.Encode(), 400, ErrInvalidRequest},
		{"duplicate code", "application/x-www-form-urlencoded", "", good.Encode() + "&code=d", 400, ErrInvalidRequest},
		{"unknown client", "application/x-www-form-urlencoded", "", strings.Replace(good.Encode(), "ios-app", "evil", 1), 401, ErrInvalidClient},
		{"client secret", "application/x-www-form-urlencoded", "", good.Encode() + "&client_secret=s", 401, ErrInvalidClient},
		{"oversize body", "application/x-www-form-urlencoded", "", good.Encode() + "&pad=" + strings.Repeat("a", maxFormBytes), 400, ErrInvalidRequest},
		{"not a code of ours", "application/x-www-form-urlencoded", "", good.Encode(), 400, ErrInvalidGrant},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := TokenPath
			if tc.query != "" {
				target += "?" + tc.query
			}
			req := httptest.NewRequest("POST", target, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			req.Header.Set("DPoP", f.proof(t, "POST", "https://app.example.com"+TokenPath, ""))
			rec := httptest.NewRecorder()
			f.mux().ServeHTTP(rec, req)
			var body map[string]string
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if rec.Code != tc.status || body["error"] != tc.code || rec.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("%d %v, want %d %s", rec.Code, body, tc.status, tc.code)
			}
		})
	}
}

// Only a redeemed native session is reachable through Identify: a browser
// session's handle and a session whose code was never redeemed are not.
func TestIdentifyNeedsARedeemedNativeSession(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	browser, err := f.sessions.Create(ctx, &session.Session{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	unredeemed, err := f.sessions.Create(ctx, &session.Session{Subject: "alice", Native: &session.Native{ClientID: "ios-app", Scopes: []string{"profile"}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]session.Handle{"browser session": browser, "unredeemed": unredeemed} {
		tok := NativePrefix + h.Cookie().Reveal()
		req := httptest.NewRequest("GET", "https://app.example.com/api/profile/me", nil)
		req.Header.Set("Authorization", "DPoP "+tok)
		req.Header.Set("DPoP", f.proof(t, "GET", "https://app.example.com/api/profile/me", tok))
		if _, _, ierr := f.srv.Identify(ctx, req, "profile"); ierr == nil || ierr.Status != http.StatusUnauthorized || ierr.Code != dpop.CodeInvalidToken {
			t.Fatalf("%s: %v", name, ierr)
		}
	}
	// The redeemed one works; with a fresh proof only.
	rec := f.redeem(t, f.code(t))
	var tr TokenResponse
	_ = json.Unmarshal(rec.Body.Bytes(), &tr)
	req := httptest.NewRequest("GET", "https://app.example.com/api/profile/me", nil)
	req.Header.Set("Authorization", "DPoP "+tr.AccessToken)
	req.Header.Set("DPoP", f.proof(t, "GET", "https://app.example.com/api/profile/me", tr.AccessToken))
	if _, s, ierr := f.srv.Identify(ctx, req, "profile"); ierr != nil || s.Subject != "alice" {
		t.Fatalf("redeemed handle: %v", ierr)
	}
	if _, _, ierr := f.srv.Identify(ctx, req, "profile"); ierr == nil || ierr.Code != dpop.CodeInvalidProof {
		t.Fatalf("replayed proof: %v", ierr)
	}
}

func TestRecognisesNative(t *testing.T) {
	cases := map[string]bool{
		"DPoP ghn_x": true, "dpop abc": true, "Bearer ghn_abc": true, "bearer  ghn_abc": true,
		"Bearer gha_abc": false, "Basic ghn_": false, "": false, "DPoPghn_": false,
	}
	for v, want := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		if v != "" {
			r.Header.Set("Authorization", v)
		}
		if got := RecognisesNative(r); got != want {
			t.Errorf("RecognisesNative(%q) = %v, want %v", v, got, want)
		}
	}
}

func FuzzNativeAuthorization(f *testing.F) {
	h, _ := session.NewHandle()
	f.Add("DPoP " + NativePrefix + h.Cookie().Reveal())
	f.Add("Bearer ghn_")
	f.Add("DPoP ghn_\x00\xff")
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{v}
		recognised := RecognisesNative(r)
		scheme, tok, _ := strings.Cut(v, " ")
		if _, err := ParseNativeHandle(strings.TrimSpace(tok)); err == nil && strings.EqualFold(scheme, "DPoP") && !recognised {
			t.Fatalf("a DPoP handle was not recognised: %q", v)
		}
	})
}

// BenchmarkNativeIdentify is the per-request cost of a native API call's
// check: handle, session (cached), DPoP proof (ES256 verify, replay key), on
// each store. Proofs are signed before the timer starts: this measures the
// check, not the client's signing.
func BenchmarkNativeIdentify(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B, now func() time.Time) session.Store
	}{
		{"memory", func(_ *testing.B, now func() time.Time) session.Store { return session.NewMemoryStore(now) }},
		{"bolt", func(b *testing.B, now func() time.Time) session.Store {
			s, err := session.OpenBoltStore(b.TempDir()+"/s.db", session.BoltOptions{Now: now})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			f := newFixtureOn(b, func(now func() time.Time) session.Store { return st.open(b, now) })
			rec := f.redeem(b, f.code(b))
			var tr TokenResponse
			_ = json.Unmarshal(rec.Body.Bytes(), &tr)
			const target = "https://app.example.com/api/profile/me"
			proofs := make([]string, b.N)
			for i := range proofs {
				proofs[i] = f.proof(b, "GET", target, tr.AccessToken)
			}
			req := httptest.NewRequest("GET", target, nil)
			req.Header.Set("Authorization", "DPoP "+tr.AccessToken)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req.Header.Set("Dpop", proofs[i])
				if _, _, ierr := f.srv.Identify(ctx, req, "profile"); ierr != nil {
					b.Fatal(ierr)
				}
			}
		})
	}
}

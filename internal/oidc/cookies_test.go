package oidc

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

func testHandler(t testing.TB) *Handler {
	t.Helper()
	keys, err := secret.NewKeyRing(secret.New("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return &Handler{opts: Options{CookieKeys: keys, LoginStateTTL: 10 * time.Minute, CookieName: "__Host-gatehouse", CookieSameSite: http.SameSiteStrictMode},
		loginCookie: "__Host-gatehouse-login", secureCookies: true}
}

func TestLoginStateRoundTrip(t *testing.T) {
	h := testHandler(t)
	now := time.Unix(1_800_000_000, 0)
	in := loginState{State: "s", Nonce: "n", Verifier: "v", ReturnURL: "/app?x=1", Created: now.Unix()}
	v := h.sealLoginState(in)
	for _, part := range []string{"/app", `"s"`, "ReturnURL"} {
		if strings.Contains(v, part) {
			t.Fatalf("login-state cookie is not encrypted: contains %q", part)
		}
	}
	out, err := h.openLoginState(v, now.Add(9*time.Minute))
	if err != nil || out != in {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
}

func TestLoginStateTamperedOrForeignRejected(t *testing.T) {
	h := testHandler(t)
	now := time.Unix(1_800_000_000, 0)
	good := h.sealLoginState(loginState{State: "s", Nonce: "n", Verifier: "v", ReturnURL: "/", Created: now.Unix()})
	raw, _ := base64.RawURLEncoding.DecodeString(good)

	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)-1] ^= 1
	truncated := raw[:len(raw)-1]
	other := testHandler(t)
	other.opts.CookieKeys = secret.RandomKeyRing()
	foreign := other.sealLoginState(loginState{State: "s", Nonce: "n", Verifier: "v", ReturnURL: "/", Created: now.Unix()})
	// Same keys, other purpose: sealed with a different AAD.
	otherPurpose := base64.RawURLEncoding.EncodeToString(h.opts.CookieKeys.Seal([]byte(`{"s":"s","n":"n","v":"v","r":"/","c":1800000000}`), []byte("session")))
	// Authentic but carrying an unsafe returnUrl (defence in depth).
	badReturn := h.sealLoginState(loginState{State: "s", Nonce: "n", Verifier: "v", ReturnURL: "//evil", Created: now.Unix()})
	noVerifier := h.sealLoginState(loginState{State: "s", Nonce: "n", ReturnURL: "/", Created: now.Unix()})

	for name, v := range map[string]string{
		"bit flipped":    base64.RawURLEncoding.EncodeToString(flipped),
		"truncated":      base64.RawURLEncoding.EncodeToString(truncated),
		"padded":         good + "=",
		"foreign key":    foreign,
		"other purpose":  otherPurpose,
		"unsafe return":  badReturn,
		"missing field":  noVerifier,
		"empty":          "",
		"not base64":     "!!!",
		"huge":           strings.Repeat("A", 5000),
		"plaintext JSON": base64.RawURLEncoding.EncodeToString([]byte(`{"s":"s","n":"n","v":"v","r":"/","c":1800000000}`)),
	} {
		if _, err := h.openLoginState(v, now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := h.openLoginState(good, now.Add(11*time.Minute)); err == nil {
		t.Errorf("expired login state accepted")
	}
	if _, err := h.openLoginState(good, now.Add(-5*time.Minute)); err == nil {
		t.Errorf("login state from the future accepted")
	}
}

func FuzzOpenLoginState(f *testing.F) {
	h := testHandler(f)
	now := time.Unix(1_800_000_000, 0)
	f.Add(h.sealLoginState(loginState{State: "s", Nonce: "n", Verifier: "v", ReturnURL: "/", Created: now.Unix()}))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, v string) {
		ls, err := h.openLoginState(v, now)
		if err != nil {
			return
		}
		if _, err := ValidateReturnURL(ls.ReturnURL); err != nil || ls.State == "" || ls.Nonce == "" || ls.Verifier == "" {
			t.Fatalf("accepted an unusable login state")
		}
	})
}

func TestCookieAttributes(t *testing.T) {
	h := testHandler(t)
	rec := httptest.NewRecorder()
	h.setLoginCookie(rec, "x")
	h.setSessionCookie(rec, "y", time.Time{})
	cs := rec.Result().Cookies()
	if len(cs) != 2 {
		t.Fatalf("cookies: %v", cs)
	}
	login, sess := cs[0], cs[1]
	if !login.HttpOnly || !login.Secure || login.SameSite != http.SameSiteLaxMode || login.MaxAge != 600 || login.Path != "/" || login.Domain != "" {
		t.Errorf("login-state cookie attributes: %+v", login)
	}
	if sess.Name != "__Host-gatehouse" || !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" || sess.Domain != "" {
		t.Errorf("session cookie attributes: %+v", sess)
	}
}

func TestOptionsRefuseUnsafeSettings(t *testing.T) {
	mgr := session.NewManager(session.NewMemoryStore(nil), session.Options{HealthInterval: -1})
	t.Cleanup(func() { _ = mgr.Close() })
	const clientSecret = "the-client-secret-value"
	base := func() Options {
		return Options{Issuer: "https://idp.example.com", ClientID: "c", ClientSecret: secret.Static(clientSecret),
			PublicURL: "https://app.example.com", CookieName: "__Host-gh", CookieKeys: secret.RandomKeyRing(), Sessions: mgr}
	}
	good := base()
	if err := good.defaults(); err != nil {
		t.Fatalf("good options: %v", err)
	}
	if good.RedirectURL != "https://app.example.com/bff/callback" || good.ClientAuth != AuthClientSecretBasic || good.CookieSameSite != http.SameSiteStrictMode || good.PAR != PARAuto {
		t.Errorf("defaults: %+v", good)
	}
	for name, mut := range map[string]func(*Options){
		"https without __Host-":  func(o *Options) { o.CookieName = "gh" },
		"http with __Host-":      func(o *Options) { o.PublicURL = "http://localhost:8080" },
		"SameSite=None":          func(o *Options) { o.CookieSameSite = http.SameSiteNoneMode },
		"no client secret":       func(o *Options) { o.ClientSecret = nil },
		"unknown client auth":    func(o *Options) { o.ClientAuth = "private_key_jwt" },
		"unknown par":            func(o *Options) { o.PAR = "sometimes" },
		"public url with path":   func(o *Options) { o.PublicURL = "https://app.example.com/app" },
		"no cookie keys":         func(o *Options) { o.CookieKeys = nil },
		"no sessions":            func(o *Options) { o.Sessions = nil },
		"cookie name with space": func(o *Options) { o.CookieName = "__Host-a b" },
	} {
		o := base()
		mut(&o)
		if err := o.defaults(); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), clientSecret) {
			t.Errorf("%s: error may echo the secret: %v", name, err)
		}
	}
}

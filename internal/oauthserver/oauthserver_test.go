package oauthserver

import (
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"
)

var routes = []string{"profile", "billing", "dashboard"}

func testRegistry(t testing.TB) *Registry {
	t.Helper()
	reg, err := NewRegistry([]ClientSpec{
		{ClientID: "ios-app", Kind: KindNative, RedirectURIs: []string{"com.example.app:/oauth/callback", "https://app.example.com/app/callback"}},
		{ClientID: "travel-agent", Kind: KindAgent, RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/cb?x=1"}, Routes: []string{"profile", "dashboard"}},
	}, routes)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestRegistryRefusesUnsafeClients(t *testing.T) {
	cases := []struct {
		name string
		spec ClientSpec
		want string
	}{
		{"unknown kind", ClientSpec{ClientID: "x", Kind: "confidential", RedirectURIs: []string{"https://a.example/cb"}}, "kind must be native or agent"},
		{"no redirect", ClientSpec{ClientID: "x", Kind: KindNative}, "at least one redirect_uri"},
		{"fragment", ClientSpec{ClientID: "x", Kind: KindNative, RedirectURIs: []string{"https://a.example/cb#f"}}, "fragment"},
		{"http to a host", ClientSpec{ClientID: "x", Kind: KindNative, RedirectURIs: []string{"http://a.example/cb"}}, "loopback"},
		{"http to localhost by name", ClientSpec{ClientID: "x", Kind: KindNative, RedirectURIs: []string{"http://localhost/cb"}}, "loopback IP literals"},
		{"private scheme for an agent", ClientSpec{ClientID: "x", Kind: KindAgent, Routes: []string{"profile"}, RedirectURIs: []string{"com.example.agent:/cb"}}, "only native clients"},
		{"private scheme not reverse-DNS", ClientSpec{ClientID: "x", Kind: KindNative, RedirectURIs: []string{"myapp:/cb"}}, "reverse domain"},
		{"agent without routes", ClientSpec{ClientID: "x", Kind: KindAgent, RedirectURIs: []string{"http://127.0.0.1/cb"}}, "needs routes"},
		{"unknown route", ClientSpec{ClientID: "x", Kind: KindAgent, Routes: []string{"admin"}, RedirectURIs: []string{"http://127.0.0.1/cb"}}, `"admin" is no route`},
		{"native without dpop", ClientSpec{ClientID: "x", Kind: KindNative, DPoP: DPoPOptional, RedirectURIs: []string{"https://a.example/cb"}}, "always use DPoP"},
		{"userinfo", ClientSpec{ClientID: "x", Kind: KindNative, RedirectURIs: []string{"https://u:p@a.example/cb"}}, "user information"},
		{"client id with space", ClientSpec{ClientID: "a b", Kind: KindNative, RedirectURIs: []string{"https://a.example/cb"}}, "visible ASCII"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRegistry([]ClientSpec{tc.spec}, routes)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	_, err := NewRegistry([]ClientSpec{{ClientID: "a", Kind: KindNative, RedirectURIs: []string{"https://a.example/cb"}}, {ClientID: "a", Kind: KindNative, RedirectURIs: []string{"https://a.example/cb"}}}, routes)
	if err == nil || !strings.Contains(err.Error(), "registered twice") {
		t.Fatalf("duplicate client: %v", err)
	}
}

func TestRedirectMatching(t *testing.T) {
	reg := testRegistry(t)
	native, _ := reg.Lookup("ios-app")
	agent, _ := reg.Lookup("travel-agent")
	cases := []struct {
		c    *Client
		uri  string
		want bool
	}{
		{native, "com.example.app:/oauth/callback", true},
		{native, "com.example.app:/oauth/callback/", false},
		{native, "com.example.app:/oauth/callback?x=1", false},
		{native, "COM.example.app:/oauth/callback", false},
		{native, "https://app.example.com/app/callback", true},
		{native, "https://app.example.com/app/callback?evil=1", false},
		{native, "https://app.example.com.evil.example/app/callback", false},
		{agent, "http://127.0.0.1/callback", true},
		{agent, "http://127.0.0.1:51234/callback", true}, // RFC 8252 §7.3: any port
		{agent, "http://127.0.0.1:51234/callback/x", false},
		{agent, "http://127.0.0.1:51234/callback?a=b", false},
		{agent, "http://127.0.0.1:/callback", false},
		{agent, "http://127.0.0.1:+80/callback", false},
		{agent, "http://127.0.0.2:8080/callback", false},
		{agent, "http://localhost:8080/callback", false},
		{agent, "https://127.0.0.1:8080/callback", false},
		{agent, "http://user@127.0.0.1:8080/callback", false},
		{agent, "http://127.0.0.1:8080/callback#x", false},
		{agent, "http://[::1]:9000/cb?x=1", true},
		{agent, "http://[::1]:9000/cb", false},
	}
	for _, tc := range cases {
		if got := tc.c.RedirectAllowed(tc.uri); got != tc.want {
			t.Errorf("%s: RedirectAllowed(%q) = %v, want %v", tc.c.ID, tc.uri, got, tc.want)
		}
	}
}

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

func authQuery(mod func(url.Values)) url.Values {
	q := url.Values{"response_type": {"code"}, "client_id": {"ios-app"}, "redirect_uri": {"com.example.app:/oauth/callback"},
		"state": {"xyz"}, "code_challenge": {challengeOf(verifier)}, "code_challenge_method": {"S256"}, "scope": {"profile billing"}}
	if mod != nil {
		mod(q)
	}
	return q
}

func TestAuthorizeRequestAttacks(t *testing.T) {
	reg := testRegistry(t)
	const resource = "https://app.example.com"
	cases := []struct {
		name     string
		mod      func(url.Values)
		code     string
		redirect bool
	}{
		{"unregistered client: never redirected", func(q url.Values) { q.Set("client_id", "evil") }, ErrInvalidRequest, false},
		{"no client", func(q url.Values) { q.Del("client_id") }, ErrInvalidRequest, false},
		{"unregistered redirect: never redirected", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }, ErrInvalidRequest, false},
		{"no redirect", func(q url.Values) { q.Del("redirect_uri") }, ErrInvalidRequest, false},
		{"second redirect_uri", func(q url.Values) { q.Add("redirect_uri", "https://evil.example/cb") }, ErrInvalidRequest, false},
		{"second client_id", func(q url.Values) { q.Add("client_id", "travel-agent") }, ErrInvalidRequest, false},
		{"token response type", func(q url.Values) { q.Set("response_type", "token") }, ErrUnsupportedResponseType, true},
		{"no PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, ErrInvalidRequest, true},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain"); q.Set("code_challenge", verifier) }, ErrInvalidRequest, true},
		{"PKCE method missing", func(q url.Values) { q.Del("code_challenge_method") }, ErrInvalidRequest, true},
		{"short challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, ErrInvalidRequest, true},
		{"bad dpop_jkt", func(q url.Values) { q.Set("dpop_jkt", "not-a-thumbprint") }, ErrInvalidRequest, true},
		{"other resource", func(q url.Values) { q.Set("resource", "https://evil.example") }, ErrInvalidTarget, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, aerr := ParseAuthorize(authQuery(tc.mod), reg, resource)
			if aerr == nil {
				t.Fatal("accepted")
			}
			if aerr.Code != tc.code || aerr.Redirect != tc.redirect {
				t.Fatalf("got %s redirect=%v (%s), want %s redirect=%v", aerr.Code, aerr.Redirect, aerr.Description, tc.code, tc.redirect)
			}
			u := aerr.RedirectURL(resource)
			if !tc.redirect && u != "" {
				t.Fatalf("an untrusted redirect URI was used: %s", u)
			}
			if tc.redirect {
				p, _ := url.Parse(u)
				if p.Query().Get("iss") != resource || p.Query().Get("state") != "xyz" || p.Query().Get("error") != tc.code {
					t.Fatalf("error redirect %s lacks iss/state/error", u)
				}
			}
		})
	}
	ar, aerr := ParseAuthorize(authQuery(nil), reg, resource)
	if aerr != nil {
		t.Fatal(aerr)
	}
	if ar.Client.ID != "ios-app" || len(ar.Scopes) != 2 {
		t.Fatalf("parsed %+v", ar)
	}
}

func TestNarrowNeverWidens(t *testing.T) {
	allowed := []string{"profile", "dashboard"}
	cases := []struct {
		req, want []string
	}{
		{nil, allowed},
		{[]string{"profile"}, []string{"profile"}},
		{[]string{"billing", "profile", "profile", "admin"}, []string{"profile"}},
		{[]string{"billing"}, []string{}},
	}
	for _, tc := range cases {
		got := Narrow(tc.req, allowed)
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("Narrow(%v) = %v, want %v", tc.req, got, tc.want)
		}
	}
}

func TestCodeRedemptionAttacks(t *testing.T) {
	reg := testRegistry(t)
	native, _ := reg.Lookup("ios-app")
	agent, _ := reg.Lookup("travel-agent")
	now := time.Now()
	const jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	grant := func() *CodeGrant {
		return &CodeGrant{ClientID: "ios-app", RedirectURI: "com.example.app:/oauth/callback", CodeChallenge: challengeOf(verifier), DPoPJKT: jkt, Expires: now.Add(CodeTTL)}
	}
	tr := func(mod func(*TokenRequest)) *TokenRequest {
		r := &TokenRequest{ClientID: "ios-app", Code: "c", RedirectURI: "com.example.app:/oauth/callback", CodeVerifier: verifier}
		if mod != nil {
			mod(r)
		}
		return r
	}
	cases := []struct {
		name string
		g    *CodeGrant
		tr   *TokenRequest
		c    *Client
		jkt  string
		code string
	}{
		{"wrong verifier", grant(), tr(func(r *TokenRequest) { r.CodeVerifier = strings.Repeat("a", 43) }), native, jkt, ErrInvalidGrant},
		{"verifier equal to the challenge (plain)", grant(), tr(func(r *TokenRequest) { r.CodeVerifier = challengeOf(verifier) }), native, jkt, ErrInvalidGrant},
		{"wrong redirect_uri", grant(), tr(func(r *TokenRequest) { r.RedirectURI = "https://app.example.com/app/callback" }), native, jkt, ErrInvalidGrant},
		{"another client", grant(), tr(func(r *TokenRequest) { r.ClientID = "travel-agent" }), agent, jkt, ErrInvalidGrant},
		{"expired", func() *CodeGrant { g := grant(); g.Expires = now.Add(-time.Second); return g }(), tr(nil), native, jkt, ErrInvalidGrant},
		{"another DPoP key", grant(), tr(nil), native, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ErrInvalidGrant},
		{"no proof for a bound code", grant(), tr(nil), native, "", ErrInvalidDPoPProof},
		{"native without any proof", func() *CodeGrant { g := grant(); g.DPoPJKT = ""; return g }(), tr(nil), native, "", ErrInvalidDPoPProof},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			terr := tc.g.Check(tc.tr, tc.c, tc.jkt, "https://app.example.com", now)
			if terr == nil || terr.Code != tc.code {
				t.Fatalf("got %v, want %s", terr, tc.code)
			}
		})
	}
	if terr := grant().Check(tr(nil), native, jkt, "https://app.example.com", now); terr != nil {
		t.Fatalf("valid redemption refused: %v", terr)
	}
}

func TestTokenRequestParsing(t *testing.T) {
	base := url.Values{"grant_type": {"authorization_code"}, "client_id": {"ios-app"}, "code": {"c"}, "redirect_uri": {"x:/y"}, "code_verifier": {verifier}}
	cases := []struct {
		name string
		mod  func(url.Values)
		code string
	}{
		{"refresh grant", func(v url.Values) { v.Set("grant_type", "refresh_token") }, ErrUnsupportedGrantType},
		{"client secret", func(v url.Values) { v.Set("client_secret", "s") }, ErrInvalidClient},
		{"two codes", func(v url.Values) { v.Add("code", "d") }, ErrInvalidRequest},
		{"no verifier", func(v url.Values) { v.Del("code_verifier") }, ErrInvalidRequest},
		{"no client", func(v url.Values) { v.Del("client_id") }, ErrInvalidClient},
	}
	for _, tc := range cases {
		v := url.Values{}
		for k, vs := range base {
			v[k] = append([]string(nil), vs...)
		}
		tc.mod(v)
		if _, terr := ParseTokenRequest(v); terr == nil || terr.Code != tc.code {
			t.Errorf("%s: got %v, want %s", tc.name, terr, tc.code)
		}
	}
}

func TestSealedCodeGrantOpensOnlyWithItsCode(t *testing.T) {
	code, id, key, err := NewCode()
	if err != nil {
		t.Fatal(err)
	}
	g := &CodeGrant{ClientID: "ios-app", Subject: "session-handle-secret", Expires: time.Now().Add(CodeTTL)}
	sealed, err := g.Seal(id, key)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "session-handle-secret") || strings.Contains(string(sealed), code) {
		t.Fatal("the sealed grant carries its subject or code in the clear")
	}
	id2, key2, err := CodeID(code)
	if err != nil || id2 != id {
		t.Fatalf("CodeID: %v", err)
	}
	got, err := OpenGrant(sealed, id2, key2)
	if err != nil || got.Subject != g.Subject {
		t.Fatalf("open: %v", err)
	}
	_, _, otherKey, _ := NewCode()
	if _, err := OpenGrant(sealed, id, otherKey); err != ErrBadCode {
		t.Fatalf("opened with another code's key: %v", err)
	}
	for _, bad := range []string{"", code + "A", code[:42] + "=", " " + code[1:]} {
		if _, _, err := CodeID(bad); err == nil && bad != code {
			t.Errorf("CodeID(%q) accepted", bad)
		}
	}
}

func TestMetadataDocuments(t *testing.T) {
	m := NewASMetadata("https://app.example.com/", []string{"profile"})
	if m.Issuer != "https://app.example.com" || m.TokenEndpoint != "https://app.example.com/bff/oauth/token" ||
		!m.AuthorizationResponseIssParameterSupported || m.CodeChallengeMethodsSupported[0] != "S256" || m.DPoPSigningAlgValuesSupported[0] != "ES256" {
		t.Fatalf("metadata %+v", m)
	}
	if got := MetadataURL("https://example.com", "/shop/", ASMetadataPath); got != "https://example.com/.well-known/oauth-authorization-server/shop" {
		t.Fatalf("path insertion: %s", got)
	}
	if got := BearerChallenge("https://app.example.com/.well-known/oauth-protected-resource", "profile"); !strings.HasPrefix(got, `Bearer resource_metadata="https://app.example.com/.well-known/oauth-protected-resource"`) {
		t.Fatalf("challenge %s", got)
	}
}

func FuzzAuthorizeAndRedirect(f *testing.F) {
	reg := testRegistry(f)
	f.Add("client_id=travel-agent&redirect_uri=http://127.0.0.1:5000/callback&response_type=code")
	f.Add("client_id=ios-app&redirect_uri=com.example.app:/oauth/callback&code_challenge_method=S256")
	f.Add("client_id=travel-agent&redirect_uri=http://127.0.0.1@evil.example/callback")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		_, aerr := ParseAuthorize(q, reg, "https://app.example.com")
		if aerr != nil && aerr.Redirect {
			c, ok := reg.Lookup(q.Get("client_id"))
			if !ok || !c.RedirectAllowed(aerr.RedirectURI) {
				t.Fatalf("redirecting an error to an unregistered URI %q", aerr.RedirectURI)
			}
			u, err := url.Parse(aerr.RedirectURL("https://app.example.com"))
			if err != nil || (u.Scheme == "http" && u.Hostname() != "127.0.0.1" && u.Hostname() != "::1") {
				t.Fatalf("error redirect leaves loopback: %v", aerr.RedirectURI)
			}
		}
	})
}

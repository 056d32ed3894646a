package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// While the OpenID Provider is down, routes whose credential must come from
// it answer 502 with a clear code and forward nothing without a credential;
// when it returns, they work again by themselves. A route whose credential
// needs no IdP round trip (the user's current token) keeps working.
func TestProxyIdPDownCredentialRoutesFailClosedAndRecover(t *testing.T) {
	verifyNoLeaks(t)
	prof, bill, cat := newRecorder(t, nil), newRecorder(t, nil), newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + prof.URL + `/"
    credential: user_token
  - name: billing
    path: /api/billing/
    upstream: "` + bill.URL + `/"
    credential:
      token_exchange:
        audience: billing-api
  - name: catalog
    path: /api/catalog/
    upstream: "` + cat.URL + `/"
    anonymous: true
    credential:
      client_credentials:
        audience: catalog
`})
	b := e.login("alice", "wonderland")
	if err := e.IdP.Suspend(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, code string }{
		{"/api/billing/x", "token_exchange_failed"},
		{"/api/catalog/x", "client_credentials_failed"},
	} {
		r := e.raw("GET", tt.path, e.cookieHeader(b), "X-CSRF: 1")
		wantJSONError(t, r, http.StatusBadGateway, tt.code)
		if strings.Contains(string(r.Body), e.IdP.Issuer()) {
			t.Fatalf("the error exposes the IdP's address: %s", r.Body)
		}
	}
	if bill.count()+cat.count() != 0 {
		t.Fatal("a request reached an upstream without its credential")
	}
	if code, body := e.api(b, "GET", "/api/profile/me", nil); code != http.StatusOK {
		t.Fatalf("user_token route while the IdP is down: %d %s", code, body)
	}

	if err := e.IdP.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/api/billing/x", "/api/catalog/x"} {
		if code, body := e.api(b, "GET", p, nil); code != http.StatusOK {
			t.Fatalf("%s after the IdP returned: %d %s", p, code, body)
		}
	}
	// The development OP ignores the audience parameter of the client
	// credentials grant (zitadel's storage interface does not pass it on),
	// so the token's aud cannot be asserted here; its subject can.
	if sub := jwtClaims(t, bearerOf(t, cat.last(t).Header))["sub"]; sub != gwClientID {
		t.Fatalf("client-credentials token for %v, want Gatehouse (%s)", sub, gwClientID)
	}
	if x := bearerOf(t, bill.last(t).Header); !strings.Contains(strings.Join(audiences(jwtClaims(t, x)), " "), "billing-api") {
		t.Fatal("exchanged token after recovery is not for billing-api")
	}
	e.Stop()
}

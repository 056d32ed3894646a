package e2e

import (
	"testing"
)

// The whole path once: login through the real OP, /bff/user, an API call that
// reaches the upstream with the user's token, logout, and the old cookie is dead.
func TestGatewayLoginProxyLogoutRoundTrip(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + up.URL + `/"
    credential: user_token
`})
	b := e.login("alice", "wonderland")
	code, u := e.user(b)
	if code != 200 {
		t.Fatalf("/bff/user: %d %v", code, u)
	}
	claims := u["claims"].(map[string]any)
	if claims["sub"] != "user-alice" {
		t.Fatalf("claims: %v", claims)
	}
	code, body := e.api(b, "GET", "/api/profile/me", nil)
	if code != 200 {
		t.Fatalf("api: %d %s\n%s", code, body, e.Logs.String())
	}
	got := up.last(t)
	if got.Path != "/me" || len(got.Header.Values("Authorization")) != 1 {
		t.Fatalf("upstream saw %s %v", got.Path, got.Header)
	}
	if got.Header.Get("Cookie") != "" {
		t.Fatal("the browser's cookie reached the upstream")
	}
}

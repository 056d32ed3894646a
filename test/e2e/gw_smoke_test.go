package e2e

import (
	"io"
	"net/http"
	"strings"
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
	if u.get("sub") != "user-alice" {
		t.Fatalf("claims: %v", u)
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

// The admin listener's /metrics counts requests by route and outcome and
// upstream failures, with no user id, session id or path in any label.
func TestGatewayMetricsCountRoutesOutcomesAndUpstreamErrors(t *testing.T) {
	up := newRecorder(t, nil)
	down := newRecorder(t, nil)
	down.Close() // an upstream that is not there
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + up.URL + `/"
    credential: user_token
  - name: broken
    path: /api/broken/
    upstream: "` + down.URL + `/"
    credential: user_token
`})
	b := e.login("alice", "wonderland")
	if code, _ := e.api(b, "GET", "/api/profile/me", nil); code != 200 {
		t.Fatalf("profile: %d", code)
	}
	if code, _ := e.api(b, "GET", "/api/broken/x", nil); code != 502 {
		t.Fatalf("broken: %d", code)
	}
	if code, _ := e.api(newHTTPBrowser(t), "GET", "/api/profile/me", nil); code != 401 {
		t.Fatalf("anonymous: %d", code)
	}
	resp, err := http.Get(e.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := string(body)
	for _, want := range []string{
		`gatehouse_requests_total{client="web",code="200",outcome="allow",route="profile"} 1`,
		`gatehouse_requests_total{client="web",code="401",outcome="deny",route="profile"} 1`,
		`gatehouse_upstream_errors_total{client="web",kind="unavailable",route="broken"} 1`,
		`gatehouse_security_events_total{client="web",event="login",outcome="success"} 1`,
		`gatehouse_request_duration_seconds_bucket{client="web",route="profile"`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, leak := range []string{"user-alice", "/api/profile/me", e.sessionCookie(b)} {
		if strings.Contains(m, leak) {
			t.Errorf("metrics expose %q", leak)
		}
	}
}

package e2e

import (
	"net/http"
	"testing"
)

// DNS rebinding against the running gateway's admin listener: requests
// whose Host is the attacker's name get 421 on every admin path (health,
// metrics, admin API); the loopback address itself is served.
func TestGatewayAdminListenerRefusesRebindingHosts(t *testing.T) {
	e := startGW(t, gwOptions{})
	send := func(path, host string) int {
		req, _ := http.NewRequest(http.MethodGet, e.Admin+path, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, p := range []string{"/readyz", "/healthz", "/metrics", "/admin/sessions?sub=x"} {
		if code := send(p, "rebind.attacker.example"); code != http.StatusMisdirectedRequest {
			t.Errorf("%s with a rebound Host: %d, want 421", p, code)
		}
	}
	if code := send("/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz at the loopback address: %d", code)
	}
}

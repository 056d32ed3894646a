package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// An agent token belongs to the frontend whose session minted it: two
// frontends with the same route names and agents sections, sharing one
// Redis for sessions and grants — the token works at its frontend and is
// 401 at the other, where nothing reaches the upstream.
func TestAgentTokensAreIsolatedPerFrontend(t *testing.T) {
	srv := redisserver.Start(t)
	ln, port := feListen(t)
	web := feSite{"web", "http://127.0.0.1:" + port}
	partners := feSite{"partners", "http://localhost:" + port}
	p := feIdP(t, web, partners)
	upWeb, upPartners := newRecorder(t, nil), newRecorder(t, nil)
	entry := func(s feSite, up string) string {
		return fmt.Sprintf(`  - client: %s
    public_url: "%s"
%s    routes:
      - { name: profile, path: /api/profile/, upstream: "%s", credential: user_token }
    agents: { max_ttl: 15m, default_ttl: 5m, delegable_routes: [profile] }
`, s.Client, s.Base, feIdentity(s), up)
	}
	cfg := fmt.Sprintf("session:\n  store: redis\n  redis: { url: %q }\naudit: { sink: file, path: audit.jsonl }\nfrontends:\n", srv.URL()) +
		entry(web, upWeb.URL) + entry(partners, upPartners.URL)
	e := startGW(t, gwOptions{Header: cfg, IdP: p, Listener: ln})

	alice := feLogin(t, e, web, "alice", "wonderland")
	req, _ := http.NewRequest("POST", web.Base+"/bff/agents/tokens", strings.NewReader(`{"name":"bot","routes":["profile"],"methods":["GET"],"ttl":"5m"}`))
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := alice.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mint at web: %d %s", resp.StatusCode, raw)
	}
	tok := mustJSON(t, raw)["token"].(string)

	as := func(base string) int {
		req, _ := http.NewRequest("GET", base+"/api/profile/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := as(web.Base); code != 200 || upWeb.count() != 1 {
		t.Fatalf("agent at its own frontend: %d (upstream saw %d)", code, upWeb.count())
	}
	if code := as(partners.Base); code != http.StatusUnauthorized {
		t.Errorf("web's agent token at partners: %d, want 401", code)
	}
	if n := upPartners.count(); n != 0 {
		t.Errorf("%d agent requests reached the other frontend's upstream", n)
	}
}

// An admin revocation reaches the grant cache of every frontend: two
// frontends with agents on a local store (grants cached), a token minted and
// used at the second one (cached there), revoked through the admin API — the
// very next request at its frontend is 401 and nothing reaches the upstream.
func TestAdminRevocationDropsTheGrantAtEveryFrontend(t *testing.T) {
	ln, port := feListen(t)
	web := feSite{"web", "http://127.0.0.1:" + port}
	partners := feSite{"partners", "http://localhost:" + port}
	p := feIdP(t, web, partners)
	upWeb, upPartners := newRecorder(t, nil), newRecorder(t, nil)
	entry := func(s feSite, up string) string {
		return fmt.Sprintf(`  - client: %s
    public_url: "%s"
%s    routes:
      - { name: profile, path: /api/profile/, upstream: "%s", credential: user_token }
    agents: { max_ttl: 15m, default_ttl: 5m, delegable_routes: [profile] }
`, s.Client, s.Base, feIdentity(s), up)
	}
	dir := t.TempDir()
	sessWriteFile(t, dir, "admin-token", agentAdminToken)
	cfg := "session:\n  store: bolt\n  bolt: { path: sessions.db }\naudit: { sink: file, path: audit.jsonl }\nadmin:\n  token: ${file:admin-token}\nfrontends:\n" +
		entry(web, upWeb.URL) + entry(partners, upPartners.URL)
	e := startGW(t, gwOptions{Dir: dir, Header: cfg, IdP: p, Listener: ln})

	bob := feLogin(t, e, partners, "alice", "wonderland")
	req, _ := http.NewRequest("POST", partners.Base+"/bff/agents/tokens", strings.NewReader(`{"name":"bot","routes":["profile"],"methods":["GET"],"ttl":"5m"}`))
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := bob.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mint at partners: %d %s", resp.StatusCode, raw)
	}
	m := mustJSON(t, raw)
	tok, id := m["token"].(string), m["id"].(string)
	as := func() int {
		req, _ := http.NewRequest("GET", partners.Base+"/api/profile/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 3 { // the grant is now in partners' cache
		if code := as(); code != 200 {
			t.Fatalf("agent at its own frontend: %d", code)
		}
	}
	if code, body := e.sessAdmin(nil, "DELETE", "/admin/agents/"+id, agentAdminToken); code != 200 {
		t.Fatalf("admin revoke: %d %s", code, body)
	}
	before := upPartners.count()
	if code := as(); code != http.StatusUnauthorized {
		t.Errorf("after the admin revocation the agent token gets %d, want 401", code)
	}
	if n := upPartners.count() - before; n != 0 {
		t.Errorf("%d agent requests reached the upstream after the revocation", n)
	}
}

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// feAgentPair is two frontends, web and partners, with the same route names
// and agents sections in one Gatehouse, each route to its own recorder.
type feAgentPair struct {
	e                 *gwEnv
	web, partners     feSite
	upWeb, upPartners *recorder
}

// startFEAgentPair starts the pair with head (session, audit, admin ...)
// before the frontends list; dir is the gateway's directory ("" for a new one).
func startFEAgentPair(t *testing.T, head, dir string) *feAgentPair {
	t.Helper()
	ln, port := feListen(t)
	p := &feAgentPair{web: feSite{"web", "http://127.0.0.1:" + port}, partners: feSite{"partners", "http://localhost:" + port},
		upWeb: newRecorder(t, nil), upPartners: newRecorder(t, nil)}
	entry := func(s feSite, up string) string {
		return fmt.Sprintf(`  - client: %s
    public_url: "%s"
%s    routes:
      - { name: profile, path: /api/profile/, upstream: "%s", credential: user_token }
    agents: { max_ttl: 15m, default_ttl: 5m, delegable_routes: [profile] }
`, s.Client, s.Base, feIdentity(s), up)
	}
	cfg := head + "frontends:\n" + entry(p.web, p.upWeb.URL) + entry(p.partners, p.upPartners.URL)
	p.e = startGW(t, gwOptions{Dir: dir, Header: cfg, IdP: feIdP(t, p.web, p.partners), Listener: ln})
	return p
}

// mint signs alice in at site and mints an agent token there; it returns the
// token and the grant's id.
func (p *feAgentPair) mint(t *testing.T, site feSite) (tok, id string) {
	t.Helper()
	alice := feLogin(t, p.e, site, "alice", "wonderland")
	req, _ := http.NewRequest("POST", site.Base+"/bff/agents/tokens", strings.NewReader(`{"name":"bot","routes":["profile"],"methods":["GET"],"ttl":"5m"}`))
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := alice.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mint at %s: %d %s", site.Client, resp.StatusCode, raw)
	}
	m := mustJSON(t, raw)
	return m["token"].(string), m["id"].(string)
}

// as sends GET /api/profile/me with the agent token to site.
func (p *feAgentPair) as(t *testing.T, site feSite, tok string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", site.Base+"/api/profile/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// An agent token belongs to the frontend whose session minted it: two
// frontends with the same route names and agents sections, sharing one
// Redis for sessions and grants — the token works at its frontend and is
// 401 at the other, where nothing reaches the upstream.
func TestAgentTokensAreIsolatedPerFrontend(t *testing.T) {
	srv := redisserver.Start(t)
	p := startFEAgentPair(t, fmt.Sprintf("session:\n  store: redis\n  redis: { url: %q }\naudit: { sink: file, path: audit.jsonl }\n", srv.URL()), "")
	tok, _ := p.mint(t, p.web)
	if code := p.as(t, p.web, tok); code != 200 || p.upWeb.count() != 1 {
		t.Fatalf("agent at its own frontend: %d (upstream saw %d)", code, p.upWeb.count())
	}
	if code := p.as(t, p.partners, tok); code != http.StatusUnauthorized {
		t.Errorf("web's agent token at partners: %d, want 401", code)
	}
	if n := p.upPartners.count(); n != 0 {
		t.Errorf("%d agent requests reached the other frontend's upstream", n)
	}
}

// An admin revocation reaches the grant cache of every frontend: two
// frontends with agents on a local store (grants cached), a token minted and
// used at the second one (cached there), revoked through the admin API — the
// very next request at its frontend is 401 and nothing reaches the upstream.
func TestAdminRevocationDropsTheGrantAtEveryFrontend(t *testing.T) {
	dir := t.TempDir()
	sessWriteFile(t, dir, "admin-token", agentAdminToken)
	p := startFEAgentPair(t, "session:\n  store: bolt\n  bolt: { path: sessions.db }\naudit: { sink: file, path: audit.jsonl }\nadmin:\n  token: ${file:admin-token}\n", dir)
	tok, id := p.mint(t, p.partners)
	for range 3 { // the grant is now in partners' cache
		if code := p.as(t, p.partners, tok); code != 200 {
			t.Fatalf("agent at its own frontend: %d", code)
		}
	}
	if code, body := p.e.sessAdmin(nil, "DELETE", "/admin/agents/"+id, agentAdminToken); code != 200 {
		t.Fatalf("admin revoke: %d %s", code, body)
	}
	before := p.upPartners.count()
	if code := p.as(t, p.partners, tok); code != http.StatusUnauthorized {
		t.Errorf("after the admin revocation the agent token gets %d, want 401", code)
	}
	if n := p.upPartners.count() - before; n != 0 {
		t.Errorf("%d agent requests reached the upstream after the revocation", n)
	}
}

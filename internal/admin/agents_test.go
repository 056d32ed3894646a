package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/agent"
	"github.com/gatehouse-dev/gatehouse/internal/policy"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

func TestAdminListsAndRevokesAgentGrants(t *testing.T) {
	m, out, al := newSessionsAndAudit(t)
	t.Cleanup(func() { al.Close() })
	b, err := agent.New(agent.Options{Store: session.NewMemoryStore(time.Now), Sessions: m, Audit: al,
		Delegable: map[string][]string{"profile": {"GET"}}, MaxTTL: time.Minute, DefaultTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	const tok = "admin-token-0123456789"
	Register(mux, Options{Token: secret.Static(tok), Sessions: m, Agents: b, Audit: al, Client: "web"})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	h := newSession(t, m, "alice")
	s, _ := m.Load(context.Background(), h, false)
	allow := func(context.Context, *session.Session, string, string, *policy.AgentInfo) (bool, error) {
		return true, nil
	}
	iss, err := b.Issue(context.Background(), h, s, agent.Request{Name: "bot", Routes: []string{"profile"}}, allow)
	if err != nil {
		t.Fatal(err)
	}
	value := iss.Token.Value().Reveal()

	if code, _ := do(t, "GET", srv.URL+"/admin/agents?sub=alice", ""); code != http.StatusUnauthorized {
		t.Errorf("without the admin token: %d", code)
	}
	if code, body := do(t, "GET", srv.URL+"/admin/agents", tok); code != http.StatusBadRequest || body["error"] != "sub_required" {
		t.Errorf("without sub: %d %v", code, body)
	}
	code, body := do(t, "GET", srv.URL+"/admin/agents?sub=alice", tok)
	list, _ := body["agents"].([]any)
	if code != 200 || len(list) != 1 {
		t.Fatalf("list = %d %v", code, body)
	}
	g := list[0].(map[string]any)
	if g["id"] != iss.Grant.ID || g["name"] != "bot" || g["session_id"] != s.ID || g["sub"] != "alice" {
		t.Errorf("grant = %v", g)
	}
	if _, has := g["token"]; has {
		t.Error("the listing has a token field")
	}
	if code, body := do(t, "GET", srv.URL+"/admin/agents?sub=bob", tok); code != 200 || len(body["agents"].([]any)) != 0 {
		t.Errorf("another user's list = %v", body)
	}
	if code, _ := do(t, "DELETE", srv.URL+"/admin/agents/"+iss.Grant.ID, tok); code != 200 {
		t.Fatalf("revoke = %d", code)
	}
	if _, err := b.Authenticate(context.Background(), value); err == nil {
		t.Error("the revoked token still authenticates")
	}
	if code, body := do(t, "DELETE", srv.URL+"/admin/agents/"+iss.Grant.ID, tok); code != http.StatusNotFound || body["error"] != "agent_token_not_found" {
		t.Errorf("second revoke = %d %v", code, body)
	}
	b.Close()
	al.Close()
	if strings.Contains(out.String(), value[4:]) {
		t.Error("the audit log holds the token")
	}
	if !strings.Contains(out.String(), `"event":"agent_token_revoked","outcome":"success","reason":"admin_revoke","sub":"alice"`) ||
		!strings.Contains(out.String(), `"actor":["admin","agent:`+iss.Grant.ID+`:bot"]`) {
		t.Errorf("audit = %s", out.String())
	}
}

func TestAdminAgentPathsAre404WithoutAgents(t *testing.T) {
	srv, _, _, _ := setup(t, secret.Static("admin-token-0123456789"))
	if code, _ := do(t, "GET", srv.URL+"/admin/agents?sub=alice", "admin-token-0123456789"); code != http.StatusNotFound {
		t.Errorf("got %d, want 404", code)
	}
}

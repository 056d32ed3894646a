package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
)

// The agent credentials broker end to end: the real OP, Gatehouse from a
// YAML file, upstreams that record what reaches them.

const agentAdminToken = "admin-token-agents-0123456789abcdef"

type agentUps struct{ profile, billing, orders, reports, internal *recorder }

func newAgentUps(t *testing.T) *agentUps {
	return &agentUps{newRecorder(t, nil), newRecorder(t, nil), newRecorder(t, nil), newRecorder(t, nil), newRecorder(t, nil)}
}

func (u *agentUps) total() int {
	return u.profile.count() + u.billing.count() + u.orders.count() + u.reports.count() + u.internal.count()
}

// agentRoutes: profile (GET, POST), billing (token exchange), orders (agents
// kept out of /api/orders/private), reports (users only), internal (not
// delegable).
func agentRoutes(u *agentUps) string {
	return `
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + u.profile.URL + `/"
    methods: [GET, POST]
    credential: user_token
  - name: billing
    path: /api/billing/
    upstream: "` + u.billing.URL + `/"
    methods: [GET, POST]
    credential:
      token_exchange:
        audience: billing-api
  - name: orders
    path: /api/orders/
    upstream: "` + u.orders.URL + `/"
    credential: user_token
    allow: 'agent == null || !request.path.startsWith("/api/orders/private")'
  - name: reports
    path: /api/reports/
    upstream: "` + u.reports.URL + `/"
    credential: user_token
    allow: 'agent == null'
  - name: internal
    path: /api/internal/
    upstream: "` + u.internal.URL + `/"
    credential: user_token
`
}

const agentsSection = `
agents:
  max_ttl: 15m
  default_ttl: 5m
  delegable_routes: [profile, billing, orders, reports]
`

func startAgentGW(t *testing.T, extra string) (*gwEnv, *agentUps) {
	t.Helper()
	u := newAgentUps(t)
	dir := t.TempDir()
	sessWriteFile(t, dir, "admin-token", agentAdminToken)
	e := startGW(t, gwOptions{Dir: dir, AccessTokenTTL: 2 * time.Hour, Config: `
session:
  idle_timeout: 10m
  absolute_timeout: 1h
admin:
  token: ${file:admin-token}
` + agentRoutes(u) + agentsSection + extra})
	return e, u
}

// mint asks for an agent token the way the SPA does (cookie, X-CSRF: 1).
func (e *gwEnv) mint(b *http.Client, body string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.URL+"/bff/agents/tokens", strings.NewReader(body))
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

// mustMint mints and returns the token and the answer.
func (e *gwEnv) mustMint(b *http.Client, body string) (string, map[string]any) {
	e.t.Helper()
	code, m := e.mint(b, body)
	if code != http.StatusCreated {
		e.t.Fatalf("mint %s: %d %v\nlogs:\n%s", body, code, m, sessTail(e.Logs.String(), 3000))
	}
	tok, _ := m["token"].(string)
	return tok, m
}

// asAgent calls path with only the agent token: no cookie, no CSRF header.
func (e *gwEnv) asAgent(token, method, path string, hdr ...string) (int, []byte, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header
}

func (e *gwEnv) wantAgent(token, method, path string, status int, code string) []byte {
	e.t.Helper()
	got, body, _ := e.asAgent(token, method, path)
	if got != status {
		e.t.Fatalf("agent %s %s: %d %s, want %d\nlogs:\n%s", method, path, got, body, status, sessTail(e.Logs.String(), 3000))
	}
	if code != "" {
		if c := sessErrCode(e.t, body); c != code {
			e.t.Fatalf("agent %s %s: error %q, want %q", method, path, c, code)
		}
	}
	return body
}

func noAgentTokenIn(t *testing.T, what string, h http.Header, token string) {
	t.Helper()
	for k, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, "gha_") || strings.Contains(v, token[4:]) {
				t.Fatalf("%s: header %s carries the agent token", what, k)
			}
		}
	}
}

// Acceptance: a token for profile GET works on profile GET, with the
// user's credential upstream; profile POST, billing, a route outside the
// delegable set, an unknown path, /bff/* and the frontend are refused and
// nothing reaches any upstream.
func TestAgentTokenReachesOnlyItsGrant(t *testing.T) {
	e, u := startAgentGW(t, "")
	b := e.login("alice", "wonderland")
	tok, m := e.mustMint(b, `{"name":"travel bot","routes":["profile"],"methods":["GET"],"ttl":"5m"}`)
	if !strings.HasPrefix(tok, "gha_") || len(tok) != 68 || m["name"] != "travel bot" {
		t.Fatalf("mint answer %v", m)
	}

	e.wantAgent(tok, "GET", "/api/profile/me", 200, "")
	got := u.profile.last(t)
	if c := jwtClaims(t, bearerOf(t, got.Header)); c["sub"] != "user-alice" {
		t.Errorf("profile upstream got a token for %v, want the delegating user's", c["sub"])
	}
	noAgentTokenIn(t, "profile upstream", got.Header, tok)
	if got.Header.Get("Cookie") != "" {
		t.Error("a cookie reached the upstream")
	}

	before := u.total()
	e.wantAgent(tok, "POST", "/api/profile/me", 403, "agent_scope")
	e.wantAgent(tok, "GET", "/api/billing/plan", 403, "agent_scope")
	e.wantAgent(tok, "GET", "/api/internal/x", 403, "agent_scope")
	e.wantAgent(tok, "GET", "/api/nope", 403, "agent_forbidden")
	e.wantAgent(tok, "GET", "/", 403, "agent_forbidden")
	e.wantAgent(tok, "GET", "/bff/user", 403, "agent_forbidden")
	e.wantAgent(tok, "GET", "/bff/agents/tokens", 403, "agent_forbidden")
	e.wantAgent(tok, "POST", "/bff/agents/tokens", 403, "agent_forbidden")
	e.wantAgent(tok, "GET", "/bff/logout", 403, "agent_forbidden")
	e.wantAgent("gha_"+strings.Repeat("A", 64), "GET", "/api/profile/me", 401, "agent_token_invalid")
	e.wantAgent(tok[:67], "GET", "/api/profile/me", 401, "agent_token_invalid")
	if _, _, h := e.asAgent(tok[:67], "GET", "/api/profile/me"); !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("401 without WWW-Authenticate: %v", h)
	}

	// An agent token next to the session cookie is ambiguous: refused.
	code, body := e.api(b, "GET", "/api/profile/me", map[string]string{"Authorization": "Bearer " + tok})
	if code != 400 || sessErrCode(t, body) != "ambiguous_credentials" {
		t.Fatalf("cookie + agent token: %d %s", code, body)
	}
	if n := u.total(); n != before {
		t.Fatalf("%d refused agent requests reached an upstream", n-before)
	}

	// Any other bearer next to the cookie is not an agent: the cookie wins
	// and the header never reaches the upstream (as before agents).
	code, body = e.api(b, "GET", "/api/profile/me", map[string]string{"Authorization": "Bearer not-an-agent-token"})
	if code != 200 {
		t.Fatalf("cookie + other bearer: %d %s", code, body)
	}
	if strings.Contains(u.profile.last(t).Header.Get("Authorization"), "not-an-agent-token") {
		t.Fatal("the client's Authorization reached the upstream")
	}
}

// Acceptance: asking for more than delegable, more than the user's policy,
// longer than max_ttl or longer than the session yields a narrower grant.
func TestAgentGrantIsNeverWiderThanAskedDelegablePolicyOrSession(t *testing.T) {
	e, u := startAgentGW(t, "")
	b := e.login("alice", "wonderland")
	_, m := e.mustMint(b, `{"name":"greedy","routes":["profile","billing","internal","reports","nope"],"methods":["GET","POST","DELETE"],"ttl":"2h"}`)
	if got, _ := json.Marshal(m["routes"]); string(got) != `["billing","profile"]` {
		t.Errorf("routes %s: internal is not delegable, reports is users-only, nope is unknown", got)
	}
	if got, _ := json.Marshal(m["methods"]); string(got) != `["GET","POST"]` {
		t.Errorf("methods %s: no route serves DELETE", got)
	}
	exp, _ := time.Parse(time.RFC3339Nano, m["expires_at"].(string))
	if d := exp.Sub(e.Clock.Now()); d > 15*time.Minute || d < 15*time.Minute-5*time.Second {
		t.Errorf("grant lives %s, want max_ttl 15m", d)
	}
	if code, m := e.mint(b, `{"name":"x","routes":["reports","internal"]}`); code != 403 || m["error"] != "nothing_delegable" {
		t.Errorf("only undelegable routes: %d %v", code, m)
	}

	// The session has 5 minutes left: a 10m grant lives 5m.
	for range 6 {
		e.Clock.Advance(9 * time.Minute) // 54m, never idle for 10m
		e.sessWant(b, "/api/profile/me", 200)
	}
	e.Clock.Advance(time.Minute)
	infos, err := e.GW.Sessions().List(context.Background(), "user-alice")
	if err != nil || len(infos) != 1 {
		t.Fatalf("sessions %v %v", infos, err)
	}
	tok, m := e.mustMint(b, `{"name":"late","routes":["orders"],"ttl":600}`)
	exp, _ = time.Parse(time.RFC3339Nano, m["expires_at"].(string))
	if exp.After(infos[0].AbsoluteExpiry) || infos[0].AbsoluteExpiry.Sub(exp) > 5*time.Second {
		t.Errorf("grant ends %s, session %s: want the session's end", exp, infos[0].AbsoluteExpiry)
	}

	// The route's policy applies at use time too, with agent set.
	e.wantAgent(tok, "GET", "/api/orders/list", 200, "")
	before := u.orders.count()
	e.wantAgent(tok, "GET", "/api/orders/private/x", 403, "")
	if u.orders.count() != before {
		t.Error("a request the policy refused reached the upstream")
	}
}

// On a token_exchange route the exchange names the agent as actor_token: the
// real OP writes act.sub = agent:<grant id> into the downstream token. The
// user's own token (no act) is never shared with the agent.
func TestAgentTokenExchangeNamesTheAgentAsActor(t *testing.T) {
	e, u := startAgentGW(t, "")
	b := e.login("alice", "wonderland")
	e.sessWant(b, "/api/billing/plan", 200)
	userTok := jwtClaims(t, bearerOf(t, u.billing.last(t).Header))
	if userTok["act"] != nil {
		t.Fatalf("the user's own exchanged token names an actor: %v", userTok["act"])
	}
	tok, m := e.mustMint(b, `{"name":"billing bot","routes":["billing"]}`)
	e.wantAgent(tok, "GET", "/api/billing/plan", 200, "")
	got := u.billing.last(t)
	c := jwtClaims(t, bearerOf(t, got.Header))
	act, _ := c["act"].(map[string]any)
	if act["sub"] != "agent:"+m["id"].(string) || c["sub"] != "user-alice" {
		t.Fatalf("exchanged token sub %v act %v, want user-alice acted for by agent:%v", c["sub"], c["act"], m["id"])
	}
	if aud := audiences(c); len(aud) != 1 || aud[0] != "billing-api" {
		t.Errorf("aud %v", aud)
	}
	noAgentTokenIn(t, "billing upstream", got.Header, tok)
	// And the user, after the agent, still gets a token without act.
	e.sessWant(b, "/api/billing/plan", 200)
	if c := jwtClaims(t, bearerOf(t, u.billing.last(t).Header)); c["act"] != nil {
		t.Fatalf("the user received the agent's exchanged token: act %v", c["act"])
	}
}

// Listing, revoking, the per-session limit and the admin API through the
// gateway; another session's grant is 404.
func TestAgentTokensListRevokeAndAdmin(t *testing.T) {
	e, _ := startAgentGW(t, "  max_tokens_per_session: 2\n")
	b := e.login("alice", "wonderland")
	tok, m := e.mustMint(b, `{"name":"one","routes":["profile"]}`)
	id := m["id"].(string)
	e.mustMint(b, `{"name":"two","routes":["profile"]}`)
	if code, m := e.mint(b, `{"name":"three","routes":["profile"]}`); code != 409 || m["error"] != "agent_token_limit" {
		t.Fatalf("third token: %d %v", code, m)
	}
	code, body := e.api(b, "GET", "/bff/agents/tokens", nil)
	if code != 200 || strings.Contains(string(body), tok[4:]) || strings.Contains(string(body), `"token"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	b2 := e.login("alice", "wonderland") // a second session of the same user
	if code, _ := e.api(b2, "DELETE", "/bff/agents/tokens/"+id, nil); code != 404 {
		t.Fatalf("another session revoking: %d", code)
	}
	e.wantAgent(tok, "GET", "/api/profile/me", 200, "")
	if code, body := e.api(b, "GET", "/bff/agents/tokens", map[string]string{"X-CSRF": ""}); code != 403 {
		t.Fatalf("list without CSRF header: %d %s", code, body)
	}

	code, body = e.sessAdmin(nil, "GET", "/admin/agents?sub=user-alice", agentAdminToken)
	if code != 200 || !strings.Contains(string(body), id) || strings.Contains(string(body), tok[4:]) {
		t.Fatalf("admin list: %d %s", code, body)
	}
	if code, body := e.sessAdmin(nil, "DELETE", "/admin/agents/"+id, agentAdminToken); code != 200 {
		t.Fatalf("admin revoke: %d %s", code, body)
	}
	e.wantAgent(tok, "GET", "/api/profile/me", 401, "agent_token_invalid")
	tok3, m3 := e.mustMint(b, `{"name":"three","routes":["profile"]}`) // a slot is free again
	if code, _ := e.api(b, "DELETE", "/bff/agents/tokens/"+m3["id"].(string), nil); code != 200 {
		t.Fatalf("revoke own: %d", code)
	}
	e.wantAgent(tok3, "GET", "/api/profile/me", 401, "agent_token_invalid")
}

// agents.rate_limit: a bucket per token; beyond it 429 JSON with Retry-After
// and nothing forwarded; another token has its own budget.
func TestAgentRateLimitPerToken(t *testing.T) {
	e, u := startAgentGW(t, "  rate_limit: { requests: 2, per: 1m }\n")
	b := e.login("alice", "wonderland")
	t1, _ := e.mustMint(b, `{"name":"a","routes":["profile"]}`)
	t2, _ := e.mustMint(b, `{"name":"b","routes":["profile"]}`)
	e.wantAgent(t1, "GET", "/api/profile/me", 200, "")
	e.wantAgent(t1, "GET", "/api/profile/me", 200, "")
	before := u.profile.count()
	code, body, h := e.asAgent(t1, "GET", "/api/profile/me")
	if code != 429 || sessErrCode(t, body) != "rate_limited" || h.Get("Retry-After") == "" {
		t.Fatalf("third request: %d %s %v", code, body, h)
	}
	if u.profile.count() != before {
		t.Fatal("a rate-limited request reached the upstream")
	}
	e.wantAgent(t2, "GET", "/api/profile/me", 200, "")
	for range 3 { // the user is not limited by the agents' limit
		e.sessWant(b, "/api/profile/me", 200)
	}
}

// Acceptance: the token value never appears in logs, audit, list responses,
// metrics or upstream requests; the audit names the actor chain.
func TestAgentTokenNeverLeaks(t *testing.T) {
	e, u := startAgentGW(t, "")
	b := e.login("alice", "wonderland")
	tok, m := e.mustMint(b, `{"name":"leak check","routes":["profile","billing"]}`)
	id := m["id"].(string)
	e.wantAgent(tok, "GET", "/api/profile/me", 200, "")
	e.wantAgent(tok, "GET", "/api/billing/plan", 200, "")
	e.wantAgent(tok, "POST", "/api/profile/me", 403, "")
	e.wantAgent(tok, "GET", "/bff/user", 403, "")
	e.wantAgent(tok[:67], "GET", "/api/profile/me", 401, "agent_token_invalid")
	e.wantAgent("gha_"+strings.Repeat("B", 64), "GET", "/api/profile/me", 401, "agent_token_invalid")
	_, list := e.api(b, "GET", "/bff/agents/tokens", nil)
	_, adminList := e.sessAdmin(nil, "GET", "/admin/agents?sub=user-alice", agentAdminToken)
	_, metrics := e.sessAdmin(nil, "GET", "/metrics", "")
	e.Stop()
	auditFile, _ := os.ReadFile(e.Audit)
	var upstream bytes.Buffer
	for _, r := range append(u.profile.requests(), u.billing.requests()...) {
		_ = r.Header.Write(&upstream)
		upstream.WriteString(r.Path + "?" + r.Query)
		upstream.Write(r.Body)
	}
	for what, text := range map[string]string{
		"logs": e.Logs.String(), "audit": string(auditFile), "token list": string(list),
		"admin list": string(adminList), "metrics": string(metrics), "upstream requests": upstream.String(),
	} {
		if strings.Contains(text, tok[4:]) || strings.Contains(text, tok[4:40]) {
			t.Errorf("the agent token appears in the %s", what)
		}
	}
	for _, reason := range []string{`"reason":"token_malformed"`, `"reason":"token_unknown"`} {
		if !strings.Contains(string(auditFile), `"event":"access","outcome":"deny",`+reason) {
			t.Errorf("no access denial audited with %s", reason)
		}
	}
	actor := `"actor":["agent:` + id + `:leak check"]`
	for _, want := range []string{`"event":"agent_token_issued","outcome":"success"`, `"event":"access","outcome":"allow"`, `"event":"access","outcome":"deny","reason":"agent_scope"`} {
		found := false
		for _, line := range strings.Split(string(auditFile), "\n") {
			if strings.Contains(line, want) && strings.Contains(line, actor) && strings.Contains(line, `"sub":"user-alice"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no audit record %s with sub user-alice and %s", want, actor)
		}
	}
}

// agentPair is two Gatehouse instances sharing one redis and one OP.
type agentPair struct {
	e1, e2 *gwEnv
	clk    *testclock.Clock
	ups    *agentUps
	// current is the agent token under test.
	current string
}

func (p *agentPair) tok(*testing.T) string { return p.current }

func startAgentPair(t *testing.T) *agentPair {
	t.Helper()
	rs := redisserver.Start(t)
	u := newAgentUps(t)
	ln1, base1 := sessListen(t)
	ln2, base2 := sessListen(t)
	p := startIdP(t, 5*time.Minute, base1, base2)
	clk := &testclock.Clock{}
	dir1, dir2 := t.TempDir(), t.TempDir()
	sessWriteFile(t, dir1, "admin-token", agentAdminToken)
	sessWriteFile(t, dir2, "admin-token", agentAdminToken)
	cfg := `
session:
  store: redis
  idle_timeout: 10m
  absolute_timeout: 12m
  redis:
    url: ` + rs.URL() + `
admin:
  token: ${file:admin-token}
` + agentRoutes(u) + agentsSection
	e1 := startGW(t, gwOptions{IdP: p, Listener: ln1, Clock: clk, Config: cfg, Dir: dir1})
	e2 := startGW(t, gwOptions{IdP: p, Listener: ln2, Clock: clk, Config: cfg, Dir: dir2})
	return &agentPair{e1: e1, e2: e2, clk: clk, ups: u}
}

// wantRefused waits until both instances refuse the token with 401 (the
// second learns of the session's end over redis pub/sub, or reads it).
func (p *agentPair) wantRefused(t *testing.T, tok string) {
	t.Helper()
	deadline := time.Now().Add(6 * time.Second)
	for {
		c1, _, _ := p.e1.asAgent(tok, "GET", "/api/profile/me")
		c2, _, _ := p.e2.asAgent(tok, "GET", "/api/profile/me")
		if c1 == 401 && c2 == 401 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the session ended the agent token gets %d on instance 1 and %d on instance 2, want 401 on both", c1, c2)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Acceptance: after logout, back-channel logout, idle and absolute expiry,
// admin revocation (of the session, and of the grant) and a refused refresh,
// the agent token gets 401 on both instances sharing redis.
func TestAgentTokenDiesWithItsSessionOnEveryInstance(t *testing.T) {
	causes := []struct {
		name string
		end  func(t *testing.T, p *agentPair, b *http.Client, sid, grant string)
	}{
		{"logout", func(t *testing.T, p *agentPair, b *http.Client, sid, _ string) {
			if code, body := p.e1.api(b, "GET", "/bff/logout?sid="+url.QueryEscape(sid), nil); code != 302 && code != 303 {
				t.Fatalf("logout: %d %s", code, body)
			}
		}},
		{"back-channel logout", func(t *testing.T, p *agentPair, _ *http.Client, _, _ string) {
			if ended, err := p.e1.IdP.EndSession(context.Background(), "user-alice"); err != nil || len(ended) == 0 {
				t.Fatalf("OP back-channel logout: %v %v", ended, err)
			}
		}},
		{"idle expiry", func(t *testing.T, p *agentPair, _ *http.Client, _, _ string) {
			// The agent's calls meanwhile do not keep the session alive.
			p.clk.Advance(5 * time.Minute)
			p.e2.wantAgent(p.tok(t), "GET", "/api/profile/me", 200, "")
			p.clk.Advance(5 * time.Minute)
		}},
		{"absolute expiry", func(t *testing.T, p *agentPair, b *http.Client, _, _ string) {
			p.clk.Advance(6 * time.Minute)
			p.e1.sessWant(b, "/api/profile/me", 200) // active, never idle
			p.clk.Advance(6 * time.Minute)
		}},
		{"admin revokes the session", func(t *testing.T, p *agentPair, _ *http.Client, sid, _ string) {
			if code, body := p.e1.sessAdmin(nil, "DELETE", "/admin/sessions/"+sid, agentAdminToken); code/100 != 2 {
				t.Fatalf("revoke: %d %s", code, body)
			}
		}},
		{"admin revokes the grant", func(t *testing.T, p *agentPair, _ *http.Client, _, grant string) {
			if code, body := p.e2.sessAdmin(nil, "DELETE", "/admin/agents/"+grant, agentAdminToken); code != 200 {
				t.Fatalf("revoke grant: %d %s", code, body)
			}
		}},
		{"refresh refused", func(t *testing.T, p *agentPair, _ *http.Client, _, _ string) {
			// The session holds a refresh token the OP never issued; the
			// access token's expiry is near, so the agent's next request
			// refreshes, the OP says invalid_grant and the session ends.
			p.clk.Advance(4*time.Minute + 40*time.Second)
			p.e1.wantAgent(p.tok(t), "GET", "/api/profile/me", 401, "")
		}},
	}
	for _, c := range causes {
		t.Run(c.name, func(t *testing.T) {
			p := startAgentPair(t)
			b := p.e1.login("alice", "wonderland")
			if c.name == "refresh refused" {
				(&endPair{e1: p.e1, e2: p.e2, clk: p.clk}).plantDeadRefresh(t, b)
			}
			sid := p.e1.sessPublicID(b)
			tok, m := p.e1.mustMint(b, `{"name":"bot","routes":["profile"],"ttl":"15m"}`)
			p.current = tok
			p.e1.wantAgent(tok, "GET", "/api/profile/me", 200, "")
			p.e2.wantAgent(tok, "GET", "/api/profile/me", 200, "")
			c.end(t, p, b, sid, m["id"].(string))
			before := p.ups.profile.count()
			p.wantRefused(t, tok)
			if n := p.ups.profile.count() - before; n != 0 {
				t.Errorf("%d agent requests reached the upstream after the session ended", n)
			}
		})
	}
}

package e2e

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
)

// endPair is two Gatehouse instances sharing one redis and one OP, with a
// token_exchange route, so that each holds an exchanged token per session.
type endPair struct {
	e1, e2 *gwEnv
	clk    *testclock.Clock
}

const endAdminToken = "admin-token-end-caches-0123456789abcdef"

func startEndPair(t *testing.T) *endPair {
	t.Helper()
	rs := redisserver.Start(t)
	up := newRecorder(t, nil)
	ln1, base1 := sessListen(t)
	ln2, base2 := sessListen(t)
	p := startIdP(t, 5*time.Minute, base1, base2)
	clk := &testclock.Clock{}
	dir1, dir2 := t.TempDir(), t.TempDir()
	sessWriteFile(t, dir1, "admin-token", endAdminToken)
	sessWriteFile(t, dir2, "admin-token", endAdminToken)
	cfg := `
session:
  store: redis
  idle_timeout: 10m
  redis:
    url: ` + rs.URL() + `
admin:
  token: ${file:admin-token}
routes:
  - name: billing
    path: /api/billing/
    upstream: "` + up.URL + `/"
    credential:
      token_exchange:
        audience: billing-api
`
	e1 := startGW(t, gwOptions{IdP: p, Listener: ln1, Clock: clk, Config: cfg, Dir: dir1})
	e2 := startGW(t, gwOptions{IdP: p, Listener: ln2, Clock: clk, Config: cfg, Dir: dir2})
	return &endPair{e1: e1, e2: e2, clk: clk}
}

// warm makes both instances exchange (and cache) a token for b's session.
func (p *endPair) warm(t *testing.T, b *http.Client) string {
	t.Helper()
	p.e1.sessWant(b, "/api/billing/plan", 200)
	p.e2.sessWant(b, "/api/billing/plan", 200)
	id := p.e1.sessPublicID(b)
	if !p.e1.GW.ExchangeCached(id) || !p.e2.GW.ExchangeCached(id) {
		t.Fatal("the exchanged token is not cached on both instances")
	}
	return id
}

// wantDropped waits for both instances to drop the session's exchanged
// tokens (the second learns of the end over redis pub/sub).
func (p *endPair) wantDropped(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.e1.GW.ExchangeCached(id) || p.e2.GW.ExchangeCached(id) {
		if time.Now().After(deadline) {
			t.Fatalf("exchanged token still cached after the session ended: instance 1 %v, instance 2 %v",
				p.e1.GW.ExchangeCached(id), p.e2.GW.ExchangeCached(id))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Every cause of a session's end drops its exchanged tokens on the instance
// that ended it and on the other one (session.Manager.OnEnd, over redis).
func TestSessionEndDropsExchangedTokensOnBothInstances(t *testing.T) {
	causes := map[string]func(t *testing.T, p *endPair, b *http.Client, id string){
		"logout": func(t *testing.T, p *endPair, b *http.Client, id string) {
			if code, body := p.e1.api(b, "GET", "/bff/logout?sid="+url.QueryEscape(id), nil); code != 302 && code != 303 {
				t.Fatalf("logout: %d %s", code, body)
			}
		},
		"backchannel": func(t *testing.T, p *endPair, b *http.Client, id string) {
			if ended, err := p.e1.IdP.EndSession(context.Background(), "user-alice"); err != nil || len(ended) == 0 {
				t.Fatalf("OP back-channel logout: %v %v", ended, err)
			}
		},
		"admin revoke": func(t *testing.T, p *endPair, b *http.Client, id string) {
			if code, body := p.e1.sessAdmin(nil, "DELETE", "/admin/sessions/"+id, endAdminToken); code/100 != 2 {
				t.Fatalf("revoke: %d %s", code, body)
			}
		},
		"expiry noticed": func(t *testing.T, p *endPair, b *http.Client, id string) {
			p.clk.Advance(11 * time.Minute)
			sessErrCode(t, p.e1.sessWant(b, "/api/billing/plan", 401))
		},
		"refresh refused (invalid_grant)": func(t *testing.T, p *endPair, b *http.Client, id string) {
			// The OP ends the user's session without telling Gatehouse
			// (no back-channel to this session): the refresh token dies.
			planted := p.plantDeadRefresh(t, b)
			p.e1.sessWant(b, "/api/billing/plan", 200)
			p.e2.sessWant(b, "/api/billing/plan", 200)
			if !p.e1.GW.ExchangeCached(planted) || !p.e2.GW.ExchangeCached(planted) {
				t.Fatal("planted session's exchanged token is not cached on both instances")
			}
			p.clk.Advance(4*time.Minute + 40*time.Second)
			sessErrCode(t, p.e1.sessWant(b, "/api/billing/plan", 401))
			p.wantDropped(t, planted)
		},
	}
	for name, end := range causes {
		t.Run(name, func(t *testing.T) {
			p := startEndPair(t)
			b := p.e1.login("alice", "wonderland")
			id := p.warm(t, b)
			end(t, p, b, id)
			if name != "refresh refused (invalid_grant)" {
				p.wantDropped(t, id)
			}
		})
	}
}

// plantDeadRefresh gives the browser a new session holding the real
// session's (valid) access token but a refresh token the OP never issued,
// so the next refresh gets invalid_grant. It returns the new session's id.
func (p *endPair) plantDeadRefresh(t *testing.T, b *http.Client) string {
	t.Helper()
	ctx := context.Background()
	h, err := session.ParseHandle(p.e1.sessionCookie(b))
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.e1.GW.Sessions().Load(ctx, h, false)
	if err != nil {
		t.Fatal(err)
	}
	ns := *s
	ns.ID, ns.RefreshToken = "", secret.New("never-issued-refresh-token")
	nh, err := p.e1.GW.Sessions().Create(ctx, &ns)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(p.e1.URL)
	b.Jar.SetCookies(u, []*http.Cookie{{Name: p.e1.Cfg.EffectiveCookieName(), Value: nh.Cookie().Reveal(), Path: "/"}})
	return nh.ID()
}

// An IdP outage while a refresh is due ends nothing: the exchanged tokens
// stay cached on both instances and the session survives.
func TestSessionIdPOutageDuringRefreshDropsNothing(t *testing.T) {
	p := startEndPair(t)
	b := p.e1.login("alice", "wonderland")
	id := p.warm(t, b)
	if err := p.e1.IdP.Suspend(); err != nil {
		t.Fatal(err)
	}
	p.clk.Advance(4*time.Minute + 40*time.Second)
	if code, body := p.e1.api(b, "GET", "/api/billing/plan", nil); code < 500 {
		t.Fatalf("with the IdP down a refresh is due: %d %s, want 5xx", code, body)
	}
	time.Sleep(200 * time.Millisecond) // give a (wrong) pub/sub end time to arrive
	if !p.e1.GW.ExchangeCached(id) || !p.e2.GW.ExchangeCached(id) {
		t.Fatalf("an IdP outage dropped exchanged tokens: instance 1 %v, instance 2 %v", p.e1.GW.ExchangeCached(id), p.e2.GW.ExchangeCached(id))
	}
	if err := p.e1.IdP.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	infos, err := p.e1.GW.Sessions().List(context.Background(), "user-alice")
	if err != nil || len(infos) != 1 || infos[0].ID != id {
		t.Fatalf("the session did not survive the IdP outage: %v %v", infos, err)
	}
}

package e2e

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
)

// A native session lives in the bolt file like any session: after a
// restart on the same data directory the handle still works, and a proof
// used before the restart is still refused (the in-memory proof ids are
// handed over on shutdown).
func TestOAuthNativeSessionSurvivesRestartOnBolt(t *testing.T) {
	up := newRecorder(t, nil)
	ln, _ := sessListen(t)
	addr := ln.Addr().String()
	dir := t.TempDir()
	cfg := strings.ReplaceAll(oauthRoutes, "{{.Upstream}}", up.URL) + oauthClientsYAML
	e := startGW(t, gwOptions{Listener: ln, Dir: dir, Config: cfg})
	app := newNativeApp(t, e)
	app.signIn(newHTTPBrowser(t))
	used := app.honest("GET", "/api/profile/me")
	if st, _, body := app.call("GET", "/api/profile/me", used); st != 200 {
		t.Fatalf("before restart: %d %s", st, body)
	}
	e.Stop()
	var ln2 net.Listener
	var err error
	for range 50 {
		if ln2, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("rebind %s: %v", addr, err)
	}
	e2 := startGW(t, gwOptions{IdP: e.IdP, Listener: ln2, Dir: dir, Config: cfg})
	app2 := app.at(e2)
	if st, _, body := app2.call("GET", "/api/profile/me", used); st != http.StatusUnauthorized || !strings.Contains(string(body), "already used") {
		t.Fatalf("proof replayed after restart: %d %s", st, body)
	}
	if st, _, body := app2.call("GET", "/api/profile/me", app2.honest("GET", "/api/profile/me")); st != 200 {
		t.Fatalf("after restart: %d %s", st, body)
	}
	if n := up.count(); n != 2 {
		t.Fatalf("upstream saw %d requests, want 2", n)
	}
}

// Two instances on one redis with one public_url: a handle issued by one
// works on the other, a proof used on one is refused on the other (one
// replay cache), and revocation on one ends the handle on both.
func TestOAuthNativeSessionWorksOnASecondInstanceOnRedis(t *testing.T) {
	rs := redisserver.Start(t)
	up := newRecorder(t, nil)
	ln1, base1 := sessListen(t)
	ln2, _ := sessListen(t)
	p := startIdP(t, 5*time.Minute, base1)
	clk := &testclock.Clock{}
	header := `public_url: "` + base1 + `"
identity:
  issuer: "{{.Issuer}}"
  client_id: ` + gwClientID + `
  client_secret: ${file:client-secret}
audit:
  sink: file
  path: audit.jsonl
  fsync_interval: 50ms
session:
  store: redis
  redis:
    url: ` + rs.URL() + `
`
	cfg := strings.ReplaceAll(oauthRoutes, "{{.Upstream}}", up.URL) + oauthClientsYAML
	e1 := startGW(t, gwOptions{IdP: p, Listener: ln1, Clock: clk, Header: header, Config: cfg})
	e2 := startGW(t, gwOptions{IdP: p, Listener: ln2, Clock: clk, Header: header, Config: cfg})
	app := newNativeApp(t, e1)
	app.signIn(newHTTPBrowser(t))
	app2 := app.at(e2)
	app2.pub = base1
	if st, _, body := app2.call("GET", "/api/profile/me", app2.honest("GET", "/api/profile/me")); st != 200 {
		t.Fatalf("second instance: %d %s", st, body)
	}
	used := app.honest("GET", "/api/profile/me")
	if st, _, body := app.call("GET", "/api/profile/me", used); st != 200 {
		t.Fatalf("first instance: %d %s", st, body)
	}
	up.reset()
	if st, _, _ := app2.call("GET", "/api/profile/me", used); st != http.StatusUnauthorized {
		t.Fatalf("a proof used on instance one was accepted on instance two: %d", st)
	}
	if st := app.revokeStatus(); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, _, _ := app2.call("GET", "/api/profile/me", app2.honest("GET", "/api/profile/me"))
		if st == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance two still serves a revoked handle: %d", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := up.count(); n != 0 {
		t.Fatalf("refused requests reached the upstream %d times", n)
	}
}

// Back-channel logout of the user at the OP ends the app's session too.
func TestOAuthBackchannelLogoutEndsTheNativeSession(t *testing.T) {
	up := newRecorder(t, nil)
	e := startOAuthGW(t, up, "")
	app := newNativeApp(t, e)
	app.signIn(newHTTPBrowser(t))
	if st, _, body := app.call("GET", "/api/profile/me", app.honest("GET", "/api/profile/me")); st != 200 {
		t.Fatalf("before logout: %d %s", st, body)
	}
	if _, err := e.IdP.EndSession(context.Background(), "user-alice"); err != nil {
		t.Fatalf("back-channel logout: %v", err)
	}
	up.reset()
	if st, _, body := app.call("GET", "/api/profile/me", app.honest("GET", "/api/profile/me")); st != http.StatusUnauthorized {
		t.Fatalf("after back-channel logout: %d %s", st, body)
	}
	if up.count() != 0 {
		t.Fatal("the upstream received a request after back-channel logout")
	}
}

// A native handle lives as long as its session: each accepted request
// slides the idle timeout (the app's own IdP tokens are refreshed on the
// way), and an idle handle ends.
func TestOAuthNativeHandleSlidesWithUseAndIdlesOut(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{AccessTokenTTL: 90 * time.Second, Config: strings.ReplaceAll(oauthRoutes, "{{.Upstream}}", up.URL) + oauthClientsYAML + `
session:
  idle_timeout: 3m
`})
	app := newNativeApp(t, e)
	app.signIn(newHTTPBrowser(t))
	idle := e.Cfg.Session.IdleTimeout
	for i := range 3 {
		e.Clock.Advance(idle * 2 / 3)
		if st, _, body := app.call("GET", "/api/profile/me", app.honest("GET", "/api/profile/me")); st != 200 {
			t.Fatalf("call %d after %v idle: %d %s", i, idle*2/3, st, body)
		}
	}
	if e.IdP.Count("refresh_token") == 0 {
		t.Fatal("the app's session never refreshed its IdP tokens")
	}
	e.Clock.Advance(idle + time.Second)
	up.reset()
	if st, _, body := app.call("GET", "/api/profile/me", app.honest("GET", "/api/profile/me")); st != http.StatusUnauthorized {
		t.Fatalf("after %v idle: %d %s", idle, st, body)
	}
	if up.count() != 0 {
		t.Fatal("an idle handle reached the upstream")
	}
}

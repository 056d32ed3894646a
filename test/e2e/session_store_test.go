package e2e

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// Killing redis fails every session-needing request closed with 503 JSON
// (cached sessions included) within about a second, nothing reaches the
// upstream; restarting redis recovers without restarting Gatehouse. The
// test's redis keeps no data, so the old session is gone (401) and a fresh
// login works.
func TestSessionRedisDownFailsClosedThenRecovers(t *testing.T) {
	rs := redisserver.Start(t)
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: strings.ReplaceAll(refreshRoute, "{{.Upstream}}", up.URL) + `
session:
  store: redis
  redis:
    url: ` + rs.URL() + `
`})
	b := e.login("alice", "wonderland")
	e.sessWant(b, "/api/profile/me", 200) // cached from here on
	up.reset()

	rs.Kill()
	killed := time.Now()
	for {
		code, body, err := sessAPI(b, e.URL, "GET", "/bff/user?slide=false")
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusServiceUnavailable {
			sessErrCode(t, body)
			break
		}
		if code != 200 || time.Since(killed) > 3*time.Second {
			t.Fatalf("/bff/user %v after the kill: %d %s (want 503 within ~1s)", time.Since(killed), code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("first 503 after %v", time.Since(killed).Round(time.Millisecond))
	for range 5 {
		for _, path := range []string{"/api/profile/me", "/bff/user"} {
			code, body := e.api(b, "GET", path, nil)
			if code != http.StatusServiceUnavailable {
				t.Fatalf("GET %s with redis down: %d %s, want 503", path, code, body)
			}
			sessErrCode(t, body)
		}
	}
	if n := up.count(); n != 0 {
		t.Fatalf("the upstream received %d requests while the store was down", n)
	}

	rs.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := e.api(b, "GET", "/api/profile/me", nil)
		if code != http.StatusServiceUnavailable {
			if code != http.StatusUnauthorized && code != http.StatusOK {
				t.Fatalf("after redis returned: %d, want 401 (data lost) or 200", code)
			}
			t.Logf("after redis returned: %d", code)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still 503 10s after redis returned\nlogs:\n%s", sessTail(e.Logs.String(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	b2 := e.login("alice", "wonderland")
	e.sessWant(b2, "/api/profile/me", 200)
	e.sessWant(b2, "/bff/user", 200)
}

// A bolt session survives a Gatehouse restart on the same data directory and
// the same address: the old cookie still works.
func TestSessionBoltSurvivesGatewayRestart(t *testing.T) {
	up := newRecorder(t, nil)
	ln, _ := sessListen(t)
	addr := ln.Addr().String()
	dir := t.TempDir()
	cfg := strings.ReplaceAll(refreshRoute, "{{.Upstream}}", up.URL) // session.store defaults to bolt
	e := startGW(t, gwOptions{Listener: ln, Dir: dir, Config: cfg})
	if e.Cfg.Session.Store != "bolt" {
		t.Fatalf("default store is %q, want bolt", e.Cfg.Session.Store)
	}
	b := e.login("alice", "wonderland")
	sid := e.sessPublicID(b)
	e.sessWant(b, "/api/profile/me", 200)
	e.Stop()
	if code, _, err := sessAPI(b, e.URL, "GET", "/bff/user"); err == nil {
		t.Fatalf("the stopped gateway still answers (%d)", code)
	}

	var ln2 net.Listener
	var err error
	for range 50 { // the old listener's port may take a moment to free
		if ln2, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("rebind %s: %v", addr, err)
	}
	e2 := startGW(t, gwOptions{IdP: e.IdP, Listener: ln2, Dir: dir, Config: cfg})
	if got := e2.sessPublicID(b); got != sid {
		t.Fatalf("after restart the session id is %q, want %q", got, sid)
	}
	e2.sessWant(b, "/api/profile/me", 200)
	if n := up.count(); n != 2 {
		t.Fatalf("upstream saw %d requests, want 2", n)
	}
}

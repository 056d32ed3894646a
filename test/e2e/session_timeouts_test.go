package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// Short server-side timeouts; the OP's access tokens outlive them, so no
// refresh is involved. The injected clock moves; nothing sleeps.
const timeoutConfig = `
session:
  idle_timeout: 10m
  absolute_timeout: 30m
`

func timeoutEnv(t *testing.T) (*gwEnv, *recorder) {
	t.Helper()
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{AccessTokenTTL: 2 * time.Hour,
		Config: strings.ReplaceAll(refreshRoute, "{{.Upstream}}", up.URL) + timeoutConfig})
	return e, up
}

// Idle timeout: requests in between slide the session; 10m without one end
// it, server-side (the browser still sends its cookie).
func TestSessionIdleTimeoutEndsSessionAndRequestsSlideIt(t *testing.T) {
	e, up := timeoutEnv(t)
	b := e.login("alice", "wonderland")
	for range 2 { // 18m of activity, never 10m apart: alive past the idle timeout
		e.Clock.Advance(9 * time.Minute)
		e.sessWant(b, "/api/profile/me", 200)
	}
	e.Clock.Advance(10*time.Minute - time.Second)
	e.sessWant(b, "/bff/user?slide=false", 200) // 27m59s: alive, and does not slide
	ck := e.sessionCookie(b)
	e.Clock.Advance(time.Second) // 10m after the last sliding request, 28m after login
	up.reset()
	for _, p := range []string{"/api/profile/me", "/bff/user"} {
		sessErrCode(t, e.sessWant(b, p, 401))
		// Server-side: the cookie itself (which the gateway asked the
		// browser to drop) is refused when replayed.
		if code, body := e.sessWithCookie(ck, p); code != 401 {
			t.Fatalf("replayed idle-expired cookie on %s: %d %s", p, code, body)
		}
	}
	if n := up.count(); n != 0 {
		t.Fatalf("the upstream received %d requests on an idle-expired session", n)
	}
}

// Absolute timeout: ends the session at 30m even though it was never idle.
func TestSessionAbsoluteTimeoutEndsAnActiveSession(t *testing.T) {
	e, up := timeoutEnv(t)
	b := e.login("alice", "wonderland")
	for range 5 { // 25m, a request every 5m
		e.Clock.Advance(5 * time.Minute)
		e.sessWant(b, "/api/profile/me", 200)
	}
	e.Clock.Advance(5*time.Minute - time.Second)
	e.sessWant(b, "/api/profile/me", 200)
	e.Clock.Advance(time.Second)
	up.reset()
	for _, p := range []string{"/api/profile/me", "/bff/user"} {
		sessErrCode(t, e.sessWant(b, p, 401))
	}
	if n := up.count(); n != 0 {
		t.Fatalf("the upstream received %d requests on an expired session", n)
	}
	// A fresh login still works.
	b2 := e.login("alice", "wonderland")
	e.sessWant(b2, "/api/profile/me", 200)
}

// Forged, tampered, unknown and expired cookies get 401 JSON on an API
// route and /bff/user, nothing reaches the upstream, and the real session
// is unharmed by the attempts.
func TestSessionTamperedUnknownExpiredCookieRejected(t *testing.T) {
	e, up := timeoutEnv(t)
	b := e.login("alice", "wonderland")
	real := e.sessionCookie(b)
	if real == "" {
		t.Fatal("no session cookie")
	}
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	unknown, err := session.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"key tampered":     flip(real, len(real)-1),
		"id tampered":      flip(real, 0),
		"unknown handle":   unknown.Cookie().Reveal(),
		"truncated":        real[:len(real)-1],
		"extended":         real + "A",
		"padded":           real + "==",
		"empty":            "",
		"garbage":          "not-a-session",
		"other encoding":   strings.ReplaceAll(strings.ReplaceAll(real, "-", "+"), "_", "/"),
		"uppercased":       strings.ToUpper(real),
		"handle of logout": "",
	}
	// A handle that was valid but has been logged out.
	b2 := e.login("alice", "wonderland")
	dead := e.sessionCookie(b2)
	sid := e.sessPublicID(b2)
	if code, body := e.api(b2, "GET", "/bff/logout?sid="+sid, nil); code != 302 && code != 303 {
		t.Fatalf("logout: %d %s", code, body)
	}
	cases["handle of logout"] = dead
	up.reset()
	for name, v := range cases {
		if v == real {
			continue // e.g. uppercasing changed nothing
		}
		for _, p := range []string{"/api/profile/me", "/bff/user"} {
			code, body := e.sessWithCookie(v, p)
			if code != 401 {
				t.Errorf("%s cookie on %s: %d %s, want 401", name, p, code, body)
				continue
			}
			sessErrCode(t, body)
		}
	}
	if n := up.count(); n != 0 {
		t.Fatalf("the upstream received %d requests with forged cookies", n)
	}
	if code, _ := e.sessWithCookie(real, "/api/profile/me"); code != 200 {
		t.Fatalf("the real session after the attempts: %d", code)
	}
	// Expired: the same real cookie once the idle timeout has passed.
	e.Clock.Advance(10*time.Minute + time.Second)
	for _, p := range []string{"/api/profile/me", "/bff/user"} {
		if code, body := e.sessWithCookie(real, p); code != 401 {
			t.Fatalf("expired cookie on %s: %d %s", p, code, body)
		}
	}
	if n := up.count(); n != 1 {
		t.Fatalf("upstream saw %d requests, want only the real session's one", n)
	}
}

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
)

// readyzBody returns /readyz's status and body.
func (e *gwEnv) readyzBody() (int, string) {
	e.t.Helper()
	resp, err := http.Get(e.Admin + "/readyz")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestIdPDownDegradesButKeepsTheInstanceReady: while the IdP is down, /readyz stays 200 and
// reports the IdP as degraded (a load balancer must not pull every instance at once), the
// gauges say so, and existing sessions keep working.
func TestIdPDownDegradesButKeepsTheInstanceReady(t *testing.T) {
	verifyNoLeaks(t)
	prof := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + prof.URL + `/"
    credential: user_token
`})
	b := e.login("alice", "wonderland")
	if err := e.IdP.Suspend(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := e.readyzBody()
		if strings.Contains(body, `"identity_provider":"degraded"`) {
			if code != http.StatusOK {
				t.Fatalf("/readyz with the IdP down: %d %s, want 200", code, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never reported the IdP degraded: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := e.api(b, "GET", "/api/profile/me", nil); code != http.StatusOK {
		t.Fatalf("an existing session while the IdP is down: %d %s", code, body)
	}
	resp, err := http.Get(e.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"gatehouse_idp_up 0", "gatehouse_store_up 1", "gatehouse_audit_up 1", "gatehouse_audit_buffer_depth ",
		"gatehouse_audit_buffer_capacity 4096", "gatehouse_audit_dropped_total 0", "gatehouse_open_connections ", "gatehouse_inflight_requests "} {
		if !strings.Contains(string(m), "\n"+want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if err := e.IdP.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestSlowRequestsBeyondTheAuditBufferDoNotStarveOthers: one client holds more slow requests
// (headers plus one body byte, then nothing) than the audit buffer has slots; another user can
// still sign in and call APIs, and /readyz stays ready (issue: global DoS through the audit
// buffer — today each forwarded request held a slot until its response ended).
func TestSlowRequestsBeyondTheAuditBufferDoNotStarveOthers(t *testing.T) {
	verifyNoLeaks(t)
	var arrived atomic.Int64
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer slow.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	prof := newRecorder(t, nil)
	const buffer, held = 16, 40
	e := startGW(t, gwOptions{Audit: fmt.Sprintf("buffer: %d", buffer), Config: fmt.Sprintf(`
session:
  store: memory
routes:
  - name: upload
    path: /api/upload/
    upstream: "%s/"
    methods: [POST]
    anonymous: true
    credential: none
  - name: profile
    path: /api/profile/
    upstream: "%s/"
    credential: user_token
`, slow.URL, prof.URL)})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range held {
		c, err := net.Dial("tcp", e.host())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "POST /api/upload/x HTTP/1.1\r\nHost: "+e.host()+"\r\nX-CSRF: 1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nx"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for arrived.Load() < held {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d slow requests reached the upstream", arrived.Load(), held)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Every slow request is forwarded and open; the buffer has 16 slots.
	if code, body := e.readyzBody(); code != http.StatusOK || strings.Contains(body, "saturated") || strings.Contains(body, `"audit_buffer":"degraded"`) {
		t.Fatalf("/readyz while slow requests are held: %d %s", code, body)
	}
	bob := e.login("bob", "builder")
	for i := range buffer * 2 {
		if code, body := e.api(bob, "GET", fmt.Sprintf("/api/profile/%d", i), nil); code != http.StatusOK {
			t.Fatalf("call %d of another user while %d slow requests are held: %d %s", i, held, code, body)
		}
	}
	close(release)
	for _, c := range conns {
		c.Close()
	}
	e.Stop()
	res, err := audit.VerifyFile(e.Audit)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if res.Forwarded < held+buffer*2 || res.UnfinishedCount != 0 {
		t.Fatalf("verify: %d forwarded, %d without completion; want every slow request decided and completed", res.Forwarded, res.UnfinishedCount)
	}
}

// TestTricklingClientIsCutWith408: a client that sends its headers and part of its body and
// then nothing is cut after server.body_read_timeout with 408 body_timeout (not a 502 or 504
// blaming the upstream), while a client that keeps sending a slow but steady body is served.
func TestTricklingClientIsCutWith408(t *testing.T) {
	verifyNoLeaks(t)
	var mu sync.Mutex
	var got []int
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, len(b))
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
server:
  body_read_timeout: 300ms
routes:
  - name: upload
    path: /api/upload/
    upstream: "` + up.URL + `/"
    methods: [POST]
    anonymous: true
    credential: none
`})
	send := func(body func(c net.Conn)) (int, string, time.Duration) {
		c, err := net.Dial("tcp", e.host())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_, _ = io.WriteString(c, "POST /api/upload/x HTTP/1.1\r\nHost: "+e.host()+"\r\nX-CSRF: 1\r\nContent-Type: application/octet-stream\r\nContent-Length: 10\r\n\r\n")
		go body(c)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("read response: %v\n%s", err, e.Logs.String())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), time.Since(start)
	}
	// Stalls after two bytes.
	code, body, took := send(func(c net.Conn) { _, _ = io.WriteString(c, "ab") })
	if code != http.StatusRequestTimeout || !strings.Contains(body, "body_timeout") {
		t.Fatalf("stalled body: %d %s, want 408 body_timeout", code, body)
	}
	if took > 5*time.Second {
		t.Fatalf("stalled body cut only after %s", took)
	}
	// Steady: one byte every 100ms, never idle for 300ms.
	code, body, _ = send(func(c net.Conn) {
		for range 10 {
			_, _ = io.WriteString(c, "x")
			time.Sleep(100 * time.Millisecond)
		}
	})
	if code != http.StatusOK {
		t.Fatalf("steady slow body: %d %s, want 200", code, body)
	}
}

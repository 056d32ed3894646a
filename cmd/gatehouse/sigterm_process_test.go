package main

import (
	"context"
	"fmt"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
)

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// buildBinary compiles cmd/gatehouse into a temp dir.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gatehouse")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build gatehouse: %v", err)
	}
	return bin
}

// SIGTERM while a slow request is in flight: the request completes with the
// upstream's answer, then the process exits 0.
func TestSIGTERMFinishesInFlightRequestThenExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)

	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, `{"slow":"done"}`)
	}))
	defer slow.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	pub, adm := freePort(t), freePort(t)
	p := idp.MustStart(t, idp.Options{Clients: []idp.Client{{ID: "gh", Secret: "sigterm-client-secret", RedirectURIs: []string{"http://" + pub + "/bff/callback"}}}})
	dir := t.TempDir()
	cfg := fmt.Sprintf(`listen: %q
admin_listen: %q
public_url: "http://%s"
identity:
  issuer: %q
  client_id: gh
  client_secret: ${env:SIGTERM_TEST_CLIENT_SECRET}
session:
  store: bolt
  bolt: { path: sessions.db }
audit:
  sink: file
  path: audit.jsonl
routes:
  - name: slow
    path: /api/slow/
    upstream: %q
    anonymous: true
    credential: none
`, pub, adm, pub, p.Issuer(), slow.URL+"/")
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "SIGTERM_TEST_CLIENT_SECRET=sigterm-client-secret")
	var logs syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + adm + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gatehouse never became ready:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+pub+"/api/slow/x", nil)
		req.Header.Set("X-CSRF", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, string(b), err}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("request never reached the upstream:\n%s", logs.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Fatalf("process exited (%v) while a request was in flight:\n%s", err, logs.String())
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	r := <-res
	if r.err != nil || r.code != 200 || r.body != `{"slow":"done"}` {
		t.Fatalf("in-flight request: %d %q %v\n%s", r.code, r.body, r.err, logs.String())
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("process did not exit after SIGTERM:\n%s", logs.String())
	}
}

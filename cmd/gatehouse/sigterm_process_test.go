package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
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
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	e := newProcEnv(t, bin, procOptions{Upstream: func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, `{"slow":"done"}`)
	}})
	p := e.start()

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+e.pub+"/api/echo/x", nil)
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
		t.Fatalf("request never reached the upstream:\n%s", p.logs.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		t.Fatalf("process exited (%v) while a request was in flight:\n%s", err, p.logs.String())
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	r := <-res
	if r.err != nil || r.code != 200 || r.body != `{"slow":"done"}` {
		t.Fatalf("in-flight request: %d %q %v\n%s", r.code, r.body, r.err, p.logs.String())
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("process did not exit after SIGTERM:\n%s", p.logs.String())
	}
}

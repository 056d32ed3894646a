package main

import (
	"bufio"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's first command: `gatehouse demo` prints a loud banner and a URL
// that answers with the demo SPA; Ctrl-C stops everything and exits 0.
func TestDemoCommandServesThePrintedURLAndStopsOnCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	cmd := exec.Command(bin, "demo")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	exited := make(chan error, 1)

	urlRE := regexp.MustCompile(`Open:\s+(http://127\.0\.0\.1:\d+/)`)
	found := make(chan string, 1)
	var banner strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			banner.WriteString(sc.Text() + "\n")
			if m := urlRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		exited <- cmd.Wait()
	}()
	var u string
	select {
	case u = <-found:
	case <-time.After(60 * time.Second):
		t.Fatalf("no URL printed; stderr:\n%s", stderr.String())
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Gatehouse") {
		t.Fatalf("GET %s: %d %.200s", u, resp.StatusCode, body)
	}
	resp, err = http.Get(u + "bff/user")
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("/bff/user before sign-in: %v %v", resp, err)
	}
	resp.Body.Close()

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("demo exit: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop on Ctrl-C")
	}
	if !strings.Contains(banner.String(), "DEMO MODE") || !strings.Contains(banner.String(), "never for production") {
		t.Fatalf("no loud banner:\n%s", banner.String())
	}
}

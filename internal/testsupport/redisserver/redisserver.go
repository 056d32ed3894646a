// Package redisserver runs a real, throw-away redis-server for tests, on a
// free loopback port, so that a test can kill and restart it.
package redisserver

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is one redis-server process owned by a test.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	// extra are arguments after the defaults (replicaof, cluster-enabled);
	// conf, when set, is a config file written before each start (sentinel).
	extra []string
	conf  func(port int) string

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

const installHint = "redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) to run this test"

// Start launches redis-server without persistence on a free loopback port
// and stops it when the test ends. Without redis-server the test is skipped,
// except in CI (env CI=true), where it fails.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return startWith(tb, nil, nil)
}

func lookBinary(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if _, statErr := os.Stat("/usr/bin/redis-server"); statErr == nil {
			bin = "/usr/bin/redis-server"
		} else if os.Getenv("CI") == "true" {
			tb.Fatal(installHint)
		} else {
			tb.Skip(installHint)
		}
	}
	return bin
}

func startWith(tb testing.TB, extra []string, conf func(port int) string) *Server {
	tb.Helper()
	var err error
	s := &Server{tb: tb, bin: lookBinary(tb), dir: tb.TempDir(), extra: extra, conf: conf}
	tb.Cleanup(s.Kill)
	var lastErr error
	for range 5 { // another process may grab the free port between probe and start
		s.port, err = freePort()
		if err != nil {
			tb.Fatalf("find a free port: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	tb.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	var args []string
	if s.conf != nil {
		// Sentinel rewrites its config file, so it gets a fresh one per start.
		path := filepath.Join(s.dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(s.conf(s.port)), 0o600); err != nil {
			return err
		}
		args = append(args, path, "--sentinel")
	}
	args = append(args, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--daemonize", "no", "--logfile", "")
	if s.conf == nil {
		args = append(args, "--save", "", "--appendonly", "no")
	}
	cmd := exec.Command(s.bin, append(args, s.extra...)...)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.out, s.done = cmd, out, done
	s.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited: %s", out.String())
		default:
		}
		if ping(s.Addr()) == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("redis-server did not answer PING within 10s: %s", out.String())
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is a redis:// URL for database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Kill stops the server at once (SIGKILL) and waits for it to exit. Killing
// a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same port (killing it first if it
// runs) and waits until it answers. Data is not kept.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Kill()
	var err error
	for range 50 { // the port may take a moment to be free again
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.tb.Fatalf("restart redis-server on %s: %v", s.Addr(), err)
}

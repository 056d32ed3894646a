package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
)

// procEnv is one Gatehouse configuration run as a real child process (started and stopped
// several times by a test), with an upstream that notes every request id it saw.
type procEnv struct {
	t        *testing.T
	bin      string
	cfgPath  string
	pub, adm string
	audit    string

	mu   sync.Mutex
	seen map[string]time.Time // request id → when the upstream saw it
	hold chan struct{}        // closed: the upstream answers; nil: answers at once
}

type procOptions struct {
	AuditExtra  string // more keys under audit:
	ServerExtra string // a server: section, verbatim
	Upstream    http.HandlerFunc
}

func newProcEnv(t *testing.T, bin string, o procOptions) *procEnv {
	t.Helper()
	e := &procEnv{t: t, bin: bin, seen: map[string]time.Time{}}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen[r.Header.Get("X-Request-Id")] = time.Now()
		e.mu.Unlock()
		if o.Upstream != nil {
			o.Upstream(w, r)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(up.Close)
	e.pub, e.adm = freePort(t), freePort(t)
	p := idp.MustStart(t, idp.Options{Clients: []idp.Client{{ID: "gh", Secret: "proc-client-secret", RedirectURIs: []string{"http://" + e.pub + "/bff/callback"}}}})
	dir := t.TempDir()
	e.audit = filepath.Join(dir, "audit.jsonl")
	cfg := fmt.Sprintf(`listen: %q
admin_listen: %q
public_url: "http://%s"
identity:
  issuer: %q
  client_id: gh
  client_secret: ${env:PROC_TEST_CLIENT_SECRET}
session:
  store: bolt
  bolt: { path: sessions.db }
audit:
  sink: file
  path: audit.jsonl
%s
%s
routes:
  - name: echo
    path: /api/echo/
    upstream: %q
    anonymous: true
    credential: none
`, e.pub, e.adm, e.pub, p.Issuer(), indent(o.AuditExtra), o.ServerExtra, up.URL+"/")
	e.cfgPath = filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n  ")
}

// proc is one running Gatehouse process.
type proc struct {
	cmd    *exec.Cmd
	logs   *syncbuf.Buffer
	exited chan error
}

// start runs serve and waits until /readyz answers 200.
func (e *procEnv) start(extra ...func(*exec.Cmd)) *proc {
	e.t.Helper()
	cmd := exec.Command(e.bin, "serve", "-c", e.cfgPath)
	cmd.Env = append(os.Environ(), "PROC_TEST_CLIENT_SECRET=proc-client-secret")
	for _, f := range extra {
		f(cmd)
	}
	p := &proc{cmd: cmd, logs: &syncbuf.Buffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	e.t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if code, _ := e.readyz(); code == 200 {
			return p
		}
		select {
		case err := <-p.exited:
			e.t.Fatalf("gatehouse exited before it was ready (%v):\n%s", err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("gatehouse never became ready:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *procEnv) readyz() (int, string) {
	resp, err := http.Get("http://" + e.adm + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// loadFor sends requests from n clients for about d and returns once they have all stopped.
func (e *procEnv) loadFor(n int, d time.Duration) {
	stop := make(chan struct{})
	wg := e.load(n, stop)
	time.Sleep(d)
	close(stop)
	wg.Wait()
}

// stopCleanly sends SIGTERM and fails the test unless the process exits 0; what names the step
// in the failure.
func (p *proc) stopCleanly(t *testing.T, what string) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.exited; err != nil {
		t.Fatalf("%s: %v\n%s", what, err, p.logs.String())
	}
}

// load sends requests from n clients until stop is closed; it returns the number of answers.
func (e *procEnv) load(n int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+e.pub+"/api/echo/x", nil)
				req.Header.Set("X-CSRF", "1")
				resp, err := c.Do(req)
				if err != nil {
					time.Sleep(time.Millisecond)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	return &wg
}

// auditRecords reads every line of the audit log (not verifying; see verify).
func (e *procEnv) auditRecords() []map[string]any {
	e.t.Helper()
	f, err := os.Open(e.audit)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// verify runs `gatehouse audit verify` on the log and returns its output.
func (e *procEnv) verify() string {
	e.t.Helper()
	out, err := exec.Command(e.bin, "audit", "verify", e.audit).CombinedOutput()
	if err != nil {
		e.t.Fatalf("audit verify: %v\n%s", err, out)
	}
	return string(out)
}

// missing returns the request ids the upstream saw before cutoff that have no decision record.
func (e *procEnv) missing(cutoff time.Time) (missing []string, seen int) {
	forwarded := map[string]bool{}
	for _, r := range e.auditRecords() {
		if r["event"] == "forward" {
			forwarded[fmt.Sprint(r["request_id"])] = true
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, at := range e.seen {
		if at.Before(cutoff) && !forwarded[id] {
			missing = append(missing, id)
		}
		seen++
	}
	return missing, seen
}

// TestSIGKILLUnderLoadLosesNoRecord: ten times, Gatehouse is killed with SIGKILL under load;
// every request the upstream saw has its decision record, the log verifies after every restart,
// and the chain continues across all of them. With durability written (the default) as with
// sync: a killed process loses nothing the kernel already has.
func TestSIGKILLUnderLoadLosesNoRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	for _, durability := range []string{"written", "sync"} {
		t.Run(durability, func(t *testing.T) {
			e := newProcEnv(t, bin, procOptions{AuditExtra: "durability: " + durability})
			for round := range 10 {
				began := time.Now()
				p := e.start()
				t.Logf("round %d: ready after %s", round, time.Since(began).Round(time.Millisecond))
				stop := make(chan struct{})
				wg := e.load(16, stop)
				time.Sleep(150 * time.Millisecond)
				_ = p.cmd.Process.Signal(syscall.SIGKILL)
				<-p.exited
				killed := time.Now()
				close(stop)
				wg.Wait()
				if miss, seen := e.missing(killed); len(miss) > 0 || seen == 0 {
					t.Fatalf("round %d: %d of %d requests the upstream saw have no audit record: %v", round, len(miss), seen, miss[:min(5, len(miss))])
				}
			}
			_, seen := e.missing(time.Now())
			// A kill can land in the middle of a write (the kernel cuts a write short for a
			// fatal signal): the records of that batch were not yet answered, so nothing was
			// forwarded on them, and the next start cuts the torn line and says so. Start
			// once more, as a supervisor would, before verifying the whole chain.
			e.start().stopCleanly(t, "exit")
			out := e.verify()
			t.Logf("%d forwarded requests over 10 kills; verify: %s", seen, out)
		})
	}
}

// TestSIGKILLWithIntervalDurabilityLosesOnlyTheLastInterval: with durability interval, what
// a SIGKILL loses is bounded by the documented window: every request the upstream saw more than
// fsync_interval before the kill has its record. (A SIGKILL loses only what the writer had not
// written yet, normally the last milliseconds; the window is fsync_interval because that is
// the bound documented for a power loss too, and a loaded test machine can delay the writer.)
func TestSIGKILLWithIntervalDurabilityLosesOnlyTheLastInterval(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const interval = time.Second
	e := newProcEnv(t, buildBinary(t), procOptions{AuditExtra: "durability: interval\nfsync_interval: 1s"})
	lost := 0
	for round := range 3 {
		p := e.start()
		stop := make(chan struct{})
		wg := e.load(16, stop)
		time.Sleep(1500 * time.Millisecond)
		killAt := time.Now()
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		close(stop)
		wg.Wait()
		if miss, seen := e.missing(killAt.Add(-interval)); len(miss) > 0 || seen == 0 {
			t.Fatalf("round %d: %d of %d requests seen more than %s before the kill have no record: %v", round, len(miss), seen, interval, miss[:min(5, len(miss))])
		}
		m, _ := e.missing(time.Now())
		lost = len(m)
	}
	t.Logf("interval: %d requests in the last window without a record (allowed)", lost)
	e.verify()
}

// TestTornLastLineIsRepairedAtStart: the audit file's last line is torn (as a power loss or a
// full disk leaves it); serve starts anyway, verify passes and reports the repair marker, and
// the chain continues.
func TestTornLastLineIsRepairedAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	e := newProcEnv(t, buildBinary(t), procOptions{})
	p := e.start()
	e.loadFor(4, 100*time.Millisecond)
	p.stopCleanly(t, "exit")
	b, err := os.ReadFile(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	torn := `{"time":"2026-12-01T10:00:00.000Z","seq":`
	if err := os.WriteFile(e.audit, append(b, torn...), 0o600); err != nil {
		t.Fatal(err)
	}
	p = e.start()
	code, body := e.readyz()
	if code != 200 {
		t.Fatalf("readyz after repair: %d %s", code, body)
	}
	e.loadFor(4, 100*time.Millisecond)
	p.stopCleanly(t, "exit")
	if !strings.Contains(p.logs.String(), "cut an incomplete last line") {
		t.Fatalf("no log line about the repair:\n%s", p.logs.String())
	}
	out := e.verify()
	want := fmt.Sprintf("an incomplete last line of %d bytes was cut", len(torn))
	if !strings.Contains(out, want) {
		t.Fatalf("verify output does not report the repair (%q):\n%s", want, out)
	}
	recs := e.auditRecords()
	last := recs[len(recs)-1]
	if last["event"] == "audit_repaired" || len(recs) < 3 {
		t.Fatalf("the chain did not continue after the marker: last %v", last)
	}
}

// TestDrainOnSIGTERM: readiness turns 503 within 100 ms of SIGTERM, every in-flight request
// completes, a stream still open at shutdown_timeout is ended with its record written, and the
// process exits 0 with every forwarded request's completion on disk.
func TestDrainOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	e := newProcEnv(t, buildBinary(t), procOptions{ServerExtra: "server:\n  shutdown_timeout: 1s",
		Upstream: func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/stream") {
				w.Header().Set("Content-Type", "text/event-stream")
				for {
					if _, err := io.WriteString(w, "data: tick\n\n"); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
			time.Sleep(400 * time.Millisecond)
			_, _ = io.WriteString(w, `{"slow":"done"}`)
		}})
	p := e.start()
	const slow = 5
	results := make(chan error, slow+1)
	get := func(path string) {
		req, _ := http.NewRequest("GET", "http://"+e.pub+path, nil)
		req.Header.Set("X-CSRF", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			results <- err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if path == "/api/echo/stream" {
			// Ended by the shutdown timeout: an error or EOF after some ticks is the point.
			if !strings.Contains(string(b), "tick") {
				err = fmt.Errorf("stream: %d %q %v", resp.StatusCode, b, err)
			} else {
				err = nil
			}
		} else if err == nil && (resp.StatusCode != 200 || string(b) != `{"slow":"done"}`) {
			err = fmt.Errorf("in-flight request: %d %s", resp.StatusCode, b)
		}
		results <- err
	}
	go get("/api/echo/stream")
	for range slow {
		go get("/api/echo/slow")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.mu.Lock()
		n := len(e.seen)
		e.mu.Unlock()
		if n == slow+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests reached the upstream", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		code, body := e.readyz()
		if code == http.StatusServiceUnavailable {
			if took := time.Since(sent); took > 100*time.Millisecond {
				t.Fatalf("readiness turned 503 only %s after SIGTERM", took)
			}
			if !strings.Contains(body, `"shutdown":"unavailable"`) {
				t.Fatalf("/readyz while draining: %s", body)
			}
			break
		}
		if time.Since(sent) > 100*time.Millisecond {
			t.Fatalf("readiness still %d %s 100ms after SIGTERM", code, body)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for range slow + 1 {
		if err := <-results; err != nil {
			t.Fatalf("%v\n%s", err, p.logs.String())
		}
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit after SIGTERM:\n%s", p.logs.String())
	}
	out := e.verify()
	if !strings.Contains(out, fmt.Sprintf("%d forwarded requests; 0 without a completion record", slow+1)) {
		t.Fatalf("records incomplete after the drain:\n%s", out)
	}
}

// TestConnectionCapUnderALowFDLimit: Gatehouse runs with an open-file limit of 256 (lowered
// for the child only) and derives its connection cap from it; 300 idle connections — more
// than the limit — are opened: those beyond the cap are refused at once with a 503, and a
// control client that was already connected keeps succeeding (its upstream round trips never
// fail for lack of descriptors).
func TestConnectionCapUnderALowFDLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	e := newProcEnv(t, buildBinary(t), procOptions{})
	p := e.start(func(c *exec.Cmd) {
		c.Args = []string{"/bin/sh", "-c", `ulimit -n 256 && exec "$0" "$@"`, c.Path, "serve", "-c", e.cfgPath}
		c.Path = "/bin/sh"
	})
	control := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	call := func() error {
		req, _ := http.NewRequest("GET", "http://"+e.pub+"/api/echo/control", nil)
		req.Header.Set("X-CSRF", "1")
		resp, err := control.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return nil
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	refused := 0
	for i := range 300 {
		c, err := net.DialTimeout("tcp", e.pub, time.Second)
		if err != nil {
			t.Fatalf("connection %d: dial: %v", i, err)
		}
		idle = append(idle, c)
		// A refused connection is answered at once; an accepted one says nothing.
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		b := make([]byte, 12)
		if n, _ := io.ReadFull(c, b); n == 12 && string(b) == "HTTP/1.1 503" {
			refused++
		}
		if i%25 == 0 {
			if err := call(); err != nil {
				t.Fatalf("control client failed after %d idle connections: %v\n%s", i, err, p.logs.String())
			}
		}
	}
	if refused < 300-130 {
		t.Fatalf("only %d of 300 idle connections were refused; the cap for 256 descriptors is 96", refused)
	}
	for range 5 {
		if err := call(); err != nil {
			t.Fatalf("control client after the flood: %v", err)
		}
	}
	if strings.Contains(p.logs.String(), "too many open files") {
		t.Fatalf("the gateway ran out of descriptors:\n%s", p.logs.String())
	}
}

// TestFullAuditDiskAtShutdown: the audit file can no longer grow (a full disk, made real with
// RLIMIT_FSIZE on the child); a request answered before is recorded (its decision was on disk
// before it was forwarded), new requests are refused 503 and reach no upstream, and SIGTERM
// ends with a clear log line and exit code 3. The next start repairs what the failing write
// left and the log verifies.
func TestFullAuditDiskAtShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	release := make(chan struct{})
	e := newProcEnv(t, buildBinary(t), procOptions{Upstream: func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}})
	p := e.start()
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+e.pub+"/api/echo/slow", nil)
		req.Header.Set("X-CSRF", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	for {
		e.mu.Lock()
		n := len(e.seen)
		e.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, err := os.Stat(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("prlimit", "--pid", fmt.Sprint(p.cmd.Process.Pid), fmt.Sprintf("--fsize=%d", st.Size()+10)).CombinedOutput(); err != nil {
		t.Skipf("prlimit: %v %s", err, out)
	}
	close(release)
	if code := <-done; code != 200 {
		t.Fatalf("the in-flight request: %d", code)
	}
	req, _ := http.NewRequest("GET", "http://"+e.pub+"/api/echo/after", nil)
	req.Header.Set("X-CSRF", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a request while the audit disk is full: %d, want 503", resp.StatusCode)
	}
	e.mu.Lock()
	reached := len(e.seen)
	e.mu.Unlock()
	if reached != 1 {
		t.Fatal("a request reached the upstream while its decision could not be recorded")
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	var exitErr *exec.ExitError
	select {
	case err := <-p.exited:
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
			t.Fatalf("exit %v, want code 3\n%s", err, p.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit:\n%s", p.logs.String())
	}
	if !strings.Contains(p.logs.String(), "audit records could not be written") {
		t.Fatalf("no clear log line:\n%s", p.logs.String())
	}
	if miss, _ := e.missing(time.Now()); len(miss) != 0 {
		t.Fatalf("the answered request has no record: %v", miss)
	}
	p = e.start()
	p.stopCleanly(t, "restart")
	e.verify()
}

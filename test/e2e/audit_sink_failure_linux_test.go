package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
)

// auFailWrites makes every write that would grow a file of this process
// beyond its current size fail with EFBIG (a real write error from the
// kernel, like a full disk, but one the test can lift: RLIMIT_FSIZE). Go
// ignores SIGXFSZ, so the write just returns the error. It returns the
// function that lifts the limit again.
//
// The limit is process-wide: the tests that use it run in a process of
// their own (auIsolate).
func auFailWrites(t *testing.T, size int64) (restore func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: uint64(size), Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Errorf("restore RLIMIT_FSIZE: %v", err)
		}
	}
	t.Cleanup(restore)
	return restore
}

// auIsolatedEnv names the test a child process runs (see auIsolate).
const auIsolatedEnv = "GATEHOUSE_E2E_ISOLATED_TEST"

// auIsolate runs the calling test in a child process of its own and reports
// true in the parent, which then only waits for the child's verdict; in the
// child it reports false and the test runs. RLIMIT_FSIZE is process-wide:
// in the test binary shared with every other test, any file the process
// grows meanwhile fails too — the testing package's own log of file
// accesses among them (-test.testlogfile, always bigger than the audit file
// the limit is set for), which failed the whole package once another test's
// goroutine opened a file during the window.
func auIsolate(t *testing.T) bool {
	t.Helper()
	if os.Getenv(auIsolatedEnv) == t.Name() {
		return false
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), auIsolatedEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s in its own process: %v\n%s", t.Name(), err, out)
	}
	return true
}

// auWaitLines waits until the audit file has at least n lines.
func auWaitLines(t *testing.T, e *gwEnv, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		b, _ := os.ReadFile(e.Audit)
		if strings.Count(string(b), "\n") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit file has fewer than %d lines:\n%s", n, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAuditSinkFailureDeniesRequestsThenRecovers: when the audit file can no
// longer be written (a real write error from the kernel), API requests get
// 503 audit_unavailable and reach no upstream, /readyz reports the audit
// log, and once writes work again the gateway serves by itself, with no
// record lost and one valid chain.
func TestAuditSinkFailureDeniesRequestsThenRecovers(t *testing.T) {
	if auIsolate(t) {
		return
	}
	verifyNoLeaks(t)
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + up.URL + `/"
    credential: user_token
`})
	alice := e.login("alice", "wonderland")
	if code, body := e.api(alice, "GET", "/api/profile/me", nil); code != 200 {
		t.Fatalf("before the failure: %d %s", code, body)
	}
	auWaitLines(t, e, 3) // config_loaded, login, access
	st, err := os.Stat(e.Audit)
	if err != nil {
		t.Fatal(err)
	}
	up.reset()
	restore := auFailWrites(t, st.Size())

	// The writer learns of the failure at its first failed write, which
	// happens asynchronously after the request it records was answered, so
	// a sequential client may get a few requests served in between (more on
	// a loaded machine). Their records wait in the buffer and are written on
	// recovery (checked below: none is lost). From the first failed write
	// on, every request is refused.
	var served []string
	refused := 0
	deadline := time.Now().Add(3 * time.Second)
	for refused == 0 {
		resp, body := polAPI(t, e, alice, "GET", "/api/profile/me", nil)
		switch resp.StatusCode {
		case 200:
			served = append(served, resp.Header.Get("X-Request-Id"))
		case 503:
			if m := mustJSON(t, body); m["error"] != "audit_unavailable" {
				t.Fatalf("503 body: %s", body)
			}
			refused++
		default:
			t.Fatalf("during the failure: %d %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatal("requests are still served 3s after the audit sink failed")
		}
	}
	if len(served) > 10 {
		t.Errorf("%d requests were served before the failed write was noticed", len(served))
	}
	before := up.count()
	for i := 0; i < 5; i++ {
		resp, body := polAPI(t, e, alice, "GET", "/api/profile/me", nil)
		if resp.StatusCode != 503 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("while the sink fails: %d %s", resp.StatusCode, body)
		}
	}
	if up.count() != before {
		t.Fatalf("the upstream saw %d requests while the audit sink was failing", up.count()-before)
	}
	resp, err := http.Get(e.Admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("/readyz during the audit failure: %d, want 503", resp.StatusCode)
	}

	// Writes work again: the gateway recovers by itself.
	restore()
	deadline = time.Now().Add(5 * time.Second)
	for {
		code, _ := e.api(alice, "GET", "/api/profile/me", nil)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d 5s after the audit sink recovered", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp, err := http.Get(e.Admin + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("/readyz after recovery: %d", resp.StatusCode)
		}
	}
	e.Stop()
	res, err := audit.VerifyFile(e.Audit)
	if err != nil {
		t.Fatalf("the log after failure and recovery does not verify: %v", err)
	}
	lines := auLines(t, e.Audit)
	if res.Records != len(lines) {
		t.Fatalf("verified %d of %d records", res.Records, len(lines))
	}
	ids := map[string]bool{}
	for _, l := range lines {
		var m map[string]any
		_ = json.Unmarshal([]byte(l), &m)
		if id, ok := m["request_id"].(string); ok {
			ids[id] = true
		}
	}
	for _, id := range served {
		if !ids[id] {
			t.Errorf("the record of request %s, served as the sink failed, was lost", id)
		}
	}
	if !strings.Contains(e.Logs.String(), "audit sink recovered") {
		t.Error("the gateway did not log the recovery")
	}
}

// TestAuditSinkFailureContinueIsConfigurable: with audit.on_failure:
// continue (a documented, warned-about choice) a failing sink does not stop
// traffic; the records are kept in the bounded buffer and written once the
// sink works again, so the chain still verifies.
func TestAuditSinkFailureContinueIsConfigurable(t *testing.T) {
	if auIsolate(t) {
		return
	}
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Header: `public_url: "{{.Base}}"
identity:
  issuer: "{{.Issuer}}"
  client_id: ` + gwClientID + `
  client_secret: ${file:client-secret}
audit:
  sink: file
  path: audit.jsonl
  fsync_interval: 50ms
  on_failure: continue
`, Config: `
session:
  store: memory
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + up.URL + `/"
    credential: user_token
`})
	alice := e.login("alice", "wonderland")
	auWaitLines(t, e, 2)
	st, err := os.Stat(e.Audit)
	if err != nil {
		t.Fatal(err)
	}
	restore := auFailWrites(t, st.Size())
	var ids []string
	for i := 0; i < 5; i++ {
		resp, body := polAPI(t, e, alice, "GET", "/api/profile/me", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("on_failure continue: %d %s", resp.StatusCode, body)
		}
		ids = append(ids, resp.Header.Get("X-Request-Id"))
		time.Sleep(20 * time.Millisecond) // let the writer fail in between
	}
	restore()
	e.Stop()
	if _, err := audit.VerifyFile(e.Audit); err != nil {
		t.Fatalf("log does not verify: %v", err)
	}
	b, _ := os.ReadFile(e.Audit)
	for _, id := range ids {
		if !strings.Contains(string(b), `"request_id":"`+id+`"`) {
			t.Errorf("record of %s lost", id)
		}
	}
	if !strings.Contains(e.Logs.String(), "audit sink failing") {
		t.Error("the failure was not logged")
	}
}

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
)

// SIGHUP reloads the configuration file: a new route is served without a
// restart, and the process keeps its listeners (the same address answers
// throughout). A broken file on SIGHUP changes nothing.
func TestSIGHUPReloadsTheConfiguration(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	pub, adm := freePort(t), freePort(t)
	p := idp.MustStart(t, idp.Options{Clients: []idp.Client{{ID: "gh", Secret: "sighup-client-secret", RedirectURIs: []string{"http://" + pub + "/bff/callback"}}}})
	dir := t.TempDir()
	render := func(routes string) string {
		return fmt.Sprintf(`listen: %q
admin_listen: %q
public_url: "http://%s"
identity: { issuer: %q, client_id: gh, client_secret: "${env:SIGHUP_TEST_CLIENT_SECRET}" }
session: { store: memory }
audit: { sink: file, path: audit.jsonl }
routes:
%s`, pub, adm, pub, p.Issuer(), routes)
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{}`)) }))
	defer api.Close()
	up := "    upstream: " + api.URL + "/\n    anonymous: true\n    credential: none\n"
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	write := func(s string) string {
		if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	write(render("  - name: a\n    path: /api/a/\n" + up + "  - name: c\n    path: /api/c/\n" + up))
	st0, err := os.Stat(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "SIGHUP_TEST_CLIENT_SECRET=sighup-client-secret")
	var logs syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	status := func(path string) int {
		req, _ := http.NewRequest("GET", "http://"+pub+path, nil)
		req.Header.Set("X-CSRF", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	hash := func() (string, string) {
		resp, err := http.Get("http://" + adm + "/readyz")
		if err != nil {
			return "", ""
		}
		defer resp.Body.Close()
		var m struct {
			Config     struct{ Hash string }
			LastReload struct{ Outcome string } `json:"last_reload"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return m.Config.Hash, m.LastReload.Outcome
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s never happened:\n%s", what, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("start", func() bool { return status("/api/a/x") != 0 })
	if code := status("/api/b/x"); code != http.StatusNotFound {
		t.Fatalf("/api/b/ before the reload: %d", code)
	}

	// Same size and modification time: the file poller cannot notice this
	// change, so only SIGHUP can apply it.
	want := write(render("  - name: a\n    path: /api/a/\n" + up + "  - name: b\n    path: /api/b/\n" + up))
	if err := os.Chtimes(cfgPath, st0.ModTime(), st0.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // a poll or more passes: it must not reload
	if h, _ := hash(); h == want {
		t.Fatal("the poller noticed a change of neither size nor time; the test cannot tell SIGHUP from it")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the reload", func() bool { h, _ := hash(); return h == want })
	if code := status("/api/b/x"); code != http.StatusOK {
		t.Fatalf("/api/b/ after the reload: %d", code)
	}

	write(render("  - name: a\n    path: api\n" + up))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the rejection", func() bool { _, o := hash(); return o == "rejected" })
	if h, _ := hash(); h != want {
		t.Fatalf("a broken file replaced the configuration")
	}
	if code := status("/api/b/x"); code != http.StatusOK {
		t.Fatalf("/api/b/ after a rejected reload: %d", code)
	}
	if !strings.Contains(logs.String(), `routes[0].path: \"api\" must start with /`) {
		t.Errorf("the rejection's problems are not logged:\n%s", logs.String())
	}
}

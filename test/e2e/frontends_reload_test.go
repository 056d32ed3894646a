package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

// reloadConfig renders the reload test's configuration.
type reloadConfig struct {
	issuer, web, partners, upWeb, upPartners, upSlow string
	newRoute, slowRoute, withPartners, broken        bool
	partnersAllow                                    string
}

func (c reloadConfig) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, `audit: { sink: file, path: audit.jsonl, fsync_interval: 50ms }
telemetry: { log_level: debug }
frontends:
  - client: web
    public_url: "%s"
    identity: { issuer: "%s", client_id: e2e-web, client_secret: "${file:client-secret}" }
    rate_limits: { default: { requests: 1000000, per: 1m } }   # one session drives the whole load
    routes:
      - { name: web-api, path: /api/web/, upstream: "%s", credential: user_token }
`, c.web, c.issuer, c.upWeb)
	if c.newRoute {
		fmt.Fprintf(&b, "      - { name: web-new, path: /api/new/, upstream: %q, credential: user_token }\n", c.upWeb)
	}
	if c.slowRoute {
		fmt.Fprintf(&b, "      - { name: slow, path: /api/slow/, upstream: %q, credential: user_token }\n", c.upSlow)
	}
	if c.broken {
		b.WriteString("      - { name: broken, path: api/broken, upstream: nowhere, credential: user_tokn }\n")
	}
	if c.withPartners {
		fmt.Fprintf(&b, `  - client: partners
    public_url: "%s"
    identity: { issuer: "%s", client_id: e2e-partners, client_secret: "${file:client-secret}" }
    rate_limits: { default: { requests: 1000000, per: 1m } }
    routes:
      - { name: partner-api, path: /api/partners/, upstream: "%s", credential: user_token, allow: '%s' }
`, c.partners, c.issuer, c.upPartners, c.partnersAllow)
	}
	return b.String()
}

// loadLoop keeps requests in flight (a bounded number of them) while the
// configuration changes. Each request is judged by the statuses allowed
// when it started: a reload widens the set before it starts and narrows it
// after it returned, so only the changes a reload intends are accepted.
type loadLoop struct {
	t       *testing.T
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	bad     []string
	total   atomic.Int64
	allowed sync.Map // url -> *atomic.Pointer[[]int]
}

func (l *loadLoop) allow(url string, codes ...int) {
	p, _ := l.allowed.LoadOrStore(url, new(atomic.Pointer[[]int]))
	p.(*atomic.Pointer[[]int]).Store(&codes)
}

func (l *loadLoop) run(b *http.Client, url string, workers, maxRequests int) {
	for range workers {
		l.wg.Go(func() {
			for range maxRequests {
				select {
				case <-l.stop:
					return
				default:
				}
				p, _ := l.allowed.Load(url)
				want := *p.(*atomic.Pointer[[]int]).Load()
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("X-CSRF", "1")
				resp, err := b.Do(req)
				l.total.Add(1)
				if err != nil {
					l.fail(fmt.Sprintf("%s: %v", url, err))
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok := false
				for _, c := range want {
					ok = ok || c == resp.StatusCode
				}
				if !ok {
					l.fail(fmt.Sprintf("%s: %d, allowed %v", url, resp.StatusCode, want))
				}
			}
		})
	}
}

func (l *loadLoop) fail(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.bad) < 20 {
		l.bad = append(l.bad, s)
	}
}

// readyz returns the admin /readyz answer.
func readyz(t *testing.T, e *gwEnv) map[string]any {
	t.Helper()
	resp, err := http.Get(e.Admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func loadedHash(t *testing.T, e *gwEnv) string {
	t.Helper()
	c, _ := readyz(t, e)["config"].(map[string]any)
	h, _ := c["hash"].(string)
	return h
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// A reload under load: a route added, a policy changed (by replacing the
// file with a rename, noticed by polling), a broken file, a frontend
// removed. No request fails but those the change intends; requests in
// flight finish on the configuration they started with; the broken file
// changes nothing; the sessions from before every reload still work.
func TestReloadUnderLoad(t *testing.T) {
	ln, port := feListen(t)
	web := feSite{"web", "http://127.0.0.1:" + port}
	partners := feSite{"partners", "http://localhost:" + port}
	p := feIdP(t, web, partners)
	release := make(chan struct{})
	slowHit := make(chan struct{}, 1)
	upWeb, upPartners := newRecorder(t, nil), newRecorder(t, nil)
	upSlow := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		slowHit <- struct{}{}
		<-release
		_, _ = io.WriteString(w, `{"slow":true}`)
	})
	rc := reloadConfig{issuer: p.Issuer(), web: web.Base, partners: partners.Base, upWeb: upWeb.URL, upPartners: upPartners.URL,
		upSlow: upSlow.URL, slowRoute: true, withPartners: true, partnersAllow: "true"}
	e := startGW(t, gwOptions{Header: rc.String(), IdP: p, Listener: ln})
	ctx := context.Background()
	write := func(c reloadConfig) {
		t.Helper()
		// Written beside and renamed over, as editors and ConfigMap volumes do.
		tmp := filepath.Join(e.Dir, ".gatehouse.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(c.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, e.Config); err != nil {
			t.Fatal(err)
		}
	}
	startHash := loadedHash(t, e)
	if startHash != fileHash(t, e.Config) {
		t.Fatalf("/readyz config hash %q is not the file's", startHash)
	}

	alice := feLogin(t, e, web, "alice", "wonderland")
	bob := feLogin(t, e, partners, "bob", "builder")
	webURL, partnersURL, newURL := web.Base+"/api/web/x", partners.Base+"/api/partners/x", web.Base+"/api/new/x"
	l := &loadLoop{t: t, stop: make(chan struct{})}
	l.allow(webURL, 200)
	l.allow(partnersURL, 200)
	l.run(alice, webURL, 2, 5000)
	l.run(bob, partnersURL, 2, 5000)

	// A request in flight on the slow route, which the last step removes.
	slowDone := make(chan int, 1)
	go func() {
		code, _ := feCall(t, alice, "GET", web.Base+"/api/slow/x", "")
		slowDone <- code
	}()
	<-slowHit

	// 1. A route added (SIGHUP's path: Reload).
	if code, _ := feCall(t, alice, "GET", newURL, ""); code != http.StatusNotFound {
		t.Fatalf("new route before the reload: %d, want 404", code)
	}
	rc.newRoute = true
	write(rc)
	if err := e.GW.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := feCall(t, alice, "GET", newURL, ""); code != 200 {
		t.Fatalf("new route after the reload: %d %s", code, body)
	}

	// 2. A policy changed, noticed by polling the renamed file.
	l.allow(partnersURL, 200, http.StatusForbidden)
	rc.partnersAllow = "false"
	write(rc)
	want := fileHash(t, e.Config)
	deadline := time.Now().Add(15 * time.Second)
	for loadedHash(t, e) != want {
		if time.Now().After(deadline) {
			t.Fatalf("the changed file was not reloaded; /readyz: %v", readyz(t, e))
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.allow(partnersURL, http.StatusForbidden)
	if code, _ := feCall(t, bob, "GET", partnersURL, ""); code != http.StatusForbidden {
		t.Fatalf("partners after the policy change: %d, want 403", code)
	}

	// 3. A broken file changes nothing, and says why.
	good := loadedHash(t, e)
	broken := rc
	broken.broken = true
	write(broken)
	err := e.GW.Reload(ctx)
	var re *gateway.ReloadError
	if !errors.As(err, &re) || !strings.Contains(strings.Join(re.Problems, "\n"), `frontends[0].routes[3].path: "api/broken" must start with /`) {
		t.Fatalf("broken file: %v", err)
	}
	rz := readyz(t, e)
	last, _ := rz["last_reload"].(map[string]any)
	if loadedHash(t, e) != good || last["outcome"] != "rejected" || last["problems"] == nil {
		t.Fatalf("/readyz after a rejected reload: %v", rz)
	}
	if code, _ := feCall(t, alice, "GET", newURL, ""); code != 200 {
		t.Errorf("the old configuration stopped serving after a rejected reload: %d", code)
	}
	metrics := get(t, e.Admin+"/metrics")
	for _, m := range []string{"gatehouse_config_last_reload_successful 0", `gatehouse_config_info{hash="` + good + `"} 1`, `gatehouse_config_reloads_total{outcome="rejected"}`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	var audited bool
	for _, line := range e.auditLines() {
		if strings.Contains(line, `"event":"config_loaded"`) && strings.Contains(line, `"outcome":"failure"`) && strings.Contains(line, "api/broken") {
			audited = true
		}
	}
	if !audited {
		t.Error("the rejected reload is not in the audit log with its problems")
	}

	// 4. A frontend removed (and the slow route with it).
	l.allow(partnersURL, http.StatusForbidden, http.StatusNotFound)
	rc.withPartners, rc.slowRoute = false, false
	write(rc)
	if err := e.GW.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	l.allow(partnersURL, http.StatusNotFound)
	if code, _ := feCall(t, bob, "GET", partnersURL, ""); code != http.StatusNotFound {
		t.Errorf("removed frontend: %d, want 404", code)
	}
	// The request in flight on the slow route finishes on its configuration.
	close(release)
	if code := <-slowDone; code != 200 {
		t.Errorf("in-flight request across the reload: %d, want 200", code)
	}
	if code, _ := feCall(t, alice, "GET", web.Base+"/api/slow/x", ""); code != http.StatusNotFound {
		t.Errorf("removed route: %d, want 404", code)
	}

	time.Sleep(200 * time.Millisecond) // let the loop run on the final configuration too
	close(l.stop)
	l.wg.Wait()
	if len(l.bad) > 0 {
		t.Errorf("%d requests failed across the reloads, e.g.:\n%s", len(l.bad), strings.Join(l.bad, "\n"))
	}
	if l.total.Load() < 50 {
		t.Errorf("only %d requests ran during the reloads", l.total.Load())
	}
	// The session from before every reload still works.
	if code, _ := feCall(t, alice, "GET", webURL, ""); code != 200 {
		t.Errorf("old session after the reloads: %d", code)
	}
	if code, _ := feCall(t, alice, "GET", web.Base+"/bff/user", ""); code != 200 {
		t.Errorf("old session's /bff/user after the reloads: %d", code)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const auAPIKey = "weather-api-key-7c1d9e04b2"

// auBuildCLI compiles cmd/gatehouse, so the tests run `gatehouse audit
// verify` exactly as an operator would.
func auBuildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gatehouse")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/gatehouse-dev/gatehouse/cmd/gatehouse")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build gatehouse: %v\n%s", err, out)
	}
	return bin
}

// auVerify runs `gatehouse audit verify file`.
func auVerify(t *testing.T, bin, file string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, "audit", "verify", file)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// auLines reads the audit file's lines (the gateway must be stopped, so
// every record is written).
func auLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Fatalf("audit file does not end with a newline")
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func auParse(t *testing.T, lines []string) []map[string]any {
	t.Helper()
	out := make([]map[string]any, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &out[i]); err != nil {
			t.Fatalf("audit line %d is not one JSON object: %v\n%q", i+1, err, l)
		}
	}
	return out
}

// auLoggedHead is the chain head the gateway logged when it closed the audit
// log last (the anchor an operator keeps elsewhere).
func auLoggedHead(t *testing.T, logs string) (seq int, hash string) {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "audit log closed" {
			seq, hash = int(m["seq"].(float64)), m["hash"].(string)
		}
	}
	if hash == "" {
		t.Fatal("the gateway logged no chain head at close")
	}
	return seq, hash
}

var auHeadRe = regexp.MustCompile(`head: seq (\d+) hash ([0-9a-f]{64})`)

// auGateway starts Gatehouse with every credential kind, on dir (restart: same dir, same port).
func auGateway(t *testing.T, dir string, up *recorder, o gwOptions) *gwEnv {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "weather-key"), []byte(auAPIKey), 0o600); err != nil {
		t.Fatal(err)
	}
	o.Dir = dir
	o.Config = `
session:
  store: bolt
  bolt: { path: sessions.db }
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + up.URL + `/"
    methods: [GET, POST]
    credential: user_token
  - name: admin
    path: /api/admin/
    upstream: "` + up.URL + `/"
    credential: user_token
    allow: 'user.sub == "user-bob"'
  - name: billing
    path: /api/billing/
    upstream: "` + up.URL + `/"
    credential:
      token_exchange:
        audience: billing-api
  - name: catalog
    path: /api/catalog/
    upstream: "` + up.URL + `/"
    anonymous: true
    credential: client_credentials
  - name: weather
    path: /api/weather/
    upstream: "` + up.URL + `/"
    credential:
      header:
        name: X-Api-Key
        value: ${file:weather-key}
`
	return startGW(t, o)
}

// auRequest is one API request of the e2e run.
type auRequest struct {
	client *http.Client
	method string
	path   string
	hdr    map[string]string
	noCSRF bool
	want   int   // the status expected, or
	anyOf  []int // any of these (injection paths: cleaned or refused, one record either way)
}

// auDo sends r and returns the X-Request-Id the gateway answered with.
func auDo(t *testing.T, e *gwEnv, r auRequest) string {
	t.Helper()
	req, err := http.NewRequest(r.method, e.URL+r.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.noCSRF {
		req.Header.Set("X-CSRF", "1")
	}
	for k, v := range r.hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != r.want && !slices.Contains(r.anyOf, resp.StatusCode) {
		t.Fatalf("%s %s: %d %s, want %d\n%s", r.method, r.path, resp.StatusCode, body, r.want, polTail(e))
	}
	id := resp.Header.Get("X-Request-Id")
	if id == "" {
		t.Fatalf("%s %s: no X-Request-Id", r.method, r.path)
	}
	return id
}

// auRaw sends raw bytes on a new connection and returns the response's
// status code and X-Request-Id ("" when the HTTP server refused the request
// before it reached the gateway).
func auRaw(t *testing.T, e *gwEnv, raw string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("raw request: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Request-Id")
}

// TestAuditE2EChainTamperRestartInjectionAndSecrets is one end-to-end run
// through the real OP and the real gateway (every credential kind, allowed
// and refused requests, log-injection attempts, login and logout), then a
// restart on the same data directory, and proves on the resulting file:
//   - exactly one `access` record per API request (matched by X-Request-Id),
//     plus one login record per login and one logout record;
//   - `gatehouse audit verify FILE` prints "N records verified", exit 0;
//   - editing a field of, deleting, inserting before, or swapping ANY one
//     line makes it exit 1 naming that line (cutting or forging the last
//     line is caught only against the head the gateway logged — asserted);
//   - the restart continues the chain (seq continuous, one verification);
//   - CR/LF and JSON in paths, queries and headers never add a record;
//   - no token, client secret, API key, cookie or session handle value is
//     in the audit file (nor in the gateway's own log).
func TestAuditE2EChainTamperRestartInjectionAndSecrets(t *testing.T) {
	bin := auBuildCLI(t)
	up := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/boom") {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	dir := t.TempDir()
	e := auGateway(t, dir, up, gwOptions{})
	addr := strings.TrimPrefix(e.URL, "http://")

	alice := e.login("alice", "wonderland")
	anon := newHTTPBrowser(t)
	cookies := []string{e.sessionCookie(alice)}
	if cookies[0] == "" {
		t.Fatal("no session cookie after login")
	}
	_, u := e.user(alice)
	logoutURL := u.get("bff:logout_url")

	reqs := []auRequest{
		{client: alice, method: "GET", path: "/api/profile/me", want: 200},
		{client: alice, method: "POST", path: "/api/profile/me", want: 200},
		{client: alice, method: "GET", path: "/api/billing/plan", want: 200},
		{client: alice, method: "GET", path: "/api/catalog/items", want: 200},
		{client: anon, method: "GET", path: "/api/catalog/items", want: 200},
		{client: alice, method: "GET", path: "/api/weather/today", want: 200},
		{client: alice, method: "GET", path: "/api/profile/boom", want: 500},             // the upstream's 500 (outcome error)
		{client: alice, method: "GET", path: "/api/admin/users", want: 403},              // policy
		{client: alice, method: "GET", path: "/api/profile/me", noCSRF: true, want: 401}, // CSRF (Duende's status)
		{client: anon, method: "GET", path: "/api/profile/me", want: 401},
		{client: alice, method: "DELETE", path: "/api/profile/me", want: 405},
		{client: alice, method: "GET", path: "/api/nothing/here", want: 404},
		{client: alice, method: "GET", path: "/api/profile/%2e%2e/%2e%2e/etc", anyOf: []int{400, 404}},
		// Log injection: CR/LF and JSON in the path, the query and header values.
		{client: alice, method: "GET", path: "/api/profile/a%0d%0a%7B%22event%22%3A%22login%22%2C%22seq%22%3A1%7D", anyOf: []int{200, 400}},
		{client: alice, method: "GET", path: "/api/profile/a%0a%7B%22event%22%3A%22login%22%7D%0a", anyOf: []int{200, 400}},
		{client: alice, method: "GET", path: "/api/profile/q?x=%0d%0a%7B%22event%22%3A%22login%22%7D&y=%22%2C%22outcome%22%3A%22allow", want: 200},
		{client: alice, method: "GET", path: "/api/profile/%E2%80%A8%E2%80%A9x", anyOf: []int{200, 400}},
		// Quotes, backslashes and invalid UTF-8 that survive path cleaning
		// must stay inside the path string of one record.
		{client: alice, method: "GET", path: `/api/profile/x%22,%22event%22:%22login%22,%22sub%22:%22user-bob%22%7D`, anyOf: []int{200, 400}},
		{client: alice, method: "GET", path: `/api/profile/b%5C%22%7D%7B%22seq%22:1`, anyOf: []int{200, 400}},
		{client: alice, method: "GET", path: `/api/profile/%FF%FE%22`, anyOf: []int{200, 400}},
		{client: alice, method: "GET", path: "/api/profile/h", want: 200, hdr: map[string]string{
			"X-Request-Id":    `x","event":"login","sub":"user-bob`,
			"User-Agent":      `ua"}` + "\u2028" + `{"event":"login"}`,
			"X-Forwarded-For": `1.2.3.4", "remote_ip":"6.6.6.6`,
			"Traceparent":     `00-","event":"login"-00`,
		}},
		{client: anon, method: "GET", path: "/api/admin/%0d%0ax", anyOf: []int{400, 401}},
	}
	var ids []string
	for _, r := range reqs {
		ids = append(ids, auDo(t, e, r))
	}
	// Raw requests that carry bare CR or LF where net/http clients cannot put
	// them: the HTTP server refuses them before the gateway (no record), or
	// (an obsolete folded header line) the gateway sees one request: one record.
	for _, raw := range []string{
		"GET /api/profile/a\rb HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\n\r\n",
		"GET /api/profile/a HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nX-Tenant: a\rb\r\n\r\n",
		"GET /api/profile/a HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nX-Tenant: a\r\n {\"event\":\"login\"}\r\n\r\n",
	} {
		code, id := auRaw(t, e, raw)
		if code < 400 || code > 499 {
			t.Errorf("raw request with bare CR/LF answered %d", code)
		}
		if id != "" {
			ids = append(ids, id)
		}
	}
	// Token values the upstreams received (user token, exchanged token,
	// Gatehouse's client-credentials token).
	var tokens []string
	for _, r := range up.requests() {
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			tokens = append(tokens, strings.TrimPrefix(a, "Bearer "))
		}
	}
	if len(tokens) < 3 {
		t.Fatalf("want the upstream to have seen user, exchanged and client tokens, got %d", len(tokens))
	}
	if code, _ := e.api(alice, "GET", logoutURL, nil); code != http.StatusFound && code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	e.Stop()
	phase1 := auLines(t, e.Audit)
	loggedSeq, loggedHash := auLoggedHead(t, e.Logs.String())

	t.Run("one access record per API request, plus login and logout", func(t *testing.T) {
		recs := auParse(t, phase1)
		auCheckOnePerRequest(t, recs, ids)
		events := map[string]int{}
		for _, r := range recs {
			events[r["event"].(string)]++
		}
		if events["login"] != 1 || events["logout"] != 1 || events["config_loaded"] != 1 {
			t.Errorf("events %v: want exactly 1 login, 1 logout, 1 config_loaded", events)
		}
		if events["access"] != len(ids) {
			t.Errorf("%d access records for %d API requests", events["access"], len(ids))
		}
		// The path full of quotes is kept, escaped, inside its own record.
		found := false
		for _, r := range recs {
			if p, _ := r["path"].(string); p == `/api/profile/x","event":"login","sub":"user-bob"}` {
				found = r["event"] == "access" && r["sub"] == "user-alice"
			}
		}
		if !found {
			t.Error("the quote-injection path is not recorded as alice's access")
		}
	})

	t.Run("audit verify accepts the log", func(t *testing.T) {
		code, out, errOut := auVerify(t, bin, e.Audit)
		if code != 0 || !strings.HasPrefix(out, fmt.Sprintf("%d records verified\n", len(phase1))) {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		m := auHeadRe.FindStringSubmatch(out)
		if m == nil || m[1] != strconv.Itoa(loggedSeq) || m[2] != loggedHash {
			t.Fatalf("verified head %v, gateway logged seq %d hash %s", m, loggedSeq, loggedHash)
		}
	})

	t.Run("every one-line tamper is caught at its line", func(t *testing.T) {
		auTamperEveryLine(t, bin, phase1, loggedSeq)
	})

	t.Run("no secret value in the audit file or the log", func(t *testing.T) {
		b, _ := os.ReadFile(e.Audit)
		auNoSecrets(t, "audit file", string(b), cookies, tokens)
		auNoSecrets(t, "gateway log", e.Logs.String(), cookies, tokens)
	})

	// Restart on the same data dir and port: the chain continues.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", addr, err)
	}
	e2 := auGateway(t, dir, up, gwOptions{IdP: e.IdP, Listener: ln})
	bob := e2.login("bob", "builder")
	cookies = append(cookies, e2.sessionCookie(bob))
	ids2 := []string{
		auDo(t, e2, auRequest{client: bob, method: "GET", path: "/api/admin/users", want: 200}),
		auDo(t, e2, auRequest{client: bob, method: "GET", path: "/api/weather/x", want: 200}),
		auDo(t, e2, auRequest{client: alice, method: "GET", path: "/api/profile/me", want: 401}), // logged out before the restart
	}
	e2.Stop()
	all := auLines(t, e2.Audit)

	t.Run("restart continues the chain", func(t *testing.T) {
		if len(all) <= len(phase1) || strings.Join(all[:len(phase1)], "\n") != strings.Join(phase1, "\n") {
			t.Fatal("the restarted gateway did not append to the same file")
		}
		recs := auParse(t, all)
		for i, r := range recs {
			if r["seq"] != float64(i+1) {
				t.Fatalf("line %d has seq %v", i+1, r["seq"])
			}
		}
		first := recs[len(phase1)]
		if first["event"] != "config_loaded" || first["prev"] != loggedHash {
			t.Fatalf("first record after restart %v; want config_loaded with prev %s", first, loggedHash)
		}
		auCheckOnePerRequest(t, recs[len(phase1):], ids2)
		code, out, errOut := auVerify(t, bin, e2.Audit)
		if code != 0 || !strings.HasPrefix(out, fmt.Sprintf("%d records verified\n", len(all))) {
			t.Fatalf("verify across the restart: exit %d\n%s%s", code, out, errOut)
		}
		b, _ := os.ReadFile(e2.Audit)
		auNoSecrets(t, "audit file", string(b), cookies, tokens)
	})
}

// auCheckOnePerRequest: each request id the client saw has exactly one
// access record, and there is no other access record.
func auCheckOnePerRequest(t *testing.T, recs []map[string]any, ids []string) {
	t.Helper()
	seen := map[string]int{}
	access := 0
	for _, r := range recs {
		if r["event"] == "access" {
			access++
			id, _ := r["request_id"].(string)
			seen[id]++
		}
		if r["event"] == "login" && r["sub"] == "user-bob" && r["request_id"] != nil {
			// a forged "login" would carry the injected request id
			if strings.Contains(r["request_id"].(string), `"`) {
				t.Errorf("forged login record: %v", r)
			}
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("request %s has %d access records, want 1", id, seen[id])
		}
	}
	if access != len(ids) {
		t.Errorf("%d access records for %d API requests", access, len(ids))
		want := map[string]bool{}
		for _, id := range ids {
			want[id] = true
		}
		for _, r := range recs {
			if id, _ := r["request_id"].(string); r["event"] == "access" && !want[id] {
				t.Errorf("unexpected access record: %v", r)
			}
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("request id %q appears in %d records", id, n)
		}
	}
}

// auNoSecrets fails if any secret value (or a long part of the cookie
// handle) occurs in text.
func auNoSecrets(t *testing.T, what, text string, cookies, tokens []string) {
	t.Helper()
	check := func(name, v string) {
		if v != "" && strings.Contains(text, v) {
			t.Errorf("%s contains the %s", what, name)
		}
	}
	check("client secret", gwClientSecret)
	check("API key", auAPIKey)
	for _, c := range cookies {
		check("session cookie handle", c)
		if len(c) >= 32 {
			check("first half of the session handle", c[:len(c)/2])
			check("second half of the session handle", c[len(c)/2:])
		}
	}
	for _, tok := range tokens {
		check("upstream token", tok)
		if parts := strings.Split(tok, "."); len(parts) == 3 {
			check("upstream token signature", parts[2])
		}
	}
}

// auWrite writes lines as an audit file at path.
func auWrite(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// auRehash recomputes a line's hash after its prev (and anything else) was
// changed, as a forger without a key can: hash = SHA-256(prev || line
// without its hash member).
func auRehash(t *testing.T, line string) string {
	t.Helper()
	i := strings.LastIndex(line, `,"hash":"`)
	if i < 0 {
		t.Fatalf("no hash member: %s", line)
	}
	var m struct{ Prev string }
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	body := line[:i] + "}"
	sum := sha256.Sum256([]byte(m.Prev + body))
	return body[:len(body)-1] + `,"hash":"` + hex.EncodeToString(sum[:]) + `"}`
}

var (
	auSeqRe  = regexp.MustCompile(`"seq":\d+`)
	auPrevRe = regexp.MustCompile(`"prev":"[0-9a-f]{64}"`)
	auTimeRe = regexp.MustCompile(`("time":"[^"]*\.\d\d)(\d)Z"`)
)

// auForge builds a record for position pos (0-based) of lines[:pos] from
// template: right seq, right prev, recomputed hash.
func auForge(t *testing.T, template string, pos int, prevHash string) string {
	l := auSeqRe.ReplaceAllString(template, `"seq":`+strconv.Itoa(pos+1))
	l = auPrevRe.ReplaceAllString(l, `"prev":"`+prevHash+`"`)
	l = strings.Replace(l, `"outcome":"deny"`, `"outcome":"allow"`, 1)
	return auRehash(t, l)
}

func auHashOf(t *testing.T, line string) string {
	var m struct{ Hash string }
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	return m.Hash
}

// auTamperEveryLine applies each one-line change to every line and runs
// `gatehouse audit verify`, which must exit 1 naming the line where the
// chain breaks. Changes at the very end that keep a valid chain (cutting
// the last line, appending a forged record) must show a head different
// from the one the gateway logged.
func auTamperEveryLine(t *testing.T, bin string, lines []string, loggedSeq int) {
	const genesis = "0000000000000000000000000000000000000000000000000000000000000000"
	// Our forging must be right, or the forged-insert cases prove nothing.
	for _, l := range lines {
		if auRehash(t, l) != l {
			t.Fatalf("recomputing a hash does not reproduce the line; the chain rule changed?\n%s", l)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	n := len(lines)
	runs := 0
	defer func() { t.Logf("%d records; %d tampered copies verified", n, runs) }()
	expectBroken := func(kind string, i int, mutated []string, line int) {
		t.Helper()
		runs++
		auWrite(t, path, mutated)
		code, out, errOut := auVerify(t, bin, path)
		want := fmt.Sprintf("audit log broken at %s:%d: ", path, line)
		if code != 1 || !strings.HasPrefix(errOut, want) {
			t.Errorf("%s at line %d: exit %d, want 1 and %q\nstdout: %s\nstderr: %s", kind, i+1, code, want, out, errOut)
		}
	}
	expectHeadMismatch := func(kind string, mutated []string) {
		t.Helper()
		runs++
		auWrite(t, path, mutated)
		code, out, errOut := auVerify(t, bin, path)
		m := auHeadRe.FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Errorf("%s: exit %d %s %s", kind, code, out, errOut)
			return
		}
		if m[1] == strconv.Itoa(loggedSeq) {
			t.Errorf("%s: verified head seq %s equals the logged head: undetectable", kind, m[1])
		}
	}
	with := func(f func(c []string) []string) []string {
		return f(append([]string(nil), lines...))
	}
	for i := 0; i < n; i++ {
		// Edit one field, keeping the line valid, canonical JSON.
		edited := auTimeRe.ReplaceAllStringFunc(lines[i], func(s string) string {
			m := auTimeRe.FindStringSubmatch(s)
			d := (m[2][0]-'0'+1)%10 + '0'
			return m[1] + string(d) + `Z"`
		})
		if edited == lines[i] {
			t.Fatalf("could not edit line %d", i+1)
		}
		expectBroken("edit time", i, with(func(c []string) []string { c[i] = edited; return c }), i+1)
		if strings.Contains(lines[i], `"outcome":"deny"`) {
			flip := strings.Replace(lines[i], `"outcome":"deny"`, `"outcome":"allow"`, 1)
			expectBroken("deny->allow", i, with(func(c []string) []string { c[i] = flip; return c }), i+1)
			// Even with its own hash recomputed, the next line no longer chains.
			if i+1 < n {
				expectBroken("deny->allow rehashed", i, with(func(c []string) []string { c[i] = auRehash(t, flip); return c }), i+2)
			}
		}
		// Delete.
		del := with(func(c []string) []string { return append(c[:i], c[i+1:]...) })
		if i < n-1 {
			expectBroken("delete", i, del, i+1)
		} else {
			expectHeadMismatch("delete the last line", del)
		}
		// Insert a copy of another line before line i.
		dup := lines[(i+5)%n]
		expectBroken("insert copy", i, with(func(c []string) []string {
			return append(c[:i], append([]string{dup}, c[i:]...)...)
		}), i+1)
		// Insert a forged record with the right seq, prev and hash before line i.
		prev := genesis
		if i > 0 {
			prev = auHashOf(t, lines[i-1])
		}
		forged := auForge(t, lines[(i+3)%n], i, prev)
		expectBroken("insert forged", i, with(func(c []string) []string {
			return append(c[:i], append([]string{forged}, c[i:]...)...)
		}), i+2)
		// Swap with the next line.
		if i < n-1 {
			expectBroken("swap", i, with(func(c []string) []string { c[i], c[i+1] = c[i+1], c[i]; return c }), i+1)
		}
	}
	// Append a forged record: a valid chain, one longer than the anchored head.
	forged := auForge(t, lines[0], n, auHashOf(t, lines[n-1]))
	expectHeadMismatch("append forged", append(append([]string(nil), lines...), forged))
	// An appended copy of a line breaks at the new line.
	expectBroken("append copy", n, append(append([]string(nil), lines...), lines[n-1]), n+1)
}

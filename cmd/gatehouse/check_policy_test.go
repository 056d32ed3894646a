package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// checkPolicyBase is a valid configuration up to (and including) the first
// lines of routes[0]; tests append the route's allow: key.
const checkPolicyBase = `public_url: "http://127.0.0.1:8080"
identity:
  issuer: https://idp.example.com
  client_id: web
  client_secret: not-a-real-secret-but-literal
session:
  store: memory
audit:
  sink: stdout
routes:
  - name: profile
    path: /api/profile/
    upstream: http://profile.internal/
    credential: user_token
`

// checkPolicyRun writes yaml to a temp file and runs `gatehouse check -c` on it.
func checkPolicyRun(t *testing.T, yaml string) (file string, code int, stdout, stderr string) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code = run(context.Background(), []string{"check", "-c", file}, &out, &errb)
	return file, code, out.String(), errb.String()
}

// lineOf returns the 1-based line of the first line of yaml containing s.
func lineOf(t *testing.T, yaml, s string) int {
	t.Helper()
	for i, l := range strings.Split(yaml, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in the config", s)
	return 0
}

// The base configuration itself is valid, so every failure below is the
// policy's (a broken base would make the type-error tests pass vacuously).
func TestPolicyCheckBaseConfigIsValid(t *testing.T) {
	_, code, out, errOut := checkPolicyRun(t, checkPolicyBase)
	if code != 0 || !strings.Contains(out, "configuration is valid (1 routes)") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

// A CEL type error in a route's allow: is a configuration error that names
// the file and the line the error is on, whether the expression is a
// one-line scalar or a block whose second (or later) line holds the error.
func TestPolicyCheckTypeErrorNamesFileAndLine(t *testing.T) {
	cases := []struct {
		name  string
		allow string
		// errLine is a substring of the config line the error must point at.
		errLine string
	}{
		{"single-quoted scalar", "    allow: 'request.method == 1'\n", "request.method == 1"},
		{"double-quoted scalar", "    allow: \"user.email_verified == true && request.path == 7\"\n", "request.path == 7"},
		{"plain scalar", "    allow: request.headers == 3\n", "request.headers == 3"},
		{"block, error on its 2nd line", "    allow: |\n      user.email_verified == true &&\n        request.method == 1\n", "request.method == 1"},
		{"block, error on its 3rd line", "    allow: |\n      user.email_verified == true &&\n      request.method == \"GET\" &&\n      session.no_such_field == \"x\"\n", "session.no_such_field"},
		{"folded block, error on its 2nd line", "    allow: >-\n      request.method == \"GET\" &&\n      request.query == 1\n", "request.query == 1"},
		{"unknown variable", "    allow: 'usr.email == \"a\"'\n", "usr.email"},
		{"not a bool", "    allow: 'request.method'\n", "request.method'"},
		{"a bare claim is not a bool", "    allow: 'user.admin'\n", "user.admin'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			yaml := checkPolicyBase + tc.allow
			file, code, out, errOut := checkPolicyRun(t, yaml)
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			want := fmt.Sprintf("%s:%d: routes[0].allow: ", file, lineOf(t, yaml, tc.errLine))
			if !strings.HasPrefix(errOut, want) {
				t.Fatalf("stderr does not start with %q:\n%s", want, errOut)
			}
			if strings.Contains(out, "valid") {
				t.Fatalf("stdout claims the configuration is valid: %s", out)
			}
		})
	}
}

// A policy error says the column as well and suggests the fix.
func TestPolicyCheckErrorGivesColumnAndSuggestion(t *testing.T) {
	for _, tc := range []struct{ allow, want string }{
		{"    allow: 'usr.email == \"x\"'\n", "routes[0].allow: column 13: undeclared reference to 'usr' (did you mean 'user'?)"},
		{"    allow: 'user.email_verified == true && session.acrr == \"x\"'\n", "column 51: undefined field 'acrr' — did you mean 'acr'?"},
		{"    allow: 'request.method == 1'\n", "column 28: found no matching overload for '_==_' applied to '(string, int)' — both sides must have the same type"},
	} {
		_, code, _, errOut := checkPolicyRun(t, checkPolicyBase+tc.allow)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("exit %d, stderr %q\nwant it to contain %q", code, errOut, tc.want)
		}
	}
}

// Every broken expression in a file is reported in one run, each at its line.
func TestPolicyCheckReportsEveryBadExpression(t *testing.T) {
	yaml := checkPolicyBase + "    allow: 'request.method == 1'\n" + `  - name: billing
    path: /api/billing/
    upstream: http://billing.internal/
    credential: user_token
    allow: |
      request.method == "GET" &&
      user.email_verified == true
  - name: orders
    path: /api/orders/
    upstream: http://orders.internal/
    credential: user_token
    allow: |
      request.method == "GET" &&
      request.remote_ip > 3
`
	file, code, _, errOut := checkPolicyRun(t, yaml)
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errOut)
	}
	want := []string{
		fmt.Sprintf("%s:%d: routes[0].allow: ", file, lineOf(t, yaml, "request.method == 1")),
		fmt.Sprintf("%s:%d: routes[2].allow: ", file, lineOf(t, yaml, "request.remote_ip > 3")),
	}
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(lines), len(want), errOut)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

// An expression that is well typed but reads a claim that may be missing
// compiles: it is an evaluation error at request time, which denies (proved
// end-to-end in test/e2e). check must not reject it.
func TestPolicyCheckAcceptsRuntimeOnlyErrors(t *testing.T) {
	_, code, out, errOut := checkPolicyRun(t, checkPolicyBase+"    allow: 'user.no_such_claim == \"x\"'\n")
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

// `gatehouse check -c examples/bad.yaml` exits 1 and prints every problem
// of the file, one per line, each as file:line: key: message, in one run.
// The file marks its mistakes with trailing comments (21) plus two it cannot
// mark on their own line (identity.client_id missing, max_body: lots): 23.
func TestCheckBadExampleReportsEveryProblemWithFileLine(t *testing.T) {
	const file = "../../examples/bad.yaml"
	os.Unsetenv("GATEHOUSE_EXAMPLE_UNSET_SECRET")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check", "-c", file}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	if out.Len() != 0 {
		t.Errorf("stdout should be empty: %s", out.String())
	}
	want := []string{
		"5: lisen", "6: public_url", "8: identity.client_id", "9: identity.issuer",
		"10: identity.client_secret", "11: identity.client_auth", "12: identity.scopes",
		"15: session.store", "16: session.same_site", "17: session.idle_timeout",
		"22: csrf.allowed_origins[0]", "26: routes[0].path", "28: routes[0].credential",
		"29: routes[1].name", "31: routes[1].upstream", "33: routes[1].credential",
		"35: routes[1].timeout", "36: routes[2].upstream", "37: routes[2].path",
		"39: routes[2].max_body", "42: composites[0].path", "42: composites[0].calls", "45: audit.sink", "48: telemetry.log_level",
	}
	lines := strings.Split(strings.TrimRight(errb.String(), "\n"), "\n")
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:(\d+): ([a-z_]+[a-z_\[\]0-9.]*): .+`)
	var got []string
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("not file:line: key: message: %q", l)
			continue
		}
		got = append(got, m[1]+": "+m[2])
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems (line: key):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The file's own count: one trailing "# comment" per mistake, except the
	// header and the two mistakes that have no line of their own to mark.
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	marked := 0
	for _, l := range strings.Split(string(src), "\n") {
		if j := strings.Index(l, " #"); j > 0 && strings.TrimSpace(l[:j]) != "" {
			marked++
		}
	}
	if len(lines) != marked+2 {
		t.Errorf("check printed %d problems; the file marks %d (+2 unmarked)", len(lines), marked)
	}
}

// Policies may name `agent` (null for users); `gatehouse check` accepts a
// valid agents section and reports a broken one at its file:line.
func TestPolicyCheckAgents(t *testing.T) {
	yaml := checkPolicyBase + "    allow: 'agent == null || \"profile\" in agent.grant.routes'\n"
	if _, code, out, errOut := checkPolicyRun(t, yaml); code != 0 {
		t.Fatalf("an agent-aware expression must compile: exit %d\n%s%s", code, out, errOut)
	}
	if _, code, out, errOut := checkPolicyRun(t, yaml+"agents:\n  delegable_routes: [profile]\n"); code != 0 {
		t.Fatalf("a valid agents section: exit %d\n%s%s", code, out, errOut)
	}
	bad := yaml + "agents:\n  max_ttl: 15m\n"
	file, code, _, errOut := checkPolicyRun(t, bad)
	want := fmt.Sprintf("%s:%d: agents.delegable_routes: required key is missing", file, lineOf(t, bad, "agents:"))
	if code != 1 || !strings.HasPrefix(errOut, want) {
		t.Fatalf("exit %d, want 1 and %q:\n%s", code, want, errOut)
	}
}

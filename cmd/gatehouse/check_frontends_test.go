package main

import (
	"fmt"
	"strings"
	"testing"
)

// `gatehouse check` on a frontends: file reports each problem with
// file:line under its frontend's heading — load problems and build problems
// (a policy that does not compile) alike — and lists the frontends of a
// valid file.
func TestCheckReportsPerFrontend(t *testing.T) {
	entry := func(client, url, allow string) string {
		return fmt.Sprintf(`  - client: %s
    public_url: "%s"
    identity: { issuer: https://idp.example.com, client_id: %s, client_secret: not-a-real-secret-but-literal }
    routes:
      - { name: r, path: /api/r/, upstream: http://r.internal/, credential: user_token, allow: '%s' }
`, client, url, client, allow)
	}
	head := "session: { store: memory }\naudit: { sink: stdout }\nfrontends:\n"
	valid := head + entry("web", "http://127.0.0.1:8080", "true") + entry("shop", "http://127.0.0.1:8080/shop", "true")
	_, code, out, errOut := checkPolicyRun(t, valid)
	if code != 0 || !strings.Contains(out, "configuration is valid (2 frontends)") || !strings.Contains(out, "frontend shop (frontends[1]): http://127.0.0.1:8080/shop, 1 routes") {
		t.Fatalf("valid file: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	policy := head + entry("web", "http://127.0.0.1:8080", "true") + entry("partners", "http://localhost:8080", "user.nope(")
	file, code, _, errOut := checkPolicyRun(t, policy)
	want := fmt.Sprintf("frontend partners:\n%s:%d: frontends[1].routes[0].allow:", file, lineOf(t, policy, "user.nope("))
	if code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("policy error: exit %d, stderr:\n%s\nwant:\n%s", code, errOut, want)
	}

	load := head + entry("web", "http://127.0.0.1:8080", "true") + strings.Replace(entry("partners", "http://localhost:8080", "true"), "/api/r/", "api", 1)
	file, code, _, errOut = checkPolicyRun(t, load)
	want = fmt.Sprintf("frontend partners:\n%s:%d: frontends[1].routes[0].path:", file, lineOf(t, load, "path: api,"))
	if code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("load error: exit %d, stderr:\n%s\nwant:\n%s", code, errOut, want)
	}
}

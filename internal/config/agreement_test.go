package config_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

// agreeBase is a valid file; cases append to it. Its routes start at line 9.
const agreeBase = `public_url: https://app.example.com
identity:
  issuer: https://idp.example.com
  client_id: web
  client_secret: ${env:GH_TEST_CLIENT_SECRET}
audit:
  sink: file
  path: audit.jsonl
`

// agreeFrontends is a valid frontends: file (web, then shop under /shop);
// shopExtra and webExtra are appended to the entries. The shop entry's
// public_url is at line 10 (without webExtra).
func agreeFrontends(shopExtra, webExtra string) string {
	return `audit: { sink: file, path: audit.jsonl }
frontends:
  - client: web
    public_url: https://app.example.com
    identity:
      issuer: https://idp.example.com
      client_id: web
      client_secret: ${env:GH_TEST_CLIENT_SECRET}
` + webExtra + `  - client: shop
    public_url: https://app.example.com/shop
    identity:
      issuer: https://idp.example.com
      client_id: shop
      client_secret: ${env:GH_TEST_CLIENT_SECRET}
` + shopExtra
}

func agreeRoute(upstream, credential string) string {
	return "routes:\n  - name: a\n    path: /api/a/\n    upstream: " + upstream + "\n    credential: " + credential + "\n"
}

// TestCheckAndServeAgree: every configuration in the corpus is refused by
// both `gatehouse check` (config.Load + gateway.Check) and serve
// (config.Load + gateway.New, everything but binding listeners and
// contacting the IdP), or accepted by both. The cases serve used to refuse
// after check accepted them are refused by check at file:line.
func TestCheckAndServeAgree(t *testing.T) {
	t.Setenv("GH_TEST_CLIENT_SECRET", "test-client-secret-value")
	t.Setenv("GH_TEST_SHORT", "too-short")
	type tc struct {
		src     string
		wantPos string // for the named fixes: check's error names this file:line
	}
	corpus := map[string]tc{
		"valid":                                   {src: agreeBase + agreeRoute("http://a.internal/v1/", "user_token")},
		"valid, several routes":                   {src: agreeBase + agreeRoute("http://a.internal/", "none") + "  - name: b\n    path: /api/b/\n    upstream: https://b.internal/\n    credential: { token_exchange: { audience: b } }\n"},
		"header credential X-Access-Token":        {src: agreeBase + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n    credential:\n      header: { name: X-Access-Token, value: \"${env:GH_TEST_CLIENT_SECRET}\" }\n", wantPos: "g.yaml:10:"},
		"header credential X-Forwarded-User":      {src: agreeBase + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n    credential:\n      header: { name: X-Forwarded-User, value: \"${env:GH_TEST_CLIENT_SECRET}\" }\n", wantPos: "g.yaml:14:"},
		"upstream path /a%2Fb/":                   {src: agreeBase + agreeRoute("http://a.internal/a%2Fb/", "none"), wantPos: "g.yaml:10:"},
		"upstream path /a/../b/":                  {src: agreeBase + agreeRoute("http://a.internal/a/../b/", "none"), wantPos: "g.yaml:10:"},
		"upstream path /a//b/":                    {src: agreeBase + agreeRoute("http://a.internal/a//b/", "none"), wantPos: "g.yaml:10:"},
		"upstream path /a;b/":                     {src: agreeBase + agreeRoute("http://a.internal/a;b/", "none"), wantPos: "g.yaml:10:"},
		"https without __Host-":                   {src: agreeBase + "session:\n  cookie_name: sid\n", wantPos: "g.yaml:10:"},
		"https with __Secure-":                    {src: agreeBase + "session:\n  cookie_name: __Secure-sid\n", wantPos: "g.yaml:10:"},
		"frontends, valid":                        {src: agreeFrontends("", "")},
		"frontends, path-bound without __Secure-": {src: agreeFrontends("    session: { cookie_name: sid }\n", ""), wantPos: "g.yaml:15:"},
		"frontends, bad route in the first":       {src: agreeFrontends("", "    routes:\n      - { name: a, path: /api/a/, upstream: \"http://a.internal/a/../b/\", credential: none }\n"), wantPos: "g.yaml:10:"},
	}
	// Composites are compiled against the routes by internal/compose when
	// the gateway builds; check must refuse what serve refuses, at the line.
	// agreeRoute's route a ends at line 13; "composites:" is line 14, the
	// path line 16, the first call (or the shape's first line) line 18.
	comp := func(calls, extra string) string {
		return agreeBase + agreeRoute("http://a.internal/", "user_token") +
			"composites:\n  - name: dash\n    path: /api/dash\n" + extra + "    calls:\n" + calls
	}
	corpus["composite valid"] = tc{src: comp("      me: { route: a, path: /me }\n      plan: { route: a, path: \"/plans/{calls.me.plan}\", depends_on: [me] }\n", "")}
	corpus["composite unknown route"] = tc{src: comp("      me: { route: nope, path: /me }\n", ""), wantPos: "g.yaml:18:"}
	corpus["composite depends_on cycle"] = tc{src: comp("      x: { route: a, path: /x, depends_on: [y] }\n      y: { route: a, path: /y, depends_on: [x] }\n", ""), wantPos: "g.yaml:19:"}
	corpus["composite template names unknown call"] = tc{src: comp("      x: { route: a, path: \"/{calls.ghost.id}\" }\n", ""), wantPos: "g.yaml:18:"}
	corpus["composite shape does not compile"] = tc{src: comp("      x: { route: a, path: /x }\n", "    shape: |\n      {\"a\": x.b,\n       \"c\": (}\n"), wantPos: "g.yaml:19:"}
	corpus["composite with a route's path"] = tc{src: strings.Replace(comp("      x: { route: a, path: /x }\n", ""), "path: /api/dash", "path: /api/a/dash", 1), wantPos: "g.yaml:16:"}
	bad, err := os.ReadFile("../../examples/bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	corpus["examples/bad.yaml"] = tc{src: string(bad)}
	for name, src := range config.ErrorTestInputs() {
		corpus["error test: "+name] = tc{src: src}
	}
	posRE := regexp.MustCompile(`g\.yaml:\d+: `)
	for name, c := range corpus {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "g.yaml")
			if err := os.WriteFile(path, []byte(c.src), 0o600); err != nil {
				t.Fatal(err)
			}
			checkErr := check(path)
			serveErr := serve(t, path)
			if (checkErr == nil) != (serveErr == nil) {
				t.Fatalf("check and serve disagree:\ncheck: %v\nserve: %v", checkErr, serveErr)
			}
			if c.wantPos != "" {
				if checkErr == nil || !strings.Contains(checkErr.Error(), c.wantPos) {
					t.Fatalf("check: %v; want a problem at %s", checkErr, c.wantPos)
				}
			}
			if checkErr != nil && !posRE.MatchString(checkErr.Error()) {
				t.Errorf("check's refusal names no file:line: %v", checkErr)
			}
		})
	}
}

func check(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	return gateway.Check(cfg)
}

// serve builds the gateway as `gatehouse serve` does, on loopback
// listeners, then stops it at once (releasing its files).
func serve(t *testing.T, path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	var lns [2]net.Listener
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := gateway.New(ctx, cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Stdout: io.Discard,
		PublicListener: lns[0], AdminListener: lns[1]})
	if err != nil {
		cancel()
		lns[0].Close()
		lns[1].Close()
		return err
	}
	cancel()
	if err := g.Run(ctx); err != nil {
		t.Logf("run: %v", err)
	}
	return nil
}

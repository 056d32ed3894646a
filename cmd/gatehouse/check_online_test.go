package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// `check --online` reaches the IdP's discovery document and the session
// store; either being unreachable is a problem, exit 1, naming which.
func TestCheckOnlineReachesTheIdPAndTheStore(t *testing.T) {
	p := idp.MustStart(t, idp.Options{Clients: []idp.Client{{ID: "c", Secret: "online-check-secret", RedirectURIs: []string{"http://127.0.0.1:8080/bff/callback"}}}})
	rs := redisserver.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadIssuer := "http://" + ln.Addr().String()
	ln.Close() // nothing listens here any more

	write := func(issuer, store string) string {
		dir := t.TempDir()
		cfg := fmt.Sprintf(`public_url: "http://127.0.0.1:8080"
identity:
  issuer: %q
  client_id: c
  client_secret: online-check-secret
session:
%s
routes:
  - name: r
    path: /api/r/
    upstream: http://127.0.0.1:9/
    credential: none
    anonymous: true
`, issuer, store)
		path := filepath.Join(dir, "g.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	redisStore := "  store: redis\n  redis: { url: \"" + rs.URL() + "\" }"
	tests := []struct {
		name, issuer, store string
		code                int
		want                string
	}{
		{"all reachable (redis)", p.Issuer(), redisStore, 0, "configuration is valid"},
		{"all reachable (bolt)", p.Issuer(), "  store: bolt\n  bolt: { path: data/s.db }", 0, "configuration is valid"},
		{"IdP down", deadIssuer, "  store: memory", 1, "identity.issuer: fetch discovery document"},
		{"issuer differs from discovery", p.Issuer() + "/", "  store: memory", 1, "identity.issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"check", "--online", "-c", write(tt.issuer, tt.store)}, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.want) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errOut.String())
			}
		})
	}
	t.Run("redis down", func(t *testing.T) {
		path := write(p.Issuer(), redisStore)
		rs.Kill()
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"check", "--online", "-c", path}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "session.store: ping redis") {
			t.Fatalf("exit %d\nstderr: %s", code, errOut.String())
		}
	})
}

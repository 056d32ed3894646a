package gateway

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/config"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// A build step that fails (here: the bolt file is locked by another
// Gatehouse) returns its error and releases what was already opened; it
// never panics and never half-starts.
func TestNewReportsBuildFailureAndReleasesResources(t *testing.T) {
	dir := t.TempDir()
	yaml := `public_url: "http://127.0.0.1:8080"
identity:
  issuer: "http://127.0.0.1:1"
  client_id: c
  client_secret: build-failure-secret
session:
  store: bolt
  bolt: { path: sessions.db }
audit:
  sink: file
  path: audit.jsonl
`
	cfg, err := config.Parse([]byte(yaml), filepath.Join(dir, "g.yaml"), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := New(ctx, cfg, Options{PublicListener: listen(t), AdminListener: listen(t)})
	if err != nil {
		t.Fatal(err)
	}
	second, err := New(ctx, cfg, Options{PublicListener: listen(t), AdminListener: listen(t)})
	if err == nil || second != nil || !strings.Contains(err.Error(), "sessions.db") {
		t.Fatalf("second gateway on a locked bolt file: %v, %v", second, err)
	}
	if err := first.close(); err != nil {
		t.Fatal(err)
	}
	// Everything the failed build opened was released: a third one starts.
	third, err := New(ctx, cfg, Options{PublicListener: listen(t), AdminListener: listen(t)})
	if err != nil {
		t.Fatalf("after the failure, a new gateway must start: %v", err)
	}
	_ = third.close()
}

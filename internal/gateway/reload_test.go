package gateway

import (
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/config"
)

func testGeneration(g *Gateway) *generation {
	return &generation{g: g, drained: make(chan struct{})}
}

// A replaced generation is closed only once the requests that started on it
// have finished, and no request starts on it after it was retired.
func TestRetiredGenerationDrainsBeforeClosing(t *testing.T) {
	g := &Gateway{log: slog.New(slog.DiscardHandler)}
	old, cur := testGeneration(g), testGeneration(g)
	g.gen.Store(old)
	inflight := g.acquire()
	if inflight != old {
		t.Fatal("acquire did not return the current generation")
	}
	g.gen.Swap(cur)
	done := make(chan struct{})
	go func() { old.retire(time.Hour); close(done) }()
	for !old.retired.Load() {
		runtime.Gosched()
	}
	if got := g.acquire(); got != cur {
		t.Fatal("a request started on the retired generation")
	} else {
		got.release()
	}
	if old.closed.Load() {
		t.Fatal("the retired generation was closed with a request in flight")
	}
	inflight.release()
	<-done
	if !old.closed.Load() {
		t.Fatal("the retired generation was not closed after its last request")
	}
}

// A retired generation with nothing in flight is closed at once.
func TestRetireIdleGeneration(t *testing.T) {
	g := &Gateway{log: slog.New(slog.DiscardHandler)}
	gen := testGeneration(g)
	gen.retire(time.Hour)
	if !gen.closed.Load() {
		t.Fatal("not closed")
	}
}

func TestRestartRequired(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{File: "g.yaml", Listen: "127.0.0.1:8080", AdminListen: "127.0.0.1:9090",
			Session: config.Session{Store: config.StoreBolt, Bolt: config.BoltStore{Path: "/d/s.db"}},
			Audit:   config.Audit{Sink: config.AuditFile, Path: "/d/a.jsonl"}}
	}
	tests := []struct {
		name   string
		change func(c *config.Config)
		want   string
	}{
		{"nothing", func(*config.Config) {}, ""},
		{"per-frontend settings", func(c *config.Config) { c.Client, c.Routes = "other", []config.Route{{Name: "r"}} }, ""},
		{"listen", func(c *config.Config) { c.Listen = "127.0.0.1:8081" }, "listen changed"},
		{"admin_listen", func(c *config.Config) { c.AdminListen = "127.0.0.1:9091" }, "admin_listen changed"},
		{"store", func(c *config.Config) { c.Session.Store = config.StoreMemory }, "session.store changed"},
		{"bolt path", func(c *config.Config) { c.Session.Bolt.Path = "/e/s.db" }, "session.store changed"},
		{"audit", func(c *config.Config) { c.Audit.Path = "/e/a.jsonl" }, "audit changed"},
	}
	for _, tt := range tests {
		c := base()
		tt.change(c)
		got := restartRequired(base(), c)
		if (tt.want == "") != (len(got) == 0) || (tt.want != "" && !strings.Contains(got[0], tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, got, tt.want)
		}
	}
}

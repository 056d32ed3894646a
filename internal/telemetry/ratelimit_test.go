package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestRepeatedFailuresAreRateLimitedWithACount: 100,000 identical errors (one per refused
// request during an outage) write repeatBurst lines per window, and the first line of the next
// window says how many were suppressed; other messages and info lines are not affected.
func TestRepeatedFailuresAreRateLimitedWithACount(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	log := slog.New(newRateLimited(slog.NewJSONHandler(&buf, nil), func() time.Time { return now }))
	comp := log.With("component", "proxy")
	for i := range 100_000 {
		comp.ErrorContext(context.Background(), "audit reserve failed", "route", "api", "i", i)
	}
	log.Error("another failure")
	log.Info("info is never limited")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != repeatBurst+2 {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), repeatBurst+2, buf.String())
	}
	now = now.Add(repeatWindow)
	buf.Reset()
	comp.Error("audit reserve failed")
	if !strings.Contains(buf.String(), `"repeats_suppressed":99995`) || !strings.Contains(buf.String(), `"component":"proxy"`) {
		t.Fatalf("next window: %s", buf.String())
	}
}

package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 28, 16, 1, 2, 345678901, time.UTC)

// fixedClock returns a clock advancing one millisecond per call.
func fixedClock() func() time.Time {
	var n atomic.Int64
	return func() time.Time { return t0.Add(time.Duration(n.Add(1)) * time.Millisecond) }
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func sampleRecord(i int) Record {
	return Record{
		Event: EventAccess, Outcome: OutcomeAllow, Reason: "policy", Sub: "user-1",
		Session: "s_3f2a", Actor: []string{"agent-7"}, Client: "spa", Route: "orders",
		Method: "GET", Path: fmt.Sprintf("/api/orders/%d", i), Status: 200,
		Upstream: "http://orders.internal:8080", RemoteIP: "203.0.113.7",
		RequestID: fmt.Sprintf("req-%d", i), TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

func openFile(t testing.TB, path string, mod func(*Options)) *Logger {
	t.Helper()
	o := Options{Sink: "file", Path: path, Now: fixedClock(), Logger: quietLogger()}
	if mod != nil {
		mod(&o)
	}
	l, err := Open(context.Background(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// writeLog writes n sample records to a new file log and returns its path.
func writeLog(t testing.TB, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openFile(t, path, nil)
	for i := range n {
		if err := l.Log(context.Background(), sampleRecord(i)); err != nil {
			t.Fatalf("Log: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return path
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func joinLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func brokenAt(t *testing.T, err error) *BrokenError {
	t.Helper()
	var be *BrokenError
	if !errors.As(err, &be) {
		t.Fatalf("want *BrokenError, got %v", err)
	}
	return be
}

// switchWriter is a sink the test owns: it fails while failing is set, and blocks while gate is held.
type switchWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	failing atomic.Bool
	gate    sync.Mutex
}

func (w *switchWriter) Write(p []byte) (int, error) {
	w.gate.Lock()
	defer w.gate.Unlock()
	if w.failing.Load() {
		return 0, errors.New("no space left on device")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *switchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

var _ io.Writer = (*switchWriter)(nil)

func openStdout(t testing.TB, w io.Writer, mod func(*Options)) *Logger {
	t.Helper()
	o := Options{Sink: "stdout", Stdout: w, Now: fixedClock(), Logger: quietLogger()}
	if mod != nil {
		mod(&o)
	}
	l, err := Open(context.Background(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// eventually polls cond; used only to wait for the writer goroutine, never to measure time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// blockingWriter is a stdout sink whose every Write blocks until release is closed.
type blockingWriter struct{ release chan struct{} }

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

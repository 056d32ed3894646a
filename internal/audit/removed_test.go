package audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Deleting the audit file under a running Logger must not make records
// vanish into an unlinked file: the writer notices at the next tick, reopens
// the path and continues the chain there, and the break stays visible.
func TestRemovedLogFileIsNoticedAndTheChainContinuesVisibly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l, err := Open(context.Background(), Options{Sink: "file", Path: path, FsyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := l.Log(ctx, Record{Event: EventAccess, Outcome: OutcomeAllow, Route: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return l.Stats().Written == 3 })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(path); return err == nil })
	if err := l.Log(ctx, Record{Event: EventAccess, Outcome: OutcomeAllow, Route: "after"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"route":"after"`) {
		t.Fatalf("the record after the removal is not in the new file:\n%s", b)
	}
	if l.Stats().WriteErrors == 0 {
		t.Fatal("the removal must count as a write error")
	}
	_, err = VerifyFile(path)
	be, ok := err.(*BrokenError)
	if !ok || be.Line != 1 {
		t.Fatalf("verifying the new file alone must fail at line 1 (the gap), got %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
)

// auditVerifyRun runs `gatehouse audit verify args...` in-process.
func auditVerifyRun(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"audit", "verify"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// auditVerifyWrite writes n access records through the real audit Logger
// (file sink, rotating at maxSize bytes; 0 never rotates), closing and
// reopening it halfway as a restart does, and returns the path.
func auditVerifyWrite(t *testing.T, n int, maxSize int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var tick atomic.Int64
	base := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return base.Add(time.Duration(tick.Add(1)) * time.Second) }
	open := func() *audit.Logger {
		l, err := audit.Open(context.Background(), audit.Options{Sink: "file", Path: path, MaxSize: maxSize,
			Now: now, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	for i := 0; i < n; i++ {
		if i == n/2 {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = open()
		}
		outcome := audit.OutcomeAllow
		if i%3 == 0 {
			outcome = audit.OutcomeDeny
		}
		if err := l.Log(context.Background(), audit.Record{Event: audit.EventAccess, Outcome: outcome,
			Sub: "user-alice", Route: "profile", Method: "GET", Path: fmt.Sprintf("/api/profile/%d\r\n{\"event\":\"login\"}", i),
			Status: 200, RequestID: fmt.Sprintf("req-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func auditVerifyLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func auditVerifyPut(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// `gatehouse audit verify FILE` on an intact log (written across a restart,
// with CR/LF and JSON inside values): "N records verified", the head, exit 0.
// Any one-line change breaks it with exit 1 naming that line.
func TestAuditVerifyCLIIntactAndTamperedLines(t *testing.T) {
	path := auditVerifyWrite(t, 12, 0)
	lines := auditVerifyLines(t, path)
	if len(lines) != 12 {
		t.Fatalf("%d lines for 12 records (CR/LF in a value made extra lines?)", len(lines))
	}
	code, out, errOut := auditVerifyRun(path)
	if code != 0 || !strings.HasPrefix(out, "12 records verified\nhead: seq 12 hash ") {
		t.Fatalf("intact log: exit %d\n%s%s", code, out, errOut)
	}
	for i := range lines {
		mutations := map[string][]string{}
		c := append([]string(nil), lines...)
		c[i] = strings.Replace(c[i], `"status":200`, `"status":201`, 1)
		mutations["edit"] = c
		if i < len(lines)-1 {
			c = append([]string(nil), lines...)
			mutations["delete"] = append(c[:i], c[i+1:]...)
			c = append([]string(nil), lines...)
			c[i], c[i+1] = c[i+1], c[i]
			mutations["swap"] = c
		}
		c = append([]string(nil), lines...)
		mutations["insert"] = append(c[:i], append([]string{lines[(i+4)%len(lines)]}, c[i:]...)...)
		for kind, m := range mutations {
			auditVerifyPut(t, path, m)
			code, out, errOut := auditVerifyRun(path)
			want := fmt.Sprintf("audit log broken at %s:%d: ", path, i+1)
			if code != 1 || !strings.HasPrefix(errOut, want) || out != "" {
				t.Errorf("%s line %d: exit %d, want 1 and %q\nstdout: %s\nstderr: %s", kind, i+1, code, want, out, errOut)
			}
		}
	}
	// A line cut in half (a torn write) is named too.
	auditVerifyPut(t, path, lines)
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := auditVerifyRun(path); code != 1 || !strings.Contains(errOut, fmt.Sprintf("%s:12: ", path)) {
		t.Errorf("torn last line: exit %d %s", code, errOut)
	}
}

// A rotated set (size-based rotation keeps the chain across files) verifies
// as one chain, oldest first; tampering inside a rotated file names that
// file and line; removing a whole rotated file breaks the chain.
func TestAuditVerifyCLIRotatedSet(t *testing.T) {
	path := auditVerifyWrite(t, 30, 1200)
	files, err := audit.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("want several rotated files, got %v", files)
	}
	code, out, errOut := auditVerifyRun(path)
	if code != 0 || !strings.HasPrefix(out, "30 records verified\n") {
		t.Fatalf("rotated set: exit %d\n%s%s", code, out, errOut)
	}
	mid := files[1]
	orig := auditVerifyLines(t, mid)
	c := append([]string(nil), orig...)
	c[1] = strings.Replace(c[1], `"status":200`, `"status":201`, 1)
	auditVerifyPut(t, mid, c)
	if code, _, errOut := auditVerifyRun(path); code != 1 || !strings.HasPrefix(errOut, fmt.Sprintf("audit log broken at %s:2: ", mid)) {
		t.Errorf("edit in a rotated file: exit %d %s", code, errOut)
	}
	auditVerifyPut(t, mid, orig)
	if err := os.Remove(mid); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := auditVerifyRun(path); code != 1 || !strings.HasPrefix(errOut, fmt.Sprintf("audit log broken at %s:1: ", files[2])) {
		t.Errorf("rotated file removed: exit %d %s", code, errOut)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := auditVerifyRun(path); code != 1 || !strings.Contains(errOut, "genesis") {
		t.Errorf("oldest files removed: exit %d %s", code, errOut)
	}
}

// Usage mistakes exit 2.
func TestAuditVerifyCLIUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"a", "b"}} {
		if code, _, _ := auditVerifyRun(args...); code != 2 {
			t.Errorf("audit verify %v: exit %d, want 2", args, code)
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"audit", "check"}, &out, &errb); code != 2 {
		t.Errorf("audit check: exit %d, want 2", code)
	}
}

// A path with no log at all (a typo, a wrong mount) must not be reported as
// a verified log: "0 records verified", exit 0 would tell the operator the
// log is fine.
func TestAuditVerifyCLIMissingFileFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-audit.jsonl")
	code, out, errOut := auditVerifyRun(path)
	if code != 1 || strings.Contains(out, "verified") {
		t.Fatalf("missing log: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

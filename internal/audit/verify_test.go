package audit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestChainVerifies(t *testing.T) {
	path := writeLog(t, 25)
	res, err := VerifyFile(path)
	if err != nil {
		t.Fatalf("VerifyFile: %v", err)
	}
	if res.Records != 25 || res.Files != 1 || res.Head.Seq != 25 {
		t.Fatalf("result = %+v, want 25 records in 1 file ending at seq 25", res)
	}
	lines := readLines(t, path)
	first, err := ParseLine([]byte(lines[0]))
	if err != nil {
		t.Fatal(err)
	}
	if first.Seq != 1 || first.Prev != Genesis {
		t.Fatalf("first record seq=%d prev=%s, want 1 and genesis", first.Seq, first.Prev)
	}
	last, _ := ParseLine([]byte(lines[24]))
	if res.Head.Hash != last.Hash {
		t.Fatalf("head %s, want last hash %s", res.Head.Hash, last.Hash)
	}
}

func TestRecordFormatIsFixed(t *testing.T) {
	path := writeLog(t, 1)
	got := readLines(t, path)[0]
	want := `{"time":"2026-11-28T16:01:02.346Z","seq":1,"event":"access","outcome":"allow","reason":"policy",` +
		`"sub":"user-1","session":"s_3f2a","actor":["agent-7"],"client":"spa","route":"orders","method":"GET",` +
		`"path":"/api/orders/0","status":200,"upstream":"http://orders.internal:8080","remote_ip":"203.0.113.7",` +
		`"request_id":"req-0","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","prev":"` + Genesis + `","hash":"`
	if !strings.HasPrefix(got, want) || len(got) != len(want)+64+2 {
		t.Fatalf("line =\n%s\nwant prefix\n%s", got, want)
	}
}

// forge builds a well-formed record with a recomputed hash, as an attacker with write access could.
func forge(seq uint64, prev string) string {
	var p, h [64]byte
	copy(p[:], prev)
	rec := sampleRecord(999)
	rec.Time = t0
	rec.Outcome = OutcomeAllow
	b := newEncoder().appendLine(nil, &rec, seq, &p, &h)
	return strings.TrimSuffix(string(b), "\n")
}

// TestTamperingIsDetectedAtTheLine mutates every line of a log in every way and checks that
// Verify names the first line that no longer fits.
func TestTamperingIsDetectedAtTheLine(t *testing.T) {
	const n = 8
	lines := readLines(t, writeLog(t, n))
	hashOf := func(i int) string { // hash of 1-based line i, Genesis for 0
		if i == 0 {
			return Genesis
		}
		e, err := ParseLine([]byte(lines[i-1]))
		if err != nil {
			t.Fatal(err)
		}
		return e.Hash
	}
	type mutation struct {
		name string
		// apply returns the mutated file and the line Verify must report (0: none, see below)
		apply func(i int) (string, int)
	}
	edit := func(old, repl string) func(int) (string, int) {
		return func(i int) (string, int) {
			m := append([]string(nil), lines...)
			if !strings.Contains(m[i-1], old) {
				t.Fatalf("line %d has no %q", i, old)
			}
			m[i-1] = strings.Replace(m[i-1], old, repl, 1)
			return joinLines(m), i
		}
	}
	muts := []mutation{
		{"edit status", edit(`"status":200`, `"status":500`)},
		{"edit outcome", edit(`"outcome":"allow"`, `"outcome":"deny"`)},
		{"edit path", edit(`/api/orders/`, `/api/admin/`)},
		{"edit sub", edit(`"sub":"user-1"`, `"sub":"user-2"`)},
		{"add a field", edit(`"sub":"user-1"`, `"sub":"user-1","admin":true`)},
		{"add white space", edit(`"sub":"user-1"`, `"sub": "user-1"`)},
		{"duplicate a key", edit(`"sub":"user-1"`, `"sub":"user-1","sub":"user-1"`)},
		{"edit time", edit(`T16:01:02`, `T16:01:03`)},
		{"edit hash", func(i int) (string, int) {
			m := append([]string(nil), lines...)
			l := m[i-1]
			c := "0"
			if l[len(l)-3] == '0' {
				c = "1"
			}
			m[i-1] = l[:len(l)-3] + c + l[len(l)-2:]
			return joinLines(m), i
		}},
		{"edit prev", func(i int) (string, int) {
			m := append([]string(nil), lines...)
			prev := hashOf(i - 1)
			m[i-1] = strings.Replace(m[i-1], prev, strings.Repeat("f", 64), 1)
			return joinLines(m), i
		}},
		{"edit seq", func(i int) (string, int) {
			return edit(`"seq":`+itoa(i)+`,`, `"seq":`+itoa(i+100)+`,`)(i)
		}},
		{"delete", func(i int) (string, int) {
			m := append(append([]string(nil), lines[:i-1]...), lines[i:]...)
			if i == n {
				return joinLines(m), 0 // a cut end verifies; the head gives it away (checked below)
			}
			return joinLines(m), i
		}},
		{"insert a copy of another line", func(i int) (string, int) {
			m := append([]string(nil), lines[:i-1]...)
			m = append(m, lines[i%n])
			m = append(m, lines[i-1:]...)
			return joinLines(m), i
		}},
		{"insert a blank line", func(i int) (string, int) {
			m := append([]string(nil), lines[:i-1]...)
			m = append(m, "")
			m = append(m, lines[i-1:]...)
			return joinLines(m), i
		}},
		{"insert a forged record with a recomputed hash", func(i int) (string, int) {
			// The forgery links to the line before it; the chain breaks where it meets the original.
			m := append([]string(nil), lines[:i-1]...)
			m = append(m, forge(uint64(i), hashOf(i-1)))
			m = append(m, lines[i-1:]...)
			return joinLines(m), i + 1
		}},
		{"swap with the next line", func(i int) (string, int) {
			m := append([]string(nil), lines...)
			j := i % n // the next line, or the first one for the last line
			m[i-1], m[j] = m[j], m[i-1]
			return joinLines(m), min(i, j+1)
		}},
		{"truncate mid-line", func(i int) (string, int) {
			m := append([]string(nil), lines[:i-1]...)
			return joinLines(m) + lines[i-1][:len(lines[i-1])/2], i
		}},
		{"cut a line in two", func(i int) (string, int) {
			m := append([]string(nil), lines...)
			l := m[i-1]
			m[i-1] = l[:len(l)/2] + "\n" + l[len(l)/2:]
			return joinLines(m), i
		}},
	}
	for _, mu := range muts {
		for i := 1; i <= n; i++ {
			t.Run(mu.name+"/line"+itoa(i), func(t *testing.T) {
				content, wantLine := mu.apply(i)
				res, err := VerifyFrom(strings.NewReader(content), "audit.jsonl", Head{})
				if wantLine == 0 {
					if err != nil {
						t.Fatalf("unexpected error: %v", err)
					}
					if res.Head.Hash == hashOf(n) {
						t.Fatal("the head still matches the anchored head after the last line was cut")
					}
					return
				}
				be := brokenAt(t, err)
				if be.Line != wantLine || be.File != "audit.jsonl" {
					t.Fatalf("broken at %s:%d (%s), want line %d", be.File, be.Line, be.Reason, wantLine)
				}
				if res.Records != wantLine-1 {
					t.Fatalf("verified %d records before the break, want %d", res.Records, wantLine-1)
				}
			})
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestRestartContinuesChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for round := range 3 {
		l := openFile(t, path, nil)
		if h := l.Head(); h.Seq != uint64(round*4) {
			t.Fatalf("round %d starts at seq %d, want %d", round, h.Seq, round*4)
		}
		for i := range 4 {
			if err := l.Log(context.Background(), sampleRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := VerifyFile(path)
	if err != nil || res.Records != 12 {
		t.Fatalf("VerifyFile = %+v, %v; want 12 records", res, err)
	}
}

// TestOpenRefusesABrokenTail: a log whose complete last line was edited is not silently
// continued (a torn, incomplete last line is repaired instead: TestOpenRepairsATornLastLine).
func TestOpenRefusesABrokenTail(t *testing.T) {
	for name, mutateLast := range map[string]func(string) string{
		"edited torn": func(l string) string { return strings.Replace(l, `"status":200`, `"status":201`, 1) + "\n{\"time\"" },
		"edited":      func(l string) string { return strings.Replace(l, `"status":200`, `"status":201`, 1) + "\n" },
		"garbage":     func(l string) string { return l + "\nnot json\n" },
	} {
		t.Run(name, func(t *testing.T) {
			path := writeLog(t, 3)
			lines := readLines(t, path)
			content := joinLines(lines[:len(lines)-1]) + mutateLast(lines[len(lines)-1])
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(context.Background(), Options{Sink: "file", Path: path, Logger: quietLogger()})
			if err == nil || !strings.Contains(err.Error(), "audit verify") {
				t.Fatalf("Open = %v, want an error telling how to check the log", err)
			}
		})
	}
}

func TestRotationKeepsChainAcrossFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openFile(t, path, func(o *Options) { o.MaxSize = 2000; o.Now = func() time.Time { return t0 } })
	for i := range 40 {
		if err := l.Log(context.Background(), sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 || files[len(files)-1] != path {
		t.Fatalf("files = %v, want several rotated files then %s", files, path)
	}
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > 2000 {
			t.Fatalf("%s has %d bytes, more than max_size", f, st.Size())
		}
	}
	res, err := VerifyFiles(files...)
	if err != nil || res.Records != 40 || res.Files != len(files) {
		t.Fatalf("VerifyFiles = %+v, %v; want 40 records in %d files", res, err, len(files))
	}
	// A later file alone does not start at genesis; in the wrong order the chain breaks at line 1.
	be := brokenAt(t, func() error { _, err := VerifyFile(files[1]); return err }())
	if be.Line != 1 || !strings.Contains(be.Reason, "rotated before it") {
		t.Fatalf("VerifyFile(second) = %v", be)
	}
	be = brokenAt(t, func() error { _, err := VerifyFiles(files[0], files[2], files[1]); return err }())
	if be.File != files[2] || be.Line != 1 {
		t.Fatalf("out of order: %v, want %s:1", be, files[2])
	}
	// Removing a whole rotated file from the middle of the set is caught too.
	if len(files) >= 3 {
		rest := append([]string{files[0]}, files[2:]...)
		be = brokenAt(t, func() error { _, err := VerifyFiles(rest...); return err }())
		if be.File != files[2] || be.Line != 1 {
			t.Fatalf("missing file: %v, want %s:1", be, files[2])
		}
	}
}

// TestRestartAfterRotationContinuesFromTheRotatedFile: a crash between rename and the first
// write of the new file leaves no current file; the chain continues from the newest rotated one.
func TestRestartAfterRotationContinuesFromTheRotatedFile(t *testing.T) {
	path := writeLog(t, 5)
	rotated, err := rotatedName(path, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	l := openFile(t, path, nil)
	if err := l.Log(context.Background(), sampleRecord(6)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := Files(path)
	res, err := VerifyFiles(files...)
	if err != nil || res.Records != 6 {
		t.Fatalf("VerifyFiles(%v) = %+v, %v; want 6 records", files, res, err)
	}
}

// TestInjectedValuesCannotForgeLinesOrFields: request-controlled values with CR/LF, quotes,
// JSON fragments, control characters, JS line separators and invalid UTF-8 stay inside their field.
func TestInjectedValuesCannotForgeLinesOrFields(t *testing.T) {
	evil := []string{
		"/api/x\n{\"time\":\"2026-01-01T00:00:00.000Z\",\"seq\":2,\"event\":\"login\"}",
		"/api/x\r\n\"outcome\":\"allow\"",
		`/api/x","outcome":"allow","sub":"admin`,
		"/api/x\\\",\"status\":200,\"x\":\"",
		"/api/\x00\x01\x1f\x7f\u2028\u2029",
		"/api/\xff\xfe\xc3(",
		"/api/ünïcødé/😀",
		"}\n{",
	}
	var out switchWriter
	l := openStdout(t, &out, nil)
	for _, v := range evil {
		rec := Record{Event: EventAccess, Outcome: OutcomeDeny, Path: v, RequestID: v, Reason: v, Method: v, Actor: []string{v, v}}
		if err := l.Log(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != len(evil) {
		t.Fatalf("%d lines for %d records:\n%s", len(lines), len(evil), text)
	}
	if n, err := Verify(strings.NewReader(text), "stdout"); err != nil || n != len(evil) {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v", i+1, err)
		}
		if m["event"] != "access" || m["outcome"] != "deny" || m["sub"] != nil || m["status"] != nil || len(m) != 11 {
			t.Fatalf("line %d has forged members: %v", i+1, m)
		}
		e, err := ParseLine([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		want := validPerByte(evil[i]) // each invalid byte becomes one U+FFFD
		if e.Path != want || e.RequestID != want || e.Actor[1] != want {
			t.Fatalf("line %d: path round-trips as %q, want %q", i+1, e.Path, want)
		}
	}
}

func validPerByte(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r == '\uFFFD' && !strings.HasPrefix(s[i:], "\uFFFD") {
			b.WriteString("\uFFFD")
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

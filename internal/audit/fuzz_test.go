package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzVerify feeds arbitrary bytes to the line parser and chain checker: it must never panic,
// and whatever it accepts must be canonical records that re-encode to the same bytes.
func FuzzVerify(f *testing.F) {
	var out switchWriter
	l := openStdout(f, &out, nil)
	for i := range 3 {
		if err := l.Log(context.Background(), sampleRecord(i)); err != nil {
			f.Fatal(err)
		}
	}
	// A repair marker and a decision/completion pair, so the fuzzer starts from every kind.
	if err := l.Log(context.Background(), repairRecord([]byte(`{"time":"2026`), l.Head(), t0)); err != nil {
		f.Fatal(err)
	}
	if err := l.Decision(context.Background(), Record{Event: EventForward, Outcome: OutcomeAllow, RequestID: "r1"}); err != nil {
		f.Fatal(err)
	}
	l.Completion(context.Background(), Record{Event: EventAccess, Outcome: OutcomeAllow, Status: 200, RequestID: "r1"})
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	valid := out.String()
	f.Add([]byte(valid))
	f.Add([]byte(strings.Split(valid, "\n")[0]))
	f.Add([]byte(strings.Replace(valid, "200", "500", 1)))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"prev":"` + Genesis + `"}` + "\n"))
	f.Add([]byte("\n\n\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Verify(bytes.NewReader(data), "fuzz")
		if err != nil {
			if _, ok := err.(*BrokenError); !ok {
				t.Fatalf("non-BrokenError from an in-memory reader: %v", err)
			}
			return
		}
		if got := bytes.Count(data, []byte("\n")); got != n {
			t.Fatalf("verified %d records in %d lines", n, got)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			if n == 0 {
				break
			}
			if !json.Valid(line) {
				t.Fatalf("accepted invalid JSON %q", line)
			}
		}
	})
}

// FuzzEncodeRoundTrip: any field value, however hostile, encodes to exactly one valid JSON line
// that verifies and decodes to the same value (invalid UTF-8 bytes become U+FFFD).
func FuzzEncodeRoundTrip(f *testing.F) {
	f.Add("/api/orders", "req-1", 200)
	f.Add("/x\r\n{\"event\":\"login\"}", "\"},{\"", -1)
	f.Add("\xff\u2028\x00\\", "\x7f", 0)
	f.Fuzz(func(t *testing.T, path, reqID string, status int) {
		rec := Record{Time: t0, Event: EventAccess, Outcome: OutcomeDeny, Path: path, RequestID: reqID, Status: status, Actor: []string{reqID}}
		var prev, h [64]byte
		copy(prev[:], Genesis)
		line := newEncoder().appendLine(nil, &rec, 1, &prev, &h)
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("not exactly one line: %q", line)
		}
		if n, err := Verify(bytes.NewReader(line), "fuzz"); err != nil || n != 1 {
			t.Fatalf("Verify = %d, %v for %q", n, err, line)
		}
		e, err := ParseLine(line[:len(line)-1])
		if err != nil {
			t.Fatal(err)
		}
		if e.Path != validPerByte(path) || e.RequestID != validPerByte(reqID) || e.Status != status || e.Event != EventAccess {
			t.Fatalf("round trip changed the record: %+v", e)
		}
	})
}

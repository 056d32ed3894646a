package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOpenRepairsATornLastLine: a last line cut short (power loss, disk full) is cut off at the
// start, the chain continues with a marker that says what was cut, and verify accepts the log,
// reporting the marker.
func TestOpenRepairsATornLastLine(t *testing.T) {
	for name, tear := range map[string]func(last string) string{
		"half a line":       func(l string) string { return l[:len(l)/2] },
		"only the newline":  func(l string) string { return l },
		"one byte":          func(l string) string { return l[:1] },
		"inside a rune":     func(l string) string { return l + "\n" + `{"time":"x","path":"/é`[:len(`{"time":"x","path":"/é`)-1] },
		"garbage after all": func(l string) string { return l + "\n\x00\x00\x00\x00" },
	} {
		t.Run(name, func(t *testing.T) {
			path := writeLog(t, 3)
			lines := readLines(t, path)
			good := joinLines(lines[:len(lines)-1])
			torn := tear(lines[len(lines)-1])
			if err := os.WriteFile(path, []byte(good+torn), 0o600); err != nil {
				t.Fatal(err)
			}
			// What remains complete decides the last good record.
			complete := good + torn[:strings.LastIndexByte(torn, '\n')+1]
			cut := torn[strings.LastIndexByte(torn, '\n')+1:]
			lastGood, _ := VerifyFrom(strings.NewReader(complete), "x", Head{})

			l := openFile(t, path, nil)
			if h := l.Head(); h.Seq != lastGood.Head.Seq+1 {
				t.Fatalf("head after repair = %d, want the marker at %d", h.Seq, lastGood.Head.Seq+1)
			}
			if err := l.Log(context.Background(), sampleRecord(9)); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			res, err := VerifyFile(path)
			if err != nil {
				t.Fatalf("verify after repair: %v", err)
			}
			if len(res.Repairs) != 1 || res.Repairs[0].CutBytes != len(cut) || res.Repairs[0].LastHash != lastGood.Head.Hash ||
				res.Repairs[0].Seq != lastGood.Head.Seq+1 || res.Records != int(lastGood.Head.Seq)+2 {
				t.Fatalf("verify = %+v, want one repair of %d bytes after %+v", res, len(cut), lastGood.Head)
			}
			marker := readLines(t, path)[lastGood.Head.Seq]
			sum := sha256.Sum256([]byte(cut))
			if !strings.Contains(marker, `"event":"audit_repaired"`) || !strings.Contains(marker, hex.EncodeToString(sum[:])) {
				t.Fatalf("marker %s does not name the cut bytes' hash", marker)
			}
			// A second start has nothing to repair.
			l = openFile(t, path, nil)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if res, err := VerifyFile(path); err != nil || len(res.Repairs) != 1 {
				t.Fatalf("second start: %+v %v", res, err)
			}
		})
	}
}

// TestOpenRepairsAFileThatIsOneTornLine: the chain continues from the rotated file before it.
func TestOpenRepairsAFileThatIsOneTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openFile(t, path, func(o *Options) { o.MaxSize = 1500 })
	for i := range 6 {
		if err := l.Log(context.Background(), sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := Files(path)
	if len(files) < 2 {
		t.Fatalf("want a rotation, got %v", files)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"time":"2026`), 0o600); err != nil {
		t.Fatal(err)
	}
	l = openFile(t, path, nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ = Files(path)
	res, err := VerifyFiles(files...)
	if err != nil || len(res.Repairs) != 1 || res.Repairs[0].CutBytes != len(`{"time":"2026`) {
		t.Fatalf("verify = %+v, %v", res, err)
	}
}

// TestVerifyAcceptsOnlyTheRepairMarker: a record that calls itself a repair but does not agree
// with the chain, or carries what a marker does not, breaks the verification — an attacker
// with write access cannot use the marker to explain away a cut.
func TestVerifyAcceptsOnlyTheRepairMarker(t *testing.T) {
	h := sha256.Sum256([]byte("x"))
	sum := hex.EncodeToString(h[:])
	for name, rec := range map[string]func(prev Head) Record{
		"wrong last hash": func(prev Head) Record {
			return Record{Event: EventAuditRepaired, Outcome: OutcomeSuccess, Reason: ReasonTornLastLine,
				Detail: "cut=1 sha256=" + sum + " last_seq=" + strconv.FormatUint(prev.Seq, 10) + " last_hash=" + Genesis + " content=x"}
		},
		"wrong last seq": func(prev Head) Record {
			return Record{Event: EventAuditRepaired, Outcome: OutcomeSuccess, Reason: ReasonTornLastLine,
				Detail: "cut=1 sha256=" + sum + " last_seq=99 last_hash=" + prev.Hash + " content=x"}
		},
		"content does not match": func(prev Head) Record {
			return Record{Event: EventAuditRepaired, Outcome: OutcomeSuccess, Reason: ReasonTornLastLine,
				Detail: "cut=1 sha256=" + sum + " last_seq=" + strconv.FormatUint(prev.Seq, 10) + " last_hash=" + prev.Hash + " content=y"}
		},
		"other reason": func(prev Head) Record {
			return Record{Event: EventAuditRepaired, Outcome: OutcomeSuccess, Reason: "lines_deleted",
				Detail: "cut=1 sha256=" + sum + " last_seq=" + strconv.FormatUint(prev.Seq, 10) + " last_hash=" + prev.Hash + " content=x"}
		},
		"extra members": func(prev Head) Record {
			return Record{Event: EventAuditRepaired, Outcome: OutcomeSuccess, Reason: ReasonTornLastLine, Sub: "alice",
				Detail: "cut=1 sha256=" + sum + " last_seq=" + strconv.FormatUint(prev.Seq, 10) + " last_hash=" + prev.Hash + " content=x"}
		},
		"no detail": func(prev Head) Record {
			return Record{Event: EventAuditRepaired, Outcome: OutcomeSuccess, Reason: ReasonTornLastLine}
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := writeLog(t, 2)
			l := openFile(t, path, nil)
			if err := l.Log(context.Background(), rec(l.Head())); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			_, err := VerifyFile(path)
			var be *BrokenError
			if !errors.As(err, &be) || be.Line != 3 || !strings.Contains(be.Reason, "audit_repaired") {
				t.Fatalf("verify = %v, want line 3 broken as a bad repair marker", err)
			}
		})
	}
	// The genuine marker for the same cut verifies.
	path := writeLog(t, 2)
	l := openFile(t, path, nil)
	if err := l.Log(context.Background(), repairRecord([]byte("x"), l.Head(), t0)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if res, err := VerifyFile(path); err != nil || len(res.Repairs) != 1 {
		t.Fatalf("genuine marker: %+v %v", res, err)
	}
}

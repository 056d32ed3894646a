package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// A torn last line — the bytes after the file's last newline — is what a power loss or a full
// disk leaves when it interrupts a write. Open cuts it off and continues the chain with a repair
// marker, so that Gatehouse starts by itself and the cut stays visible and verifiable:
//
//	event "audit_repaired", outcome "success", reason "torn_last_line",
//	detail "cut=<bytes> sha256=<hex of the cut bytes> last_seq=<seq> last_hash=<hash> content=<text>"
//
// last_seq and last_hash name the last complete record before the cut (the marker's own prev),
// content is the cut text itself (at most repairContentMax bytes, invalid UTF-8 replaced). Only a
// torn last line is repaired: a complete last line that does not verify still stops the start.
// [VerifyFrom] accepts exactly this marker (it checks that the detail is well formed and agrees
// with the chain) and reports it in Result.Repairs.

// ReasonTornLastLine is the reason of the repair marker.
const ReasonTornLastLine = "torn_last_line"

const repairContentMax = 1024

// Repair is one repair marker found by a verification.
type Repair struct {
	File string
	Line int
	// Seq is the marker's own seq.
	Seq uint64
	// CutBytes is the length of the torn line that was cut.
	CutBytes int
	// LastHash is the hash of the last complete record before the cut.
	LastHash string
}

// repairTornTail cuts the incomplete last line of the log at path, if it has one, and returns
// the bytes cut (nil when there was nothing to cut). It checks the complete line before the cut
// first, so that a log that is broken elsewhere is left as it is and refused by openHead.
func repairTornTail(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	size := st.Size()
	if size == 0 || !st.Mode().IsRegular() {
		return nil, nil
	}
	// Read back until the last newline (a torn line is at most one record long).
	n := min(size, int64(maxLineSize)+1)
	tail := make([]byte, n)
	if _, err := f.ReadAt(tail, size-n); err != nil {
		return nil, fmt.Errorf("open audit log: read %s: %w", path, err)
	}
	if tail[len(tail)-1] == '\n' {
		return nil, nil
	}
	i := bytes.LastIndexByte(tail, '\n')
	if i < 0 && n < size {
		return nil, fmt.Errorf("open audit log %s: the last line is longer than %d bytes; run `gatehouse audit verify %s`", path, maxLineSize, path)
	}
	cut := size - n + int64(i) + 1 // offset of the torn line
	if cut > 0 {
		if _, _, err := lastRecordBefore(path, cut); err != nil {
			return nil, err
		}
	}
	torn := bytes.Clone(tail[i+1:])
	if err := f.Truncate(cut); err != nil {
		return nil, fmt.Errorf("open audit log %s: cut the incomplete last line: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("open audit log %s: cut the incomplete last line: %w", path, err)
	}
	return torn, nil
}

// repairRecord is the marker for torn bytes cut after head.
func repairRecord(torn []byte, head Head, now time.Time) Record {
	sum := sha256.Sum256(torn)
	content := torn
	if len(content) > repairContentMax {
		content = content[:repairContentMax]
	}
	// Keep the valid UTF-8 prefix only (a write torn inside a rune ends in a partial one), so the
	// content is byte for byte what was cut and never longer than it.
	for i := 0; i < len(content); {
		r, size := utf8.DecodeRune(content[i:])
		if r == utf8.RuneError && size == 1 {
			content = content[:i]
			break
		}
		i += size
	}
	d := make([]byte, 0, 200+len(content))
	d = append(d, "cut="...)
	d = strconv.AppendInt(d, int64(len(torn)), 10)
	d = append(d, " sha256="...)
	d = hex.AppendEncode(d, sum[:])
	d = append(d, " last_seq="...)
	d = strconv.AppendUint(d, head.Seq, 10)
	d = append(d, " last_hash="...)
	d = append(d, head.Hash...)
	d = append(d, " content="...)
	d = append(d, content...)
	return Record{Time: now, Event: EventAuditRepaired, Outcome: OutcomeSuccess, Reason: ReasonTornLastLine, Detail: string(d)}
}

// checkRepair checks a repair marker against the chain it is in; it returns the bytes cut, or a
// reason why the marker is not one Gatehouse writes.
func checkRepair(e *Entry, before Head) (int, string) {
	if e.Outcome != OutcomeSuccess || e.Reason != ReasonTornLastLine {
		return 0, "audit_repaired record with an unknown outcome or reason"
	}
	r := e.Record
	r.Time, r.Event, r.Outcome, r.Reason, r.Detail = time.Time{}, "", "", "", ""
	if r.Sub != "" || r.Session != "" || len(r.Actor) > 0 || r.Client != "" || r.Route != "" || r.Method != "" ||
		r.Path != "" || r.Status != 0 || r.Upstream != "" || r.RemoteIP != "" || r.RequestID != "" || r.TraceID != "" {
		return 0, "audit_repaired record with members a repair marker does not have"
	}
	fields := strings.SplitN(e.Detail, " ", 5)
	if len(fields) != 5 {
		return 0, "audit_repaired record with a malformed detail"
	}
	val := func(i int, key string) (string, bool) {
		return strings.CutPrefix(fields[i], key+"=")
	}
	cutS, ok1 := val(0, "cut")
	sum, ok2 := val(1, "sha256")
	seqS, ok3 := val(2, "last_seq")
	hash, ok4 := val(3, "last_hash")
	content, ok5 := val(4, "content")
	cut, err1 := strconv.Atoi(cutS)
	seq, err2 := strconv.ParseUint(seqS, 10, 64)
	switch {
	case !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || err1 != nil || err2 != nil || cut <= 0 || !isHex64(sum) || !isHex64(hash):
		return 0, "audit_repaired record with a malformed detail"
	case seq != before.Seq || hash != before.Hash || hash != e.Prev:
		return 0, "audit_repaired record does not name the record before it as the last good one"
	case len(content) > cut:
		return 0, "audit_repaired record shows more content than it says was cut"
	case len(content) == cut:
		// The whole cut text is there: it must match its hash.
		s := sha256.Sum256([]byte(content))
		if hex.EncodeToString(s[:]) != sum {
			return 0, "audit_repaired record: the content does not match its sha256"
		}
	}
	return cut, ""
}

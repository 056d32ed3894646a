package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxLineSize bounds one line when verifying; a longer line is reported as broken.
const maxLineSize = 8 << 20

// Result summarises a successful verification.
type Result struct {
	// Files is the number of files verified.
	Files int
	// Records is the number of records verified.
	Records int
	// Head is the seq and hash of the last record verified (the starting head if there was none).
	// Compare it with an externally anchored head to detect lines cut from the end.
	Head Head
	// Repairs lists the repair markers (a torn last line cut at a start), in chain order.
	Repairs []Repair
	// Forwarded counts decision records (event "forward": a request about to be forwarded).
	Forwarded int
	// Unfinished lists the request ids of decision records that no completion record ("access"
	// with the same request_id) follows: requests in flight when the log was read, or when the
	// process was killed. At most maxUnfinished are listed; UnfinishedCount has them all.
	Unfinished      []string
	UnfinishedCount int

	open map[string]struct{} // request ids of decisions without completion so far
}

const maxUnfinished = 100

// Entry is one decoded line: the Record plus the chain members the Logger assigned.
type Entry struct {
	Record
	Seq  uint64
	Prev string
	Hash string
}

// VerifyFile verifies one file as a complete chain starting at Genesis.
// A file that continues a rotated set is verified with [VerifyFiles] together with the files before it.
func VerifyFile(path string) (Result, error) {
	return VerifyFiles(path)
}

// VerifyFiles verifies files as one chain in the given order (oldest first; see [Files]): the
// first record of the first file must start at Genesis and each file continues the one before.
// It returns the first broken line as a *BrokenError; other errors are I/O errors.
func VerifyFiles(paths ...string) (Result, error) {
	res := Result{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return res, fmt.Errorf("verify audit log: %w", err)
		}
		files := res.Files
		res, err = verifyFrom(f, p, res)
		f.Close()
		res.Files = files + 1
		if err != nil {
			res.finish()
			return res, err
		}
	}
	res.finish()
	return res, nil
}

// finish fills Unfinished from the open decisions.
func (res *Result) finish() {
	res.UnfinishedCount = len(res.open)
	res.Unfinished = res.Unfinished[:0]
	for id := range res.open {
		if len(res.Unfinished) == maxUnfinished {
			break
		}
		res.Unfinished = append(res.Unfinished, id)
	}
	slices.Sort(res.Unfinished)
	res.open = nil
}

// Verify verifies r as a complete chain starting at Genesis and returns the number of records
// verified. name is used in a *BrokenError.
func Verify(r io.Reader, name string) (n int, err error) {
	res, err := VerifyFrom(r, name, Head{})
	return res.Records, err
}

// VerifyFrom verifies r as the continuation of a chain whose last record is from (the zero
// Head means r starts a new chain at Genesis).
func VerifyFrom(r io.Reader, name string, from Head) (Result, error) {
	res, err := verifyFrom(r, name, Result{Head: from})
	res.Files = 1
	res.finish()
	return res, err
}

// verifyFrom continues the verification res with r: records, head, repairs and open decisions
// carry over from one file to the next.
func verifyFrom(r io.Reader, name string, res Result) (Result, error) {
	head := res.Head
	if head.Hash == "" {
		head = Head{Seq: 0, Hash: Genesis}
	}
	res.Head = head
	if res.open == nil {
		res.open = map[string]struct{}{}
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	var checker lineChecker
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br, &buf)
		if err == io.EOF && len(line) == 0 {
			return res, nil
		}
		broken := func(reason string) error { return &BrokenError{File: name, Line: lineNo, Reason: reason} }
		switch {
		case errors.Is(err, errLineTooLong):
			return res, broken(fmt.Sprintf("line longer than %d bytes", maxLineSize))
		case err == io.EOF:
			return res, broken("incomplete last line (no newline): the file was truncated or a write was cut short")
		case err != nil:
			return res, fmt.Errorf("verify audit log %s: %w", name, err)
		}
		e, reason := checker.check(line)
		if reason != "" {
			return res, broken(reason)
		}
		if lineNo == 1 && head.Hash == Genesis && e.Prev != Genesis {
			return res, broken("chain does not start at genesis: verify this file together with the files rotated before it, oldest first")
		}
		if e.Seq != head.Seq+1 {
			return res, broken(fmt.Sprintf("seq %d where %d was expected: a line was deleted, inserted or reordered", e.Seq, head.Seq+1))
		}
		if e.Prev != head.Hash {
			return res, broken("prev does not match the hash of the record before: a line was deleted, inserted or reordered")
		}
		switch e.Event {
		case EventAuditRepaired:
			cut, reason := checkRepair(&e, head)
			if reason != "" {
				return res, broken(reason)
			}
			res.Repairs = append(res.Repairs, Repair{File: name, Line: lineNo, Seq: e.Seq, CutBytes: cut, LastHash: head.Hash})
		case EventForward:
			if e.RequestID != "" {
				res.open[e.RequestID] = struct{}{}
			}
			res.Forwarded++
		case EventAccess:
			delete(res.open, e.RequestID)
		}
		head = Head{Seq: e.Seq, Hash: e.Hash}
		res.Records++
		res.Head = head
	}
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline; io.EOF with a non-empty line means the
// input ended mid-line.
func readLine(br *bufio.Reader, buf *[]byte) ([]byte, error) {
	*buf = (*buf)[:0]
	for {
		frag, err := br.ReadSlice('\n')
		if len(*buf)+len(frag) > maxLineSize+1 {
			return nil, errLineTooLong
		}
		if err == nil {
			if len(*buf) == 0 {
				return frag[:len(frag)-1], nil
			}
			*buf = append(*buf, frag...)
			return (*buf)[:len(*buf)-1], nil
		}
		*buf = append(*buf, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return *buf, err
	}
}

// jsonLine mirrors the line format for decoding; canonical re-encoding is what decides validity.
type jsonLine struct {
	Time      string   `json:"time"`
	Seq       uint64   `json:"seq"`
	Event     string   `json:"event"`
	Outcome   string   `json:"outcome"`
	Reason    string   `json:"reason"`
	Sub       string   `json:"sub"`
	Session   string   `json:"session"`
	Sessions  []string `json:"sessions"`
	Actor     []string `json:"actor"`
	Client    string   `json:"client"`
	Route     string   `json:"route"`
	Method    string   `json:"method"`
	Path      string   `json:"path"`
	Status    int      `json:"status"`
	Upstream  string   `json:"upstream"`
	RemoteIP  string   `json:"remote_ip"`
	RequestID string   `json:"request_id"`
	TraceID   string   `json:"trace_id"`
	Detail    string   `json:"detail"`
	// CorrelationID is omitted when empty (older logs verify unchanged).
	CorrelationID string `json:"correlation_id"`
	Prev          string `json:"prev"`
	Hash          string `json:"hash"`
}

// ParseLine decodes one line (without its newline) and checks that it is canonical and that its
// hash matches its content. It does not check the line's place in a chain.
func ParseLine(line []byte) (Entry, error) {
	e, reason := checkLine(line)
	if reason != "" {
		return Entry{}, errors.New(reason)
	}
	return e, nil
}

// checkLine returns the decoded entry, or a reason why the line is not a valid record.
// Reasons never quote the line's content.
func checkLine(line []byte) (Entry, string) {
	var c lineChecker
	return c.check(line)
}

// lineChecker checks lines, reusing its encoder and buffer from one line to the next.
type lineChecker struct {
	enc *encoder
	buf []byte
}

func (c *lineChecker) check(line []byte) (Entry, string) {
	if len(line) == 0 {
		return Entry{}, "empty line"
	}
	var j jsonLine
	if err := json.Unmarshal(line, &j); err != nil {
		return Entry{}, "not a valid audit record (malformed JSON)"
	}
	t, err := time.Parse(timeLayout, j.Time)
	if err != nil {
		return Entry{}, "not a valid audit record (time is not RFC 3339 UTC with milliseconds)"
	}
	if !isHex64(j.Prev) || !isHex64(j.Hash) {
		return Entry{}, "not a valid audit record (prev and hash must be 64 lowercase hex digits)"
	}
	e := Entry{
		Record: Record{
			Time: t, Event: Event(j.Event), Outcome: Outcome(j.Outcome), Reason: j.Reason, Sub: j.Sub,
			Session: j.Session, Sessions: j.Sessions, Actor: j.Actor, Client: j.Client, Route: j.Route, Method: j.Method,
			Path: j.Path, Status: j.Status, Upstream: j.Upstream, RemoteIP: j.RemoteIP,
			RequestID: j.RequestID, TraceID: j.TraceID, Detail: j.Detail, CorrelationID: j.CorrelationID,
		},
		Seq: j.Seq, Prev: j.Prev, Hash: j.Hash,
	}
	var prev, sum [64]byte
	copy(prev[:], j.Prev)
	if c.enc == nil {
		c.enc = newEncoder()
	}
	want := c.enc.appendLine(c.buf[:0], &e.Record, e.Seq, &prev, &sum)
	c.buf = want
	want = want[:len(want)-1]
	// The hash covers everything but itself: a difference outside the hash is an edit that broke
	// the canonical form; a difference only inside it is caught by the comparison below.
	h := len(want) - len(`"}`) - 64
	if len(line) != len(want) || !bytes.Equal(line[:h], want[:h]) || !bytes.Equal(line[h+64:], want[h+64:]) {
		return Entry{}, "record is not in canonical form: it was edited or not written by Gatehouse"
	}
	if string(sum[:]) != j.Hash {
		return Entry{}, "hash does not match the record: the record was edited"
	}
	return e, ""
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// rotatedLayout names rotated files: path.<UTC time>[-n].
const rotatedLayout = "20060102T150405.000Z"

// Files returns the rotated files of the log at path, oldest first, followed by path itself
// when it exists: the order [VerifyFiles] expects.
func Files(path string) ([]string, error) {
	matches, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return nil, fmt.Errorf("list rotated audit logs of %s: %w", path, err)
	}
	type rotated struct {
		name string
		t    time.Time
		n    int
	}
	var rs []rotated
	for _, m := range matches {
		t, n, ok := parseRotatedSuffix(strings.TrimPrefix(m, path+"."))
		if ok {
			rs = append(rs, rotated{m, t, n})
		}
	}
	slices.SortFunc(rs, func(a, b rotated) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.n - b.n
	})
	out := make([]string, 0, len(rs)+1)
	for _, r := range rs {
		out = append(out, r.name)
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("list audit logs: %w", err)
	}
	return out, nil
}

func parseRotatedSuffix(s string) (time.Time, int, bool) {
	if len(s) < len(rotatedLayout) {
		return time.Time{}, 0, false
	}
	t, err := time.Parse(rotatedLayout, s[:len(rotatedLayout)])
	if err != nil {
		return time.Time{}, 0, false
	}
	rest := s[len(rotatedLayout):]
	if rest == "" {
		return t, 0, true
	}
	if rest[0] != '-' {
		return time.Time{}, 0, false
	}
	n, err := strconv.Atoi(rest[1:])
	if err != nil || n < 1 {
		return time.Time{}, 0, false
	}
	return t, n, true
}

// globEscape escapes glob metacharacters so a path is matched literally.
func globEscape(p string) string {
	var b strings.Builder
	for _, c := range p {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

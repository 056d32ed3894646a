package apis

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
)

// maxTailBytes bounds how much of the audit file's end AuditTail reads.
const maxTailBytes = 256 << 10

// AuditTailResponse is the audit-tail handler's answer.
type AuditTailResponse struct {
	Echo
	// Records are the last audit records, oldest first, exactly as written (JSON objects).
	Records []json.RawMessage `json:"records"`
}

// AuditTail serves the last records of the audit JSON Lines file at path (?n=, default
// defaultN, at most 100). DEMO ONLY: a real deployment ships its audit log elsewhere and
// never shows it to browsers; audit records hold no token by design, which is what makes
// showing them here safe.
func AuditTail(path string, defaultN int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := defaultN
		if s := r.URL.Query().Get("n"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_n", "message": "n must be a whole number from 1 to 100"})
				return
			}
			n = v
		}
		n = min(max(n, 1), 100)
		recs, err := TailJSONL(path, n)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "audit_unreadable", "message": "the audit file could not be read"})
			return
		}
		writeJSON(w, http.StatusOK, AuditTailResponse{Echo: echo("audit", r), Records: recs})
	})
}

// TailJSONL returns up to n of the last complete JSON lines of the file at path, oldest
// first. A missing file has no records. Lines that are not JSON objects are skipped.
func TailJSONL(path string, n int) ([]json.RawMessage, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []json.RawMessage{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat audit file: %w", err)
	}
	size := st.Size()
	start := max(size-maxTailBytes, 0)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read audit file: %w", err)
	}
	// Only complete lines: drop a partial last line (being written) and, when we did not
	// start at the beginning, the partial first one.
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i]
	} else {
		buf = nil
	}
	if start > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		} else {
			buf = nil
		}
	}
	lines := bytes.Split(buf, []byte{'\n'})
	out := make([]json.RawMessage, 0, n)
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		l := bytes.TrimSpace(lines[i])
		if len(l) == 0 || l[0] != '{' || !json.Valid(l) {
			continue
		}
		out = append(out, json.RawMessage(bytes.Clone(l)))
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

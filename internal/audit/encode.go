package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"unicode/utf8"
)

// timeLayout is RFC 3339 in UTC with exactly millisecond precision.
const timeLayout = "2006-01-02T15:04:05.000Z"

// encoder turns records into canonical, chained lines. It is owned by one goroutine and reuses
// its buffers, so encoding allocates nothing.
type encoder struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newEncoder() *encoder { return &encoder{h: sha256.New()} }

// appendLine appends the complete line for rec (with seq and prev) including the trailing
// newline to buf, and writes the record's hash as hex into hashOut.
func (e *encoder) appendLine(buf []byte, rec *Record, seq uint64, prev *[64]byte, hashOut *[64]byte) []byte {
	start := len(buf)
	buf = appendBody(buf, rec, seq, prev[:])
	e.h.Reset()
	e.h.Write(prev[:])
	e.h.Write(buf[start:])
	e.h.Sum(e.sum[:0])
	hex.Encode(hashOut[:], e.sum[:])
	buf = buf[:len(buf)-1] // drop the closing brace of the body
	buf = append(buf, `,"hash":"`...)
	buf = append(buf, hashOut[:]...)
	buf = append(buf, "\"}\n"...)
	return buf
}

// appendBody appends the canonical record without its hash member: `{...,"prev":"…"}`.
func appendBody(buf []byte, rec *Record, seq uint64, prev []byte) []byte {
	buf = append(buf, `{"time":"`...)
	buf = rec.Time.UTC().AppendFormat(buf, timeLayout)
	buf = append(buf, `","seq":`...)
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, `,"event":`...)
	buf = appendString(buf, string(rec.Event))
	buf = appendField(buf, `,"outcome":`, string(rec.Outcome))
	buf = appendField(buf, `,"reason":`, rec.Reason)
	buf = appendField(buf, `,"sub":`, rec.Sub)
	buf = appendField(buf, `,"session":`, rec.Session)
	buf = appendList(buf, `,"sessions":[`, rec.Sessions)
	buf = appendList(buf, `,"actor":[`, rec.Actor)
	buf = appendField(buf, `,"client":`, rec.Client)
	buf = appendField(buf, `,"route":`, rec.Route)
	buf = appendField(buf, `,"method":`, rec.Method)
	buf = appendField(buf, `,"path":`, rec.Path)
	if rec.Status != 0 {
		buf = append(buf, `,"status":`...)
		buf = strconv.AppendInt(buf, int64(rec.Status), 10)
	}
	buf = appendField(buf, `,"upstream":`, rec.Upstream)
	buf = appendField(buf, `,"remote_ip":`, rec.RemoteIP)
	buf = appendField(buf, `,"request_id":`, rec.RequestID)
	buf = appendField(buf, `,"trace_id":`, rec.TraceID)
	buf = appendField(buf, `,"detail":`, rec.Detail)
	buf = appendField(buf, `,"correlation_id":`, rec.CorrelationID)
	buf = append(buf, `,"prev":"`...)
	buf = append(buf, prev...)
	buf = append(buf, `"}`...)
	return buf
}

func appendField(buf []byte, key, v string) []byte {
	if v == "" {
		return buf
	}
	buf = append(buf, key...)
	return appendString(buf, v)
}

// appendList appends key (which ends in '[') and vs as a JSON array of strings; nothing when
// vs is empty, like appendField.
func appendList(buf []byte, key string, vs []string) []byte {
	if len(vs) == 0 {
		return buf
	}
	buf = append(buf, key...)
	for i, v := range vs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, v)
	}
	return append(buf, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Control characters, '"' and '\\' are escaped, U+2028
// and U+2029 are escaped (JavaScript line terminators), and each invalid UTF-8 byte becomes the
// UTF-8 encoding of U+FFFD — written literally, so decoding and re-encoding yields the same bytes.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, "\uFFFD"...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

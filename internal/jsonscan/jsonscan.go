// Package jsonscan reads JSON text (RFC 8259) token by token, strictly as
// encoding/json accepts it, without reflection and without allocating
// beyond the strings it returns (and a scratch buffer for a string with
// escapes that decodes to more than 128 bytes). It is for hot paths that
// read a known shape by hand (a DPoP proof's claims, a sealed session
// payload): the caller walks the text with a Scanner and decides what each
// member means, which names it takes, what a duplicate is; jsonscan gets
// the tokens right (white space, literals, strings and their escapes,
// numbers, skipping a whole value), written once because that is where a
// hand-written reader goes wrong.
package jsonscan

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Text is the JSON text a Scanner reads. From a string, string values
// without escapes are substrings of it; from bytes, they are copies.
type Text interface{ string | []byte }

// Mode selects where a Scanner is stricter than encoding/json.
type Mode uint8

// RefuseInvalidUTF8 makes invalid UTF-8 in a string (a member name too,
// or a string inside a skipped value) an error, where encoding/json
// replaces each invalid byte with U+FFFD. Valid UTF-8 decodes the same
// either way, escapes included (a \u escape of a lone surrogate is U+FFFD
// in both).
const RefuseInvalidUTF8 Mode = 1

// Scanner reads JSON text from its start. Every reader first skips white
// space, then reads one token (or, Skip, one value) and reports whether it
// was there and well-formed. After a reader reports false the position is
// unspecified: the text is not JSON of the shape expected, and the caller
// gives up on it.
type Scanner[T Text] struct {
	src  T
	pos  int
	mode Mode
}

// New returns a Scanner at the start of src.
func New[T Text](src T, mode Mode) Scanner[T] {
	return Scanner[T]{src: src, mode: mode}
}

// Pos is the offset in the text of the next byte to read.
func (s *Scanner[T]) Pos() int { return s.pos }

// Since is the text from offset start up to the position: what was read
// since Pos returned start.
func (s *Scanner[T]) Since(start int) T { return s.src[start:s.pos] }

// Space skips white space: space, tab, line feed, carriage return.
func (s *Scanner[T]) Space() {
	i := s.pos
	for i < len(s.src) {
		switch s.src[i] {
		case ' ', '\t', '\n', '\r':
			i++
			continue
		}
		break
	}
	s.pos = i
}

// Peek skips white space and returns the next byte without reading it, or
// 0 at the end of the text.
func (s *Scanner[T]) Peek() byte {
	s.Space()
	if s.pos < len(s.src) {
		return s.src[s.pos]
	}
	return 0
}

// Consume skips white space and then c, reporting whether c was there.
func (s *Scanner[T]) Consume(c byte) bool {
	s.Space()
	if s.pos < len(s.src) && s.src[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// End reports whether only white space is left.
func (s *Scanner[T]) End() bool {
	s.Space()
	return s.pos == len(s.src)
}

// Literal skips white space and then lit (true, false or null), reporting
// whether it was there. Like encoding/json, it does not look at what
// follows: "nullx" is null and then an x, which the caller refuses.
func (s *Scanner[T]) Literal(lit string) bool {
	s.Space()
	if len(s.src)-s.pos >= len(lit) && string(s.src[s.pos:s.pos+len(lit)]) == lit {
		s.pos += len(lit)
		return true
	}
	return false
}

// Quoted is a string as the Scanner read it: checked, not yet decoded.
type Quoted[T Text] struct {
	// Raw is the text between the quotes, escapes as written.
	Raw              T
	escaped, invalid bool
	shrink           int // how much shorter than Raw its escapes decode to
}

// Plain reports whether Raw is the string's value: it has no escape and is
// valid UTF-8. A caller can compare Raw with a name without decoding it.
func (q Quoted[T]) Plain() bool { return !q.escaped && !q.invalid }

// Value is the string's value as encoding/json decodes it: escapes decoded,
// a \u escape of a lone surrogate as U+FFFD, each byte of invalid UTF-8 as
// U+FFFD. A plain string read from a string is a substring of it; any other
// value is a string of its own, the one allocation.
func (q Quoted[T]) Value() string {
	if q.Plain() {
		return string(q.Raw)
	}
	return unquote(q.Raw, len(q.Raw)-q.shrink, q.invalid)
}

// Str skips white space and reads a string's value (see Quoted.Value).
func (s *Scanner[T]) Str() (string, bool) {
	q, ok := s.ScanStr()
	if !ok {
		return "", false
	}
	return q.Value(), true
}

// ScanStr skips white space and reads a string: a quote, then characters
// other than a quote, a backslash or a control character (below U+0020), or
// the escapes \" \\ \/ \b \f \n \r \t and \u with four hex digits, then a
// quote.
func (s *Scanner[T]) ScanStr() (Quoted[T], bool) {
	if !s.Consume('"') {
		return Quoted[T]{}, false
	}
	// In locals, not s, the loop keeps them in registers.
	src, start := s.src, s.pos
	var q Quoted[T]
	var all byte // the bytes outside escapes, or'd: ≥ 0x80 where one is not ASCII
	for i := start; ; {
		// Eight bytes at a time while none of them needs a look (tokens
		// are hundreds of plain bytes), then one at a time through the
		// next eight.
		for i+8 <= len(src) {
			w := src[i : i+8]
			if special(uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
				uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56) {
				break
			}
			i += 8
		}
		for end := i + 8; i < end; {
			if i >= len(src) {
				return Quoted[T]{}, false
			}
			switch c := src[i]; {
			case c == '"':
				q.Raw = src[start:i]
				s.pos = i + 1
				// Escapes are ASCII and decode to whole runes, so the
				// raw text is valid UTF-8 exactly when the value (before
				// any replacement) is.
				q.invalid = all >= utf8.RuneSelf && !validUTF8(q.Raw)
				if q.invalid && s.mode&RefuseInvalidUTF8 != 0 {
					return Quoted[T]{}, false
				}
				return q, true
			case c == '\\':
				r, n := escape(src, i)
				if n == 0 {
					return Quoted[T]{}, false
				}
				q.escaped = true
				q.shrink += n - utf8.RuneLen(r)
				i += n
			case c < 0x20:
				return Quoted[T]{}, false
			default:
				all |= c
				i++
			}
		}
	}
}

// special reports whether any of the eight bytes of w is a quote, a
// backslash, a control character or not ASCII. It uses the exact tests for
// a zero byte (x-1 &^ x has a byte's top bit set only if some byte of x is
// zero) and for a byte below 0x20; a false alarm only costs a closer look.
func special(w uint64) bool {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	q := w ^ (ones * '"')
	b := w ^ (ones * '\\')
	return ((q-ones)&^q|(b-ones)&^b|(w-ones*0x20)&^w|w)&tops != 0
}

// escape decodes the escape at src[i] (a backslash): its rune and length,
// or length 0 where it is not an escape JSON has. A \u escape of a
// surrogate followed by one of its other half is the pair's one rune; any
// other surrogate is U+FFFD, and an escape that follows is decoded on its
// own (encoding/json's unquote).
func escape[T Text](src T, i int) (rune, int) {
	if len(src)-i < 2 {
		return 0, 0
	}
	switch c := src[i+1]; c {
	case '"', '\\', '/':
		return rune(c), 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		if len(src)-i < 6 {
			return 0, 0
		}
		r := hex4(src[i+2 : i+6])
		switch {
		case r < 0:
			return 0, 0
		case !utf16.IsSurrogate(r):
			return r, 6
		}
		if len(src)-i >= 12 && src[i+6] == '\\' && src[i+7] == 'u' {
			if pair := utf16.DecodeRune(r, hex4(src[i+8:i+12])); pair != utf8.RuneError {
				return pair, 12
			}
		}
		return utf8.RuneError, 6
	}
	return 0, 0
}

// hex4 decodes four hex digits, or returns -1.
func hex4[T Text](h T) rune {
	var r rune
	for i := range 4 {
		c := h[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unquote decodes a string's raw text, checked by ScanStr, as
// encoding/json's unquote does, into size bytes (more where invalid UTF-8
// is replaced).
func unquote[T Text](raw T, size int, invalid bool) string {
	// Decoded in a buffer on the stack, the string is the one allocation;
	// a longer one takes a second, as every one does in encoding/json.
	// (strings.Builder would save it, but is slower for the short strings
	// that are the rule.)
	var buf [128]byte
	b := buf[:0]
	if size > len(buf) {
		b = make([]byte, 0, size)
	}
	for i := 0; i < len(raw); {
		// Copy what needs no decoding up to the next escape (or, in
		// invalid text, the next byte that may begin invalid UTF-8).
		j := i
		if invalid {
			for j < len(raw) && raw[j] != '\\' && raw[j] < utf8.RuneSelf {
				j++
			}
		} else {
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
		}
		b = append(b, raw[i:j]...)
		switch i = j; {
		case i == len(raw):
		case raw[i] == '\\':
			r, n := escape(raw, i)
			b = utf8.AppendRune(b, r)
			i += n
		default:
			r, n := decodeRune(raw[i:])
			if r == utf8.RuneError && n == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, raw[i:i+n]...)
			}
			i += n
		}
	}
	return string(b)
}

// Number skips white space and reads a number, returning its text:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (s *Scanner[T]) Number() (T, bool) {
	s.Space()
	start := s.pos
	if s.pos < len(s.src) && s.src[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(s.src) && s.src[s.pos] == '0':
		s.pos++
	case s.digits() == 0:
		return s.src[:0], false
	}
	if s.pos < len(s.src) && s.src[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return s.src[:0], false
		}
	}
	if s.pos < len(s.src) && (s.src[s.pos] == 'e' || s.src[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.src) && (s.src[s.pos] == '+' || s.src[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return s.src[:0], false
		}
	}
	return s.src[start:s.pos], true
}

func (s *Scanner[T]) digits() int {
	start, i := s.pos, s.pos
	for i < len(s.src) && '0' <= s.src[i] && s.src[i] <= '9' {
		i++
	}
	s.pos = i
	return i - start
}

// Float skips white space and reads a number as encoding/json decodes it
// into a float64 (or an any): a number beyond float64's range is an error.
func (s *Scanner[T]) Float() (float64, bool) {
	n, ok := s.Number()
	if !ok {
		return 0, false
	}
	f, err := parseFloat(n)
	return f, err == nil
}

// Skip skips white space and reads any one value, checking it as
// json.Valid would, with at most depth arrays and objects nested in it (the
// value itself counting as one): a bound on the recursion, which
// encoding/json sets at 10000 and a hand-read shape much lower. Numbers are
// checked for their grammar only, as encoding/json checks a value it skips.
func (s *Scanner[T]) Skip(depth int) bool {
	switch c := s.Peek(); c {
	case '"':
		_, ok := s.ScanStr()
		return ok
	case 't':
		return s.Literal("true")
	case 'f':
		return s.Literal("false")
	case 'n':
		return s.Literal("null")
	case '{', '[':
		if depth <= 0 {
			return false
		}
		s.pos++
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		if s.Consume(closing) {
			return true
		}
		for {
			if c == '{' {
				if _, ok := s.ScanStr(); !ok || !s.Consume(':') {
					return false
				}
			}
			if !s.Skip(depth - 1) {
				return false
			}
			if !s.Consume(',') {
				return s.Consume(closing)
			}
		}
	default:
		_, ok := s.Number()
		return ok
	}
}

// The standard library's functions for either Text: the type switch costs
// a nanosecond or two a call and no allocation.

func validUTF8[T Text](t T) bool {
	switch v := any(t).(type) {
	case string:
		return utf8.ValidString(v)
	case []byte:
		return utf8.Valid(v)
	}
	panic("unreachable")
}

func decodeRune[T Text](t T) (rune, int) {
	switch v := any(t).(type) {
	case string:
		return utf8.DecodeRuneInString(v)
	case []byte:
		return utf8.DecodeRune(v)
	}
	panic("unreachable")
}

func parseFloat[T Text](t T) (float64, error) {
	switch v := any(t).(type) {
	case string:
		return strconv.ParseFloat(v, 64)
	case []byte:
		return strconv.ParseFloat(string(v), 64)
	}
	panic("unreachable")
}

package session

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// decodePayload decodes a sealed payload's plaintext (the JSON seal wrote)
// into p, exactly as json.Unmarshal would. Every uncached Load does this, so
// it first tries payloadDecoder, which needs no reflection and makes a few
// allocations instead of one per JSON value; any input it does not
// recognise as the form json.Marshal writes goes to encoding/json instead.
//
// sub and sid are the record's plain subject and IdP session id, which the
// payload must repeat: equal strings are shared, not copied.
func decodePayload(pt []byte, sub, sid string, p *payload) error {
	d := payloadDecoder{data: pt, sub: sub, sid: sid}
	if d.payload(p) {
		return nil
	}
	*p = payload{}
	return json.Unmarshal(pt, p)
}

// maxDepth bounds the decoder's recursion; deeper claims go to
// encoding/json (which allows 10000).
const maxDepth = 32

// payloadDecoder accepts a strict subset of JSON: the payload object with
// each of its fields at most once, spelled as payload's tags spell them,
// with the types payload gives them. It reports false, and the caller falls
// back to encoding/json, for everything else: unknown or repeated fields,
// other spellings, invalid JSON, numbers out of range, deep nesting.
//
// The claims object is decoded out of one string copied from the
// plaintext, so that its keys and string values need no allocation of
// their own. Tokens and the other fields get strings of their own: a claim
// value kept elsewhere (a policy's input) does not keep the tokens alive.
type payloadDecoder struct {
	data     []byte
	pos      int
	sub, sid string

	arena    string // data[arenaOff:arenaOff+len(arena)], as a string
	arenaOff int

	dry bool // only check and skip: build no values
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *payloadDecoder) ws() {
	for d.pos < len(d.data) && isSpace(d.data[d.pos]) {
		d.pos++
	}
}

// next skips whitespace and reports whether the next byte is c, consuming it.
func (d *payloadDecoder) next(c byte) bool {
	d.ws()
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

func (d *payloadDecoder) peek() byte {
	d.ws()
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

func (d *payloadDecoder) literal(lit string) bool {
	if len(d.data)-d.pos >= len(lit) && string(d.data[d.pos:d.pos+len(lit)]) == lit {
		d.pos += len(lit)
		return true
	}
	return false
}

// span is a JSON string's contents in data (without the quotes).
type span struct {
	start, end int
	plain      bool // no escapes, valid UTF-8: the contents are the value
}

// scanString consumes a JSON string, checking its escapes.
func (d *payloadDecoder) scanString() (span, bool) {
	if !d.next('"') {
		return span{}, false
	}
	s := span{start: d.pos, plain: true}
	// Most strings have no escape: find the closing quote at once.
	if q := bytes.IndexByte(d.data[d.pos:], '"'); q >= 0 && bytes.IndexByte(d.data[d.pos:d.pos+q], '\\') < 0 {
		s.end = d.pos + q
		high := false
		for _, c := range d.data[s.start:s.end] {
			if c < 0x20 {
				return span{}, false
			}
			high = high || c >= utf8.RuneSelf
		}
		s.plain = !high || utf8.Valid(d.data[s.start:s.end])
		d.pos = s.end + 1
		return s, true
	}
	high := false
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s.end = d.pos
			d.pos++
			if high && s.plain && !utf8.Valid(d.data[s.start:s.end]) {
				s.plain = false
			}
			return s, true
		case c == '\\':
			s.plain = false
			if d.pos+1 >= len(d.data) {
				return span{}, false
			}
			switch d.data[d.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos += 2
			case 'u':
				if d.pos+6 > len(d.data) || hex4(d.data[d.pos+2:d.pos+6]) < 0 {
					return span{}, false
				}
				d.pos += 6
			default:
				return span{}, false
			}
		case c < 0x20:
			return span{}, false
		default:
			high = high || c >= utf8.RuneSelf
			d.pos++
		}
	}
	return span{}, false
}

// hex4 decodes four hex digits, or returns -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// str returns the value of a scanned string: a substring of the arena when
// it lies there and needs no unescaping, else a string of its own.
func (d *payloadDecoder) str(s span) string {
	if d.dry {
		return ""
	}
	if !s.plain {
		return unescape(d.data[s.start:s.end])
	}
	if s.start >= d.arenaOff && s.end <= d.arenaOff+len(d.arena) {
		return d.arena[s.start-d.arenaOff : s.end-d.arenaOff]
	}
	return string(d.data[s.start:s.end])
}

// unescape decodes a string's escapes and replaces invalid UTF-8 as
// encoding/json does (its unquote; the escapes are already checked).
func unescape(s []byte) string {
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			r++
			switch s[r] {
			case '"', '\\', '/':
				b = append(b, s[r])
				r++
			case 'b':
				b, r = append(b, '\b'), r+1
			case 'f':
				b, r = append(b, '\f'), r+1
			case 'n':
				b, r = append(b, '\n'), r+1
			case 'r':
				b, r = append(b, '\r'), r+1
			case 't':
				b, r = append(b, '\t'), r+1
			case 'u':
				rr := hex4(s[r+1:])
				r += 5
				if utf16.IsSurrogate(rr) {
					if r+6 <= len(s) && s[r] == '\\' && s[r+1] == 'u' {
						if rr1 := hex4(s[r+2:]); rr1 >= 0 {
							if dec := utf16.DecodeRune(rr, rr1); dec != unicode.ReplacementChar {
								b = utf8.AppendRune(b, dec)
								r += 6
								continue
							}
						}
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			if rr == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, unicode.ReplacementChar)
			} else {
				b = append(b, s[r:r+size]...)
			}
			r += size
		}
	}
	return string(b)
}

// string consumes a JSON string and returns its value.
func (d *payloadDecoder) string() (string, bool) {
	s, ok := d.scanString()
	if !ok {
		return "", false
	}
	return d.str(s), true
}

// known consumes a JSON string; when it equals want, it returns want
// rather than a copy.
func (d *payloadDecoder) known(want string) (string, bool) {
	s, ok := d.scanString()
	if !ok {
		return "", false
	}
	if s.plain && string(d.data[s.start:s.end]) == want {
		return want, true
	}
	return d.str(s), true
}

// number consumes a JSON number (its exact grammar) and returns it as a
// float64, as encoding/json does for an interface value.
func (d *payloadDecoder) number() (float64, bool) {
	b, start := d.data, d.pos
	i := start
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() bool {
		j := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > j
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		digits()
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return 0, false
		}
	}
	d.pos = i
	if d.dry {
		return 0, true
	}
	var f float64
	var err error
	if start >= d.arenaOff && i <= d.arenaOff+len(d.arena) {
		f, err = strconv.ParseFloat(d.arena[start-d.arenaOff:i-d.arenaOff], 64)
	} else {
		f, err = strconv.ParseFloat(string(b[start:i]), 64)
	}
	if err != nil { // out of range: encoding/json fails too
		return 0, false
	}
	return f, true
}

// value consumes any JSON value as encoding/json decodes it into an
// interface: map[string]any, []any, string, float64, bool or nil.
func (d *payloadDecoder) value(depth int) (any, bool) {
	switch c := d.peek(); {
	case c == '{':
		m, ok := d.object(depth + 1)
		return m, ok
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		return d.string()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	}
	return nil, false
}

type member struct {
	k string
	v any
}

func (d *payloadDecoder) object(depth int) (map[string]any, bool) {
	if depth > maxDepth || !d.next('{') {
		return nil, false
	}
	// Collected first, so that the map is made at its size at once.
	var buf [24]member
	ms := buf[:0]
	if !d.next('}') {
		for {
			k, ok := d.string()
			if !ok || !d.next(':') {
				return nil, false
			}
			v, ok := d.value(depth)
			if !ok {
				return nil, false
			}
			if !d.dry {
				ms = append(ms, member{k, v})
			}
			if d.next('}') {
				break
			}
			if !d.next(',') {
				return nil, false
			}
		}
	}
	if d.dry {
		return nil, true
	}
	m := make(map[string]any, len(ms))
	for _, e := range ms {
		m[e.k] = e.v
	}
	return m, true
}

func (d *payloadDecoder) array(depth int) ([]any, bool) {
	if depth > maxDepth || !d.next('[') {
		return nil, false
	}
	var buf [8]any
	vs := buf[:0]
	if !d.next(']') {
		for {
			v, ok := d.value(depth)
			if !ok {
				return nil, false
			}
			if !d.dry {
				vs = append(vs, v)
			}
			if d.next(']') {
				break
			}
			if !d.next(',') {
				return nil, false
			}
		}
	}
	if d.dry {
		return nil, true
	}
	return append(make([]any, 0, len(vs)), vs...), true
}

// strings consumes a JSON array of strings or null, as for a []string.
func (d *payloadDecoder) strings() ([]string, bool) {
	if d.peek() == 'n' {
		return nil, d.literal("null")
	}
	if !d.next('[') {
		return nil, false
	}
	var buf [8]string
	vs := buf[:0]
	if !d.next(']') {
		for {
			s, ok := d.string()
			if !ok {
				return nil, false
			}
			vs = append(vs, s)
			if d.next(']') {
				break
			}
			if !d.next(',') {
				return nil, false
			}
		}
	}
	return append(make([]string, 0, len(vs)), vs...), true
}

// time consumes a JSON string and parses it as time.Time's UnmarshalJSON
// does (which is what encoding/json calls).
func (d *payloadDecoder) time(t *time.Time) bool {
	d.ws()
	start := d.pos
	if _, ok := d.scanString(); !ok {
		return false
	}
	return t.UnmarshalJSON(d.data[start:d.pos]) == nil
}

// claims consumes the claims object (or null) out of an arena: one string
// copied from the object's bytes.
func (d *payloadDecoder) claims() (map[string]any, bool) {
	if d.peek() == 'n' {
		return nil, d.literal("null")
	}
	// A first pass finds the object's end, so that the arena holds it and
	// nothing else.
	start := d.pos
	skip := payloadDecoder{data: d.data, pos: start, dry: true}
	if _, ok := skip.object(1); !ok {
		return nil, false
	}
	d.arena, d.arenaOff = string(d.data[start:skip.pos]), start
	m, ok := d.object(1)
	d.arena, d.arenaOff = "", 0
	return m, ok
}

func (d *payloadDecoder) native() (*Native, bool) {
	if d.peek() == 'n' {
		return nil, d.literal("null")
	}
	if !d.next('{') {
		return nil, false
	}
	n := new(Native)
	var seen uint8
	if d.next('}') {
		return n, true
	}
	for {
		k, ok := d.scanString()
		if !ok || !k.plain || !d.next(':') {
			return nil, false
		}
		var bit uint8
		switch string(d.data[k.start:k.end]) {
		case "client_id":
			bit = 1
			n.ClientID, ok = d.string()
		case "scopes":
			bit = 2
			n.Scopes, ok = d.strings()
		case "jkt":
			bit = 4
			n.JKT, ok = d.string()
		}
		if bit == 0 || !ok || seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		if d.next('}') {
			return n, true
		}
		if !d.next(',') {
			return nil, false
		}
	}
}

// payload decodes the whole plaintext into p, or reports false.
func (d *payloadDecoder) payload(p *payload) bool {
	if !d.next('{') {
		return false
	}
	var seen uint16
	if !d.next('}') {
		for {
			k, ok := d.scanString()
			if !ok || !k.plain || !d.next(':') {
				return false
			}
			var bit uint16
			switch string(d.data[k.start:k.end]) {
			case "sub":
				bit = 1 << 0
				p.Subject, ok = d.known(d.sub)
			case "idp_sid":
				bit = 1 << 1
				p.IdPSessionID, ok = d.known(d.sid)
			case "claims":
				bit = 1 << 2
				p.Claims, ok = d.claims()
			case "at":
				bit = 1 << 3
				p.AccessToken, ok = d.string()
			case "rt":
				bit = 1 << 4
				p.RefreshToken, ok = d.string()
			case "idt":
				bit = 1 << 5
				p.IDToken, ok = d.string()
			case "at_exp":
				bit = 1 << 6
				ok = d.time(&p.AccessTokenExpiry)
			case "tt":
				bit = 1 << 7
				p.TokenType, ok = d.tokenType()
			case "scope":
				bit = 1 << 8
				p.Scope, ok = d.string()
			case "auth_time":
				bit = 1 << 9
				ok = d.time(&p.AuthTime)
			case "acr":
				bit = 1 << 10
				p.ACR, ok = d.string()
			case "amr":
				bit = 1 << 11
				p.AMR, ok = d.strings()
			case "created":
				bit = 1 << 12
				ok = d.time(&p.Created)
			case "abs_exp":
				bit = 1 << 13
				ok = d.time(&p.AbsoluteExpiry)
			case "native":
				bit = 1 << 14
				p.Native, ok = d.native()
			}
			if bit == 0 || !ok || seen&bit != 0 {
				return false
			}
			seen |= bit
			if d.next('}') {
				break
			}
			if !d.next(',') {
				return false
			}
		}
	}
	d.ws()
	return d.pos == len(d.data)
}

// tokenType consumes the token type; the usual ones need no copy.
func (d *payloadDecoder) tokenType() (string, bool) {
	s, ok := d.scanString()
	if !ok {
		return "", false
	}
	if s.plain {
		switch v := d.data[s.start:s.end]; string(v) {
		case "Bearer":
			return "Bearer", true
		case "DPoP":
			return "DPoP", true
		}
	}
	return d.str(s), true
}

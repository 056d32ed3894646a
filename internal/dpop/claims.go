package dpop

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// claims are the members of a proof's claims set that RFC 9449 defines.
type claims struct {
	JTI, HTM, HTU, ATH, Nonce string
	// HasATH and HasIAT tell a member that is absent (or null) from an
	// empty one.
	HasATH, HasIAT bool
	IAT            float64
}

// maxJSONDepth bounds the nesting of members that are skipped.
const maxJSONDepth = 32

// parseClaims reads a claims set: one JSON object (RFC 8259) in which jti,
// htm, htu, ath and nonce are strings and iat is a number, each present at
// most once (null counts as absent); other members are checked to be JSON
// and skipped. Names match exactly (encoding/json would also take "JTI").
// Strings decode as encoding/json decodes them, except that invalid UTF-8
// is refused rather than replaced. It allocates only for strings with
// escapes: a proof's claims are parsed per API request.
func parseClaims(s string) (c claims, ok bool) {
	p := scanner{s: s}
	if !p.consume('{') {
		return claims{}, false
	}
	if p.consume('}') {
		return c, p.end()
	}
	var seen uint8
	for {
		p.space()
		name, ok := p.str()
		if !ok || !p.consume(':') {
			return claims{}, false
		}
		p.space()
		var bit uint8
		switch name {
		case "jti":
			bit = 1
			c.JTI, _, ok = p.strOrNull()
		case "htm":
			bit = 2
			c.HTM, _, ok = p.strOrNull()
		case "htu":
			bit = 4
			c.HTU, _, ok = p.strOrNull()
		case "ath":
			bit = 8
			c.ATH, c.HasATH, ok = p.strOrNull()
		case "nonce":
			bit = 16
			c.Nonce, _, ok = p.strOrNull()
		case "iat":
			bit = 32
			c.IAT, c.HasIAT, ok = p.numberOrNull()
		default:
			ok = p.skip(0)
		}
		if !ok || seen&bit != 0 {
			return claims{}, false
		}
		seen |= bit
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return c, p.end()
		}
		return claims{}, false
	}
}

// scanner reads JSON from s at i.
type scanner struct {
	s string
	i int
}

func (p *scanner) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// consume skips white space and then c, reporting whether c was there.
func (p *scanner) consume(c byte) bool {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (p *scanner) end() bool {
	p.space()
	return p.i == len(p.s)
}

func (p *scanner) literal(lit string) bool {
	if len(p.s)-p.i >= len(lit) && p.s[p.i:p.i+len(lit)] == lit {
		p.i += len(lit)
		return true
	}
	return false
}

func (p *scanner) strOrNull() (v string, present, ok bool) {
	if p.literal("null") {
		return "", false, true
	}
	v, ok = p.str()
	return v, ok, ok
}

func (p *scanner) numberOrNull() (v float64, present, ok bool) {
	if p.literal("null") {
		return 0, false, true
	}
	start := p.i
	if !p.number() {
		return 0, false, false
	}
	f, err := strconv.ParseFloat(p.s[start:p.i], 64)
	return f, err == nil, err == nil
}

// str reads a string: without escapes it is a substring of s.
func (p *scanner) str() (string, bool) {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false
	}
	p.i++
	start := p.i
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			return v, utf8.ValidString(v)
		case c == '\\':
			return p.escaped(start)
		case c < 0x20:
			return "", false
		default:
			p.i++
		}
	}
	return "", false
}

// escaped finishes a string that has an escape at i, as encoding/json
// decodes it (a lone surrogate becomes U+FFFD).
func (p *scanner) escaped(start int) (string, bool) {
	b := []byte(p.s[start:p.i])
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return string(b), utf8.Valid(b)
		case c < 0x20:
			return "", false
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			return "", false
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				// A pair is one rune; anything else is U+FFFD, and an
				// escape that follows is read on its own.
				hi := r
				r = utf8.RuneError
				if save := p.i; p.literal(`\u`) {
					if lo, ok := p.hex4(); ok && utf16.DecodeRune(hi, lo) != utf8.RuneError {
						r = utf16.DecodeRune(hi, lo)
					} else {
						p.i = save
					}
				}
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", false
		}
	}
	return "", false
}

func (p *scanner) hex4() (rune, bool) {
	if len(p.s)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range []byte(p.s[p.i : p.i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.i += 4
	return r, true
}

// number reads a JSON number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (p *scanner) number() bool {
	if p.i < len(p.s) && p.s[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.s) && p.s[p.i] == '0':
		p.i++
	case p.digits() == 0:
		return false
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return false
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return false
		}
	}
	return true
}

func (p *scanner) digits() int {
	start := p.i
	for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
		p.i++
	}
	return p.i - start
}

// skip reads any JSON value, checking it, at nesting depth.
func (p *scanner) skip(depth int) bool {
	p.space()
	if p.i >= len(p.s) {
		return false
	}
	switch c := p.s[p.i]; c {
	case '"':
		_, ok := p.str()
		return ok
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	case '{', '[':
		if depth >= maxJSONDepth {
			return false
		}
		p.i++
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		if p.consume(closing) {
			return true
		}
		for {
			if c == '{' {
				p.space()
				if _, ok := p.str(); !ok || !p.consume(':') {
					return false
				}
			}
			if !p.skip(depth + 1) {
				return false
			}
			if p.consume(',') {
				continue
			}
			return p.consume(closing)
		}
	default:
		return p.number()
	}
}

package session

import (
	"encoding/json"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/jsonscan"
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
// other spellings, invalid JSON, numbers out of range, deep nesting. The
// tokens themselves are read by jsonscan, as encoding/json reads them.
//
// The claims object is decoded out of one string copied from the
// plaintext, so that its keys and string values need no allocation of
// their own. Tokens and the other fields get strings of their own: a claim
// value kept elsewhere (a policy's input) does not keep the tokens alive.
type payloadDecoder struct {
	data     []byte
	sub, sid string

	sc jsonscan.Scanner[[]byte] // over data: its strings are copies
}

// string consumes a JSON string and returns its value, a string of its own.
func (d *payloadDecoder) string() (string, bool) {
	return d.sc.Str()
}

// known consumes a JSON string; when it equals want, it returns want
// rather than a copy.
func (d *payloadDecoder) known(want string) (string, bool) {
	q, ok := d.sc.ScanStr()
	if !ok {
		return "", false
	}
	if q.Plain() && string(q.Raw) == want {
		return want, true
	}
	return q.Value(), true
}

// claimsDecoder decodes claims as encoding/json decodes JSON into an
// interface, from the arena: map[string]any, []any, string, float64, bool
// or nil.
type claimsDecoder struct {
	sc jsonscan.Scanner[string] // over the arena: its strings are substrings
}

// value consumes any JSON value.
func (d *claimsDecoder) value(depth int) (any, bool) {
	switch c := d.sc.Peek(); {
	case c == '{':
		m, ok := d.object(depth + 1)
		return m, ok
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		return d.sc.Str()
	case c == 't':
		return true, d.sc.Literal("true")
	case c == 'f':
		return false, d.sc.Literal("false")
	case c == 'n':
		return nil, d.sc.Literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return d.sc.Float()
	}
	return nil, false
}

type member struct {
	k string
	v any
}

func (d *claimsDecoder) object(depth int) (map[string]any, bool) {
	if depth > maxDepth || !d.sc.Consume('{') {
		return nil, false
	}
	// Collected first, so that the map is made at its size at once.
	var buf [24]member
	ms := buf[:0]
	if !d.sc.Consume('}') {
		for {
			k, ok := d.sc.Str()
			if !ok || !d.sc.Consume(':') {
				return nil, false
			}
			v, ok := d.value(depth)
			if !ok {
				return nil, false
			}
			ms = append(ms, member{k, v})
			if d.sc.Consume('}') {
				break
			}
			if !d.sc.Consume(',') {
				return nil, false
			}
		}
	}
	m := make(map[string]any, len(ms))
	for _, e := range ms {
		m[e.k] = e.v
	}
	return m, true
}

func (d *claimsDecoder) array(depth int) ([]any, bool) {
	if depth > maxDepth || !d.sc.Consume('[') {
		return nil, false
	}
	var buf [8]any
	vs := buf[:0]
	if !d.sc.Consume(']') {
		for {
			v, ok := d.value(depth)
			if !ok {
				return nil, false
			}
			vs = append(vs, v)
			if d.sc.Consume(']') {
				break
			}
			if !d.sc.Consume(',') {
				return nil, false
			}
		}
	}
	return append(make([]any, 0, len(vs)), vs...), true
}

// strings consumes a JSON array of strings or null, as for a []string.
func (d *payloadDecoder) strings() ([]string, bool) {
	if d.sc.Peek() == 'n' {
		return nil, d.sc.Literal("null")
	}
	if !d.sc.Consume('[') {
		return nil, false
	}
	var buf [8]string
	vs := buf[:0]
	if !d.sc.Consume(']') {
		for {
			s, ok := d.string()
			if !ok {
				return nil, false
			}
			vs = append(vs, s)
			if d.sc.Consume(']') {
				break
			}
			if !d.sc.Consume(',') {
				return nil, false
			}
		}
	}
	return append(make([]string, 0, len(vs)), vs...), true
}

// time consumes a JSON string and parses it as time.Time's UnmarshalJSON
// does (which is what encoding/json calls).
func (d *payloadDecoder) time(t *time.Time) bool {
	d.sc.Space()
	start := d.sc.Pos()
	if _, ok := d.sc.ScanStr(); !ok {
		return false
	}
	return t.UnmarshalJSON(d.sc.Since(start)) == nil
}

// claims consumes the claims object (or null) out of an arena: one string
// copied from the object's bytes.
func (d *payloadDecoder) claims() (map[string]any, bool) {
	switch d.sc.Peek() {
	case 'n':
		return nil, d.sc.Literal("null")
	case '{':
	default:
		return nil, false
	}
	// A first pass finds the object's end (and checks it, to the same
	// depth), so that the arena holds it and nothing else.
	start := d.sc.Pos()
	if !d.sc.Skip(maxDepth) {
		return nil, false
	}
	c := claimsDecoder{sc: jsonscan.New(string(d.sc.Since(start)), 0)}
	m, ok := c.object(1)
	return m, ok && c.sc.End()
}

func (d *payloadDecoder) native() (*Native, bool) {
	if d.sc.Peek() == 'n' {
		return nil, d.sc.Literal("null")
	}
	if !d.sc.Consume('{') {
		return nil, false
	}
	n := new(Native)
	var seen uint8
	if d.sc.Consume('}') {
		return n, true
	}
	for {
		k, ok := d.sc.ScanStr()
		if !ok || !k.Plain() || !d.sc.Consume(':') {
			return nil, false
		}
		var bit uint8
		switch string(k.Raw) {
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
		if d.sc.Consume('}') {
			return n, true
		}
		if !d.sc.Consume(',') {
			return nil, false
		}
	}
}

// payload decodes the whole plaintext into p, or reports false.
func (d *payloadDecoder) payload(p *payload) bool {
	d.sc = jsonscan.New(d.data, 0)
	if !d.sc.Consume('{') {
		return false
	}
	var seen uint16
	if !d.sc.Consume('}') {
		for {
			k, ok := d.sc.ScanStr()
			if !ok || !k.Plain() || !d.sc.Consume(':') {
				return false
			}
			var bit uint16
			switch string(k.Raw) {
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
			if d.sc.Consume('}') {
				break
			}
			if !d.sc.Consume(',') {
				return false
			}
		}
	}
	return d.sc.End()
}

// tokenType consumes the token type; the usual ones need no copy.
func (d *payloadDecoder) tokenType() (string, bool) {
	q, ok := d.sc.ScanStr()
	if !ok {
		return "", false
	}
	if q.Plain() {
		switch string(q.Raw) {
		case "Bearer":
			return "Bearer", true
		case "DPoP":
			return "DPoP", true
		}
	}
	return q.Value(), true
}

package dpop

import "github.com/gatehouse-dev/gatehouse/internal/jsonscan"

// claims are the members of a proof's claims set that RFC 9449 defines.
type claims struct {
	JTI, HTM, HTU, ATH, Nonce string
	// HasATH and HasIAT tell a member that is absent (or null) from an
	// empty one.
	HasATH, HasIAT bool
	IAT            float64
}

// maxJSONDepth bounds the nesting of members that are skipped: how many
// arrays and objects a member's value may hold, one in another.
const maxJSONDepth = 32

// parseClaims reads a claims set: one JSON object (RFC 8259) in which jti,
// htm, htu, ath and nonce are strings and iat is a number, each present at
// most once (null counts as absent); other members are checked to be JSON
// and skipped. Names match exactly (encoding/json would also take "JTI").
// Strings decode as encoding/json decodes them, except that invalid UTF-8
// is refused rather than replaced (jsonscan.RefuseInvalidUTF8): the claims
// checked are then exactly the signed text, and two proofs that differ in
// their bytes never read as the same jti or htu. It allocates only for
// strings with escapes: a proof's claims are parsed per API request.
func parseClaims(s string) (c claims, ok bool) {
	p := jsonscan.New(s, jsonscan.RefuseInvalidUTF8)
	if !p.Consume('{') {
		return claims{}, false
	}
	if p.Consume('}') {
		return c, p.End()
	}
	var seen uint8
	for {
		name, ok := p.Str()
		if !ok || !p.Consume(':') {
			return claims{}, false
		}
		var bit uint8
		switch name {
		case "jti":
			bit = 1
			c.JTI, _, ok = strOrNull(&p)
		case "htm":
			bit = 2
			c.HTM, _, ok = strOrNull(&p)
		case "htu":
			bit = 4
			c.HTU, _, ok = strOrNull(&p)
		case "ath":
			bit = 8
			c.ATH, c.HasATH, ok = strOrNull(&p)
		case "nonce":
			bit = 16
			c.Nonce, _, ok = strOrNull(&p)
		case "iat":
			bit = 32
			c.IAT, c.HasIAT, ok = numberOrNull(&p)
		default:
			ok = p.Skip(maxJSONDepth)
		}
		if !ok || seen&bit != 0 {
			return claims{}, false
		}
		seen |= bit
		if p.Consume(',') {
			continue
		}
		if p.Consume('}') {
			return c, p.End()
		}
		return claims{}, false
	}
}

// strOrNull reads a string or null (absent).
func strOrNull(p *jsonscan.Scanner[string]) (v string, present, ok bool) {
	if p.Literal("null") {
		return "", false, true
	}
	v, ok = p.Str()
	return v, ok, ok
}

// numberOrNull reads a number or null (absent); a number beyond float64's
// range is refused, as encoding/json refuses it.
func numberOrNull(p *jsonscan.Scanner[string]) (v float64, present, ok bool) {
	if p.Literal("null") {
		return 0, false, true
	}
	v, ok = p.Float()
	return v, ok, ok
}

package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/gatehouse-dev/gatehouse/internal/opaque"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

const (
	// TokenPrefix starts every agent token, so that secret scanners (GitHub's,
	// trufflehog's) can be taught to find leaked ones.
	TokenPrefix = "gha_"

	rawIDLen    = 16 // 128 random bits name the grant
	keyLen      = 32 // AES-256 key that seals what the grant needs to act
	rawLen      = rawIDLen + keyLen
	encodedLen  = 64 // unpadded base64url of 48 bytes: no trailing bits
	tokenLen    = len(TokenPrefix) + encodedLen
	publicIDLen = 27 // 162 bits of SHA-256, base64url
	idHashLabel = "gatehouse agent id"
)

// ErrMalformedToken is returned by ParseToken for any value that is not
// exactly a token Gatehouse issued, in canonical form.
var ErrMalformedToken = errors.New("not a valid agent token")

// Token is an agent token: 384 random bits, the first 128 naming the grant,
// the other 256 the key that decrypts it. The store holds neither: the grant
// is keyed by a hash of the id (ID) and what it needs to act (the delegating
// session's handle) is sealed under the key, so a dump of the store yields no
// usable token and no session.
type Token struct {
	raw [rawLen]byte
	id  string
}

// NewToken returns a fresh random token.
func NewToken() (Token, error) {
	var t Token
	if _, err := rand.Read(t.raw[:]); err != nil {
		return Token{}, fmt.Errorf("generate agent token: %w", err)
	}
	t.id = publicID(t.raw[:rawIDLen])
	return t, nil
}

// ParseToken decodes "gha_" followed by 64 characters of unpadded base64url.
// Anything else — padding, white space, another length or alphabet — is
// ErrMalformedToken, so each token has exactly one spelling.
func ParseToken(s string) (Token, error) {
	if len(s) != tokenLen || s[:len(TokenPrefix)] != TokenPrefix {
		return Token{}, ErrMalformedToken
	}
	// 64 characters carry exactly 384 bits: one spelling per token.
	var t Token
	if !opaque.Decode(t.raw[:], s[len(TokenPrefix):]) {
		return Token{}, ErrMalformedToken
	}
	t.id = publicID(t.raw[:rawIDLen])
	return t, nil
}

func publicID(rawID []byte) string {
	d := sha256.New()
	d.Write([]byte(idHashLabel))
	d.Write(rawID)
	var sum [sha256.Size]byte
	var enc [43]byte
	base64.RawURLEncoding.Encode(enc[:], d.Sum(sum[:0]))
	return string(enc[:publicIDLen])
}

// ID is the grant's public id: a hash of the token's random id. It is the
// store key and what lists, audit records and revocation name; knowing it
// grants nothing.
func (t Token) ID() string { return t.id }

// IsZero reports whether t is the zero Token.
func (t Token) IsZero() bool { return t.id == "" }

// Value is the token as the agent sends it (Authorization: Bearer gha_…). It
// is a bearer secret, shown once to the user who minted it.
func (t Token) Value() secret.Secret {
	return secret.New(TokenPrefix + base64.RawURLEncoding.EncodeToString(t.raw[:]))
}

func (t Token) key() []byte { return t.raw[rawIDLen:] }

// String redacts: a Token must never reach a log line.
func (t Token) String() string { return "agent.Token(" + t.id + ")" }

// GoString redacts (%#v).
func (t Token) GoString() string { return t.String() }

// Format redacts for every fmt verb.
func (t Token) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(t.String())) }

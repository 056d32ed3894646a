package session

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
	rawIDLen     = 16 // 128 bits of randomness identify the session
	keyLen       = 32 // AES-256 key that encrypts the session record
	handleLen    = rawIDLen + keyLen
	cookieLen    = 64 // base64url without padding of 48 bytes; no trailing bits
	publicIDLen  = 27 // 162 bits of SHA-256, base64url
	idHashPrefix = "gatehouse session id"
)

// ErrInvalidHandle is returned by ParseHandle for any cookie value that is not
// exactly a handle Gatehouse issued in canonical form.
var ErrInvalidHandle = errors.New("session cookie is not a valid session handle")

// Handle is what the session cookie carries: a random id and the per-session
// key that decrypts the session record. The store holds neither: records are
// keyed by a hash of the id (ID) and sealed with the key, so a store dump
// yields no usable session.
type Handle struct {
	raw [handleLen]byte // id || key
	id  string          // ID(), computed once
}

// NewHandle returns a fresh random handle.
func NewHandle() (Handle, error) {
	var h Handle
	if _, err := rand.Read(h.raw[:]); err != nil {
		return Handle{}, fmt.Errorf("generate session handle: %w", err)
	}
	h.id = publicID(h.raw[:rawIDLen])
	return h, nil
}

// ParseHandle decodes a cookie value. It accepts only the exact form Cookie
// produces (64 characters of unpadded base64url); anything else, including
// padding, whitespace or a different length, yields ErrInvalidHandle.
func ParseHandle(cookieValue string) (Handle, error) {
	// 64 characters carry exactly 384 bits: one spelling per handle.
	var h Handle
	if len(cookieValue) != cookieLen || !opaque.Decode(h.raw[:], cookieValue) {
		return Handle{}, ErrInvalidHandle
	}
	h.id = publicID(h.raw[:rawIDLen])
	return h, nil
}

func publicID(rawID []byte) string {
	d := sha256.New()
	d.Write([]byte(idHashPrefix))
	d.Write(rawID)
	var sum [sha256.Size]byte
	var enc [43]byte
	base64.RawURLEncoding.Encode(enc[:], d.Sum(sum[:0]))
	return string(enc[:publicIDLen])
}

// Cookie returns the cookie value. It is a bearer secret: whoever holds it
// holds the session.
func (h Handle) Cookie() secret.Secret {
	return secret.New(base64.RawURLEncoding.EncodeToString(h.raw[:]))
}

// ID returns the public session id: a hash of the random id. It is the store
// key and the "sid" shown to the browser; knowing it grants nothing.
// The zero Handle has an empty ID.
func (h Handle) ID() string { return h.id }

// IsZero reports whether h is the zero Handle (no session).
func (h Handle) IsZero() bool { return h.id == "" }

func (h Handle) key() []byte { return h.raw[rawIDLen:] }

// String redacts: a Handle must never reach a log line.
func (h Handle) String() string { return "session.Handle(" + h.id + ")" }

// GoString redacts (%#v).
func (h Handle) GoString() string { return h.String() }

// Format redacts for every fmt verb (%d or %x would otherwise print the key bytes).
func (h Handle) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(h.String())) }

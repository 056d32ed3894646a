// Package secret holds secret values so that they cannot be printed, logged or
// serialised by accident, and resolves secret references (${env:NAME},
// ${file:/path}) into values that follow rotation of their source.
package secret

import (
	"fmt"
	"log/slog"
)

const redacted = "[REDACTED]"

// Secret is a secret string. Every way Go has of turning it into text
// (fmt verbs, JSON, text marshalling, slog) yields "[REDACTED]"; only Reveal
// returns the value, so each use of the real value is visible in review.
type Secret struct {
	v string
}

// New wraps s as a Secret.
func New(s string) Secret { return Secret{v: s} }

// Reveal returns the secret value. Call it only where the value leaves the
// process towards its intended recipient (an IdP, an upstream, a cipher).
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

// Equal reports whether two secrets hold the same value.
func (s Secret) Equal(o Secret) bool { return s.v == o.v }

// String redacts.
func (s Secret) String() string { return redacted }

// GoString redacts (%#v).
func (s Secret) GoString() string { return redacted }

// MarshalJSON redacts.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts (also covers YAML and encoding/xml).
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue redacts for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Format redacts for every fmt verb, including %x and %q, which would otherwise
// print the bytes of the underlying string.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

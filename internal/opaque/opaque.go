// Package opaque decodes the opaque values Gatehouse issues (session
// handles, agent tokens) so that each value has exactly one spelling.
package opaque

import "encoding/base64"

// maxEncoded bounds the values Decode reads (Gatehouse's are 64 characters).
const maxEncoded = 128

// Decode fills dst from s, the unpadded base64url encoding of exactly
// len(dst) bytes, and reports whether s was exactly that. It checks the
// alphabet itself because the standard decoder skips CR and LF even in
// strict mode, and it refuses trailing bits (strict mode), so a value
// accepted here has no second spelling.
func Decode(dst []byte, s string) bool {
	// The copy lives on the stack: this runs for every request's cookie.
	var src [maxEncoded]byte
	if len(s) > maxEncoded || len(s) != base64.RawURLEncoding.EncodedLen(len(dst)) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
		src[i] = c
	}
	n, err := base64.RawURLEncoding.Strict().Decode(dst, src[:len(s)])
	return err == nil && n == len(dst)
}

package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync/atomic"
)

// KeyRing encrypts with its first key and decrypts with any of them, so that
// cookie and session encryption keys rotate without invalidating what the
// previous key sealed: add the new key first, keep the old one until the
// longest-lived sealed value has expired, then remove it.
type KeyRing struct {
	keys atomic.Pointer[[]ringKey]
}

type ringKey struct {
	id   [4]byte
	aead cipher.AEAD
}

// ErrDecrypt is returned when no key of the ring opens a ciphertext. It says
// nothing about why: tampered, truncated and foreign ciphertexts look alike.
var ErrDecrypt = errors.New("ciphertext cannot be decrypted with any current key")

// NewKeyRing builds a ring from raw keys. Each key is stretched to 32 bytes
// with SHA-256 (so a passphrase-like secret still yields an AES-256 key) and
// must be at least 16 bytes long.
func NewKeyRing(keys ...Secret) (*KeyRing, error) {
	kr := &KeyRing{}
	if err := kr.Replace(keys...); err != nil {
		return nil, err
	}
	return kr, nil
}

// Replace swaps in a new set of keys (first seals, all open) for every
// holder of the ring at once, so rotated key files take effect without a
// restart. On error the ring keeps its current keys.
func (kr *KeyRing) Replace(keys ...Secret) error {
	if len(keys) == 0 {
		return errors.New("key ring needs at least one key")
	}
	ring := make([]ringKey, 0, len(keys))
	for i, k := range keys {
		if len(k.Reveal()) < 16 {
			return fmt.Errorf("key %d is shorter than 16 bytes: use at least 32 random bytes (e.g. `openssl rand -base64 32`)", i+1)
		}
		sum := sha256.Sum256([]byte(k.Reveal()))
		aead, err := newGCM(sum[:])
		if err != nil {
			return fmt.Errorf("key %d: %w", i+1, err)
		}
		id := sha256.Sum256(sum[:])
		var rk ringKey
		copy(rk.id[:], id[:4])
		rk.aead = aead
		ring = append(ring, rk)
	}
	kr.keys.Store(&ring)
	return nil
}

// RandomKeyRing returns a ring with one fresh random key, for values that need
// not outlive the process.
func RandomKeyRing() *KeyRing {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // cannot happen on supported platforms
	}
	kr, _ := NewKeyRing(New(string(b)))
	return kr
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts and authenticates plaintext, binding it to aad (which is not
// stored; the same aad must be given to Open). Layout: key id (4) | nonce (12) | ciphertext.
func (kr *KeyRing) Seal(plaintext, aad []byte) []byte {
	k := (*kr.keys.Load())[0]
	ns := k.aead.NonceSize()
	out := make([]byte, 4+ns, 4+ns+len(plaintext)+k.aead.Overhead())
	copy(out, k.id[:])
	if _, err := rand.Read(out[4 : 4+ns]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return k.aead.Seal(out, out[4:4+ns], plaintext, aad)
}

// Open decrypts what Seal produced with any key of the ring.
func (kr *KeyRing) Open(ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < 4 {
		return nil, ErrDecrypt
	}
	for _, k := range *kr.keys.Load() {
		if [4]byte(ciphertext[:4]) != k.id {
			continue
		}
		ns := k.aead.NonceSize()
		if len(ciphertext) < 4+ns+k.aead.Overhead() {
			return nil, ErrDecrypt
		}
		pt, err := k.aead.Open(nil, ciphertext[4:4+ns], ciphertext[4+ns:], aad)
		if err != nil {
			return nil, ErrDecrypt
		}
		return pt, nil
	}
	return nil, ErrDecrypt
}

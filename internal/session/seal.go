package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// sealVersion prefixes every sealed payload so the format can change later.
const sealVersion byte = 1

// payload is the plaintext of a sealed record. Tokens are plain strings here
// because secret.Secret redacts itself in JSON; payload never leaves seal/open.
type payload struct {
	Subject           string         `json:"sub"`
	IdPSessionID      string         `json:"idp_sid,omitempty"`
	Claims            map[string]any `json:"claims,omitempty"`
	AccessToken       string         `json:"at,omitempty"`
	RefreshToken      string         `json:"rt,omitempty"`
	IDToken           string         `json:"idt,omitempty"`
	AccessTokenExpiry time.Time      `json:"at_exp"`
	TokenType         string         `json:"tt,omitempty"`
	Scope             string         `json:"scope,omitempty"`
	AuthTime          time.Time      `json:"auth_time"`
	ACR               string         `json:"acr,omitempty"`
	AMR               []string       `json:"amr,omitempty"`
	Created           time.Time      `json:"created"`
	AbsoluteExpiry    time.Time      `json:"abs_exp"`
	Native            *Native        `json:"native,omitempty"`
}

// additionalData binds a sealed payload to its record: its id (so a payload
// cannot be moved to another record) and its plain index fields (so they
// cannot be changed to dodge revocation by subject or IdP session).
//
// A session of a frontend (frontend != "") also binds the frontend's name,
// so that one frontend never opens another's record even with a shared
// store, equal cookie names and a cookie copied across. frontend "" (the
// one-frontend form) keeps the original data, so its sessions survive an
// upgrade.
func additionalData(id, sub, sid, frontend string) []byte {
	return appendAdditionalData(make([]byte, 0, additionalDataCap(id, sub, sid, frontend)), id, sub, sid, frontend)
}

// additionalDataCap bounds the length of additionalData.
func additionalDataCap(id, sub, sid, frontend string) int {
	return 40 + len(id) + len(sub) + len(sid) + len(frontend) + 4*binary.MaxVarintLen64
}

// appendAdditionalData appends additionalData to b.
func appendAdditionalData(b []byte, id, sub, sid, frontend string) []byte {
	b = append(b, "gatehouse session v1"...)
	for _, f := range [...]string{id, sub, sid} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	if frontend != "" {
		b = append(b, "\x00frontend"...)
		b = binary.AppendUvarint(b, uint64(len(frontend)))
		b = append(b, frontend...)
	}
	return b
}

// storedSID is the IdP session id as a frontend's record stores it: with
// the frontend's name in front, so that a back-channel logout at one
// frontend (whose IdP issued the sid) ends no other frontend's sessions,
// even should another IdP issue the same sid. The one-frontend form
// (frontend "") stores it as is.
func storedSID(sid, frontend string) string {
	if sid == "" || frontend == "" {
		return sid
	}
	return frontend + sidSep + sid
}

// idpSID is storedSID's inverse.
func idpSID(stored, frontend string) string {
	if frontend == "" {
		return stored
	}
	return strings.TrimPrefix(stored, frontend+sidSep)
}

const sidSep = "\x1f"

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts s under the handle's key.
func seal(h Handle, s *Session, frontend string) ([]byte, error) {
	p := payload{
		Subject: s.Subject, IdPSessionID: s.IdPSessionID, Claims: s.Claims,
		AccessToken: s.AccessToken.Reveal(), RefreshToken: s.RefreshToken.Reveal(), IDToken: s.IDToken.Reveal(),
		AccessTokenExpiry: s.AccessTokenExpiry, TokenType: s.TokenType, Scope: s.Scope,
		AuthTime: s.AuthTime, ACR: s.ACR, AMR: s.AMR,
		Created: s.Created, AbsoluteExpiry: s.AbsoluteExpiry, Native: s.Native,
	}
	pt, err := json.Marshal(&p)
	if err != nil {
		// Only claims can fail to encode; the error names the type, never a value.
		return nil, fmt.Errorf("encode session claims: %w", err)
	}
	aead, err := newAEAD(h.key())
	if err != nil {
		return nil, fmt.Errorf("session cipher: %w", err)
	}
	ns := aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(pt)+aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("session nonce: %w", err)
	}
	out = aead.Seal(out, out[1:1+ns], pt, additionalData(h.ID(), s.Subject, s.IdPSessionID, frontend))
	clear(pt)
	return out, nil
}

// open decrypts rec with the handle's key. Any failure is ErrNotFound: a
// record that does not open is, for the caller, no session.
func open(h Handle, rec Record) (*Session, error) {
	return openFor(h, rec, rec.Frontend)
}

// openFor is open for a Manager of frontend: a record of another frontend
// is no session, whatever its payload.
func openFor(h Handle, rec Record, frontend string) (*Session, error) {
	if rec.Frontend != frontend {
		return nil, ErrNotFound
	}
	aead, err := newAEAD(h.key())
	if err != nil {
		return nil, ErrNotFound
	}
	ns := aead.NonceSize()
	if len(rec.Sealed) < 1+ns+aead.Overhead() || rec.Sealed[0] != sealVersion {
		return nil, ErrNotFound
	}
	sid := idpSID(rec.IdPSessionID, frontend)
	// One buffer holds the additional data and, after it, the plaintext.
	ct := rec.Sealed[1+ns:]
	buf := make([]byte, 0, additionalDataCap(h.ID(), rec.Subject, sid, frontend)+len(ct)-aead.Overhead())
	buf = appendAdditionalData(buf, h.ID(), rec.Subject, sid, frontend)
	ad := buf[:len(buf):len(buf)]
	pt, err := aead.Open(buf[len(buf):], rec.Sealed[1:1+ns], ct, ad)
	if err != nil {
		return nil, ErrNotFound
	}
	var p payload
	err = decodePayload(pt, rec.Subject, sid, &p)
	clear(pt)
	if err != nil || p.Subject != rec.Subject || p.IdPSessionID != sid {
		return nil, ErrNotFound
	}
	return &Session{
		ID: h.ID(), Subject: p.Subject, IdPSessionID: p.IdPSessionID, Claims: p.Claims,
		AccessToken: secret.New(p.AccessToken), RefreshToken: secret.New(p.RefreshToken), IDToken: secret.New(p.IDToken),
		AccessTokenExpiry: p.AccessTokenExpiry, TokenType: p.TokenType, Scope: p.Scope,
		AuthTime: p.AuthTime, ACR: p.ACR, AMR: p.AMR,
		Created: p.Created, AbsoluteExpiry: p.AbsoluteExpiry, Native: p.Native,
		LastSeen: rec.LastSeen, IdleExpiry: rec.IdleExpiry,
	}, nil
}

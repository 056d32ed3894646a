package agent

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// Grant is what a user delegated to one agent: routes with their methods,
// until Expires, on behalf of one session. It holds no secret.
type Grant struct {
	ID        string // public id (Token.ID)
	Name      string // the agent's name, as the user gave it
	Subject   string // the delegating user's sub
	SessionID string // the delegating session's public id
	// Scope lists the granted routes (sorted by name), each with its methods
	// (sorted); HEAD goes with GET as on the routes themselves.
	Scope   []RouteMethods
	Created time.Time
	Expires time.Time
}

// RouteMethods is one route of a grant and the methods granted on it.
type RouteMethods struct {
	Route   string   `json:"route"`
	Methods []string `json:"methods"`
}

// Allows reports whether the grant covers method on route. It does not
// allocate (it is on every agent request's path).
func (g *Grant) Allows(route, method string) bool {
	for i := range g.Scope {
		if g.Scope[i].Route != route {
			continue
		}
		for _, m := range g.Scope[i].Methods {
			if m == method || (method == "HEAD" && m == "GET") {
				return true
			}
		}
		return false
	}
	return false
}

// Routes are the granted route names, sorted.
func (g *Grant) Routes() []string {
	out := make([]string, len(g.Scope))
	for i, s := range g.Scope {
		out[i] = s.Route
	}
	return out
}

// Methods are the methods granted on any route, sorted.
func (g *Grant) Methods() []string {
	var out []string
	for _, s := range g.Scope {
		for _, m := range s.Methods {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Actor is the grant's element of an audit record's actor chain: the agent
// acting for the user (the record's sub).
func (g *Grant) Actor() []string { return []string{"agent:" + g.ID + ":" + g.Name} }

// The stored form of a grant (session.Record.Sealed) is
//
//	version(1) || uvarint(len(header)) || header || nonce(12) || AES-256-GCM(payload)
//
// header is the grant's JSON without any secret, readable without the key so
// that a session's or a user's grants can be listed; payload holds the
// delegating session's handle. The additional data binds the ciphertext to
// the record id, the session id and the header, so a store whose header was
// rewritten (a route added, the expiry pushed) yields a grant that no longer
// opens: listing may show the forgery, using it fails.
const envelopeVersion byte = 1

type header struct {
	Name    string         `json:"name"`
	Subject string         `json:"sub"`
	Scope   []RouteMethods `json:"scope"`
	Created time.Time      `json:"created"`
	Expires time.Time      `json:"expires"`
}

type payload struct {
	Handle string `json:"h"` // the session cookie value
}

var errCorrupt = errors.New("stored agent grant is corrupt")

func additionalData(id, sessionID string, hdr []byte) []byte {
	b := make([]byte, 0, 32+len(id)+len(sessionID)+len(hdr)+3*binary.MaxVarintLen64)
	b = append(b, "gatehouse agent grant v1"...)
	for _, f := range [...][]byte{[]byte(id), []byte(sessionID), hdr} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

func aead(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// recordOf seals g and the session handle under t's key.
func recordOf(t Token, g *Grant, h session.Handle) (session.Record, error) {
	hdr, err := json.Marshal(header{Name: g.Name, Subject: g.Subject, Scope: g.Scope, Created: g.Created, Expires: g.Expires})
	if err != nil {
		return session.Record{}, fmt.Errorf("encode agent grant: %w", err)
	}
	pl, err := json.Marshal(payload{Handle: h.Cookie().Reveal()})
	if err != nil {
		return session.Record{}, fmt.Errorf("encode agent grant: %w", err)
	}
	a, err := aead(t.key())
	if err != nil {
		return session.Record{}, fmt.Errorf("seal agent grant: %w", err)
	}
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(hdr)+a.NonceSize()+len(pl)+a.Overhead())
	out = append(out, envelopeVersion)
	out = binary.AppendUvarint(out, uint64(len(hdr)))
	out = append(out, hdr...)
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return session.Record{}, fmt.Errorf("seal agent grant: %w", err)
	}
	out = append(out, nonce...)
	out = a.Seal(out, nonce, pl, additionalData(g.ID, g.SessionID, hdr))
	// The record's Subject is the delegating session's id: the store's
	// subject index then lists and deletes a session's grants.
	return session.Record{
		ID: g.ID, Subject: g.SessionID,
		Created: g.Created, LastSeen: g.Created, IdleExpiry: g.Expires, AbsoluteExpiry: g.Expires,
		Sealed: out,
	}, nil
}

// split returns the header bytes and the rest (nonce || ciphertext).
func split(sealed []byte) (hdr, rest []byte, err error) {
	if len(sealed) < 2 || sealed[0] != envelopeVersion {
		return nil, nil, errCorrupt
	}
	n, k := binary.Uvarint(sealed[1:])
	if k <= 0 || n > uint64(len(sealed)-1-k) {
		return nil, nil, errCorrupt
	}
	start := 1 + k
	return sealed[start : start+int(n)], sealed[start+int(n):], nil
}

// grantOf reads a record's grant without the key (for listing). The result
// is what the store says; only open authenticates it.
func grantOf(rec session.Record) (Grant, error) {
	hdr, _, err := split(rec.Sealed)
	if err != nil {
		return Grant{}, err
	}
	var h header
	if err := json.Unmarshal(hdr, &h); err != nil {
		return Grant{}, errCorrupt
	}
	return Grant{ID: rec.ID, Name: h.Name, Subject: h.Subject, SessionID: rec.Subject, Scope: h.Scope,
		Created: h.Created, Expires: h.Expires}, nil
}

// open authenticates a record with the token's key and returns its grant
// and the delegating session's handle.
func open(t Token, rec session.Record) (Grant, session.Handle, error) {
	if rec.ID != t.ID() {
		return Grant{}, session.Handle{}, errCorrupt
	}
	hdr, rest, err := split(rec.Sealed)
	if err != nil {
		return Grant{}, session.Handle{}, err
	}
	a, err := aead(t.key())
	if err != nil {
		return Grant{}, session.Handle{}, err
	}
	if len(rest) < a.NonceSize()+a.Overhead() {
		return Grant{}, session.Handle{}, errCorrupt
	}
	pt, err := a.Open(nil, rest[:a.NonceSize()], rest[a.NonceSize():], additionalData(rec.ID, rec.Subject, hdr))
	if err != nil {
		return Grant{}, session.Handle{}, errCorrupt
	}
	var p payload
	if err := json.Unmarshal(pt, &p); err != nil {
		return Grant{}, session.Handle{}, errCorrupt
	}
	h, err := session.ParseHandle(p.Handle)
	if err != nil || h.ID() != rec.Subject {
		return Grant{}, session.Handle{}, errCorrupt
	}
	g, err := grantOf(rec)
	if err != nil {
		return Grant{}, session.Handle{}, err
	}
	return g, h, nil
}

package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// Session is one signed-in user's server-side state. Tokens never leave the
// process except towards the IdP or an upstream.
type Session struct {
	ID           string // public id, Handle.ID()
	Subject      string // the IdP's "sub"
	IdPSessionID string // the IdP's "sid" claim, when issued; back-channel logout matches it

	// Claims are the ID token claims merged with userinfo. After a round trip
	// through the store, JSON numbers are float64 (as encoding/json decodes them).
	Claims map[string]any

	AccessToken, RefreshToken, IDToken secret.Secret
	AccessTokenExpiry                  time.Time
	TokenType                          string
	Scope                              string

	AuthTime time.Time
	ACR      string
	AMR      []string

	Created, LastSeen time.Time

	// Native is set for a native app's session, made through Gatehouse's
	// OAuth front door: it is reachable only with its DPoP-bound handle,
	// never as a browser cookie. Nil for browser sessions. Treat it as
	// immutable: replace it, never modify it in place (cached copies share it).
	Native *Native

	// IdleExpiry and AbsoluteExpiry are computed by the Manager; values set by
	// callers are ignored.
	IdleExpiry, AbsoluteExpiry time.Time
}

// Native binds a session to the OAuth client it was issued to and the
// app's DPoP key.
type Native struct {
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes,omitempty"` // route names the handle may reach
	// JKT is the RFC 7638 thumbprint of the app's DPoP key; "" until the
	// authorization code is redeemed (then the session cannot be used).
	JKT string `json:"jkt,omitempty"`
}

// Info describes a session for admin listings. It holds no token and no claim.
type Info struct {
	ID, Subject, IdPSessionID                     string
	Frontend                                      string // the frontend (client) the session belongs to; "" in the one-frontend form
	Created, LastSeen, IdleExpiry, AbsoluteExpiry time.Time
}

var (
	// ErrNotFound means there is no usable session: unknown, expired (idle or
	// absolute), revoked, or a record that does not decrypt with the handle's
	// key (tampered). Callers answer 401.
	ErrNotFound = errors.New("session not found or expired")

	// errExpiredRecord is the ErrNotFound a store returns for a record it
	// still holds past its expiry, so the Manager can report the end
	// (OnEnd, EndExpired). It matches ErrNotFound.
	errExpiredRecord = fmt.Errorf("%w (expired)", ErrNotFound)

	// ErrUnavailable means the session store cannot be reached. Callers answer
	// 503; the Manager recovers by itself when the store returns.
	ErrUnavailable = errors.New("session store unavailable")

	// ErrExists is returned by Store.Create when the id is already taken.
	ErrExists = errors.New("session id already exists")
)

// Record is what a Store keeps for one session: the sealed payload (tokens,
// claims) and, in the clear, the few fields revocation, listing and expiry need.
// Subject and IdPSessionID are bound into the ciphertext's additional data, so
// a record whose index fields were altered no longer decrypts.
type Record struct {
	ID           string
	Subject      string
	IdPSessionID string
	// Frontend is the client the session belongs to (Options.Frontend). It
	// is bound into the sealed payload's additional data, so a record moved
	// to, or presented at, another frontend does not open.
	Frontend string

	Created        time.Time
	LastSeen       time.Time
	IdleExpiry     time.Time
	AbsoluteExpiry time.Time

	// Sealed is the AES-GCM ciphertext of the session, under the handle's key.
	Sealed []byte
}

// Expires is when the store may forget the record: the earlier of the idle
// and absolute expiry.
func (r Record) Expires() time.Time {
	if r.IdleExpiry.Before(r.AbsoluteExpiry) {
		return r.IdleExpiry
	}
	return r.AbsoluteExpiry
}

func (r Record) info() Info {
	return Info{ID: r.ID, Subject: r.Subject, IdPSessionID: idpSID(r.IdPSessionID, r.Frontend), Frontend: r.Frontend,
		Created: r.Created, LastSeen: r.LastSeen, IdleExpiry: r.IdleExpiry, AbsoluteExpiry: r.AbsoluteExpiry}
}

// Store keeps session records and short-lived keys (locks, replay markers).
// Implementations must be safe for concurrent use. Every method returns
// ErrNotFound when documented and any other error only when the store could
// not be asked (the Manager reports it as ErrUnavailable). A record whose
// Expires has passed (by the store's clock) is treated as absent.
type Store interface {
	// Create stores a new record; ErrExists if the id is taken.
	Create(ctx context.Context, rec Record) error
	// Replace overwrites an existing record; ErrNotFound if it does not exist
	// (so a revoked session is never brought back by a late write).
	Replace(ctx context.Context, rec Record) error
	// Touch sets LastSeen and IdleExpiry of an existing record without
	// rewriting its payload; ErrNotFound if it does not exist.
	Touch(ctx context.Context, id string, lastSeen, idleExpiry time.Time) error
	// Get returns the record; ErrNotFound if absent or expired.
	Get(ctx context.Context, id string) (Record, error)
	// Delete removes the record; it reports whether one existed.
	Delete(ctx context.Context, id string) (bool, error)
	// ListBySubject returns the live records of a subject (any order).
	ListBySubject(ctx context.Context, sub string) ([]Record, error)
	// DeleteBySubject removes every record of a subject and returns their ids.
	DeleteBySubject(ctx context.Context, sub string) ([]string, error)
	// DeleteByIdPSession removes every record with that IdP session id and
	// returns their ids.
	DeleteByIdPSession(ctx context.Context, sid string) ([]string, error)
	// Acquire sets key to token for ttl unless key is already held; it
	// reports whether it did.
	Acquire(ctx context.Context, key, token string, ttl time.Duration) (bool, error)
	// Release deletes key if it still holds token.
	Release(ctx context.Context, key, token string) error
	// Ping checks that the store can be reached.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// Taker is implemented by every store: Take reads a key set by Acquire and
// deletes it in the same step, so exactly one caller gets the value
// (single-use codes, pending authorizations). It is a separate interface so
// that other Store implementations need not change.
type Taker interface {
	// Take returns the token key holds and deletes the key atomically; ok is
	// false when the key is absent or expired.
	Take(ctx context.Context, key string) (token string, ok bool, err error)
}

// Notifier is implemented by stores shared between several Gatehouse
// instances (redis), so that each instance's cache learns of revocations and
// updates made by the others.
type Notifier interface {
	// Publish sends msg to every subscriber, including this process.
	Publish(ctx context.Context, msg string) error
	// Subscribe delivers published messages to onMessage until ctx ends. It
	// calls onReset whenever messages may have been missed (the subscription
	// was (re)established or broke), so that the caller can drop its cache.
	// It returns when ctx ends.
	Subscribe(ctx context.Context, onMessage func(msg string), onReset func())
}

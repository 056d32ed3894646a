package agent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/policy"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// Sessions is what the broker needs of the session manager.
type Sessions interface {
	// Load returns the live session h names (session.ErrNotFound otherwise).
	Load(ctx context.Context, h session.Handle, slide bool) (*session.Session, error)
	// List returns a subject's live sessions (admin listing by user).
	List(ctx context.Context, sub string) ([]session.Info, error)
}

// Auditor takes the broker's audit records.
type Auditor interface {
	Log(ctx context.Context, rec audit.Record) error
}

// PolicyFunc reports whether the user's own policy for route allows method
// now, with agent set as it would be on the agent's requests.
type PolicyFunc func(ctx context.Context, s *session.Session, route, method string, agent *policy.AgentInfo) (bool, error)

// Options configure a Broker.
type Options struct {
	// Store keeps the grants. It must be a namespace of its own (not the
	// sessions' store itself): grants are records keyed by grant id whose
	// Subject is the delegating session's id. The Broker does not close it.
	Store    session.Store
	Sessions Sessions
	// Delegable maps each delegable route or composite to the methods it serves.
	Delegable          map[string][]string
	MaxTTL, DefaultTTL time.Duration
	// MaxPerSession caps live grants per session (default 10).
	MaxPerSession int
	Audit         Auditor
	// Client names the frontend in audit records.
	Client string
	// CacheTTL is how long an opened grant is served from memory before it
	// is read again; 0 means session.DefaultCacheTTL, negative disables the
	// cache. Give it the session Manager's CacheTTL: it bounds how long a
	// grant revoked on another instance stays usable here should the
	// invalidation message be lost, exactly as for sessions.
	CacheTTL time.Duration
	// CacheSize caps the number of cached grants (default
	// DefaultGrantCacheSize).
	CacheSize int
	Now       func() time.Time
	Logger    *slog.Logger
}

// Broker issues, checks, lists and revokes agent grants.
//
// Revocation bound: Revoke and RevokeByID take effect at once on the
// instance that made them; on other instances sharing a Redis grant store
// when the pub/sub invalidation arrives (milliseconds), and at the latest
// after CacheTTL should the message be lost — the session cache's bound. A
// grant's expiry and its session are checked on every request, cached or
// not.
type Broker struct {
	o     Options
	now   func() time.Time
	log   *slog.Logger
	cache *grantCache
	// notifier is the grant store's invalidation channel (Redis), nil for
	// a store of one instance.
	notifier session.Notifier
	origin   string // identifies this Broker's own invalidation messages

	cancel    context.CancelFunc
	subs      sync.WaitGroup // the invalidation subscription
	wg        sync.WaitGroup // background deletions
	closeOnce sync.Once
}

// Errors the broker returns besides *BadRequestError and ErrNothingDelegable.
var (
	// ErrNotFound: no live grant with that id (for this session).
	ErrNotFound = errors.New("agent token not found")
	// ErrTooMany: the session holds MaxPerSession live grants already.
	ErrTooMany = errors.New("too many agent tokens for this session")
	// ErrUnavailable: the grant store, the session store, the policy's PDP or
	// the audit log cannot be reached; answer 503.
	ErrUnavailable = errors.New("agent grants unavailable")
)

// AuthError is a refused agent token (answer 401). Reason is a short code
// for the audit record: token_malformed, token_unknown (never issued,
// revoked, or expired and forgotten), token_expired, session_ended.
type AuthError struct{ Reason string }

func (e *AuthError) Error() string { return "agent token refused: " + e.Reason }

// New checks o and returns a Broker.
func New(o Options) (*Broker, error) {
	switch {
	case o.Store == nil || o.Sessions == nil || o.Audit == nil:
		return nil, errors.New("agent broker: store, sessions and audit are required")
	case o.MaxTTL <= 0 || o.DefaultTTL <= 0 || o.DefaultTTL > o.MaxTTL:
		return nil, errors.New("agent broker: need 0 < default TTL <= max TTL")
	case len(o.Delegable) == 0:
		return nil, errors.New("agent broker: no delegable routes")
	}
	if o.MaxPerSession <= 0 {
		o.MaxPerSession = 10
	}
	b := &Broker{o: o, now: o.Now, log: o.Logger}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	ttl, size := o.CacheTTL, o.CacheSize
	if ttl == 0 {
		ttl = session.DefaultCacheTTL
	}
	if size <= 0 {
		size = DefaultGrantCacheSize
	}
	b.cache = newGrantCache(ttl, size)
	b.origin = randomOrigin()
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	if n, ok := o.Store.(session.Notifier); ok && ttl > 0 {
		b.notifier = n
		b.subs.Go(func() { n.Subscribe(ctx, b.onInvalidation, b.cache.clear) })
	}
	return b, nil
}

func randomOrigin() string {
	var r [16]byte
	_, _ = rand.Read(r[:]) // never fails on supported platforms (Go 1.24+ crashes instead)
	return base64.RawURLEncoding.EncodeToString(r[:])
}

// publish tells the other instances sharing the grant store to drop grants
// ids from their caches. Messages are this Broker's origin, then the ids,
// separated by NUL.
func (b *Broker) publish(ctx context.Context, ids ...string) {
	if b.notifier == nil || len(ids) == 0 {
		return
	}
	msg := b.origin + "\x00" + strings.Join(ids, "\x00")
	if err := b.notifier.Publish(context.WithoutCancel(ctx), msg); err != nil {
		b.log.WarnContext(ctx, "publish agent grant invalidation failed; other instances notice within the cache TTL",
			"grants", len(ids), "error", err)
	}
}

func (b *Broker) onInvalidation(msg string) {
	origin, rest, ok := strings.Cut(msg, "\x00")
	if !ok || origin == b.origin {
		return
	}
	b.cache.drop(strings.Split(rest, "\x00")...)
}

// Issued is a freshly minted token: the value goes to the user once.
type Issued struct {
	Token Token
	Grant Grant
}

func (b *Broker) storeErr(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// Issue mints a token for the session h names: the grant is req narrowed to
// the bounds (see Narrow), the TTL capped at the session's remaining absolute
// lifetime. The grant is audited before the token is returned; if the record
// cannot be written, the grant is withdrawn and ErrUnavailable returned.
func (b *Broker) Issue(ctx context.Context, h session.Handle, s *session.Session, req Request, allowed PolicyFunc) (Issued, error) {
	if s == nil || h.IsZero() || h.ID() != s.ID {
		return Issued{}, errors.New("issue agent token: the session does not match its handle")
	}
	tok, err := NewToken()
	if err != nil {
		return Issued{}, err
	}
	now := b.now()
	// What the policy sees at mint time is what it will see on the agent's
	// requests: the agent, the requested routes and methods, the longest
	// expiry the grant could get.
	probe := &policy.AgentInfo{ID: tok.ID(), Name: req.Name, Methods: req.Methods, Expires: now.Add(min(b.o.MaxTTL, s.AbsoluteExpiry.Sub(now)))}
	for _, r := range req.Routes {
		if _, ok := b.o.Delegable[r]; ok && !slices.Contains(probe.Routes, r) {
			probe.Routes = append(probe.Routes, r)
		}
	}
	if len(probe.Methods) == 0 {
		probe.Methods = []string{"GET"}
	}
	scope, ttl, err := Narrow(req, Bounds{
		Delegable: b.o.Delegable, MaxTTL: b.o.MaxTTL, DefaultTTL: b.o.DefaultTTL,
		SessionLeft: s.AbsoluteExpiry.Sub(now),
		Allowed: func(route, method string) (bool, error) {
			return allowed(ctx, s, route, method, probe)
		},
	})
	if err != nil {
		if errors.Is(err, ErrNothingDelegable) {
			b.audit(ctx, audit.Record{Event: audit.EventAgentTokenIssued, Outcome: audit.OutcomeFailure, Reason: "nothing_delegable",
				Sub: s.Subject, Session: s.ID, Actor: (&Grant{ID: tok.ID(), Name: req.Name}).Actor()})
			return Issued{}, err
		}
		return Issued{}, fmt.Errorf("%w: policy: %w", ErrUnavailable, err)
	}
	g := Grant{ID: tok.ID(), Name: req.Name, Subject: s.Subject, SessionID: s.ID, Scope: scope,
		Created: now, Expires: now.Add(ttl)}
	rec, err := recordOf(tok, &g, h)
	if err != nil {
		return Issued{}, err
	}
	if err := b.o.Store.Create(ctx, rec); err != nil {
		return Issued{}, b.storeErr("store agent grant", err)
	}
	// Create, then count: concurrent requests can never leave more than the
	// limit behind, and a grant over the limit is withdrawn before its token
	// was ever shown.
	live, err := b.o.Store.ListBySubject(ctx, s.ID)
	if err != nil {
		b.withdraw(ctx, g.ID)
		return Issued{}, b.storeErr("count agent grants", err)
	}
	if len(live) > b.o.MaxPerSession {
		b.withdraw(ctx, g.ID)
		b.audit(ctx, audit.Record{Event: audit.EventAgentTokenIssued, Outcome: audit.OutcomeFailure, Reason: "too_many_tokens",
			Sub: s.Subject, Session: s.ID, Actor: g.Actor()})
		return Issued{}, ErrTooMany
	}
	if err := b.o.Audit.Log(ctx, audit.Record{Event: audit.EventAgentTokenIssued, Outcome: audit.OutcomeSuccess,
		Sub: s.Subject, Session: s.ID, Actor: g.Actor(), Client: b.o.Client, Route: strings.Join(g.Routes(), ","),
		Method: strings.Join(g.Methods(), ",")}); err != nil {
		b.withdraw(ctx, g.ID)
		return Issued{}, fmt.Errorf("%w: audit: %w", ErrUnavailable, err)
	}
	return Issued{Token: tok, Grant: g}, nil
}

func (b *Broker) withdraw(ctx context.Context, id string) {
	if _, err := b.o.Store.Delete(context.WithoutCancel(ctx), id); err != nil {
		// The token was never shown, so the stray grant is unusable; it
		// expires by itself.
		b.log.WarnContext(ctx, "withdraw agent grant failed; it was never handed out and expires by itself", "grant", id, "error", err)
	}
}

func (b *Broker) audit(ctx context.Context, rec audit.Record) {
	rec.Client = b.o.Client
	if err := b.o.Audit.Log(ctx, rec); err != nil {
		b.log.ErrorContext(ctx, "audit record not written", "event", string(rec.Event), "error", err)
	}
}

// Delegation is an authenticated agent request: the grant and the
// delegating user's live session, whose credentials the routes attach.
type Delegation struct {
	Grant   Grant
	Handle  session.Handle
	Session *session.Session

	routes, methods []string // Grant.Routes() and Methods(), computed once per cached grant
}

// Routes is Grant.Routes(), shared with the cache: do not modify it.
func (d *Delegation) Routes() []string { return d.routes }

// Methods is Grant.Methods(), shared with the cache: do not modify it.
func (d *Delegation) Methods() []string { return d.methods }

// Agent is the policy variable `agent` for this delegation.
func (d *Delegation) Agent() *policy.AgentInfo {
	return &policy.AgentInfo{ID: d.Grant.ID, Name: d.Grant.Name, Routes: d.routes, Methods: d.methods, Expires: d.Grant.Expires}
}

// Authenticate checks an agent token (the value after "Bearer "): known, not
// expired, not revoked, its session still live. It returns an *AuthError
// (401) or an ErrUnavailable error (503). The session is loaded without
// sliding: an agent's calls do not keep the user's session alive.
//
// A grant that opened is cached (see Broker for the revocation bound); the
// cached copy is used only by a token whose key hashes to the one that
// opened it, and its expiry and session are checked on every request.
func (b *Broker) Authenticate(ctx context.Context, value string) (*Delegation, error) {
	tok, err := ParseToken(value)
	if err != nil {
		return nil, &AuthError{Reason: "token_malformed"}
	}
	id := tok.ID()
	now := b.now()
	sum := keyCheck(&tok)
	e := b.cache.get(id, now)
	cached := e != nil
	var gen uint64
	if cached {
		if !e.matches(&sum) {
			// The right id with another key: opening the stored grant would
			// fail as well.
			return nil, &AuthError{Reason: "token_unknown"}
		}
	} else {
		gen = b.cache.generation()
		rec, err := b.o.Store.Get(ctx, id)
		switch {
		case errors.Is(err, session.ErrNotFound):
			return nil, &AuthError{Reason: "token_unknown"}
		case err != nil:
			return nil, b.storeErr("read agent grant", err)
		}
		g, h, err := open(tok, rec)
		if err != nil {
			return nil, &AuthError{Reason: "token_unknown"}
		}
		e = &grantEntry{check: sum, grant: g, routes: g.Routes(), methods: g.Methods(), handle: h, loaded: now}
	}
	g := &e.grant
	if !now.Before(g.Expires) {
		if cached {
			b.cache.drop(id)
		}
		return nil, &AuthError{Reason: "token_expired"}
	}
	s, err := b.o.Sessions.Load(ctx, e.handle, false)
	switch {
	case errors.Is(err, session.ErrNotFound):
		if cached {
			b.cache.dropSession(g.SessionID)
		}
		return nil, &AuthError{Reason: "session_ended"}
	case err != nil:
		return nil, fmt.Errorf("%w: load session: %w", ErrUnavailable, err)
	}
	if s.Subject != g.Subject || s.ID != g.SessionID {
		if cached {
			b.cache.drop(id)
		}
		return nil, &AuthError{Reason: "session_ended"}
	}
	if !cached {
		// Only now: a grant whose session has ended is never cached.
		b.cache.put(e, gen)
	}
	return &Delegation{Grant: *g, Handle: e.handle, Session: s, routes: e.routes, methods: e.methods}, nil
}

// List returns the live grants of session sessionID, oldest first.
func (b *Broker) List(ctx context.Context, sessionID string) ([]Grant, error) {
	recs, err := b.o.Store.ListBySubject(ctx, sessionID)
	if err != nil {
		return nil, b.storeErr("list agent grants", err)
	}
	now := b.now()
	out := make([]Grant, 0, len(recs))
	for _, r := range recs {
		g, err := grantOf(r)
		if err != nil {
			b.log.WarnContext(ctx, "stored agent grant is corrupt; not listed", "grant", r.ID)
			continue
		}
		if now.Before(g.Expires) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b Grant) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// ListBySubject returns the live grants of every live session of sub.
func (b *Broker) ListBySubject(ctx context.Context, sub string) ([]Grant, error) {
	infos, err := b.o.Sessions.List(ctx, sub)
	if err != nil {
		return nil, fmt.Errorf("%w: list sessions: %w", ErrUnavailable, err)
	}
	var out []Grant
	for _, in := range infos {
		gs, err := b.List(ctx, in.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, gs...)
	}
	return out, nil
}

// Revoke ends grant id of session sessionID. A grant of another session is
// ErrNotFound, exactly like one that does not exist.
func (b *Broker) Revoke(ctx context.Context, sessionID, id string) error {
	_, err := b.revoke(ctx, id, sessionID, "user_revoke", nil)
	return err
}

// RevokeByID ends grant id whatever its session (admin API).
func (b *Broker) RevokeByID(ctx context.Context, id string) (Grant, error) {
	return b.revoke(ctx, id, "", "admin_revoke", []string{"admin"})
}

// Forget drops grant id from this broker's cache (it was revoked through
// another broker of this process); the next request reads the store.
func (b *Broker) Forget(id string) { b.cache.drop(id) }

func (b *Broker) revoke(ctx context.Context, id, sessionID, reason string, by []string) (Grant, error) {
	if len(id) != publicIDLen {
		return Grant{}, ErrNotFound
	}
	rec, err := b.o.Store.Get(ctx, id)
	switch {
	case errors.Is(err, session.ErrNotFound):
		return Grant{}, ErrNotFound
	case err != nil:
		return Grant{}, b.storeErr("read agent grant", err)
	}
	if sessionID != "" && rec.Subject != sessionID {
		return Grant{}, ErrNotFound
	}
	g, err := grantOf(rec)
	if err != nil {
		g = Grant{ID: id, SessionID: rec.Subject}
	}
	b.cache.drop(id)
	existed, err := b.o.Store.Delete(ctx, id)
	// Again after the delete: a read that began before it cannot have
	// cached the grant since (the drop moves the generation on). Announced
	// even if the delete failed: it may have happened, and a needless
	// invalidation costs the others one read.
	b.cache.drop(id)
	b.publish(ctx, id)
	if err != nil {
		return Grant{}, b.storeErr("delete agent grant", err)
	}
	if !existed {
		return Grant{}, ErrNotFound
	}
	b.audit(ctx, audit.Record{Event: audit.EventAgentTokenRevoked, Outcome: audit.OutcomeSuccess, Reason: reason,
		Sub: g.Subject, Session: g.SessionID, Actor: append(slices.Clone(by), g.Actor()...)})
	return g, nil
}

// SessionEnded drops the cached grants of a session that ended, on every
// instance (remote is true when another instance ended it and this one
// learnt of it from the session store's invalidation channel), and deletes
// them from the store in the background (it is called from
// session.Manager's end hook, which must not block). Only the instance that
// ended the session deletes (remote false): correctness does not depend on
// it, since every agent request loads the delegating session, so a grant of
// an ended session is refused on every instance already; this frees the
// store and audits each grant's end.
func (b *Broker) SessionEnded(sessionID, cause string, remote bool) {
	if sessionID == "" {
		return
	}
	b.cache.dropSession(sessionID)
	if remote {
		return
	}
	b.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.EndSession(ctx, sessionID, cause); err != nil {
			b.log.Warn("delete agent grants of an ended session failed; they are refused anyway and expire by themselves",
				"session_id", sessionID, "error", err)
		}
	})
}

// EndSession deletes every grant of session sessionID and audits each.
func (b *Broker) EndSession(ctx context.Context, sessionID, cause string) error {
	recs, err := b.o.Store.ListBySubject(ctx, sessionID)
	if err != nil {
		return b.storeErr("list agent grants", err)
	}
	if len(recs) == 0 {
		return nil
	}
	ids, err := b.o.Store.DeleteBySubject(ctx, sessionID)
	b.cache.dropSession(sessionID)
	if err != nil {
		return b.storeErr("delete agent grants", err)
	}
	b.publish(ctx, ids...)
	for _, r := range recs {
		if !slices.Contains(ids, r.ID) {
			continue
		}
		g, err := grantOf(r)
		if err != nil {
			g = Grant{ID: r.ID, SessionID: sessionID}
		}
		b.audit(ctx, audit.Record{Event: audit.EventAgentTokenRevoked, Outcome: audit.OutcomeSuccess, Reason: "session_" + cause,
			Sub: g.Subject, Session: sessionID, Actor: g.Actor()})
	}
	return nil
}

// Close stops the invalidation subscription, empties the cache for good
// (nothing would tell it of revocations any more: Authenticate reads the
// store from then on) and waits for background deletions to finish.
func (b *Broker) Close() {
	b.closeOnce.Do(func() {
		b.cancel()
		b.subs.Wait()
		b.cache.disable()
	})
	b.wg.Wait()
}

package agent

import (
	"context"
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
	Now    func() time.Time
	Logger *slog.Logger
}

// Broker issues, checks, lists and revokes agent grants.
type Broker struct {
	o   Options
	now func() time.Time
	log *slog.Logger
	wg  sync.WaitGroup
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
	return b, nil
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
}

// Agent is the policy variable `agent` for this delegation.
func (d *Delegation) Agent() *policy.AgentInfo {
	return &policy.AgentInfo{ID: d.Grant.ID, Name: d.Grant.Name, Routes: d.Grant.Routes(), Methods: d.Grant.Methods(), Expires: d.Grant.Expires}
}

// Authenticate checks an agent token (the value after "Bearer "): known, not
// expired, not revoked, its session still live. It returns an *AuthError
// (401) or an ErrUnavailable error (503). The session is loaded without
// sliding: an agent's calls do not keep the user's session alive.
func (b *Broker) Authenticate(ctx context.Context, value string) (*Delegation, error) {
	tok, err := ParseToken(value)
	if err != nil {
		return nil, &AuthError{Reason: "token_malformed"}
	}
	rec, err := b.o.Store.Get(ctx, tok.ID())
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
	if !b.now().Before(g.Expires) {
		return nil, &AuthError{Reason: "token_expired"}
	}
	s, err := b.o.Sessions.Load(ctx, h, false)
	switch {
	case errors.Is(err, session.ErrNotFound):
		return nil, &AuthError{Reason: "session_ended"}
	case err != nil:
		return nil, fmt.Errorf("%w: load session: %w", ErrUnavailable, err)
	}
	if s.Subject != g.Subject || s.ID != g.SessionID {
		return nil, &AuthError{Reason: "session_ended"}
	}
	return &Delegation{Grant: g, Handle: h, Session: s}, nil
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
	existed, err := b.o.Store.Delete(ctx, id)
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

// SessionEnded deletes the grants of a session that ended, in the
// background (it is called from session.Manager's end hook, which must not
// block). Only the instance that ended the session does it (remote false):
// correctness does not depend on it, since every agent request loads the
// delegating session, so a grant of an ended session is refused on every
// instance already; this frees the store and audits each grant's end.
func (b *Broker) SessionEnded(sessionID, cause string, remote bool) {
	if remote || sessionID == "" {
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
	if err != nil {
		return b.storeErr("delete agent grants", err)
	}
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

// Close waits for background deletions to finish.
func (b *Broker) Close() { b.wg.Wait() }

package session

import (
	"context"
	"errors"
	"strings"
	"sync"
)

// EndCause says why a session ended.
type EndCause string

// The causes a session ends for.
const (
	// EndLogout: the user signed out (/bff/logout).
	EndLogout EndCause = "logout"
	// EndBackchannel: the IdP sent a back-channel logout token.
	EndBackchannel EndCause = "backchannel_logout"
	// EndRevoked: an operator revoked it (admin API).
	EndRevoked EndCause = "revoked"
	// EndRefreshFailed: the IdP refused the refresh token (invalid_grant).
	// An IdP that cannot be reached ends nothing.
	EndRefreshFailed EndCause = "refresh_failed"
	// EndExpired: a request found the session past its idle or absolute expiry.
	EndExpired EndCause = "expired"
	// EndReplaced: a new login in the same browser replaced it.
	EndReplaced EndCause = "replaced"
	// EndDeleted: ended through Delete* without a more specific cause.
	EndDeleted EndCause = "deleted"
)

// SessionEnd describes one ended session to OnEnd callbacks.
type SessionEnd struct {
	// ID is the public session id (never the handle).
	ID string
	// Cause is why it ended. For Remote ends it is the cause the other
	// instance gave.
	Cause EndCause
	// Remote is true when another instance ended the session and this one
	// learnt of it from the store's invalidation channel.
	Remote bool
}

// endHooks holds the OnEnd callbacks. Registration is expected at build
// time; the lock only keeps a late registration race-free.
type endHooks struct {
	mu  sync.RWMutex
	fns []func(context.Context, SessionEnd)
}

// OnEnd registers fn to be called once per ended session on this instance:
// logout, back-channel logout, admin revocation, a refused refresh, an
// expiry a request noticed, a replaced session, and — with a shared store —
// sessions another instance ended. It is how per-session caches (exchanged
// tokens, later agent grants) are dropped. fn runs synchronously on the
// goroutine that ended the session and must not block.
func (m *Manager) OnEnd(fn func(ctx context.Context, ended SessionEnd)) {
	m.ends.mu.Lock()
	m.ends.fns = append(m.ends.fns, fn)
	m.ends.mu.Unlock()
}

func (m *Manager) ended(ctx context.Context, cause EndCause, remote bool, ids ...string) {
	m.ends.mu.RLock()
	fns := m.ends.fns
	m.ends.mu.RUnlock()
	for _, id := range ids {
		if id == "" {
			continue
		}
		for _, fn := range fns {
			fn(ctx, SessionEnd{ID: id, Cause: cause, Remote: remote})
		}
	}
}

// End ends the session with public id id for cause. Ending a session that
// no longer exists is not an error (the callbacks still run: a cache may
// hold it).
func (m *Manager) End(ctx context.Context, id string, cause EndCause) error {
	_, err := m.end(ctx, id, cause)
	return err
}

// end deletes session id and reports whether it existed. The end is
// announced either way: another instance may have deleted the record first,
// and dropping caches of an ended session is harmless.
func (m *Manager) end(ctx context.Context, id string, cause EndCause) (bool, error) {
	m.cache.drop(id)
	existed, err := m.store.Delete(ctx, id)
	if err != nil {
		return false, m.storeErr(ctx, "delete session", err)
	}
	m.cache.drop(id)
	m.publishEnd(ctx, cause, id)
	m.ended(ctx, cause, false, id)
	return existed, nil
}

// EndBySubject ends every session of subject sub and returns their ids.
//
// A Manager of a frontend (Options.Frontend) ends only that frontend's
// sessions: subjects are issued by each frontend's own IdP, so the same sub
// at another frontend may be another person.
func (m *Manager) EndBySubject(ctx context.Context, sub string, cause EndCause) ([]string, error) {
	if m.frontend != "" {
		recs, err := m.store.ListBySubject(ctx, sub)
		if err != nil {
			return nil, m.storeErr(ctx, "delete sessions by subject", err)
		}
		var ids []string
		for _, r := range recs {
			if r.Frontend != m.frontend {
				continue
			}
			if err := m.End(ctx, r.ID, cause); err != nil {
				return ids, err
			}
			ids = append(ids, r.ID)
		}
		return ids, nil
	}
	ids, err := m.store.DeleteBySubject(ctx, sub)
	if err != nil {
		return nil, m.storeErr(ctx, "delete sessions by subject", err)
	}
	m.cache.drop(ids...)
	m.publishEnd(ctx, cause, ids...)
	m.ended(ctx, cause, false, ids...)
	return ids, nil
}

// EndByIdPSession ends every session with the IdP session id sid (the "sid"
// of a back-channel logout token) and returns their ids.
func (m *Manager) EndByIdPSession(ctx context.Context, sid string, cause EndCause) ([]string, error) {
	if sid == "" {
		return nil, errors.New("delete sessions by IdP session: empty sid")
	}
	ids, err := m.store.DeleteByIdPSession(ctx, storedSID(sid, m.frontend))
	if err != nil {
		return nil, m.storeErr(ctx, "delete sessions by IdP session", err)
	}
	m.cache.drop(ids...)
	m.publishEnd(ctx, cause, ids...)
	m.ended(ctx, cause, false, ids...)
	return ids, nil
}

// endMarker tags an invalidation message as an end (rather than an update)
// and carries its cause. It travels as the last NUL-separated element, so an
// older instance reads it as one more (unknown) id to drop: harmless.
const endMarker = "\x01end="

func (m *Manager) publishEnd(ctx context.Context, cause EndCause, ids ...string) {
	if len(ids) == 0 {
		return
	}
	m.publish(ctx, append(ids[:len(ids):len(ids)], endMarker+string(cause))...)
}

// parseInvalidation splits an invalidation message's ids from its end
// marker; cause is "" for an update.
func parseInvalidation(ids string) (list []string, cause EndCause) {
	list = strings.Split(ids, "\x00")
	if n := len(list); n > 0 && strings.HasPrefix(list[n-1], endMarker) {
		cause = EndCause(strings.TrimPrefix(list[n-1], endMarker))
		list = list[:n-1]
	}
	return list, cause
}

// expired reports a session this instance found past its expiry, here and,
// through the invalidation channel, on the other instances.
func (m *Manager) expired(ctx context.Context, id string) {
	m.publishEnd(ctx, EndExpired, id)
	m.ended(ctx, EndExpired, false, id)
}

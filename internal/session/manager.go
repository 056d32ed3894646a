package session

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
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults for Options fields left zero.
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	// DefaultCacheTTL bounds how long an instance may serve a session from its
	// cache after another instance revoked it, should the pub/sub invalidation
	// be lost without the subscription noticing. Normally invalidations arrive
	// within milliseconds.
	DefaultCacheTTL = 5 * time.Second
	// DefaultLocalCacheTTL is the TTL for a store no other instance shares
	// (bolt, memory; the caller knows which it has). Every revocation then
	// happens in this process and drops the copy in every Manager that can
	// hold it, so the TTL bounds only how long an idle session stays
	// decrypted in memory. With 5 s, most requests of a user base larger
	// than 5 s of requests would miss the cache: a user's next request
	// seldom comes within 5 s, mostly within a minute.
	DefaultLocalCacheTTL = time.Minute
	// DefaultCacheMemory bounds the heap the cache keeps alive: about
	// 125,000 sessions of ~1 KB (a short token, a few claims) or 27,000 of
	// ~5 KB (JWT access and ID tokens, a refresh token, 17 claims).
	DefaultCacheMemory    = 128 << 20
	DefaultHealthInterval = 250 * time.Millisecond
	DefaultHealthTimeout  = 250 * time.Millisecond
	// DefaultSlideFraction: a slide is written to the store only when the
	// stored LastSeen is older than this fraction of the idle timeout.
	DefaultSlideFraction = 10 // i.e. IdleTimeout/10
)

// Options configure a Manager. Zero fields take the defaults above.
type Options struct {
	// IdleTimeout ends a session this long after its last request (that slid it).
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after it was created, whatever
	// its activity.
	AbsoluteTimeout time.Duration
	// Now is the clock; time.Now when nil. Stores given to the Manager should
	// use the same clock.
	Now func() time.Time
	// CacheTTL is how long a decrypted session is served from memory before
	// it is read again; negative disables the cache.
	CacheTTL time.Duration
	// CacheMemory bounds the estimated heap bytes of the cached sessions
	// (DefaultCacheMemory when zero). Each session's size is estimated once,
	// when it is cached, from its tokens and claims.
	CacheMemory int64
	// CacheSize, when positive, also caps the number of cached sessions.
	CacheSize int
	// SlideWriteInterval: a slide is persisted only when the stored LastSeen is
	// at least this old (default IdleTimeout/10). Hence a session idles out no
	// later than IdleTimeout and, when other instances or a cache expiry lose
	// the in-memory LastSeen, no earlier than IdleTimeout - SlideWriteInterval
	// after its last request.
	SlideWriteInterval time.Duration
	// HealthInterval is how often the store is pinged; HealthTimeout bounds
	// each ping. A failed ping makes every Load return ErrUnavailable (the
	// cache is not honoured) until a ping succeeds again, so requests fail
	// within HealthInterval+HealthTimeout (0.5s by default) of the store
	// going away. A negative HealthInterval disables the check (tests only).
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	// Logger receives operational events (never a token or a handle);
	// discarded when nil.
	Logger *slog.Logger
	// Frontend names the frontend (config client) whose sessions this
	// Manager keeps when several share a store: its records carry the name,
	// bound into the sealed data, and it opens no other frontend's record.
	// Empty in the one-frontend form.
	Frontend string
}

// Manager creates, loads, slides and revokes sessions over a Store, with a
// small cache in front of it. It is safe for concurrent use.
//
// Revocation bound: a Delete* call takes effect at once on the instance that
// made it; on other instances sharing a redis store it takes effect when the
// pub/sub invalidation arrives (milliseconds), and at the latest after
// CacheTTL should the message be lost. A broken subscription or an
// unreachable store empties the cache.
type Manager struct {
	store    Store
	notifier Notifier
	frontend string
	now      func() time.Time
	log      *slog.Logger

	idle, absolute time.Duration
	slideWrite     time.Duration
	healthTimeout  time.Duration

	cache  *cache
	flight singleflight.Group
	origin string // identifies this Manager's own invalidation messages

	available atomic.Bool
	ends      endHooks

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewManager returns a Manager that owns store (Close closes it) and starts
// its background health check and, for shared stores, the invalidation
// subscription.
func NewManager(store Store, opts Options) *Manager {
	m := &Manager{
		store:         store,
		frontend:      opts.Frontend,
		now:           opts.Now,
		log:           opts.Logger,
		idle:          opts.IdleTimeout,
		absolute:      opts.AbsoluteTimeout,
		slideWrite:    opts.SlideWriteInterval,
		healthTimeout: opts.HealthTimeout,
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.idle <= 0 {
		m.idle = DefaultIdleTimeout
	}
	if m.absolute <= 0 {
		m.absolute = DefaultAbsoluteTimeout
	}
	if m.slideWrite <= 0 {
		m.slideWrite = m.idle / DefaultSlideFraction
	}
	if m.healthTimeout <= 0 {
		m.healthTimeout = DefaultHealthTimeout
	}
	ttl := opts.CacheTTL
	if ttl == 0 {
		ttl = DefaultCacheTTL
	}
	mem := opts.CacheMemory
	if mem <= 0 {
		mem = DefaultCacheMemory
	}
	m.cache = newCache(ttl, mem, max(opts.CacheSize, 0))
	m.origin = randomToken()
	m.available.Store(true)

	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	interval := opts.HealthInterval
	if interval == 0 {
		interval = DefaultHealthInterval
	}
	if interval > 0 {
		m.wg.Go(func() { m.watchHealth(ctx, interval) })
	}
	if n, ok := store.(Notifier); ok {
		m.notifier = n
		m.wg.Go(func() { n.Subscribe(ctx, m.onInvalidation, m.cache.clear) })
	}
	return m
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms (Go 1.24+ crashes instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// storeErr turns a store failure into an ErrUnavailable error. It keeps the
// store's error (addresses, not secrets) for logs.
func (m *Manager) storeErr(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

func (m *Manager) unavailable() error {
	return fmt.Errorf("%w: the last health check failed; requests resume when the store answers again", ErrUnavailable)
}

func (m *Manager) expiries(created, absolute, lastSeen time.Time) (idleExp, absExp time.Time) {
	// A lowered AbsoluteTimeout also applies to existing sessions.
	absExp = absolute
	if a := created.Add(m.absolute); a.Before(absExp) {
		absExp = a
	}
	idleExp = lastSeen.Add(m.idle)
	if absExp.Before(idleExp) {
		idleExp = absExp
	}
	return idleExp, absExp
}

// Create stores s as a new session under a fresh handle (never one the
// browser brought: no fixation). It fills s.ID, Created, LastSeen,
// IdleExpiry and AbsoluteExpiry. The caller must not modify s afterwards.
func (m *Manager) Create(ctx context.Context, s *Session) (Handle, error) {
	if s == nil || s.Subject == "" {
		return Handle{}, errors.New("create session: the session has no subject")
	}
	if !m.available.Load() {
		return Handle{}, m.unavailable()
	}
	h, err := NewHandle()
	if err != nil {
		return Handle{}, err
	}
	now := m.now()
	s.ID = h.ID()
	s.Created, s.LastSeen = now, now
	s.AbsoluteExpiry = now.Add(m.absolute)
	s.IdleExpiry, s.AbsoluteExpiry = m.expiries(now, s.AbsoluteExpiry, now)
	sealed, err := seal(h, s, m.frontend)
	if err != nil {
		return Handle{}, fmt.Errorf("create session: %w", err)
	}
	gen := m.cache.generation(h.ID())
	if err := m.store.Create(ctx, m.recordOf(s, sealed)); err != nil {
		if errors.Is(err, ErrExists) { // 128 random bits collided: a broken random source
			return Handle{}, fmt.Errorf("create session: %w", err)
		}
		return Handle{}, m.storeErr(ctx, "create session", err)
	}
	cp := *s
	m.cache.put(h.ID(), newEntry(h, &cp, now), gen)
	return h, nil
}

func (m *Manager) recordOf(s *Session, sealed []byte) Record {
	return Record{
		ID: s.ID, Subject: s.Subject, IdPSessionID: storedSID(s.IdPSessionID, m.frontend), Frontend: m.frontend,
		Created: s.Created, LastSeen: s.LastSeen, IdleExpiry: s.IdleExpiry, AbsoluteExpiry: s.AbsoluteExpiry,
		Sealed: sealed,
	}
}

// Load returns the session h names. It returns ErrNotFound for an unknown,
// expired, revoked or undecryptable session and ErrUnavailable while the
// store cannot be reached (even if the session is cached). With slide, the
// request counts as activity and extends the idle expiry (persisted at most
// every SlideWriteInterval). The returned Session is the caller's copy, but
// its Claims map and AMR slice are shared: do not modify them in place.
func (m *Manager) Load(ctx context.Context, h Handle, slide bool) (*Session, error) {
	if h.IsZero() {
		return nil, ErrNotFound
	}
	if !m.available.Load() {
		return nil, m.unavailable()
	}
	id := h.ID()
	now := m.now()
	e := m.cache.get(id, now)
	if e != nil {
		if !e.matches(h) {
			return nil, ErrNotFound
		}
		s, ok, err := m.use(ctx, h, e, now, slide)
		if ok || err != nil {
			return s, err
		}
		// Expired by this instance's view: another instance may have seen
		// later activity, so ask the store before giving up.
		m.cache.drop(id)
	}
	rec, gen, rerr := m.read(ctx, id)
	s, err := m.decode(ctx, h, rec, rerr)
	if err != nil {
		if errors.Is(rerr, errExpiredRecord) {
			// The store still held it past its expiry: noticed here first.
			m.expired(ctx, id)
		}
		return nil, err
	}
	e = newEntry(h, s, now)
	out, ok, err := m.use(ctx, h, e, now, slide)
	if err != nil || !ok {
		if err == nil {
			err = ErrNotFound
			m.expired(ctx, id)
		}
		return nil, err
	}
	m.cache.put(id, e, gen)
	return out, nil
}

// LoadFresh is Load without the cache and without sliding: it reads the
// record from the store itself (not joining a read already in flight, which
// may have started before another instance's update) and then replaces the
// cached copy with what it read. Use it where a stale copy does harm: under
// the cross-instance refresh lock, a cached copy may still hold a refresh
// token another instance has already rotated. Errors are as for Load.
func (m *Manager) LoadFresh(ctx context.Context, h Handle) (*Session, error) {
	if h.IsZero() {
		return nil, ErrNotFound
	}
	if !m.available.Load() {
		return nil, m.unavailable()
	}
	id := h.ID()
	now := m.now()
	// Activity this instance has seen but not yet persisted must not be lost
	// with the stale copy.
	var seen int64
	if old := m.cache.get(id, now); old != nil && old.matches(h) {
		seen = old.lastSeen.Load()
	}
	m.cache.drop(id)
	gen := m.cache.generation(id)
	rec, err := m.store.Get(ctx, id)
	s, err := m.decode(ctx, h, rec, err)
	if err != nil {
		return nil, err
	}
	e := newEntry(h, s, now)
	if seen > e.lastSeen.Load() && seen <= now.UnixNano() {
		e.lastSeen.Store(seen)
	}
	out, ok, err := m.use(ctx, h, e, now, false)
	if err != nil || !ok {
		if err == nil {
			err = ErrNotFound
		}
		return nil, err
	}
	m.cache.put(id, e, gen)
	return out, nil
}

// decode turns a store read into the session it seals. A missing, corrupt
// or undecryptable record is no session (ErrNotFound); a store failure is
// ErrUnavailable.
func (m *Manager) decode(ctx context.Context, h Handle, rec Record, err error) (*Session, error) {
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, ErrNotFound
	case errors.Is(err, errCorruptRecord):
		m.log.WarnContext(ctx, "stored session record is corrupt; treating as no session", "session_id", h.ID())
		return nil, ErrNotFound
	case err != nil:
		return nil, m.storeErr(ctx, "load session", err)
	}
	s, err := openFor(h, rec, m.frontend)
	if err != nil {
		m.log.WarnContext(ctx, "session record does not decrypt with the cookie's key; treating as no session", "session_id", h.ID())
		return nil, ErrNotFound
	}
	return s, nil
}

type readResult struct {
	rec Record
	gen uint64
}

// read fetches a record, sharing one store read among concurrent requests
// for the same session (a burst of requests after a cache expiry). The
// cache generation is taken when the read starts, so a caller that joins a
// read begun before an invalidation cannot cache what it returns.
func (m *Manager) read(ctx context.Context, id string) (Record, uint64, error) {
	v, err, _ := m.flight.Do(id, func() (any, error) {
		gen := m.cache.generation(id)
		// Detached from the first caller's cancellation, which must not fail
		// the others; the store's own timeouts bound the wait.
		rec, err := m.store.Get(context.WithoutCancel(ctx), id)
		return readResult{rec, gen}, err
	})
	res, _ := v.(readResult)
	if err == nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Record{}, 0, ctxErr
		}
	}
	return res.rec, res.gen, err
}

// use checks the entry's expiry, slides it if asked and returns the caller's
// copy. ok is false when the session has expired.
func (m *Manager) use(ctx context.Context, h Handle, e *entry, now time.Time, slide bool) (*Session, bool, error) {
	base := e.sess
	lastSeen := time.Unix(0, e.lastSeen.Load())
	idleExp, absExp := m.expiries(base.Created, base.AbsoluteExpiry, lastSeen)
	if !now.Before(idleExp) || !now.Before(absExp) {
		return nil, false, nil
	}
	if slide && now.After(lastSeen) {
		ns := now.UnixNano()
		for {
			cur := e.lastSeen.Load()
			if cur >= ns || e.lastSeen.CompareAndSwap(cur, ns) {
				break
			}
		}
		lastSeen = now
		idleExp, _ = m.expiries(base.Created, base.AbsoluteExpiry, now)
		persisted := e.persisted.Load()
		if now.Sub(time.Unix(0, persisted)) >= m.slideWrite && e.persisted.CompareAndSwap(persisted, ns) {
			if err := m.store.Touch(ctx, h.ID(), now, idleExp); err != nil {
				m.cache.drop(h.ID())
				if errors.Is(err, ErrNotFound) {
					return nil, false, ErrNotFound
				}
				return nil, false, m.storeErr(ctx, "extend session", err)
			}
		}
	}
	out := *base
	out.LastSeen = lastSeen
	out.IdleExpiry = idleExp
	out.AbsoluteExpiry = absExp
	return &out, true, nil
}

// Update rewrites the session h names with s's tokens and claims (e.g. after
// a token refresh). Subject, IdP session id, Created and AbsoluteExpiry stay
// as stored: an update never extends a session's life or changes whose it is.
// It returns ErrNotFound if the session ended meanwhile (it is not revived).
func (m *Manager) Update(ctx context.Context, h Handle, s *Session) error {
	if h.IsZero() || s == nil {
		return ErrNotFound
	}
	if s.ID != "" && s.ID != h.ID() {
		return errors.New("update session: the session does not belong to this handle")
	}
	if !m.available.Load() {
		return m.unavailable()
	}
	id := h.ID()
	rec, err := m.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return m.storeErr(ctx, "update session", err)
	}
	old, err := openFor(h, rec, m.frontend)
	if err != nil {
		return ErrNotFound
	}
	if s.Subject != old.Subject {
		return errors.New("update session: the subject differs from the session's; end the session instead")
	}
	now := m.now()
	ns := *s
	ns.ID, ns.Subject, ns.IdPSessionID = id, old.Subject, old.IdPSessionID
	ns.Created = old.Created
	ns.LastSeen = old.LastSeen
	if s.LastSeen.After(ns.LastSeen) && !s.LastSeen.After(now) {
		ns.LastSeen = s.LastSeen
	}
	ns.IdleExpiry, ns.AbsoluteExpiry = m.expiries(old.Created, old.AbsoluteExpiry, ns.LastSeen)
	if !now.Before(ns.IdleExpiry) {
		return ErrNotFound
	}
	sealed, err := seal(h, &ns, m.frontend)
	if err != nil {
		return fmt.Errorf("update session: %w", err)
	}
	m.cache.drop(id)
	gen := m.cache.generation(id)
	if err := m.store.Replace(ctx, m.recordOf(&ns, sealed)); err != nil {
		if errors.Is(err, ErrNotFound) {
			return ErrNotFound
		}
		return m.storeErr(ctx, "update session", err)
	}
	m.publish(ctx, id)
	m.cache.put(id, newEntry(h, &ns, now), gen)
	return nil
}

// Delete ends the session with public id id (cause EndDeleted; prefer End
// with the real cause). Deleting a session that no longer exists is not an
// error.
func (m *Manager) Delete(ctx context.Context, id string) error {
	return m.End(ctx, id, EndDeleted)
}

// Revoke ends session id (cause EndRevoked) and reports whether it existed,
// so that an operator revoking an unknown id hears so (and nothing is
// audited).
func (m *Manager) Revoke(ctx context.Context, id string) (bool, error) {
	return m.end(ctx, id, EndRevoked)
}

// DeleteBySubject ends every session of subject sub and returns how many
// (cause EndDeleted; prefer EndBySubject).
func (m *Manager) DeleteBySubject(ctx context.Context, sub string) (int, error) {
	ids, err := m.EndBySubject(ctx, sub, EndDeleted)
	return len(ids), err
}

// DeleteByIdPSession ends every session with the IdP session id sid and
// returns how many (cause EndDeleted; prefer EndByIdPSession).
func (m *Manager) DeleteByIdPSession(ctx context.Context, sid string) (int, error) {
	ids, err := m.EndByIdPSession(ctx, sid, EndDeleted)
	return len(ids), err
}

// List returns the live sessions of subject sub, oldest first.
func (m *Manager) List(ctx context.Context, sub string) ([]Info, error) {
	recs, err := m.store.ListBySubject(ctx, sub)
	if err != nil {
		return nil, m.storeErr(ctx, "list sessions", err)
	}
	now := m.now()
	out := make([]Info, 0, len(recs))
	for _, r := range recs {
		idleExp, absExp := m.expiries(r.Created, r.AbsoluteExpiry, r.LastSeen)
		if !now.Before(idleExp) || !now.Before(absExp) {
			continue
		}
		i := r.info()
		i.IdleExpiry, i.AbsoluteExpiry = idleExp, absExp
		out = append(out, i)
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Lock takes the cross-instance mutex name for at most ttl (it expires by
// itself should the holder die), waiting and retrying until ctx ends. The
// returned release is idempotent.
func (m *Manager) Lock(ctx context.Context, name string, ttl time.Duration) (release func(), err error) {
	if ttl <= 0 {
		return nil, errors.New("lock: ttl must be positive")
	}
	key := "lock:" + name
	token := randomToken()
	wait := 5 * time.Millisecond
	for {
		ok, err := m.store.Acquire(ctx, key, token, ttl)
		if err != nil {
			return nil, m.storeErr(ctx, "lock "+name, err)
		}
		if ok {
			var once sync.Once
			return func() {
				once.Do(func() {
					rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					defer cancel()
					if err := m.store.Release(rctx, key, token); err != nil {
						m.log.Warn("release session lock failed; it expires by itself", "lock", name, "ttl", ttl, "error", err)
					}
				})
			}, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("wait for lock %s: %w", name, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// Once reports whether this is the first call with key within ttl, across
// all instances sharing the store (replay protection, e.g. logout token jti).
func (m *Manager) Once(ctx context.Context, key string, ttl time.Duration) (first bool, err error) {
	if ttl <= 0 {
		return false, errors.New("once: ttl must be positive")
	}
	ok, err := m.store.Acquire(ctx, "once:"+key, "1", ttl)
	if err != nil {
		return false, m.storeErr(ctx, "replay check", err)
	}
	return ok, nil
}

// OnceWithin is Once for an id that can be presented only between from and
// until (a DPoP proof's iat window); it is remembered until until. On a
// store that serves one instance (WindowOncer: bolt) the id stays in memory,
// with no write; elsewhere it is Once, seen by every instance sharing the
// store. ErrUnavailable (wrapping ErrReplayUnknown) when the id could have
// been seen by a previous process that crashed.
func (m *Manager) OnceWithin(ctx context.Context, key string, from, until time.Time) (first bool, err error) {
	w, ok := m.store.(WindowOncer)
	if !ok {
		return m.Once(ctx, key, until.Sub(m.now()))
	}
	first, err = w.OnceWithin(ctx, key, from, until)
	if err != nil {
		return false, m.storeErr(ctx, "replay check", err)
	}
	return first, nil
}

// Put stores value under key for ttl unless key is already set (it reports
// whether it did), for Take to fetch once. Keys live beside the sessions and
// are shared by every instance on the same store.
func (m *Manager) Put(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errors.New("put: ttl must be positive")
	}
	ok, err := m.store.Acquire(ctx, "kv:"+key, value, ttl)
	if err != nil {
		return false, m.storeErr(ctx, "put", err)
	}
	return ok, nil
}

// Take returns the value Put stored under key and deletes it atomically:
// of several callers (on any instance) exactly one gets it.
func (m *Manager) Take(ctx context.Context, key string) (string, bool, error) {
	t, ok := m.store.(Taker)
	if !ok {
		return "", false, errors.New("take: the session store cannot take keys")
	}
	v, found, err := t.Take(ctx, "kv:"+key)
	if err != nil {
		return "", false, m.storeErr(ctx, "take", err)
	}
	return v, found, nil
}

// Ready reports whether the store answers now (for /readyz).
func (m *Manager) Ready(ctx context.Context) error {
	if err := m.store.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Close stops the background work and closes the store.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		m.wg.Wait()
		m.closeErr = m.store.Close()
	})
	return m.closeErr
}

func (m *Manager) watchHealth(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, m.healthTimeout)
		err := m.store.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		m.setAvailable(err)
	}
}

// setAvailable records a health check result. Both transitions empty the
// cache: while the store is away, the cache can no longer learn of
// revocations, and when it returns, invalidations may have been missed.
func (m *Manager) setAvailable(err error) {
	if err == nil {
		if !m.available.Load() {
			m.cache.clear()
			if m.available.CompareAndSwap(false, true) {
				m.log.Info("session store reachable again")
			}
		}
		return
	}
	if m.available.CompareAndSwap(true, false) {
		m.cache.clear()
		m.log.Warn("session store unreachable; requests needing a session get 503 until it answers", "error", err)
	}
}

// Invalidation messages are origin, then the ids, separated by NUL.
func (m *Manager) publish(ctx context.Context, ids ...string) {
	if m.notifier == nil || len(ids) == 0 {
		return
	}
	msg := m.origin + "\x00" + strings.Join(ids, "\x00")
	if err := m.notifier.Publish(ctx, msg); err != nil {
		m.log.WarnContext(ctx, "publish session invalidation failed; other instances notice within the cache TTL",
			"sessions", len(ids), "error", err)
	}
}

func (m *Manager) onInvalidation(msg string) {
	origin, rest, ok := strings.Cut(msg, "\x00")
	if !ok || origin == m.origin {
		return
	}
	ids, cause := parseInvalidation(rest)
	m.cache.drop(ids...)
	if cause != "" {
		m.ended(context.Background(), cause, true, ids...)
	}
}

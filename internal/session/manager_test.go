package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// fakeClock is an injectable clock for timeout tests (no sleeping).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	testAccessToken  = "at-9f8e7d6c5b4a-ACCESS"
	testRefreshToken = "rt-1a2b3c4d5e6f-REFRESH"
	testIDToken      = "eyJhbGciOi.idtoken-PAYLOAD.sig"
)

func testSession(sub, sid string) *Session {
	return &Session{
		Subject: sub, IdPSessionID: sid,
		Claims:       map[string]any{"email": "alice@example.com", "email_verified": true, "n": 3.0},
		AccessToken:  secret.New(testAccessToken),
		RefreshToken: secret.New(testRefreshToken),
		IDToken:      secret.New(testIDToken),
		TokenType:    "Bearer", Scope: "openid email",
		AccessTokenExpiry: time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC),
		AMR:               []string{"pwd", "otp"}, ACR: "urn:mfa",
	}
}

type fixture struct {
	clock *fakeClock
	store *MemoryStore
	m     *Manager
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	c := newFakeClock()
	st := NewMemoryStore(c.Now)
	opts.Now = c.Now
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.AbsoluteTimeout == 0 {
		opts.AbsoluteTimeout = 12 * time.Hour
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = -1
	}
	m := NewManager(st, opts)
	t.Cleanup(func() { _ = m.Close() })
	return &fixture{clock: c, store: st, m: m}
}

func (f *fixture) create(t *testing.T, sub, sid string) Handle {
	t.Helper()
	h, err := f.m.Create(context.Background(), testSession(sub, sid))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return h
}

func (f *fixture) mustLoad(t *testing.T, h Handle, slide bool) *Session {
	t.Helper()
	s, err := f.m.Load(context.Background(), h, slide)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func (f *fixture) wantNotFound(t *testing.T, h Handle) {
	t.Helper()
	if s, err := f.m.Load(context.Background(), h, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load = %v, %v; want ErrNotFound", s, err)
	}
}

func eachCacheMode(t *testing.T, fn func(t *testing.T, opts Options)) {
	t.Run("cached", func(t *testing.T) { fn(t, Options{CacheTTL: time.Hour}) })
	t.Run("uncached", func(t *testing.T) { fn(t, Options{CacheTTL: -1}) })
}

func TestSessionRoundTripsThroughTheStore(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: -1})
	h := f.create(t, "alice", "idp-sid-1")
	s := f.mustLoad(t, h, false)
	want := testSession("alice", "idp-sid-1")
	if s.ID != h.ID() || s.Subject != "alice" || s.IdPSessionID != "idp-sid-1" ||
		s.AccessToken.Reveal() != testAccessToken || s.RefreshToken.Reveal() != testRefreshToken ||
		s.IDToken.Reveal() != testIDToken || s.TokenType != want.TokenType || s.Scope != want.Scope ||
		!s.AccessTokenExpiry.Equal(want.AccessTokenExpiry) || s.ACR != want.ACR ||
		fmt.Sprint(s.AMR) != fmt.Sprint(want.AMR) || fmt.Sprint(s.Claims) != fmt.Sprint(want.Claims) {
		t.Fatalf("loaded session differs: %+v", s)
	}
	now := f.clock.Now()
	if !s.Created.Equal(now) || !s.LastSeen.Equal(now) || !s.IdleExpiry.Equal(now.Add(30*time.Minute)) ||
		!s.AbsoluteExpiry.Equal(now.Add(12*time.Hour)) {
		t.Fatalf("times: %+v", s)
	}
}

func TestCreateAlwaysIssuesAFreshHandle(t *testing.T) {
	f := newFixture(t, Options{})
	a, b := f.create(t, "alice", ""), f.create(t, "alice", "")
	if a.ID() == b.ID() || a.Cookie().Equal(b.Cookie()) {
		t.Fatal("two sessions share a handle")
	}
}

func TestUnknownHandleIsNotFound(t *testing.T) {
	eachCacheMode(t, func(t *testing.T, opts Options) {
		f := newFixture(t, opts)
		f.create(t, "alice", "")
		h, _ := NewHandle()
		f.wantNotFound(t, h)
		f.wantNotFound(t, Handle{})
	})
}

// An attacker who knows the public id (sid) but not the key, or who flips
// bits in a handle, gets nothing.
func TestHandleWithWrongKeyIsNotFound(t *testing.T) {
	eachCacheMode(t, func(t *testing.T, opts Options) {
		f := newFixture(t, opts)
		h := f.create(t, "alice", "")
		forged := h
		forged.raw[handleLen-1] ^= 1 // same id, different key
		if forged.ID() != h.ID() {
			t.Fatal("test setup: id changed")
		}
		f.wantNotFound(t, forged)
		f.mustLoad(t, h, false) // the real session is unharmed
	})
}

func TestTamperedRecordIsNotFound(t *testing.T) {
	tamper := map[string]func(*Record){
		"ciphertext bit":   func(r *Record) { r.Sealed[len(r.Sealed)/2] ^= 1 },
		"truncated":        func(r *Record) { r.Sealed = r.Sealed[:10] },
		"subject index":    func(r *Record) { r.Subject = "mallory" },
		"idp sid index":    func(r *Record) { r.IdPSessionID = "other" },
		"version byte":     func(r *Record) { r.Sealed[0] = 99 },
		"empty ciphertext": func(r *Record) { r.Sealed = nil },
	}
	for name, fn := range tamper {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, Options{CacheTTL: -1})
			h := f.create(t, "alice", "sid-1")
			ctx := context.Background()
			rec, err := f.store.Get(ctx, h.ID())
			if err != nil {
				t.Fatal(err)
			}
			fn(&rec)
			f.store.mu.Lock()
			f.store.recs[rec.ID] = rec
			f.store.mu.Unlock()
			f.wantNotFound(t, h)
		})
	}
}

// A record moved under another session's id does not decrypt there.
func TestRecordMovedToAnotherIDIsNotFound(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: -1})
	victim := f.create(t, "alice", "")
	attacker := f.create(t, "alice", "")
	ctx := context.Background()
	rec, _ := f.store.Get(ctx, victim.ID())
	rec.ID = attacker.ID()
	f.store.mu.Lock()
	f.store.recs[attacker.ID()] = rec
	f.store.mu.Unlock()
	f.wantNotFound(t, attacker)
}

func TestIdleTimeoutEndsSession(t *testing.T) {
	eachCacheMode(t, func(t *testing.T, opts Options) {
		f := newFixture(t, opts)
		h := f.create(t, "alice", "")
		f.clock.Advance(30*time.Minute - time.Second)
		f.mustLoad(t, h, false)
		f.clock.Advance(time.Second)
		f.wantNotFound(t, h)
	})
}

func TestSlideExtendsIdleButNotAbsolute(t *testing.T) {
	eachCacheMode(t, func(t *testing.T, opts Options) {
		f := newFixture(t, opts)
		h := f.create(t, "alice", "")
		created := f.clock.Now()
		// Activity every 20 minutes keeps the session alive...
		for f.clock.Now().Before(created.Add(12*time.Hour - 20*time.Minute)) {
			f.clock.Advance(20 * time.Minute)
			s := f.mustLoad(t, h, true)
			if !s.IdleExpiry.Equal(minTime(f.clock.Now().Add(30*time.Minute), created.Add(12*time.Hour))) {
				t.Fatalf("idle expiry %v at %v", s.IdleExpiry, f.clock.Now())
			}
		}
		// ...but never past the absolute timeout.
		f.clock.Advance(created.Add(12 * time.Hour).Sub(f.clock.Now()))
		f.wantNotFound(t, h)
	})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func TestLoadWithoutSlideDoesNotExtendIdle(t *testing.T) {
	eachCacheMode(t, func(t *testing.T, opts Options) {
		f := newFixture(t, opts)
		h := f.create(t, "alice", "")
		f.clock.Advance(20 * time.Minute)
		f.mustLoad(t, h, false)
		f.clock.Advance(10 * time.Minute)
		f.wantNotFound(t, h)
	})
}

// Slides are written only when the stored LastSeen is older than
// IdleTimeout/10, so steady traffic does not write on every request.
func TestSlideIsPersistedOnlyAfterTheWriteInterval(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Hour})
	h := f.create(t, "alice", "")
	created := f.clock.Now()
	ctx := context.Background()
	storedLastSeen := func() time.Time {
		rec, err := f.store.Get(ctx, h.ID())
		if err != nil {
			t.Fatal(err)
		}
		return rec.LastSeen
	}
	f.clock.Advance(2 * time.Minute) // < 3m
	f.mustLoad(t, h, true)
	if !storedLastSeen().Equal(created) {
		t.Fatal("slide written before the write interval")
	}
	f.clock.Advance(time.Minute) // 3m since the stored LastSeen
	f.mustLoad(t, h, true)
	if got := storedLastSeen(); !got.Equal(f.clock.Now()) {
		t.Fatalf("stored LastSeen %v, want %v", got, f.clock.Now())
	}
}

// The documented bound: when the in-memory LastSeen is lost (cache expiry,
// another instance), a session idles out no earlier than
// IdleTimeout - SlideWriteInterval after its last request.
func TestIdleBoundWhenCacheIsLost(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Second})
	h := f.create(t, "alice", "")
	f.clock.Advance(2*time.Minute + 59*time.Second)
	f.mustLoad(t, h, true) // not persisted (< 3m)
	f.clock.Advance(27*time.Minute + time.Second - time.Nanosecond)
	// 27m after the last request, 30m after the stored one minus 1ns: alive.
	f.mustLoad(t, h, false)
	f.clock.Advance(time.Nanosecond)
	f.wantNotFound(t, h)
}

func TestRevocationTakesEffectImmediatelyLocally(t *testing.T) {
	revoke := map[string]func(m *Manager, h Handle) error{
		"Delete": func(m *Manager, h Handle) error { return m.Delete(context.Background(), h.ID()) },
		"DeleteBySubject": func(m *Manager, h Handle) error {
			n, err := m.DeleteBySubject(context.Background(), "alice")
			if err == nil && n != 2 {
				err = fmt.Errorf("deleted %d, want 2", n)
			}
			return err
		},
		"DeleteByIdPSession": func(m *Manager, h Handle) error {
			n, err := m.DeleteByIdPSession(context.Background(), "sid-a")
			if err == nil && n != 1 {
				err = fmt.Errorf("deleted %d, want 1", n)
			}
			return err
		},
	}
	for name, fn := range revoke {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, Options{CacheTTL: time.Hour})
			h := f.create(t, "alice", "sid-a")
			f.create(t, "alice", "sid-b")
			other := f.create(t, "bob", "sid-c")
			f.mustLoad(t, h, false) // cached
			if err := fn(f.m, h); err != nil {
				t.Fatal(err)
			}
			f.wantNotFound(t, h)
			f.mustLoad(t, other, false)
		})
	}
}

func TestDeleteOfMissingSessionIsNotAnError(t *testing.T) {
	f := newFixture(t, Options{})
	if err := f.m.Delete(context.Background(), "nope"); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateCannotReviveARevokedSession(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Hour})
	h := f.create(t, "alice", "")
	s := f.mustLoad(t, h, false)
	if err := f.m.Delete(context.Background(), h.ID()); err != nil {
		t.Fatal(err)
	}
	s.AccessToken = secret.New("new")
	if err := f.m.Update(context.Background(), h, s); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Update after revoke = %v, want ErrNotFound", err)
	}
	f.wantNotFound(t, h)
}

func TestUpdateReplacesTokensButNotLifetimeOrOwner(t *testing.T) {
	eachCacheMode(t, func(t *testing.T, opts Options) {
		f := newFixture(t, opts)
		h := f.create(t, "alice", "sid-1")
		orig := f.mustLoad(t, h, false)
		f.clock.Advance(time.Minute)
		s := f.mustLoad(t, h, false)
		s.AccessToken = secret.New("at-new")
		s.RefreshToken = secret.New("rt-new")
		s.AbsoluteExpiry = s.AbsoluteExpiry.Add(100 * time.Hour) // ignored
		s.Created = s.Created.Add(time.Hour)                     // ignored
		s.IdPSessionID = "other"                                 // ignored
		if err := f.m.Update(context.Background(), h, s); err != nil {
			t.Fatal(err)
		}
		got := f.mustLoad(t, h, false)
		if got.AccessToken.Reveal() != "at-new" || got.RefreshToken.Reveal() != "rt-new" {
			t.Fatal("tokens not updated")
		}
		if !got.AbsoluteExpiry.Equal(orig.AbsoluteExpiry) || !got.Created.Equal(orig.Created) || got.IdPSessionID != "sid-1" {
			t.Fatalf("update changed lifetime or owner: %+v", got)
		}
		s.Subject = "mallory"
		if err := f.m.Update(context.Background(), h, s); err == nil {
			t.Fatal("update changed the subject")
		}
		other := f.create(t, "alice", "")
		if err := f.m.Update(context.Background(), other, got); err == nil {
			t.Fatal("update under another handle accepted")
		}
	})
}

func TestListShowsLiveSessionsWithoutTokens(t *testing.T) {
	f := newFixture(t, Options{})
	a := f.create(t, "alice", "s1")
	f.clock.Advance(time.Second)
	b := f.create(t, "alice", "s2")
	f.create(t, "bob", "s3")
	list, err := f.m.List(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != a.ID() || list[1].ID != b.ID() || list[0].IdPSessionID != "s1" {
		t.Fatalf("List = %+v", list)
	}
	f.clock.Advance(31 * time.Minute)
	if list, _ := f.m.List(context.Background(), "alice"); len(list) != 0 {
		t.Fatalf("expired sessions listed: %+v", list)
	}
}

// A thief with a copy of the store gets neither tokens nor claims.
func TestStoreDumpHoldsNoToken(t *testing.T) {
	f := newFixture(t, Options{})
	f.create(t, "alice", "sid-1")
	var dump bytes.Buffer
	f.store.mu.Lock()
	for _, r := range f.store.recs {
		fmt.Fprintf(&dump, "%+v %s", r, r.Sealed)
	}
	f.store.mu.Unlock()
	for _, tok := range []string{testAccessToken, testRefreshToken, testIDToken, "alice@example.com"} {
		if bytes.Contains(dump.Bytes(), []byte(tok)) {
			t.Errorf("store dump contains %q", tok)
		}
	}
}

func TestLockExcludesConcurrentHolders(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	release, err := f.m.Lock(ctx, "refresh:x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := f.m.Lock(short, "refresh:x", time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Lock = %v, want deadline exceeded", err)
	}
	release()
	release() // idempotent
	r2, err := f.m.Lock(ctx, "refresh:x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r2()
}

func TestOnceIsTrueOnlyOnce(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	for i, want := range []bool{true, false, false} {
		got, err := f.m.Once(ctx, "jti-1", time.Minute)
		if err != nil || got != want {
			t.Fatalf("call %d: Once = %v, %v; want %v", i, got, err, want)
		}
	}
	if got, _ := f.m.Once(ctx, "jti-2", time.Minute); !got {
		t.Fatal("other key not first")
	}
}

// While the store cannot be reached, even a cached session is refused.
func TestUnreachableStoreFailsClosedEvenWhenCached(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Hour, HealthInterval: 10 * time.Millisecond})
	h := f.create(t, "alice", "")
	f.mustLoad(t, h, false)
	_ = f.store.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := f.m.Load(context.Background(), h, false)
		if errors.Is(err, ErrUnavailable) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Load = %v after closing the store, want ErrUnavailable", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := f.m.Ready(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready = %v", err)
	}
}

// A burst of requests racing a revocation: once Delete has returned, no
// Load that starts afterwards may succeed, cache or no cache.
func TestConcurrentLoadsNeverOutliveARevocation(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Hour})
	ctx := context.Background()
	for round := range 20 {
		h := f.create(t, "alice", "")
		f.m.cache.drop(h.ID()) // start uncached so loads race on the store read
		var wg sync.WaitGroup
		var deleted sync.WaitGroup
		deleted.Add(1)
		for range 16 {
			wg.Go(func() {
				for range 20 {
					_, _ = f.m.Load(ctx, h, true)
				}
			})
		}
		wg.Go(func() {
			defer deleted.Done()
			if err := f.m.Delete(ctx, h.ID()); err != nil {
				t.Error(err)
			}
		})
		deleted.Wait()
		if _, err := f.m.Load(ctx, h, false); !errors.Is(err, ErrNotFound) {
			t.Fatalf("round %d: Load after Delete = %v", round, err)
		}
		wg.Wait()
		if _, err := f.m.Load(ctx, h, false); !errors.Is(err, ErrNotFound) {
			t.Fatalf("round %d: a racing load re-cached the revoked session: %v", round, err)
		}
	}
}

// A caller that gives up does not fail the others sharing its store read.
func TestCancelledLoadDoesNotFailOthers(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: -1})
	h := f.create(t, "alice", "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.m.Load(ctx, h, false); err != nil && (!errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable)) {
		t.Fatalf("cancelled Load = %v, want context.Canceled (not 503)", err)
	}
	f.mustLoad(t, h, false)
}

// The backstop bound: an instance that never hears of a revocation (no
// pub/sub) stops serving the session once its cached copy is CacheTTL old.
func TestUnannouncedRevocationTakesEffectWithinCacheTTL(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: 5 * time.Second})
	other := NewManager(f.store, Options{Now: f.clock.Now, CacheTTL: 5 * time.Second, HealthInterval: -1})
	h := f.create(t, "alice", "")
	ctx := context.Background()
	if _, err := other.Load(ctx, h, false); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Delete(ctx, h.ID()); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5*time.Second - time.Nanosecond)
	if _, err := other.Load(ctx, h, false); err != nil {
		t.Fatalf("within CacheTTL the stale copy may still be served; got %v", err)
	}
	f.clock.Advance(time.Nanosecond)
	if _, err := other.Load(ctx, h, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after CacheTTL = %v, want ErrNotFound", err)
	}
}

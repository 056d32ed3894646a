// Package storetest is the contract every session.Store passes: one suite,
// run against the memory, bolt and redis stores.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// Clock is a settable clock shared by a test and the store under test.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to the current time (truncated to the
// millisecond, so that stores with coarser TTLs agree with it).
func NewClock() *Clock { return &Clock{t: time.Now().Truncate(time.Millisecond)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// NewStore returns a fresh, empty store that uses now as its clock. The
// suite closes it.
type NewStore func(t *testing.T, now func() time.Time) session.Store

func randomID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func record(t *testing.T, c *Clock, sub, sid string) session.Record {
	now := c.Now()
	sealed := make([]byte, 64)
	_, _ = rand.Read(sealed)
	return session.Record{
		ID: randomID(t), Subject: sub, IdPSessionID: sid,
		Created: now, LastSeen: now, IdleExpiry: now.Add(30 * time.Minute), AbsoluteExpiry: now.Add(12 * time.Hour),
		Sealed: sealed,
	}
}

func sameRecord(a, b session.Record) bool {
	return a.ID == b.ID && a.Subject == b.Subject && a.IdPSessionID == b.IdPSessionID &&
		a.Created.Equal(b.Created) && a.LastSeen.Equal(b.LastSeen) && a.IdleExpiry.Equal(b.IdleExpiry) &&
		a.AbsoluteExpiry.Equal(b.AbsoluteExpiry) && bytes.Equal(a.Sealed, b.Sealed)
}

func ids(recs []session.Record) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.ID)
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// Run runs the contract against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	setup := func(t *testing.T) (session.Store, *Clock) {
		t.Helper()
		c := NewClock()
		s := newStore(t, c.Now)
		t.Cleanup(func() { _ = s.Close() })
		return s, c
	}
	mustCreate := func(t *testing.T, s session.Store, r session.Record) {
		t.Helper()
		if err := s.Create(ctx, r); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	wantGone := func(t *testing.T, s session.Store, id string) {
		t.Helper()
		if r, err := s.Get(ctx, id); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Get(%s) = %+v, %v; want ErrNotFound", id, r, err)
		}
	}

	t.Run("CreateThenGetReturnsTheSameRecord", func(t *testing.T) {
		s, c := setup(t)
		r := record(t, c, "alice", "sid-1")
		mustCreate(t, s, r)
		got, err := s.Get(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !sameRecord(got, r) {
			t.Fatalf("Get = %+v, want %+v", got, r)
		}
	})

	t.Run("CreateDoesNotOverwrite", func(t *testing.T) {
		s, c := setup(t)
		r := record(t, c, "alice", "")
		mustCreate(t, s, r)
		r2 := r
		r2.Subject = "mallory"
		if err := s.Create(ctx, r2); !errors.Is(err, session.ErrExists) {
			t.Fatalf("second Create = %v, want ErrExists", err)
		}
		if got, _ := s.Get(ctx, r.ID); got.Subject != "alice" {
			t.Fatal("Create overwrote an existing record")
		}
	})

	t.Run("UnknownIDIsNotFound", func(t *testing.T) {
		s, _ := setup(t)
		wantGone(t, s, "unknown")
		if err := s.Replace(ctx, session.Record{ID: "unknown", Subject: "x"}); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Replace(unknown) = %v", err)
		}
		if err := s.Touch(ctx, "unknown", time.Now(), time.Now().Add(time.Hour)); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Touch(unknown) = %v", err)
		}
		if ok, err := s.Delete(ctx, "unknown"); ok || err != nil {
			t.Fatalf("Delete(unknown) = %v, %v", ok, err)
		}
	})

	t.Run("ReplaceRewritesRecordAndIndexes", func(t *testing.T) {
		s, c := setup(t)
		r := record(t, c, "alice", "sid-1")
		mustCreate(t, s, r)
		r.Sealed = []byte("new payload")
		r.IdPSessionID = "sid-2"
		r.LastSeen = r.LastSeen.Add(time.Minute)
		if err := s.Replace(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, r.ID)
		if err != nil || !sameRecord(got, r) {
			t.Fatalf("Get after Replace = %+v, %v", got, err)
		}
		if n, _ := s.DeleteByIdPSession(ctx, "sid-1"); len(n) != 0 {
			t.Fatal("old idp sid index still matches")
		}
		if n, _ := s.DeleteByIdPSession(ctx, "sid-2"); len(n) != 1 {
			t.Fatal("new idp sid index does not match")
		}
	})

	t.Run("ReplaceNeverRevivesADeletedRecord", func(t *testing.T) {
		s, c := setup(t)
		r := record(t, c, "alice", "")
		mustCreate(t, s, r)
		if ok, err := s.Delete(ctx, r.ID); !ok || err != nil {
			t.Fatalf("Delete = %v, %v", ok, err)
		}
		if err := s.Replace(ctx, r); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Replace after Delete = %v, want ErrNotFound", err)
		}
		if err := s.Touch(ctx, r.ID, c.Now(), c.Now().Add(time.Hour)); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Touch after Delete = %v, want ErrNotFound", err)
		}
		wantGone(t, s, r.ID)
	})

	t.Run("TouchChangesOnlyLastSeenAndIdleExpiry", func(t *testing.T) {
		s, c := setup(t)
		r := record(t, c, "alice", "sid")
		r.IdleExpiry = c.Now().Add(time.Minute)
		mustCreate(t, s, r)
		seen, idle := c.Now().Add(30*time.Second), c.Now().Add(10*time.Minute)
		if err := s.Touch(ctx, r.ID, seen, idle); err != nil {
			t.Fatal(err)
		}
		c.Advance(5 * time.Minute) // past the old idle expiry
		got, err := s.Get(ctx, r.ID)
		if err != nil {
			t.Fatalf("Get after Touch extended idle: %v", err)
		}
		r.LastSeen, r.IdleExpiry = seen, idle
		if !sameRecord(got, r) {
			t.Fatalf("Get = %+v, want %+v", got, r)
		}
	})

	t.Run("DeleteReportsWhetherItExisted", func(t *testing.T) {
		s, c := setup(t)
		r := record(t, c, "alice", "sid")
		mustCreate(t, s, r)
		if ok, err := s.Delete(ctx, r.ID); !ok || err != nil {
			t.Fatalf("Delete = %v, %v", ok, err)
		}
		if ok, err := s.Delete(ctx, r.ID); ok || err != nil {
			t.Fatalf("second Delete = %v, %v", ok, err)
		}
		wantGone(t, s, r.ID)
		if l, _ := s.ListBySubject(ctx, "alice"); len(l) != 0 {
			t.Fatal("deleted record still listed")
		}
	})

	t.Run("ListBySubjectReturnsOnlyThatSubject", func(t *testing.T) {
		s, c := setup(t)
		// Subjects with separators and lookalikes must not bleed into each other.
		subs := []string{"alice", "alice2", "al", "a:b", "a\x00b", "ünï cødé", "sub with spaces", ""}
		want := map[string][]string{}
		for _, sub := range subs {
			for range 2 {
				r := record(t, c, sub, "")
				mustCreate(t, s, r)
				want[sub] = append(want[sub], r.ID)
			}
		}
		for _, sub := range subs {
			got, err := s.ListBySubject(ctx, sub)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), sorted(want[sub]...)) {
				t.Fatalf("ListBySubject(%q) = %v, want %v", sub, ids(got), sorted(want[sub]...))
			}
		}
		if got, _ := s.ListBySubject(ctx, "nobody"); len(got) != 0 {
			t.Fatalf("ListBySubject(nobody) = %v", ids(got))
		}
	})

	t.Run("DeleteBySubjectEndsAllAndOnlyThatSubjectsSessions", func(t *testing.T) {
		s, c := setup(t)
		a1, a2 := record(t, c, "alice", "s1"), record(t, c, "alice", "s2")
		b := record(t, c, "alice2", "s3")
		for _, r := range []session.Record{a1, a2, b} {
			mustCreate(t, s, r)
		}
		got, err := s.DeleteBySubject(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sorted(got...), sorted(a1.ID, a2.ID)) {
			t.Fatalf("DeleteBySubject = %v", got)
		}
		wantGone(t, s, a1.ID)
		wantGone(t, s, a2.ID)
		if _, err := s.Get(ctx, b.ID); err != nil {
			t.Fatalf("other subject's session: %v", err)
		}
		if got, _ := s.DeleteByIdPSession(ctx, "s1"); len(got) != 0 {
			t.Fatalf("idp sid index kept a deleted session: %v", got)
		}
		if got, _ := s.DeleteBySubject(ctx, "alice"); len(got) != 0 {
			t.Fatalf("second DeleteBySubject = %v", got)
		}
	})

	t.Run("DeleteByIdPSessionEndsMatchingSessions", func(t *testing.T) {
		s, c := setup(t)
		a, b := record(t, c, "alice", "idp-1"), record(t, c, "bob", "idp-1")
		other := record(t, c, "alice", "idp-2")
		none := record(t, c, "alice", "")
		for _, r := range []session.Record{a, b, other, none} {
			mustCreate(t, s, r)
		}
		got, err := s.DeleteByIdPSession(ctx, "idp-1")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sorted(got...), sorted(a.ID, b.ID)) {
			t.Fatalf("DeleteByIdPSession = %v", got)
		}
		wantGone(t, s, a.ID)
		if l, _ := s.ListBySubject(ctx, "alice"); !slices.Equal(ids(l), sorted(other.ID, none.ID)) {
			t.Fatalf("subject index after DeleteByIdPSession = %v", ids(l))
		}
	})

	t.Run("ExpiredRecordIsGone", func(t *testing.T) {
		for name, set := range map[string]func(*session.Record, time.Time){
			"idle":     func(r *session.Record, now time.Time) { r.IdleExpiry = now.Add(time.Minute) },
			"absolute": func(r *session.Record, now time.Time) { r.AbsoluteExpiry = now.Add(time.Minute) },
		} {
			t.Run(name, func(t *testing.T) {
				s, c := setup(t)
				r := record(t, c, "alice", "sid")
				set(&r, c.Now())
				mustCreate(t, s, r)
				c.Advance(time.Minute)
				wantGone(t, s, r.ID)
				if l, err := s.ListBySubject(ctx, "alice"); err != nil || len(l) != 0 {
					t.Fatalf("expired record listed: %v, %v", ids(l), err)
				}
				if err := s.Touch(ctx, r.ID, c.Now(), c.Now().Add(time.Hour)); !errors.Is(err, session.ErrNotFound) {
					t.Fatalf("Touch revived an expired record: %v", err)
				}
				if err := s.Replace(ctx, r); !errors.Is(err, session.ErrNotFound) {
					t.Fatalf("Replace revived an expired record: %v", err)
				}
				if got, err := s.DeleteBySubject(ctx, "alice"); err != nil || len(got) != 0 {
					t.Fatalf("DeleteBySubject counted an expired record: %v, %v", got, err)
				}
			})
		}
	})

	t.Run("CreatingAnAlreadyExpiredRecordKeepsNothing", func(t *testing.T) {
		s, c := setup(t)
		r := record(t, c, "alice", "")
		r.AbsoluteExpiry = c.Now()
		mustCreate(t, s, r)
		wantGone(t, s, r.ID)
	})

	t.Run("AcquireIsExclusiveUntilReleased", func(t *testing.T) {
		s, _ := setup(t)
		key := "lock:" + randomID(t)
		if ok, err := s.Acquire(ctx, key, "tok-a", time.Minute); !ok || err != nil {
			t.Fatalf("first Acquire = %v, %v", ok, err)
		}
		if ok, err := s.Acquire(ctx, key, "tok-b", time.Minute); ok || err != nil {
			t.Fatalf("second Acquire = %v, %v", ok, err)
		}
		// Only the holder releases.
		if err := s.Release(ctx, key, "tok-b"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Acquire(ctx, key, "tok-b", time.Minute); ok {
			t.Fatal("Release with a foreign token released the key")
		}
		if err := s.Release(ctx, key, "tok-a"); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Acquire(ctx, key, "tok-b", time.Minute); !ok || err != nil {
			t.Fatalf("Acquire after Release = %v, %v", ok, err)
		}
	})

	t.Run("AcquiredKeyExpires", func(t *testing.T) {
		s, c := setup(t)
		key := "once:" + randomID(t)
		if ok, err := s.Acquire(ctx, key, "a", 50*time.Millisecond); !ok || err != nil {
			t.Fatalf("Acquire = %v, %v", ok, err)
		}
		// Stores with their own clock (redis) expire in real time; the
		// others follow the injected clock.
		c.Advance(time.Second)
		deadline := time.Now().Add(3 * time.Second)
		for {
			ok, err := s.Acquire(ctx, key, "b", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("key did not expire")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("TakeReturnsTheValueOnce", func(t *testing.T) {
		s, c := setup(t)
		tk, ok := s.(session.Taker)
		if !ok {
			t.Fatal("the store does not implement session.Taker")
		}
		key := "kv:" + randomID(t)
		if _, found, err := tk.Take(ctx, key); found || err != nil {
			t.Fatalf("Take of an absent key = %v, %v", found, err)
		}
		if ok, err := s.Acquire(ctx, key, "value-1", time.Minute); !ok || err != nil {
			t.Fatalf("Acquire = %v, %v", ok, err)
		}
		if v, found, err := tk.Take(ctx, key); !found || err != nil || v != "value-1" {
			t.Fatalf("Take = %q, %v, %v", v, found, err)
		}
		if _, found, _ := tk.Take(ctx, key); found {
			t.Fatal("a taken key was taken twice")
		}
		// An expired key is not taken (redis expires in real time, the
		// others follow the injected clock).
		expiring := "kv:" + randomID(t)
		if ok, err := s.Acquire(ctx, expiring, "v", 50*time.Millisecond); !ok || err != nil {
			t.Fatalf("Acquire = %v, %v", ok, err)
		}
		c.Advance(time.Second)
		deadline := time.Now().Add(3 * time.Second)
		for {
			ok, err := s.Acquire(ctx, expiring, "w", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("key did not expire")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if v, found, err := tk.Take(ctx, expiring); !found || err != nil || v != "w" {
			t.Fatalf("Take after expiry and re-acquire = %q, %v, %v", v, found, err)
		}
	})

	t.Run("ConcurrentTakeHasOneWinner", func(t *testing.T) {
		s, _ := setup(t)
		tk := s.(session.Taker)
		key := "kv:" + randomID(t)
		if ok, err := s.Acquire(ctx, key, "code", time.Minute); !ok || err != nil {
			t.Fatalf("Acquire = %v, %v", ok, err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		for range 8 {
			wg.Go(func() {
				if _, found, err := tk.Take(ctx, key); err == nil && found {
					mu.Lock()
					winners++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if winners != 1 {
			t.Fatalf("%d callers took the key, want 1", winners)
		}
	})

	// Stores may coalesce concurrent writes (bolt batches them into one
	// transaction): a Create that fails must not fail or lose the others in
	// its batch, and a collision must still have exactly one winner.
	t.Run("ConcurrentCreatesAllLandAndCollisionsHaveOneWinner", func(t *testing.T) {
		s, c := setup(t)
		distinct := make([]session.Record, 24)
		for i := range distinct {
			distinct[i] = record(t, c, "user"+string(rune('a'+i)), "")
		}
		same := record(t, c, "alice", "")
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		for i := range distinct {
			wg.Go(func() {
				if err := s.Create(ctx, distinct[i]); err != nil {
					t.Errorf("Create %d: %v", i, err)
				}
			})
		}
		for i := range 8 {
			wg.Go(func() {
				r := same
				r.Subject = "contender" + string(rune('a'+i))
				switch err := s.Create(ctx, r); {
				case err == nil:
					mu.Lock()
					winners++
					mu.Unlock()
				case !errors.Is(err, session.ErrExists):
					t.Errorf("colliding Create = %v, want nil or ErrExists", err)
				}
			})
		}
		wg.Wait()
		if winners != 1 {
			t.Fatalf("%d colliding Creates succeeded, want 1", winners)
		}
		for _, r := range distinct {
			got, err := s.Get(ctx, r.ID)
			if err != nil || !sameRecord(got, r) {
				t.Fatalf("Get(%s) = %+v, %v; want the created record", r.ID, got, err)
			}
		}
	})

	t.Run("ConcurrentAcquireHasOneWinner", func(t *testing.T) {
		s, _ := setup(t)
		key := "lock:" + randomID(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		for i := range 8 {
			wg.Go(func() {
				ok, err := s.Acquire(ctx, key, "t"+string(rune('a'+i)), time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					winners++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if winners != 1 {
			t.Fatalf("%d winners", winners)
		}
	})

	t.Run("PingAnswersUntilClosed", func(t *testing.T) {
		s, _ := setup(t)
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Ping(ctx); err == nil {
			t.Fatal("Ping after Close succeeded")
		}
	})
}

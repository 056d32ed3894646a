package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// The refresh race: instance B holds a cached copy with the refresh token
// instance A has since rotated (and B has not heard of it, e.g. the pub/sub
// message is still in flight). Load may serve that stale copy; LoadFresh must
// not, and must leave the fresh copy in B's cache.
func TestLoadFreshIgnoresAStaleCachedCopy(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Hour})
	b := NewManager(f.store, Options{Now: f.clock.Now, CacheTTL: time.Hour, HealthInterval: -1})
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	h := f.create(t, "alice", "sid-1")
	if _, err := b.Load(ctx, h, false); err != nil { // B caches the original
		t.Fatal(err)
	}
	s := f.mustLoad(t, h, false)
	s.RefreshToken = secret.New("rt-rotated")
	s.AccessToken = secret.New("at-rotated")
	if err := f.m.Update(ctx, h, s); err != nil {
		t.Fatal(err)
	}
	stale, err := b.Load(ctx, h, false)
	if err != nil || stale.RefreshToken.Reveal() != testRefreshToken {
		t.Fatalf("precondition: B's cache should still hold the old copy (no notifier); got %v", err)
	}
	fresh, err := b.LoadFresh(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.RefreshToken.Reveal() != "rt-rotated" || fresh.AccessToken.Reveal() != "at-rotated" {
		t.Fatal("LoadFresh returned the stale cached tokens")
	}
	again, err := b.Load(ctx, h, false)
	if err != nil || again.RefreshToken.Reveal() != "rt-rotated" {
		t.Fatalf("after LoadFresh, Load still serves the stale copy (err %v)", err)
	}
}

// A session revoked elsewhere: LoadFresh says so and drops the cached copy.
func TestLoadFreshSeesARevocationAndDropsTheCachedCopy(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Hour})
	b := NewManager(f.store, Options{Now: f.clock.Now, CacheTTL: time.Hour, HealthInterval: -1})
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	h := f.create(t, "alice", "")
	if _, err := b.Load(ctx, h, false); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Delete(ctx, h.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.LoadFresh(ctx, h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadFresh = %v, want ErrNotFound", err)
	}
	if _, err := b.Load(ctx, h, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after LoadFresh = %v, want ErrNotFound (cached copy dropped)", err)
	}
}

// LoadFresh keeps the activity this instance saw but had not persisted yet
// (a slide below SlideWriteInterval), so it never shortens the idle expiry.
func TestLoadFreshKeepsUnpersistedActivity(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Hour})
	h := f.create(t, "alice", "")
	f.clock.Advance(time.Minute)
	f.mustLoad(t, h, true) // slid in memory only (< 3m write interval)
	s, err := f.m.LoadFresh(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if !s.LastSeen.Equal(f.clock.Now()) {
		t.Fatalf("LastSeen = %v, want the in-memory slide %v", s.LastSeen, f.clock.Now())
	}
	f.clock.Advance(30*time.Minute - time.Nanosecond)
	f.mustLoad(t, h, false)
}

func TestLoadFreshRejectsWrongKeyZeroHandleAndExpired(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Hour})
	h := f.create(t, "alice", "")
	ctx := context.Background()
	if _, err := f.m.LoadFresh(ctx, Handle{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("zero handle: %v", err)
	}
	forged := h
	forged.raw[handleLen-1] ^= 1 // same id, different key
	if _, err := f.m.LoadFresh(ctx, forged); !errors.Is(err, ErrNotFound) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := f.m.LoadFresh(ctx, h); err != nil {
		t.Fatalf("the real session after a forged LoadFresh: %v", err)
	}
	f.clock.Advance(31 * time.Minute)
	if _, err := f.m.LoadFresh(ctx, h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("idle-expired: %v", err)
	}
}

func TestLoadFreshFailsClosedWhenTheStoreIsDown(t *testing.T) {
	f := newFixture(t, Options{CacheTTL: time.Hour, HealthInterval: 10 * time.Millisecond})
	h := f.create(t, "alice", "")
	f.mustLoad(t, h, false)
	_ = f.store.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := f.m.LoadFresh(context.Background(), h)
		if errors.Is(err, ErrUnavailable) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("LoadFresh = %v after closing the store, want ErrUnavailable", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

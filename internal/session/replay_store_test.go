package session_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/session/storetest"
)

// OnceWithin answers once per id on every store, and again after the id's
// window (memory and bolt: the clock moves; redis keeps real TTLs).
func TestOnceWithinOverEveryStore(t *testing.T) {
	ctx := context.Background()
	for _, sk := range allStores(t) {
		t.Run(sk.name, func(t *testing.T) {
			c := storetest.NewClock()
			m := session.NewManager(sk.open(t, c.Now), session.Options{Now: c.Now, HealthInterval: -1})
			t.Cleanup(func() { _ = m.Close() })
			now := c.Now()
			for i, want := range []bool{true, false, false} {
				if got, err := m.OnceWithin(ctx, "dpop:k:jti-1", now.Add(-5*time.Second), now.Add(65*time.Second)); got != want || err != nil {
					t.Fatalf("call %d: OnceWithin = %v, %v; want %v", i, got, err, want)
				}
			}
			if got, err := m.OnceWithin(ctx, "dpop:k:jti-2", now, now.Add(65*time.Second)); !got || err != nil {
				t.Fatalf("another id: %v, %v", got, err)
			}
			if sk.name == "redis" {
				return
			}
			c.Advance(66 * time.Second)
			now = c.Now()
			if got, err := m.OnceWithin(ctx, "dpop:k:jti-1", now, now.Add(65*time.Second)); !got || err != nil {
				t.Fatalf("after the window: %v, %v", got, err)
			}
		})
	}
}

// Two instances on one redis: a proof id used on one is refused on the
// other (OnceWithin is Once there, not an in-memory set).
func TestOnceWithinIsSharedOnRedis(t *testing.T) {
	ctx := context.Background()
	a, b := twoInstances(t, session.Options{})
	now := time.Now()
	if first, err := a.OnceWithin(ctx, "dpop:k:jti", now, now.Add(time.Minute)); !first || err != nil {
		t.Fatalf("a: %v, %v", first, err)
	}
	if first, err := b.OnceWithin(ctx, "dpop:k:jti", now, now.Add(time.Minute)); first || err != nil {
		t.Fatalf("replay on b: %v, %v", first, err)
	}
}

func openBolt(t *testing.T, path string, now func() time.Time) *session.Manager {
	t.Helper()
	st, err := session.OpenBoltStore(path, session.BoltOptions{Now: now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return session.NewManager(st, session.Options{Now: now, HealthInterval: -1})
}

// A proof id used before a clean restart is still refused after it: Close
// hands the in-memory ids to the next open. Ids from before the restart
// that were never used are accepted (nothing is unknown).
func TestBoltReplayIDsSurviveACleanRestart(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewClock()
	path := filepath.Join(t.TempDir(), "s.db")
	m := openBolt(t, path, c.Now)
	if _, err := m.Create(ctx, userSession("alice", "sid-1")); err != nil {
		t.Fatal(err)
	}
	t0 := c.Now()
	if first, err := m.OnceWithin(ctx, "dpop:k:used", t0, t0.Add(65*time.Second)); !first || err != nil {
		t.Fatalf("first use: %v, %v", first, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Second)
	m = openBolt(t, path, c.Now)
	defer m.Close()
	if first, err := m.OnceWithin(ctx, "dpop:k:used", t0, t0.Add(65*time.Second)); first || err != nil {
		t.Fatalf("replay after a clean restart: %v, %v; want refused", first, err)
	}
	if first, err := m.OnceWithin(ctx, "dpop:k:unused", t0, t0.Add(65*time.Second)); !first || err != nil {
		t.Fatalf("an unused proof from before the restart: %v, %v", first, err)
	}
}

// After a crash (the file as it was while the process ran: no handover) an
// id that could have been presented before the new start is neither
// accepted nor called a replay: ErrUnavailable, so the caller answers 503.
// Ids from after the start are answered normally.
func TestBoltReplayIDsAfterACrashAreUnknown(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewClock()
	dir := t.TempDir()
	m := openBolt(t, filepath.Join(dir, "s.db"), c.Now)
	defer m.Close()
	if _, err := m.Create(ctx, userSession("alice", "sid-1")); err != nil {
		t.Fatal(err)
	}
	t0 := c.Now()
	if first, err := m.OnceWithin(ctx, "dpop:k:used", t0, t0.Add(65*time.Second)); !first || err != nil {
		t.Fatalf("first use: %v, %v", first, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	if err := os.WriteFile(crashed, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Second)
	start := c.Now()
	m2 := openBolt(t, crashed, c.Now)
	defer m2.Close()
	_, err = m2.OnceWithin(ctx, "dpop:k:used", t0, t0.Add(65*time.Second))
	if !errors.Is(err, session.ErrUnavailable) || !errors.Is(err, session.ErrReplayUnknown) {
		t.Fatalf("replay after a crash: %v; want ErrUnavailable (ErrReplayUnknown)", err)
	}
	if first, err := m2.OnceWithin(ctx, "dpop:k:new", start, start.Add(65*time.Second)); !first || err != nil {
		t.Fatalf("a proof made after the start: %v, %v", first, err)
	}
	// A clean close of the crashed-into process hands over completely again.
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	m3 := openBolt(t, crashed, c.Now)
	defer m3.Close()
	if first, err := m3.OnceWithin(ctx, "dpop:k:new", start, start.Add(65*time.Second)); first || err != nil {
		t.Fatalf("replay after the clean restart: %v, %v", first, err)
	}
	if _, err := m3.OnceWithin(ctx, "dpop:k:other", t0, t0.Add(65*time.Second)); err != nil {
		t.Fatalf("after a clean restart nothing is unknown: %v", err)
	}
}

// A new file has no session a proof could have been used with: nothing is
// unknown on the first start.
func TestBoltNewFileKnowsEveryReplayID(t *testing.T) {
	c := storetest.NewClock()
	m := openBolt(t, filepath.Join(t.TempDir(), "s.db"), c.Now)
	defer m.Close()
	now := c.Now()
	if first, err := m.OnceWithin(context.Background(), "dpop:k:a", now.Add(-time.Minute), now.Add(time.Minute)); !first || err != nil {
		t.Fatalf("%v, %v", first, err)
	}
}

// A proof id an earlier Gatehouse wrote with Once (a downgrade, then an
// upgrade within the proof's window) is still refused.
func TestBoltReplayIDsWrittenByOnceCount(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewClock()
	path := filepath.Join(t.TempDir(), "s.db")
	m := openBolt(t, path, c.Now)
	if first, err := m.Once(ctx, "dpop:k:old", 65*time.Second); !first || err != nil {
		t.Fatalf("Once: %v, %v", first, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = openBolt(t, path, c.Now)
	defer m.Close()
	now := c.Now()
	if first, err := m.OnceWithin(ctx, "dpop:k:old", now, now.Add(65*time.Second)); first || err != nil {
		t.Fatalf("replay of an id written by Once: %v, %v; want refused", first, err)
	}
}

package session

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time { return f.t }

// The set answers as a plain map of id -> expiry would, through rotations,
// retentions of different lengths and idle gaps: no id is forgotten before
// its expiry (a replay accepted) and none is refused a second after it.
func TestReplaySetMatchesAMap(t *testing.T) {
	clk := &fakeNow{t: time.Unix(1_700_000_000, 0)}
	s := newReplaySet(clk.now, time.Time{}, 1<<16)
	model := map[string]time.Time{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200_000 {
		switch r := rng.IntN(100); {
		case r < 2:
			clk.t = clk.t.Add(time.Duration(rng.IntN(120)) * time.Second) // idle gaps, longer than a window
		case r < 40:
			clk.t = clk.t.Add(time.Duration(rng.IntN(500)) * time.Millisecond)
		case r == 99:
			s.sweep()
		}
		key := fmt.Sprintf("dpop:k%d:%d", rng.IntN(4), rng.IntN(3000))
		ttl := 65 * time.Second
		if rng.IntN(10) == 0 {
			ttl = time.Duration(1+rng.IntN(200)) * time.Second
		}
		got, err := s.once(key, clk.t, clk.t.Add(ttl))
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		exp, seen := model[key]
		// Expiries are kept in whole seconds, rounded up: an id may be
		// remembered up to a second longer, never shorter.
		grace := seen && !clk.t.Before(exp) && clk.t.Before(exp.Add(time.Second))
		want := !seen || !clk.t.Before(exp)
		if got != want && !grace {
			t.Fatalf("op %d: once(%s) = %v, want %v (expiry %v, now %v)", i, key, got, want, exp, clk.t)
		}
		if got {
			model[key] = clk.t.Add(ttl)
		}
	}
}

// At its bound the set refuses new ids (fail closed) and accepts again once
// old ones have expired.
func TestReplaySetFullFailsClosed(t *testing.T) {
	clk := &fakeNow{t: time.Unix(1_700_000_000, 0)}
	s := newReplaySet(clk.now, time.Time{}, replayShards) // one id per shard
	full := false
	for i := range 1000 {
		first, err := s.once(fmt.Sprint("id-", i), clk.t, clk.t.Add(time.Minute))
		if errors.Is(err, errReplayFull) {
			if first {
				t.Fatal("accepted while full")
			}
			full = true
			break
		}
		if err != nil || !first {
			t.Fatalf("id %d: %v, %v", i, first, err)
		}
	}
	if !full {
		t.Fatal("the bound was never reached")
	}
	clk.t = clk.t.Add(2*time.Minute + time.Second) // two rotations: everything expired and dropped
	for i := range 1000 {
		first, err := s.once(fmt.Sprint("id-", i), clk.t, clk.t.Add(time.Minute))
		if err == nil && first {
			return
		}
	}
	t.Fatal("no id accepted after the old ones expired")
}

// After a start without handover, ids that could have been presented before
// it are unknown; later ones are answered.
func TestReplaySetSinceRefusesEarlierIDs(t *testing.T) {
	clk := &fakeNow{t: time.Unix(1_700_000_000, 0)}
	s := newReplaySet(clk.now, clk.t, 0)
	if _, err := s.once("a", clk.t.Add(-time.Second), clk.t.Add(time.Minute)); !errors.Is(err, ErrReplayUnknown) {
		t.Fatalf("id from before the start: %v, want ErrReplayUnknown", err)
	}
	if first, err := s.once("b", clk.t, clk.t.Add(time.Minute)); !first || err != nil {
		t.Fatalf("id from after the start: %v, %v", first, err)
	}
}

// What close hands over is every live id once, with its latest expiry.
func TestReplaySetCloseHandsOverLiveIDs(t *testing.T) {
	clk := &fakeNow{t: time.Unix(1_700_000_000, 0)}
	s := newReplaySet(clk.now, time.Time{}, 0)
	_, _ = s.once("old", clk.t, clk.t.Add(10*time.Second))
	clk.t = clk.t.Add(70 * time.Second) // a rotation: "old" goes to prev, expired
	_, _ = s.once("old", clk.t, clk.t.Add(65*time.Second))
	_, _ = s.once("new", clk.t, clk.t.Add(65*time.Second))
	clk.t = clk.t.Add(time.Second)
	ids := s.close()
	if len(ids) != 2 {
		t.Fatalf("handed over %d ids, want 2", len(ids))
	}
	for _, id := range ids {
		if id.exp != clk.t.Add(64*time.Second).UnixNano() {
			t.Fatalf("id expires at %v", time.Unix(0, id.exp))
		}
	}
	if _, err := s.once("later", clk.t, clk.t.Add(time.Minute)); !errors.Is(err, errClosed) {
		t.Fatalf("once after close: %v", err)
	}
}

func BenchmarkReplaySetOnce(b *testing.B) {
	s := newReplaySet(time.Now, time.Time{}, 0)
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("dpop:0123456789abcdef0123456789abcdef0123456789a:%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now := time.Now()
		if _, err := s.once(keys[i%len(keys)], now, now.Add(65*time.Second)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

package session

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

var cacheT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testEntry(id string, size int64, loaded time.Time) *entry {
	return &entry{id: id, size: size, loaded: loaded, sess: &Session{ID: id}}
}

func (c *cache) add(id string, size int64, loaded time.Time) *entry {
	e := testEntry(id, size, loaded)
	c.put(id, e, c.generation(id))
	return e
}

// check verifies each shard's bookkeeping: map, ring and byte count agree,
// and the limits hold.
func (c *cache) check(t *testing.T) {
	t.Helper()
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		var n int
		var bytes int64
		for slot, e := range sh.ring {
			if e == nil {
				continue
			}
			n++
			bytes += e.size
			if sh.m[e.id] != e || int(e.slot) != slot {
				t.Errorf("shard %d: ring slot %d holds %s, which the map or the entry places elsewhere", i, slot, e.id)
			}
		}
		if n != len(sh.m) || bytes != sh.bytes || n+len(sh.free) != len(sh.ring) {
			t.Errorf("shard %d: ring %d entries / %d bytes, map %d, bytes %d, free %d of %d", i, n, bytes, len(sh.m), sh.bytes, len(sh.free), len(sh.ring))
		}
		if sh.bytes > sh.maxBytes || (sh.max > 0 && len(sh.m) > sh.max) {
			t.Errorf("shard %d over its limits: %d entries / %d bytes, limits %d / %d", i, len(sh.m), sh.bytes, sh.max, sh.maxBytes)
		}
		sh.mu.RUnlock()
	}
}

func TestCacheShards(t *testing.T) {
	for _, tc := range []struct {
		bytes  int64
		count  int
		shards int
	}{
		{DefaultCacheMemory, 0, maxShards},
		{DefaultCacheMemory, 100_000, maxShards},
		{DefaultCacheMemory, 1000, 2},
		{DefaultCacheMemory, 10, 1},
		{4 << 20, 0, 4},
		{1 << 10, 0, 1},
	} {
		if got := len(newCache(time.Minute, tc.bytes, tc.count).shards); got != tc.shards {
			t.Errorf("newCache(%d bytes, %d sessions): %d shards, want %d", tc.bytes, tc.count, got, tc.shards)
		}
	}
}

// A full cache evicts by CLOCK: an entry used since the hand last passed
// gets a second chance, one not used goes; a stale one goes first.
func TestCacheEvictsUnusedFirst(t *testing.T) {
	c := newCache(time.Minute, 1<<30, 4)
	for _, id := range []string{"a", "b", "c", "d"} {
		c.add(id, 100, cacheT0)
	}
	c.get("a", cacheT0)
	c.get("b", cacheT0)
	c.add("e", 100, cacheT0) // the hand passes a and b (clearing them), takes c
	if c.get("c", cacheT0) != nil || c.get("a", cacheT0) == nil || c.get("b", cacheT0) == nil || c.get("d", cacheT0) == nil {
		t.Fatal("evicted another entry than the first unused one")
	}
	c.check(t)

	c = newCache(time.Minute, 1<<30, 3)
	c.add("old", 100, cacheT0.Add(-2*time.Minute)) // stale though referenced
	c.shards[0].m["old"].ref.Store(true)
	c.add("x", 100, cacheT0)
	c.add("y", 100, cacheT0)
	c.get("x", cacheT0)
	c.get("y", cacheT0)
	c.add("z", 100, cacheT0)
	if _, ok := c.shards[0].m["old"]; ok || c.len() != 3 {
		t.Fatalf("a stale entry outlived fresh ones: %v", c.shards[0].m)
	}
	c.check(t)
}

func TestCacheMemoryBound(t *testing.T) {
	c := newCache(time.Minute, 10_000, 0)
	for i := range 1000 {
		c.add(fmt.Sprint(i), int64(100+i%400), cacheT0)
		if i%97 == 0 {
			c.check(t)
		}
	}
	n, bytes := c.stats()
	if bytes > 10_000 || n == 0 {
		t.Fatalf("%d entries, %d bytes for a 10,000-byte cache", n, bytes)
	}
	// An entry larger than the cache is not cached, and evicts nothing.
	c.add("huge", 20_000, cacheT0)
	if c.get("huge", cacheT0) != nil || c.len() != n {
		t.Fatal("an entry larger than the cache was cached or evicted others")
	}
	// Replacing an entry counts its size once.
	c.add("999", 50, cacheT0)
	c.add("999", 60, cacheT0)
	c.check(t)
	c.clear()
	if n, bytes := c.stats(); n != 0 || bytes != 0 {
		t.Fatalf("after clear: %d entries, %d bytes", n, bytes)
	}
	c.check(t)
}

// Slots freed by drops are reused: the ring does not grow with turnover.
func TestCacheReusesSlots(t *testing.T) {
	c := newCache(time.Minute, 1<<30, 0)
	for i := range 10_000 {
		id := fmt.Sprint(i % 50)
		c.add(id, 100, cacheT0)
		if i%3 == 0 {
			c.drop(id)
		}
	}
	ring := 0
	for i := range c.shards {
		ring += len(c.shards[i].ring)
	}
	if ring > 50 {
		t.Fatalf("ring grew to %d slots for 50 ids", ring)
	}
	c.check(t)
}

// The revocation race, from the attacker's side: a load that read the
// store before the session was dropped (revoked) must not cache what it
// read, whichever shard the session is in, and a clear spoils every load
// in flight.
func TestCacheDropSpoilsLoadsInFlight(t *testing.T) {
	c := newCache(time.Minute, DefaultCacheMemory, 0)
	for i := range 200 {
		id := fmt.Sprint("victim-", i)
		gen := c.generation(id) // the load starts, reads the store...
		c.drop(id)              // ...the session is revoked...
		c.put(id, testEntry(id, 100, cacheT0), gen)
		if c.get(id, cacheT0) != nil {
			t.Fatalf("%s: a load begun before its revocation was cached", id)
		}
	}
	gens := make(map[string]uint64)
	for i := range 200 {
		id := fmt.Sprint("s-", i)
		gens[id] = c.generation(id)
	}
	c.clear()
	for id, gen := range gens {
		c.put(id, testEntry(id, 100, cacheT0), gen)
		if c.get(id, cacheT0) != nil {
			t.Fatalf("%s: a load begun before a clear was cached", id)
		}
	}
}

func TestCacheDisabledAndStale(t *testing.T) {
	c := newCache(-1, DefaultCacheMemory, 0)
	c.add("a", 100, cacheT0)
	if c.get("a", cacheT0) != nil {
		t.Fatal("a disabled cache served an entry")
	}
	c = newCache(time.Minute, DefaultCacheMemory, 0)
	c.add("a", 100, cacheT0)
	for _, now := range []time.Time{cacheT0.Add(time.Minute), cacheT0.Add(-time.Second)} {
		if c.get("a", now) != nil {
			t.Fatalf("served at %v an entry loaded at %v with a 1m TTL", now, cacheT0)
		}
	}
}

// Concurrent gets, puts, drops and clears keep every shard consistent
// (run with -race).
func TestCacheConcurrent(t *testing.T) {
	c := newCache(time.Minute, 8<<20, 2000)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for range 20_000 {
				id := fmt.Sprint(rnd.IntN(5000))
				switch r := rnd.IntN(100); {
				case r < 60:
					c.get(id, cacheT0)
				case r < 95:
					c.add(id, int64(500+rnd.IntN(3000)), cacheT0)
				case r < 99:
					c.drop(id)
				default:
					c.clear()
				}
			}
		})
	}
	wg.Wait()
	c.check(t)
}

// BenchmarkCacheChurn: 100,000 sessions in random order through a cache of
// 10,000, from 32 goroutines. Nine lookups in ten miss and insert, and
// every insertion into the full cache evicts.
func BenchmarkCacheChurn(b *testing.B) {
	benchCache(b, newCache(time.Hour, 1<<40, 10_000), 100_000, false)
}

// BenchmarkCacheHits: 100,000 cached sessions looked up in random order
// from 32 goroutines.
func BenchmarkCacheHits(b *testing.B) {
	benchCache(b, newCache(time.Hour, 1<<40, 0), 100_000, true)
}

func benchCache(b *testing.B, c *cache, n int, fill bool) {
	ids := make([]string, n)
	entries := make([]*entry, n)
	for i := range ids {
		ids[i] = publicID([]byte(fmt.Sprint(i)))
		entries[i] = testEntry(ids[i], 1000, cacheT0)
		if fill {
			c.put(ids[i], entries[i], c.generation(ids[i]))
		}
	}
	var seed sync.Mutex
	next := uint64(0)
	b.ReportAllocs()
	b.SetParallelism(16) // 32 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		seed.Lock()
		next++
		rnd := rand.New(rand.NewPCG(next, 1))
		seed.Unlock()
		for pb.Next() {
			i := rnd.IntN(n)
			if c.get(ids[i], cacheT0) == nil {
				c.put(ids[i], entries[i], c.generation(ids[i]))
			}
		}
	})
}

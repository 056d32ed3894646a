package session

import (
	"crypto/subtle"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// cache holds decrypted sessions for a short time so that most requests do
// not touch the store. Every invalidation bumps its shard's generation; a
// load that started before an invalidation does not insert what it read,
// so a revocation can never be undone by a racing load.
//
// It is split into shards by session id, each with its own lock, so that
// concurrent requests for different sessions seldom wait for each other. A
// shard evicts by CLOCK (second chance): a hit only sets the entry's
// reference bit, under the read lock; an insertion into a full shard
// sweeps the hand past referenced entries, clearing their bits, to the
// first unreferenced or stale one. Both are O(1) amortised.
//
// The cache is bounded by memory (each entry's estimated size) and,
// optionally, by count; each shard holds its share of both.
type cache struct {
	ttl    time.Duration // <= 0 disables the cache
	seed   maphash.Seed
	shards []cacheShard
}

type cacheShard struct {
	gen atomic.Uint64 // changed only with mu held

	mu       sync.RWMutex
	m        map[string]*entry
	ring     []*entry // CLOCK slots; nil: free
	free     []int32  // free slots in ring
	hand     int
	bytes    int64 // sum of the entries' sizes
	maxBytes int64
	max      int // 0: no count limit

	_ [64]byte // keep shards' locks off each other's cache lines
}

type entry struct {
	key    [keyLen]byte
	sess   *Session  // as read from the store; never modified
	loaded time.Time // when sess was read from the store

	lastSeen  atomic.Int64 // unix ns: latest request this instance has seen
	persisted atomic.Int64 // unix ns: LastSeen as stored

	id   string      // the map key, to forget the entry on eviction
	size int64       // estimated bytes the entry keeps alive
	ref  atomic.Bool // CLOCK reference bit: used since the hand last passed
	slot int32       // index in its shard's ring; guarded by the shard's mu
}

// maxShards: with 64, 32 concurrent requests rarely share a lock.
const maxShards = 64

// minShardBytes and minShardCount keep shards large enough that one
// unlucky shard does not evict while the cache as a whole has room.
const (
	minShardBytes = 1 << 20
	minShardCount = 256
)

func newCache(ttl time.Duration, maxBytes int64, maxCount int) *cache {
	n := maxShards
	for n > 1 && (maxBytes/int64(n) < minShardBytes || (maxCount > 0 && maxCount/n < minShardCount)) {
		n /= 2
	}
	c := &cache{ttl: ttl, seed: maphash.MakeSeed(), shards: make([]cacheShard, n)}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.m = make(map[string]*entry)
		// Shares rounded up: the whole holds at least what was asked.
		sh.maxBytes = (maxBytes + int64(n) - 1) / int64(n)
		if maxCount > 0 {
			sh.max = (maxCount + n - 1) / n
		}
	}
	return c
}

func (c *cache) shard(id string) *cacheShard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[maphash.String(c.seed, id)&uint64(len(c.shards)-1)]
}

func newEntry(h Handle, s *Session, loaded time.Time) *entry {
	e := &entry{sess: s, loaded: loaded, id: h.ID(), size: int64(entrySize(s))}
	copy(e.key[:], h.key())
	e.lastSeen.Store(s.LastSeen.UnixNano())
	e.persisted.Store(s.LastSeen.UnixNano())
	return e
}

// matches reports whether h carries the key the entry was decrypted with.
// The id already matches (it is the map key); the key check keeps the cache
// from being weaker than decryption.
func (e *entry) matches(h Handle) bool {
	return subtle.ConstantTimeCompare(e.key[:], h.key()) == 1
}

// generation is what put is given back: taken before a store read, it
// keeps the read from being cached should session id be invalidated while
// it runs.
func (c *cache) generation(id string) uint64 { return c.shard(id).gen.Load() }

func (c *cache) stale(e *entry, now time.Time) bool {
	return now.Sub(e.loaded) >= c.ttl || now.Before(e.loaded)
}

// get returns a fresh entry or nil.
func (c *cache) get(id string, now time.Time) *entry {
	if c.ttl <= 0 {
		return nil
	}
	sh := c.shard(id)
	sh.mu.RLock()
	e := sh.m[id]
	sh.mu.RUnlock()
	if e == nil || c.stale(e, now) {
		return nil
	}
	if !e.ref.Load() { // most hits find it set: no write to a shared line
		e.ref.Store(true)
	}
	return e
}

// put inserts e unless id's shard was invalidated since gen was read.
func (c *cache) put(id string, e *entry, gen uint64) {
	if c.ttl <= 0 {
		return
	}
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen.Load() != gen {
		return
	}
	if old := sh.m[id]; old != nil {
		sh.removeLocked(old)
	}
	if e.size > sh.maxBytes {
		return // larger than the shard: not worth evicting everything for
	}
	for len(sh.m) > 0 && ((sh.max > 0 && len(sh.m) >= sh.max) || sh.bytes+e.size > sh.maxBytes) {
		sh.evictLocked(c, e.loaded)
	}
	if n := len(sh.free); n > 0 {
		e.slot = sh.free[n-1]
		sh.free = sh.free[:n-1]
		sh.ring[e.slot] = e
	} else {
		e.slot = int32(len(sh.ring))
		sh.ring = append(sh.ring, e)
	}
	sh.m[id] = e
	sh.bytes += e.size
}

// evictLocked removes one entry: the first stale or unreferenced one from
// the hand on, clearing the reference bits it passes. The shard holds at
// least one entry, so this ends within two turns of the ring.
func (sh *cacheShard) evictLocked(c *cache, now time.Time) {
	for {
		if sh.hand >= len(sh.ring) {
			sh.hand = 0
		}
		e := sh.ring[sh.hand]
		sh.hand++
		if e == nil {
			continue
		}
		if e.ref.Load() && !c.stale(e, now) {
			e.ref.Store(false)
			continue
		}
		sh.removeLocked(e)
		return
	}
}

func (sh *cacheShard) removeLocked(e *entry) {
	delete(sh.m, e.id)
	sh.ring[e.slot] = nil
	sh.free = append(sh.free, e.slot)
	sh.bytes -= e.size
}

func (c *cache) drop(ids ...string) {
	for _, id := range ids {
		sh := c.shard(id)
		sh.mu.Lock()
		sh.gen.Add(1)
		if e := sh.m[id]; e != nil {
			sh.removeLocked(e)
		}
		sh.mu.Unlock()
	}
}

func (c *cache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen.Add(1)
		clear(sh.m)
		clear(sh.ring)
		sh.ring, sh.free, sh.hand, sh.bytes = sh.ring[:0], sh.free[:0], 0, 0
		sh.mu.Unlock()
	}
}

// stats returns the number of cached sessions and their estimated bytes.
func (c *cache) stats() (n int, bytes int64) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		bytes += sh.bytes
		sh.mu.RUnlock()
	}
	return n, bytes
}

func (c *cache) len() int {
	n, _ := c.stats()
	return n
}

// Estimated heap bytes of a cached session, fitted to measurements
// (runtime.MemStats.HeapAlloc over 20,000 cached sessions): the entry, the
// Session and the cache's map slot and ring slot, plus the strings and
// claims the session holds. A claim costs its map slot and the boxing of
// its value besides its text.
const (
	entryOverhead = 600
	claimOverhead = 80
	valueOverhead = 16
)

func entrySize(s *Session) int {
	n := entryOverhead + len(s.ID) + len(s.Subject) + len(s.IdPSessionID) +
		len(s.AccessToken.Reveal()) + len(s.RefreshToken.Reveal()) + len(s.IDToken.Reveal()) +
		len(s.TokenType) + len(s.Scope) + len(s.ACR)
	for _, a := range s.AMR {
		n += valueOverhead + len(a)
	}
	if s.Native != nil {
		n += 64 + len(s.Native.ClientID) + len(s.Native.JKT)
		for _, sc := range s.Native.Scopes {
			n += valueOverhead + len(sc)
		}
	}
	return n + claimsSize(s.Claims, 0)
}

// claimsSize estimates a claims map's bytes. Depth bounds the walk (claims
// come from the IdP, but through encoding/json, which bounds them too).
func claimsSize(m map[string]any, depth int) int {
	n := 48
	for k, v := range m {
		n += claimOverhead + len(k) + valueSize(v, depth+1)
	}
	return n
}

func valueSize(v any, depth int) int {
	if depth > maxDepth {
		return valueOverhead
	}
	switch v := v.(type) {
	case string:
		return valueOverhead + len(v)
	case map[string]any:
		return claimsSize(v, depth)
	case []any:
		n := 24 + valueOverhead*len(v)
		for _, x := range v {
			n += valueSize(x, depth+1)
		}
		return n
	default: // float64, bool, nil: at most a boxed word
		return 8
	}
}

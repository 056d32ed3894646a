package session

import (
	"crypto/subtle"
	"sync"
	"sync/atomic"
	"time"
)

// cache holds decrypted sessions for a short time so that most requests do
// not touch the store. Every invalidation bumps a generation; a load that
// started before an invalidation does not insert what it read, so a
// revocation can never be undone by a racing load.
type cache struct {
	ttl time.Duration // <= 0 disables the cache
	max int

	mu  sync.RWMutex
	m   map[string]*entry
	gen atomic.Uint64 // changed only with mu held
}

type entry struct {
	key    [keyLen]byte
	sess   *Session  // as read from the store; never modified
	loaded time.Time // when sess was read from the store

	lastSeen  atomic.Int64 // unix ns: latest request this instance has seen
	persisted atomic.Int64 // unix ns: LastSeen as stored
}

func newCache(ttl time.Duration, max int) *cache {
	return &cache{ttl: ttl, max: max, m: make(map[string]*entry)}
}

func newEntry(h Handle, s *Session, loaded time.Time) *entry {
	e := &entry{sess: s, loaded: loaded}
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

func (c *cache) generation() uint64 { return c.gen.Load() }

// get returns a fresh entry or nil.
func (c *cache) get(id string, now time.Time) *entry {
	if c.ttl <= 0 {
		return nil
	}
	c.mu.RLock()
	e := c.m[id]
	c.mu.RUnlock()
	if e == nil || now.Sub(e.loaded) >= c.ttl || now.Before(e.loaded) {
		return nil
	}
	return e
}

// put inserts e unless the cache was invalidated since gen was read.
func (c *cache) put(id string, e *entry, gen uint64) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if len(c.m) >= c.max {
		c.evictLocked(e.loaded)
	}
	c.m[id] = e
}

// evictLocked drops stale entries, then arbitrary ones, until an eighth of
// the capacity is free.
func (c *cache) evictLocked(now time.Time) {
	target := c.max - c.max/8 - 1
	for id, e := range c.m {
		if now.Sub(e.loaded) >= c.ttl {
			delete(c.m, id)
		}
	}
	for id := range c.m {
		if len(c.m) <= target {
			break
		}
		delete(c.m, id)
	}
}

func (c *cache) drop(ids ...string) {
	c.mu.Lock()
	c.gen.Add(1)
	for _, id := range ids {
		delete(c.m, id)
	}
	c.mu.Unlock()
}

func (c *cache) clear() {
	c.mu.Lock()
	c.gen.Add(1)
	clear(c.m)
	c.mu.Unlock()
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// grantCache holds opened grants for a short time so that an agent's
// requests do not read the grant store each time. It follows the session
// cache (internal/session/cache.go): entries are never modified once
// inserted, every invalidation bumps a generation, and a read that started
// before an invalidation does not insert what it read, so a revocation can
// never be undone by a racing read. Only grants that opened are inserted:
// an unknown or forged token costs a store read, never a cache slot.
type grantCache struct {
	ttl time.Duration // <= 0 disables the cache
	max int

	mu        sync.RWMutex
	m         map[string]*grantEntry // by grant id
	bySession map[string][]string    // grant ids by delegating session id
	gen       atomic.Uint64          // changed only with mu held
	off       bool                   // set by disable; with mu held
}

// grantEntry is what the store held, opened: the grant and the delegating
// session's handle (which the session cache holds too). The token's key is
// not kept, only check, a hash of it: a memory dump of the cache yields no
// agent token.
type grantEntry struct {
	check           [sha256.Size]byte // keyCheck of the token that opened the grant
	grant           Grant             // never modified
	routes, methods []string          // grant.Routes(), grant.Methods(): not per request
	handle          session.Handle
	loaded          time.Time // when the grant was read from the store
}

const keyCheckLabel = "gatehouse agent key check"

// DefaultGrantCacheSize caps the cached grants when Options.CacheSize is not
// set: an entry is a grant and a handle, well under 1 KB, so 10 000 of them
// stay within a few MB.
const DefaultGrantCacheSize = 10_000

// keyCheck is what the cache compares a token's key with: SHA-256 over a
// label and the key, without allocating.
func keyCheck(t *Token) [sha256.Size]byte {
	var b [len(keyCheckLabel) + keyLen]byte
	copy(b[:], keyCheckLabel)
	copy(b[len(keyCheckLabel):], t.key())
	return sha256.Sum256(b[:])
}

// matches reports, in constant time, whether the token with key check sum
// opened the entry's grant. The id already matches (it is the map key); the
// key check keeps the cache from being weaker than opening the grant.
func (e *grantEntry) matches(sum *[sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(e.check[:], sum[:]) == 1
}

func newGrantCache(ttl time.Duration, max int) *grantCache {
	return &grantCache{ttl: ttl, max: max, m: make(map[string]*grantEntry), bySession: make(map[string][]string)}
}

func (c *grantCache) generation() uint64 { return c.gen.Load() }

// get returns a fresh entry or nil.
func (c *grantCache) get(id string, now time.Time) *grantEntry {
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
func (c *grantCache) put(e *grantEntry, gen uint64) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off || c.gen.Load() != gen {
		return
	}
	id, sid := e.grant.ID, e.grant.SessionID
	if _, ok := c.m[id]; !ok {
		if len(c.m) >= c.max {
			c.evictLocked(e.loaded)
		}
		c.bySession[sid] = append(c.bySession[sid], id)
	}
	c.m[id] = e
}

// evictLocked drops stale entries, then arbitrary ones, until an eighth of
// the capacity is free.
func (c *grantCache) evictLocked(now time.Time) {
	target := c.max - c.max/8 - 1
	for id, e := range c.m {
		if now.Sub(e.loaded) >= c.ttl {
			c.deleteLocked(id)
		}
	}
	for id := range c.m {
		if len(c.m) <= target {
			break
		}
		c.deleteLocked(id)
	}
}

func (c *grantCache) deleteLocked(id string) {
	e, ok := c.m[id]
	if !ok {
		return
	}
	delete(c.m, id)
	sid := e.grant.SessionID
	ids := c.bySession[sid]
	for i, x := range ids {
		if x == id {
			ids[i] = ids[len(ids)-1]
			ids = ids[:len(ids)-1]
			break
		}
	}
	if len(ids) == 0 {
		delete(c.bySession, sid)
	} else {
		c.bySession[sid] = ids
	}
}

// drop forgets grants ids.
func (c *grantCache) drop(ids ...string) {
	c.mu.Lock()
	c.gen.Add(1)
	for _, id := range ids {
		c.deleteLocked(id)
	}
	c.mu.Unlock()
}

// dropSession forgets every grant of session sessionID.
func (c *grantCache) dropSession(sessionID string) {
	c.mu.Lock()
	c.gen.Add(1)
	for _, id := range c.bySession[sessionID] {
		delete(c.m, id)
	}
	delete(c.bySession, sessionID)
	c.mu.Unlock()
}

func (c *grantCache) clear() {
	c.mu.Lock()
	c.gen.Add(1)
	clear(c.m)
	clear(c.bySession)
	c.mu.Unlock()
}

// disable empties the cache for good: once nothing tells it of
// revocations (the broker closed its subscription), it must hold nothing.
func (c *grantCache) disable() {
	c.mu.Lock()
	c.off = true
	c.gen.Add(1)
	clear(c.m)
	clear(c.bySession)
	c.mu.Unlock()
}

func (c *grantCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// Leases let a busy caller skip the Redis round trip: one script call may
// take up to n tokens of the shared budget at once, and the instance spends
// them locally until they run out or the lease ends. A lease is charged in
// Redis as if all its tokens were spent at the moment it ends (the TAT is
// moved to at least then before the n intervals are added), so spending
// them at any moment of the lease admits nothing that Redis, asked at that
// moment, would have refused. Tokens left when it ends are lost. Both make
// leasing err toward refusing only. See docs/ratelimits.md.
const (
	// leaseMinBurst: a policy with a smaller burst never leases, every
	// request asks Redis (a login limit of 10 per minute stays exact).
	leaseMinBurst = 20
	// leaseShare: a lease holds at most burst/leaseShare tokens, and its
	// charge for the time it may last is at most as much again.
	leaseShare = 20
	// leaseMaxHold is the longest a lease lasts, and the longest a
	// refusal is repeated locally without asking Redis again.
	leaseMaxHold = 100 * time.Millisecond
	// leaseIdle: an entry untouched this long has no lease, no cached
	// refusal and would start again at one token: dropping it loses nothing.
	leaseIdle = 2 * leaseMaxHold
)

// leasePolicy is how one policy leases, fixed at NewRedis.
type leasePolicy struct {
	// max is the largest lease (1: no leasing).
	max int
	// hold is how long a lease lasts: leaseMaxHold, or less when the
	// bucket refills in less than leaseShare × leaseMaxHold, so that its
	// charge for the time it lasts stays within burst/leaseShare.
	hold time.Duration
}

func newLeasePolicy(burst int, intervalUS int64) leasePolicy {
	if burst < leaseMinBurst {
		return leasePolicy{max: 1}
	}
	hold := min(leaseMaxHold, time.Duration(int64(burst)*intervalUS/leaseShare)*time.Microsecond)
	return leasePolicy{max: max(burst/leaseShare, 1), hold: hold}
}

// lease is one caller's and policy's local state: the unspent tokens of
// its lease, what Redis answered last (for the headers), a refusal being
// repeated, and the size of the next lease.
type lease struct {
	key bucketKey
	// tokens are leased and unspent; void from expires on.
	tokens  int
	expires time.Time
	// size is how many tokens the current lease took (the request that
	// fetched it spent one of them); 0 before the first call.
	size int
	// fetching is true while one request fetches the next lease; others
	// meanwhile ask Redis for their own token only, so concurrent misses
	// never take several leases that would then go to waste.
	fetching bool
	// remaining and resetAt are Redis's last answer.
	remaining int
	resetAt   time.Time
	// refusedUntil: Redis refused, and will refuse until at least then.
	refusedUntil time.Time
	allowAt      time.Time
	// last is the latest request, for the idle eviction.
	last       time.Time
	prev, next *lease
}

// leaseTable holds the leases: sharded like the in-process limiter, each
// shard in least-recently-used order, half of the shards for callers with
// an identity and half for anonymous ones.
type leaseTable struct {
	seed     maphash.Seed
	perShard int
	c        *Counters
	shards   [2 * numShards]leaseShard
}

type leaseShard struct {
	mu   sync.Mutex
	m    map[bucketKey]*lease
	head lease // sentinel: head.next is the newest, head.prev the oldest
	_    [64]byte
}

func newLeaseTable(maxEntries int, c *Counters) *leaseTable {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	maxEntries = max(maxEntries, 2*numShards)
	t := &leaseTable{seed: maphash.MakeSeed(), perShard: maxEntries / (2 * numShards), c: c}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.m = make(map[bucketKey]*lease)
		sh.head.next, sh.head.prev = &sh.head, &sh.head
	}
	return t
}

func (t *leaseTable) shard(req Request) *leaseShard {
	i := maphash.String(t.seed, req.Caller) & (numShards - 1)
	if req.Anonymous {
		i += numShards
	}
	return &t.shards[i]
}

// get returns the entry for k, created if missing, as the newest. The
// shard must be locked.
func (t *leaseTable) get(sh *leaseShard, k bucketKey, now time.Time) *lease {
	e := sh.m[k]
	if e != nil {
		if sh.head.next != e {
			sh.unlink(e)
			sh.pushFront(e)
		}
		e.last = now
		return e
	}
	// Drop idle entries at the old end (two at most, to keep an insert
	// cheap), then the least recently used one if the shard is still full:
	// a dropped lease's tokens are lost, which only ever refuses.
	for range 2 {
		old := sh.head.prev
		if old == &sh.head || now.Sub(old.last) < leaseIdle {
			break
		}
		sh.drop(old)
		if t.c != nil {
			t.c.evictIdle.Add(1)
		}
	}
	if len(sh.m) >= t.perShard {
		sh.drop(sh.head.prev)
		if t.c != nil {
			t.c.evictCapacity.Add(1)
		}
	}
	e = &lease{key: k, last: now}
	sh.m[k] = e
	sh.pushFront(e)
	return e
}

// nextWant is the size of the lease to fetch after the current one: twice
// as many when the caller spent it all before it ended, about what it
// spent when it ended with tokens left, one token again after a pause.
func (e *lease) nextWant(now time.Time, lp leasePolicy) int {
	switch {
	case e.size == 0:
		return 1
	case now.Before(e.expires):
		return min(2*e.size, lp.max)
	case now.Sub(e.expires) > lp.hold:
		return 1
	}
	used := e.size - e.tokens
	return min(max(used+used/4, 1), lp.max)
}

func (sh *leaseShard) unlink(e *lease) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (sh *leaseShard) pushFront(e *lease) {
	e.prev, e.next = &sh.head, sh.head.next
	sh.head.next.prev = e
	sh.head.next = e
}

func (sh *leaseShard) drop(e *lease) {
	sh.unlink(e)
	delete(sh.m, e.key)
}

// len is the number of entries held (tests).
func (t *leaseTable) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

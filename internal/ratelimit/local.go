package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// numShards splits the in-process tables so that callers on different
// shards do not contend for one lock. A power of two, for a cheap modulo.
const numShards = 64

// DefaultMaxEntries bounds the in-process limiter when LocalOptions.MaxEntries
// is 0: about 250 bytes each, so roughly 25 MB at most.
const DefaultMaxEntries = 100_000

// LocalOptions configure a Local limiter.
type LocalOptions struct {
	// MaxEntries caps the number of caller+route budgets held (default
	// DefaultMaxEntries; at least 128). Half of it is for anonymous callers and
	// half for callers with an identity, so a flood of distinct client
	// addresses can never push out a session's budget. When a half is full, its
	// least recently used budget is dropped and that caller starts afresh: a
	// full table degrades one idle caller's limit rather than refusing everyone.
	MaxEntries int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Counters, when not nil, count decisions and evictions.
	Counters *Counters
}

// Local is the in-process limiter (one budget per caller and policy per
// instance): a token bucket from golang.org/x/time/rate per caller and
// policy, in a sharded table with least-recently-used order.
//
// Memory is bounded twice: an entry idle long enough for its bucket to be
// full again behaves exactly like a missing one, so such entries are dropped
// as new callers arrive (losslessly); and the table never holds more than
// MaxEntries, dropping the least recently used entry when full. Allow for an
// existing caller does not allocate.
type Local struct {
	p        *Policies
	now      func() time.Time
	c        *Counters
	seed     maphash.Seed
	perShard int
	// shards[:numShards] hold callers with an identity, shards[numShards:]
	// anonymous ones.
	shards [2 * numShards]localShard
}

type bucketKey struct {
	caller string
	policy int
}

type entry struct {
	key        bucketKey
	lim        *rate.Limiter
	last       time.Time
	full       time.Duration // idle this long = a fresh bucket
	prev, next *entry
}

type localShard struct {
	mu   sync.Mutex
	m    map[bucketKey]*entry
	head entry // sentinel of the LRU ring: head.next is the newest, head.prev the oldest
	_    [64]byte
}

// NewLocal builds an in-process limiter for p.
func NewLocal(p *Policies, opts LocalOptions) *Local {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	opts.MaxEntries = max(opts.MaxEntries, 2*numShards)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Local{p: p, now: opts.Now, c: opts.Counters, seed: maphash.MakeSeed(), perShard: opts.MaxEntries / (2 * numShards)}
	for i := range l.shards {
		sh := &l.shards[i]
		sh.m = make(map[bucketKey]*entry)
		sh.head.next, sh.head.prev = &sh.head, &sh.head
	}
	return l
}

// Allow takes one request from req.Caller's budget for req.Route's policy. It
// never fails; the error is there for the Limiter interface.
func (l *Local) Allow(_ context.Context, req Request) (Decision, error) {
	d := l.decide(req, l.now())
	r := ResultAllowed
	if !d.Allowed {
		r = ResultLimited
	}
	l.c.count(l.p.label(req.Route), r)
	return d, nil
}

func (l *Local) decide(req Request, now time.Time) Decision {
	pi := l.p.policyFor(req.Route)
	pol := &l.p.policies[pi]
	k := bucketKey{caller: req.Caller, policy: pi}
	i := maphash.String(l.seed, req.Caller) & (numShards - 1)
	if req.Anonymous {
		i += numShards
	}
	sh := &l.shards[i]

	sh.mu.Lock()
	e := sh.m[k]
	if e == nil {
		e = l.add(sh, k, pol, now)
	} else {
		sh.unlink(e)
		sh.pushFront(e)
	}
	e.last = now
	ok := e.lim.AllowN(now, 1)
	tokens := e.lim.TokensAt(now)
	sh.mu.Unlock()

	tokens = max(tokens, 0)
	reset := time.Duration((float64(pol.burst) - tokens) * float64(pol.per) / float64(pol.requests))
	if !ok {
		retry := time.Duration((1 - tokens) * float64(pol.per) / float64(pol.requests))
		return pol.decision(false, 0, reset, max(retry, time.Nanosecond))
	}
	return pol.decision(true, int(tokens), reset, 0)
}

// add inserts a fresh bucket, first dropping idle entries at the old end
// (two at most, to keep each insert cheap) and, when the shard is still
// full, the least recently used one.
func (l *Local) add(sh *localShard, k bucketKey, pol *policy, now time.Time) *entry {
	for range 2 {
		old := sh.head.prev
		if old == &sh.head || now.Sub(old.last) < old.full {
			break
		}
		sh.drop(old)
		if l.c != nil {
			l.c.evictIdle.Add(1)
		}
	}
	if len(sh.m) >= l.perShard {
		sh.drop(sh.head.prev)
		if l.c != nil {
			l.c.evictCapacity.Add(1)
		}
	}
	e := &entry{
		key:  k,
		lim:  rate.NewLimiter(rate.Limit(float64(pol.requests)/pol.per.Seconds()), pol.burst),
		full: pol.full,
	}
	sh.m[k] = e
	sh.pushFront(e)
	return e
}

func (sh *localShard) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (sh *localShard) pushFront(e *entry) {
	e.prev, e.next = &sh.head, sh.head.next
	sh.head.next.prev = e
	sh.head.next = e
}

func (sh *localShard) drop(e *entry) {
	sh.unlink(e)
	delete(sh.m, e.key)
}

// Len is the number of budgets held.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// DefaultMaxCallers bounds the concurrency table when ConcurrencyOptions.MaxCallers is 0.
const DefaultMaxCallers = 100_000

// ConcurrencyOptions configure a Concurrency cap.
type ConcurrencyOptions struct {
	// MaxCallers caps how many distinct callers may have requests in flight at
	// once (default DefaultMaxCallers; at least 128), half for anonymous
	// callers and half for callers with an identity, so that anonymous
	// traffic cannot crowd out sessions. A new caller beyond its half is
	// refused: a slot cannot be evicted without losing the count it guards,
	// and reaching the cap means the instance is saturated anyway.
	MaxCallers int
	// Counters, when not nil, count refusals.
	Counters *Counters
}

// Concurrency caps requests in flight per caller (rate_limits.concurrent_per_caller).
// It is per instance: with N instances a caller may have up to N times the cap
// in flight, which is what a concurrency cap protects (this instance's
// goroutines, connections and upstream slots). Memory is one map entry per
// caller with requests in flight; the entry is removed with its last release.
type Concurrency struct {
	p        *Policies
	c        *Counters
	seed     maphash.Seed
	perShard int
	shards   [2 * numShards]concShard // identified, then anonymous callers
}

type concShard struct {
	mu sync.Mutex
	m  map[string]int32
	_  [64]byte
}

// NewConcurrency builds the cap for p (p's ConcurrentPerCaller; 0 admits everything).
func NewConcurrency(p *Policies, opts ConcurrencyOptions) *Concurrency {
	if opts.MaxCallers <= 0 {
		opts.MaxCallers = DefaultMaxCallers
	}
	opts.MaxCallers = max(opts.MaxCallers, 2*numShards)
	c := &Concurrency{p: p, c: opts.Counters, seed: maphash.MakeSeed(), perShard: opts.MaxCallers / (2 * numShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]int32)
	}
	return c
}

// Acquire takes one in-flight slot for req.Caller. When the Decision is
// Allowed the integrator must call Release(req) exactly once when the
// request has finished (defer it); when it is not, nothing was taken and the
// request is refused with WriteRefusal.
func (c *Concurrency) Acquire(req Request) Decision {
	limit := c.p.concurrent
	if limit == 0 {
		return Decision{Allowed: true}
	}
	sh := c.shard(req)
	sh.mu.Lock()
	n, held := sh.m[req.Caller]
	ok := int(n) < limit && (held || len(sh.m) < c.perShard)
	if ok {
		n++
		sh.m[req.Caller] = n
	}
	sh.mu.Unlock()
	d := Decision{
		Allowed: ok, Policy: ConcurrencyPolicy, Limit: limit, Remaining: max(limit-int(n), 0),
		policyField: c.p.concurrentField, quoted: `"` + ConcurrencyPolicy + `"`,
	}
	if !ok {
		d.Remaining = 0
		d.RetryAfter = time.Second
		c.c.count(c.p.label(req.Route), ResultConcurrency)
	}
	return d
}

// Release returns the slot taken by an allowed Acquire. Releasing a caller
// with nothing in flight does nothing (the count never goes negative).
func (c *Concurrency) Release(req Request) {
	if c.p.concurrent == 0 {
		return
	}
	sh := c.shard(req)
	sh.mu.Lock()
	switch n := sh.m[req.Caller]; {
	case n > 1:
		sh.m[req.Caller] = n - 1
	case n == 1:
		delete(sh.m, req.Caller)
	}
	sh.mu.Unlock()
}

func (c *Concurrency) shard(req Request) *concShard {
	i := maphash.String(c.seed, req.Caller) & (numShards - 1)
	if req.Anonymous {
		i += numShards
	}
	return &c.shards[i]
}

// InFlight is the number of requests in flight for the caller.
func (c *Concurrency) InFlight(req Request) int {
	sh := c.shard(req)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return int(sh.m[req.Caller])
}

// Callers is the number of callers with requests in flight.
func (c *Concurrency) Callers() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

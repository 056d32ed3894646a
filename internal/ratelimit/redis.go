package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcra is the Generic Cell Rate Algorithm (the algorithm of redis_rate and
// throttled): one key per caller and policy holds the "theoretical arrival
// time" (TAT) in microseconds. The script reads Redis's own clock (TIME), so
// instances with skewed clocks still share one budget, and it sets a TTL equal
// to the time until the budget is whole again, so an idle key expires exactly
// when dropping it changes nothing.
//
// It takes up to ARGV[3] tokens at once (a lease; see lease.go): as many as
// fit, down to 1, or none. A lease of more than one is charged as if spent
// ARGV[4] µs from now, when it ends: the TAT moves to at least then before
// the tokens are added, so no way of spending them during the lease beats
// asking at the moment of spending. When that charge does not fit, it takes
// one token, uncharged, as a plain GCRA would.
//
// ARGV[1] = emission interval (µs per request), ARGV[2] = burst,
// ARGV[3] = tokens wanted (≥ 1), ARGV[4] = lease duration µs.
// Returns {tokens taken (0 = refused), remaining, retry_after µs, reset µs}.
const gcra = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local hold = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local limit = now + burst * interval
local n = math.min(want, math.floor((limit - tat) / interval))
if n < 1 then
  return {0, 0, tat + interval - limit, tat - now}
end
local new_tat = tat + interval
if n > 1 then
  local base = math.max(tat, now + hold)
  n = math.min(n, math.floor((limit - base) / interval))
  if n > 1 then
    new_tat = base + n * interval
  else
    n = 1
  end
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {n, math.floor((limit - new_tat) / interval), 0, new_tat - now}
`

// RedisOptions configure a Redis limiter.
type RedisOptions struct {
	// KeyPrefix namespaces the keys (default "gatehouse:"), like the session store's.
	KeyPrefix string
	// Fallback, when not nil, decides for anonymous callers while Redis cannot
	// be reached: each instance then enforces its own budget (so at most N
	// times the shared one with N instances) instead of either letting
	// anonymous traffic through unlimited or refusing every anonymous route.
	// Callers with an identity are refused with ErrUnavailable regardless:
	// their requests need the store for the session anyway.
	Fallback *Local
	// Counters, when not nil, count decisions (and evictions of leases).
	Counters *Counters
	// MaxLeases caps the callers whose leases and refusals are held
	// locally (default DefaultMaxEntries; at least 128), split between
	// callers with an identity and anonymous ones like Local's table. A
	// dropped entry only loses its unspent tokens.
	MaxLeases int
	// Now is the clock that ends leases and repeated refusals; time.Now
	// when nil. Budgets themselves are on Redis's clock.
	Now func() time.Time
}

// Redis is the shared limiter: every instance using the same Redis (or Redis
// Cluster) enforces one budget per caller and policy. A busy caller leases
// tokens in batches (lease.go), so most of its requests are decided from
// the lease without a round trip; the hot path holds one shard's lock for a
// map lookup and never across a round trip.
type Redis struct {
	p        *Policies
	c        redis.Scripter
	script   *redis.Script
	prefix   string
	fallback *Local
	counters *Counters
	now      func() time.Time
	leases   *leaseTable
	pols     []redisPolicy
}

// redisPolicy is one policy's script arguments and lease parameters.
type redisPolicy struct {
	interval, burst, hold string
	intervalUS            int64
	lease                 leasePolicy
}

// NewRedis builds a shared limiter over c (a *redis.Client, *redis.ClusterClient
// or any UniversalClient; the session store's client can be reused). The
// client's timeouts bound how long Allow waits for an unreachable server.
func NewRedis(p *Policies, c redis.Scripter, opts RedisOptions) *Redis {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "gatehouse:"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Redis{p: p, c: c, script: redis.NewScript(gcra), prefix: opts.KeyPrefix, fallback: opts.Fallback,
		counters: opts.Counters, now: opts.Now, leases: newLeaseTable(opts.MaxLeases, opts.Counters)}
	for _, pol := range p.policies {
		us := max(pol.per.Microseconds()/int64(pol.requests), 1)
		lp := newLeasePolicy(pol.burst, us)
		r.pols = append(r.pols, redisPolicy{interval: strconv.FormatInt(us, 10), burst: strconv.Itoa(pol.burst),
			hold: strconv.FormatInt(lp.hold.Microseconds(), 10), intervalUS: us, lease: lp})
	}
	return r
}

// key is the Redis key for a caller and policy: the caller is hashed (so no
// session or agent id is readable in Redis, and the key has a fixed length)
// and sits in a hash tag, so all of a caller's keys live in one cluster slot.
func (r *Redis) key(caller, policy string) string {
	sum := sha256.Sum256([]byte(caller))
	return r.prefix + "rl:{" + hex.EncodeToString(sum[:16]) + "}:" + policy
}

// Allow takes one request from the shared budget: from this instance's
// lease when it holds one, else from Redis (asking for a lease when the
// caller is busy). A refusal from Redis is repeated locally until Redis
// would admit again, at most leaseMaxHold. When Redis fails, an anonymous
// caller is decided by the fallback (Decision.Degraded) if one is
// configured; otherwise the error wraps ErrUnavailable and the caller must
// be refused (503).
func (r *Redis) Allow(ctx context.Context, req Request) (Decision, error) {
	label := r.p.label(req.Route)
	pi := r.p.policyFor(req.Route)
	pol := &r.p.policies[pi]
	rp := &r.pols[pi]
	k := bucketKey{caller: req.Caller, policy: pi}
	start := r.now()

	sh := r.leases.shard(req)
	sh.mu.Lock()
	e := r.leases.get(sh, k, start)
	if e.tokens > 0 && start.Before(e.expires) {
		e.tokens--
		d := pol.decision(true, e.remaining+e.tokens, max(e.resetAt.Sub(start), 0), 0)
		sh.mu.Unlock()
		r.counters.count(label, ResultAllowed)
		return d, nil
	}
	if start.Before(e.refusedUntil) {
		d := pol.decision(false, 0, max(e.resetAt.Sub(start), 0), max(e.allowAt.Sub(start), time.Microsecond))
		sh.mu.Unlock()
		r.counters.count(label, ResultLimited)
		return d, nil
	}
	// One request at a time fetches the caller's next lease; the others
	// meanwhile take their own token only.
	want, owner := 1, false
	if !e.fetching {
		want, owner = e.nextWant(start, rp.lease), true
		e.fetching = true
	}
	sh.mu.Unlock()

	res, err := r.script.Run(ctx, r.c, []string{r.key(req.Caller, pol.name)}, rp.interval, rp.burst, want, rp.hold).Int64Slice()
	if err == nil && (len(res) != 4 || res[0] < 0 || res[0] > int64(want)) {
		err = fmt.Errorf("unexpected reply %v", res)
	}
	if err != nil {
		if owner {
			sh.mu.Lock()
			e.fetching = false
			sh.mu.Unlock()
		}
		if req.Anonymous && r.fallback != nil {
			d := r.fallback.decide(req, r.fallback.now())
			d.Degraded = true
			r.counters.count(label, ResultDegraded)
			return d, nil
		}
		r.counters.count(label, ResultUnavailable)
		return Decision{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	n, remaining, retry, reset := int(res[0]), int(res[1]), max(us(res[2]), time.Microsecond), us(res[3])

	// Deadlines count from start, taken before the call: the lease and the
	// refusal end no later than they would on Redis's clock.
	sh.mu.Lock()
	if owner {
		e.fetching = false
		e.size, e.tokens = n, max(n-1, 0)
		e.expires = start.Add(rp.lease.hold)
	}
	e.remaining, e.resetAt = remaining, start.Add(reset)
	if n == 0 {
		e.tokens, e.size = 0, 0
		e.refusedUntil, e.allowAt = start.Add(min(retry, leaseMaxHold)), start.Add(retry)
	}
	sh.mu.Unlock()

	if n == 0 {
		r.counters.count(label, ResultLimited)
		return pol.decision(false, 0, reset, retry), nil
	}
	r.counters.count(label, ResultAllowed)
	return pol.decision(true, remaining+max(n-1, 0), reset, 0), nil
}

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
// ARGV[1] = emission interval (µs per request), ARGV[2] = burst.
// Returns {allowed (0/1), remaining, retry_after µs, reset µs}.
const gcra = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
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
	// Counters, when not nil, count decisions.
	Counters *Counters
}

// Redis is the shared limiter: every instance using the same Redis (or Redis
// Cluster) enforces one budget per caller and policy. It holds no lock;
// each Allow is one EVALSHA (EVAL on the first use after a script flush).
type Redis struct {
	p        *Policies
	c        redis.Scripter
	script   *redis.Script
	prefix   string
	fallback *Local
	counters *Counters
	args     [][2]string // per policy: interval µs, burst
}

// NewRedis builds a shared limiter over c (a *redis.Client, *redis.ClusterClient
// or any UniversalClient; the session store's client can be reused). The
// client's timeouts bound how long Allow waits for an unreachable server.
func NewRedis(p *Policies, c redis.Scripter, opts RedisOptions) *Redis {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "gatehouse:"
	}
	r := &Redis{p: p, c: c, script: redis.NewScript(gcra), prefix: opts.KeyPrefix, fallback: opts.Fallback, counters: opts.Counters}
	for _, pol := range p.policies {
		us := max(pol.per.Microseconds()/int64(pol.requests), 1)
		r.args = append(r.args, [2]string{strconv.FormatInt(us, 10), strconv.Itoa(pol.burst)})
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

// Allow takes one request from the shared budget. When Redis fails, an
// anonymous caller is decided by the fallback (Decision.Degraded) if one is
// configured; otherwise the error wraps ErrUnavailable and the caller must be
// refused (503).
func (r *Redis) Allow(ctx context.Context, req Request) (Decision, error) {
	label := r.p.label(req.Route)
	pi := r.p.policyFor(req.Route)
	pol := &r.p.policies[pi]
	res, err := r.script.Run(ctx, r.c, []string{r.key(req.Caller, pol.name)}, r.args[pi][0], r.args[pi][1]).Int64Slice()
	if err == nil && len(res) != 4 {
		err = fmt.Errorf("unexpected reply of %d values", len(res))
	}
	if err != nil {
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
	if res[0] == 0 {
		r.counters.count(label, ResultLimited)
		return pol.decision(false, 0, us(res[3]), max(us(res[2]), time.Microsecond)), nil
	}
	r.counters.count(label, ResultAllowed)
	return pol.decision(true, int(res[1]), us(res[3]), 0), nil
}

package ratelimit

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// frozenClock stands still until moved, so a lease's bound can be probed to
// the nanosecond without the test's own speed deciding the outcome.
type frozenClock struct{ t atomic.Int64 }

func newFrozenClock() *frozenClock {
	c := &frozenClock{}
	c.t.Store(time.Now().UnixNano())
	return c
}

func (c *frozenClock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *frozenClock) Advance(d time.Duration) { c.t.Add(int64(d)) }

// The attacker's view of two instances sharing one Redis: one caller
// hammers both at once, and however the leases fall, the instances
// together never admit more than the bucket holds plus what refilled
// while the test ran. Small budgets never lease at all (every admission is
// one round trip); larger ones do (far fewer round trips than admissions).
func TestRedisLeasesNeverExceedTheSharedBudget(t *testing.T) {
	srv := redisserver.Start(t)
	cases := []struct {
		name   string
		limit  Limit
		leases bool
	}{
		{"login budget, 10 per minute", Limit{Requests: 10, Per: time.Minute}, false},
		{"burst 19, fast refill", Limit{Requests: 1000, Per: time.Second, Burst: 19}, false},
		{"burst 400, slow refill", Limit{Requests: 100, Per: time.Second, Burst: 400}, true},
		{"burst 1000, fast refill", Limit{Requests: 20_000, Per: time.Second, Burst: 1000}, true},
		{"whole window at once", Limit{Requests: 3600, Per: time.Hour}, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustCompile(t, Spec{Default: tc.limit}, "orders")
			burst := p.policies[0].burst
			prefix := "share" + strconv.Itoa(i) + ":"
			cs := [2]*countingScripter{{Scripter: newClient(t, srv)}, {Scripter: newClient(t, srv)}}
			instances := [2]*Redis{NewRedis(p, cs[0], RedisOptions{KeyPrefix: prefix}), NewRedis(p, cs[1], RedisOptions{KeyPrefix: prefix})}
			var perInstance [2]atomic.Int64
			var wg sync.WaitGroup
			began := time.Now()
			for g := range 8 {
				wg.Go(func() {
					l := instances[g%2]
					for range 300 {
						d, err := l.Allow(context.Background(), Request{Route: "orders", Caller: "session-a"})
						if err != nil {
							t.Error(err)
							return
						}
						if d.Allowed {
							perInstance[g%2].Add(1)
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(began)
			n := perInstance[0].Load() + perInstance[1].Load()
			// Redis's interval (whole µs) is the one that refills.
			refilled := int64(elapsed / (time.Duration(instances[0].pols[0].intervalUS) * time.Microsecond))
			if bound := int64(burst) + refilled + 1; n > bound {
				t.Fatalf("two instances admitted %d of 2400; the budget allows %d (burst %d + %d refilled in %s + 1)", n, bound, burst, refilled, elapsed)
			}
			calls := cs[0].calls.Load() + cs[1].calls.Load()
			t.Logf("admitted %d (%d + %d) in %s with %d round trips; bound %d", n, perInstance[0].Load(), perInstance[1].Load(), elapsed, calls, int64(burst)+refilled+1)
			if !tc.leases {
				if n < int64(burst) {
					t.Fatalf("admitted %d, want the whole burst of %d", n, burst)
				}
				if calls < n {
					t.Fatalf("%d round trips for %d admissions: a small budget leased", calls, n)
				}
				return
			}
			if n < int64(burst)/2 && n < 2400 {
				t.Fatalf("admitted %d of a burst of %d: leasing refuses far too much", n, burst)
			}
			if calls >= n {
				t.Fatalf("%d round trips for %d admissions: no lease was used", calls, n)
			}
			if perInstance[0].Load() == 0 || perInstance[1].Load() == 0 {
				t.Fatalf("one instance admitted nothing (%d / %d)", perInstance[0].Load(), perInstance[1].Load())
			}
		})
	}
}

// A budget with a burst under 20 is decided by Redis alone, request by
// request, as without leases: the remaining count is exact across
// instances, each admission is a round trip, and once empty both refuse.
func TestRedisSmallBudgetsStayExact(t *testing.T) {
	srv := redisserver.Start(t)
	for i, l := range []Limit{{Requests: 10, Per: time.Minute}, {Requests: 19, Per: time.Hour}, {Requests: 100, Per: time.Hour, Burst: 19}} {
		t.Run(strconv.Itoa(l.Requests)+"/"+l.Per.String()+" burst "+strconv.Itoa(l.Burst), func(t *testing.T) {
			p := mustCompile(t, Spec{Default: l})
			burst := p.policies[0].burst
			cs := &countingScripter{Scripter: newClient(t, srv)}
			prefix := "exact" + strconv.Itoa(i) + ":"
			a, b := NewRedis(p, cs, RedisOptions{KeyPrefix: prefix}), NewRedis(p, cs, RedisOptions{KeyPrefix: prefix})
			for j := range burst {
				d, err := []*Redis{a, b}[j%2].Allow(context.Background(), Request{Caller: "ip:192.0.2.1", Anonymous: true})
				if err != nil || !d.Allowed || d.Remaining != burst-1-j {
					t.Fatalf("request %d: %+v %v, want allowed with %d remaining", j, d, err, burst-1-j)
				}
				if got := cs.calls.Load(); got != int64(j+1) {
					t.Fatalf("request %d: %d round trips, want one per request", j, got)
				}
			}
			for _, l := range []*Redis{a, b, a, b} {
				if d, err := l.Allow(context.Background(), Request{Caller: "ip:192.0.2.1", Anonymous: true}); err != nil || d.Allowed || d.RetryAfter <= 0 {
					t.Fatalf("past the budget: %+v %v, want refused", d, err)
				}
			}
		})
	}
}

// A lease ends at its bound: one nanosecond before, its tokens are spent
// locally; at the bound they are void and the next request asks Redis. It
// was charged in Redis as if spent at that bound, so holding the tokens
// back and spending them late gains nothing. With Redis gone, a caller with
// an identity spends what its lease still holds (already counted in the
// shared budget) and is refused (ErrUnavailable, 503) from the bound on.
func TestRedisLeaseEndsAtItsBound(t *testing.T) {
	srv := redisserver.Start(t)
	c := newClient(t, srv)
	cs := &countingScripter{Scripter: c}
	clock := newFrozenClock()
	p := mustCompile(t, Spec{Default: Limit{Requests: 1000, Per: time.Second}})
	l := NewRedis(p, cs, RedisOptions{Now: clock.Now})
	lp := l.pols[0].lease
	if lp.max != 50 || lp.hold != 50*time.Millisecond {
		t.Fatalf("lease policy %+v, want at most 50 tokens for 50ms (burst/20, full/20)", lp)
	}
	ctx := context.Background()
	req := Request{Caller: "session-a"}
	e := func() *lease {
		sh := l.leases.shard(req)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return sh.m[bucketKey{caller: req.Caller}]
	}
	allow := func(step string) Decision {
		t.Helper()
		d, err := l.Allow(ctx, req)
		if err != nil || !d.Allowed {
			t.Fatalf("%s: %+v %v", step, d, err)
		}
		return d
	}
	// A busy caller's leases double: 1 (no lease), 2, 4, 8.
	var redisBefore int64
	for _, size := range []int{1, 2, 4, 8} {
		calls := cs.calls.Load()
		rt, err := c.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		redisBefore = rt.UnixMicro()
		allow("fetch " + strconv.Itoa(size))
		if cs.calls.Load() != calls+1 || e().size != size {
			t.Fatalf("lease %d: size %d after %d round trips", size, e().size, cs.calls.Load()-calls)
		}
		for range size - 1 {
			allow("spend")
		}
		if cs.calls.Load() != calls+1 {
			t.Fatalf("lease of %d: %d round trips, want its tokens spent locally", size, cs.calls.Load()-calls)
		}
	}
	// Charged as if spent at the end: TAT ≥ then + 8 intervals.
	tat, err := c.Get(ctx, l.key(req.Caller, DefaultPolicy)).Int64()
	if err != nil {
		t.Fatal(err)
	}
	if want := redisBefore + lp.hold.Microseconds() + 8*1000; tat < want {
		t.Fatalf("TAT %d, want at least %d: the lease was not charged for the time it lasts", tat, want)
	}

	allow("fetch 16")
	if e().size != 16 || e().tokens != 15 {
		t.Fatalf("lease %+v, want 16 with 15 unspent", e())
	}
	srv.Kill()
	clock.Advance(lp.hold - time.Nanosecond)
	allow("one nanosecond before the bound, Redis down")
	clock.Advance(time.Nanosecond)
	calls := cs.calls.Load()
	if d, err := l.Allow(ctx, req); !errors.Is(err, ErrUnavailable) || d.Allowed {
		t.Fatalf("at the bound, Redis down: %+v %v, want ErrUnavailable: the lease's 14 tokens must be void", d, err)
	}
	if cs.calls.Load() == calls {
		t.Fatal("at the bound the lease was still spent")
	}
}

// What RateLimit's remaining says with leases: the shared remaining as of
// the lease (lowered by what the lease is charged) plus the lease's unspent
// tokens. It never claims more than the bucket holds and falls by one per
// admitted request; a lease and its charge cost at most burst/10.
func TestRedisRemainingWithLeases(t *testing.T) {
	srv := redisserver.Start(t)
	clock := newFrozenClock()
	p := mustCompile(t, Spec{Default: Limit{Requests: 1000, Per: time.Hour}})
	l := NewRedis(p, newClient(t, srv), RedisOptions{Now: clock.Now})
	burst, maxLease := p.policies[0].burst, l.pols[0].lease.max
	prev := burst
	for i := range 600 {
		d, err := l.Allow(context.Background(), Request{Caller: "session-a"})
		if err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v %v", i, d, err)
		}
		// The hour refills about one token while this runs.
		if d.Remaining > burst-1-i+1 || d.Remaining < burst-1-i-2*maxLease {
			t.Fatalf("request %d: remaining %d, want in [%d, %d]", i, d.Remaining, burst-1-i-2*maxLease, burst-i)
		}
		if d.Remaining >= prev+1 {
			t.Fatalf("request %d: remaining rose from %d to %d", i, prev, d.Remaining)
		}
		prev = d.Remaining
		if d.Reset <= 0 || d.Reset > time.Hour {
			t.Fatalf("request %d: reset %s", i, d.Reset)
		}
	}
}

// A refusal from Redis is repeated locally (no round trip per refused
// request of a flood) until Redis would admit again, at most 100 ms.
func TestRedisRefusalRepeatedLocally(t *testing.T) {
	srv := redisserver.Start(t)
	cs := &countingScripter{Scripter: newClient(t, srv)}
	clock := newFrozenClock()
	p := mustCompile(t, Spec{Default: Limit{Requests: 2, Per: time.Hour}})
	l := NewRedis(p, cs, RedisOptions{Now: clock.Now})
	req := Request{Caller: "ip:192.0.2.1", Anonymous: true}
	for i, want := range []bool{true, true, false, false, false} {
		if d, err := l.Allow(context.Background(), req); err != nil || d.Allowed != want {
			t.Fatalf("request %d: %+v %v", i, d, err)
		}
	}
	if got := cs.calls.Load(); got != 3 {
		t.Fatalf("%d round trips, want 3 (two admitted, the first refusal)", got)
	}
	clock.Advance(leaseMaxHold)
	if d, _ := l.Allow(context.Background(), req); d.Allowed || d.RetryAfter < 29*time.Minute {
		t.Fatalf("after 100ms: %+v, want refused for about 30 minutes", d)
	}
	if got := cs.calls.Load(); got != 4 {
		t.Fatalf("%d round trips, want Redis asked again after 100ms", got)
	}
}

// The local table is bounded, and a flood of anonymous addresses never
// pushes out a session's lease.
func TestRedisLeaseTableBounded(t *testing.T) {
	srv := redisserver.Start(t)
	cs := &countingScripter{Scripter: newClient(t, srv)}
	clock := newFrozenClock()
	p := mustCompile(t, Spec{Default: Limit{Requests: 1000, Per: time.Second}})
	counters := NewCounters(p)
	l := NewRedis(p, cs, RedisOptions{MaxLeases: 256, Now: clock.Now, Counters: counters})
	ctx := context.Background()
	session := Request{Caller: "session-a"}
	for range 4 { // leases of 1, 2 and 4 (three left)
		if d, err := l.Allow(ctx, session); err != nil || !d.Allowed {
			t.Fatal(d, err)
		}
	}
	for i := range 2000 {
		if _, err := l.Allow(ctx, Request{Caller: "ip:198.51.100." + strconv.Itoa(i), Anonymous: true}); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.leases.len(); n > 256 {
		t.Fatalf("%d entries held, want at most 256", n)
	}
	if _, capacity := counters.Evictions(); capacity == 0 {
		t.Fatal("no eviction counted")
	}
	calls := cs.calls.Load()
	if d, err := l.Allow(ctx, session); err != nil || !d.Allowed || cs.calls.Load() != calls {
		t.Fatalf("session after the flood: %+v %v, %d round trips; want its lease kept", d, err, cs.calls.Load()-calls)
	}
}

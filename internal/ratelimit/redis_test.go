package ratelimit

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// newClient is one Gatehouse instance's connection: short timeouts, so a
// dead server fails fast, as the session store configures it.
func newClient(t *testing.T, srv *redisserver.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr: srv.Addr(), DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		MaxRetries: 1, DialerRetries: 1, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// Two instances on one Redis share one budget. The window is an hour, so the
// stated tolerance is +1 request refilled while the test runs; without a
// shared store each instance would admit the full budget (200 here).
func TestRedisTwoInstancesShareOneBudget(t *testing.T) {
	srv := redisserver.Start(t)
	p := mustCompile(t, Spec{Default: Limit{Requests: 100, Per: time.Hour}}, "orders")
	c1, c2 := NewCounters(p), NewCounters(p)
	instances := []*Redis{
		NewRedis(p, newClient(t, srv), RedisOptions{Counters: c1}),
		NewRedis(p, newClient(t, srv), RedisOptions{Counters: c2}),
	}
	var allowed, perInstance [2]atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			l := instances[g%2]
			for range 40 {
				d, err := l.Allow(context.Background(), Request{Route: "orders", Caller: "session-a"})
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					allowed[0].Add(1)
					perInstance[g%2].Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed[0].Load(); n < 100 || n > 101 {
		t.Fatalf("two instances admitted %d of 320, want 100 (+1)", n)
	}
	if perInstance[0].Load() == 0 || perInstance[1].Load() == 0 {
		t.Fatalf("one instance admitted nothing (%d / %d): the test did not exercise both", perInstance[0].Load(), perInstance[1].Load())
	}
	if got := c1.Decisions("orders", ResultAllowed) + c2.Decisions("orders", ResultAllowed); got != uint64(allowed[0].Load()) {
		t.Errorf("allowed counted %d", got)
	}
	// Another session, through either instance, has its own budget.
	for _, l := range instances {
		d, err := l.Allow(context.Background(), Request{Route: "orders", Caller: "session-b"})
		if err != nil || !d.Allowed {
			t.Fatalf("session-b: %+v %v", d, err)
		}
	}
}

func TestRedisDecisions(t *testing.T) {
	srv := redisserver.Start(t)
	p := mustCompile(t, Spec{Default: Limit{Requests: 3, Per: time.Minute}, Routes: map[string]Limit{"billing": {Requests: 1, Per: time.Hour}}}, "orders", "billing")
	l := NewRedis(p, newClient(t, srv), RedisOptions{})
	ctx := context.Background()
	a := Request{Route: "orders", Caller: "session-a"}
	steps := []struct {
		req       Request
		allowed   bool
		remaining int
		policy    string
	}{
		{a, true, 2, "default"}, {a, true, 1, "default"}, {a, true, 0, "default"}, {a, false, 0, "default"},
		{Request{Route: "orders", Caller: "session-b"}, true, 2, "default"},
		{Request{Route: "billing", Caller: "session-a"}, true, 0, "billing"},
		{Request{Route: "billing", Caller: "session-a"}, false, 0, "billing"},
	}
	for i, s := range steps {
		d, err := l.Allow(ctx, s.req)
		if err != nil || d.Allowed != s.allowed || d.Remaining != s.remaining || d.Policy != s.policy {
			t.Fatalf("step %d: %+v %v, want allowed=%v remaining=%d policy=%s", i, d, err, s.allowed, s.remaining, s.policy)
		}
		if d.Allowed && (d.Reset <= 0 || d.Reset > time.Hour) {
			t.Fatalf("step %d: reset %s", i, d.Reset)
		}
		if !d.Allowed && (d.RetryAfter <= 0 || d.RetryAfter > time.Hour) {
			t.Fatalf("step %d: retry after %s", i, d.RetryAfter)
		}
	}
	// A refused default request waits about one interval (20s).
	d, _ := l.Allow(ctx, a)
	if d.RetryAfter < 19*time.Second || d.RetryAfter > 20*time.Second {
		t.Errorf("retry after %s, want about 20s", d.RetryAfter)
	}
}

// Every key has a TTL equal to the time until the budget is whole again, so
// idle callers cost Redis nothing; the caller key is not readable in Redis.
func TestRedisKeysExpire(t *testing.T) {
	srv := redisserver.Start(t)
	c := newClient(t, srv)
	p := mustCompile(t, Spec{Default: Limit{Requests: 10, Per: time.Second, Burst: 2}})
	l := NewRedis(p, c, RedisOptions{KeyPrefix: "gh-test:"})
	ctx := context.Background()
	if d, err := l.Allow(ctx, Request{Caller: "session-secret-id"}); err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v %v", keys, err)
	}
	k := keys[0]
	if !strings.HasPrefix(k, "gh-test:rl:{") || !strings.HasSuffix(k, "}:default") || strings.Contains(k, "session") {
		t.Fatalf("key %q: want prefix, hash tag with the hashed caller, policy", k)
	}
	ttl, err := c.PTTL(ctx, k).Result()
	if err != nil || ttl <= 0 || ttl > 100*time.Millisecond {
		t.Fatalf("PTTL %s %v, want (0, 100ms]: one request's interval", ttl, err)
	}
	// Wait (bounded) for Redis to expire it.
	deadline := time.Now().Add(5 * time.Second)
	for c.Exists(ctx, k).Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("key did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d, _ := l.Allow(ctx, Request{Caller: "session-secret-id"}); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("after expiry: %+v, want a whole budget", d)
	}
}

// The script is loaded with EVALSHA and reloaded after SCRIPT FLUSH (or a
// failover to a server that never saw it).
func TestRedisScriptReloadedAfterFlush(t *testing.T) {
	srv := redisserver.Start(t)
	c := newClient(t, srv)
	l := NewRedis(mustCompile(t, Spec{}), c, RedisOptions{})
	ctx := context.Background()
	for range 2 {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if d, err := l.Allow(ctx, Request{Caller: "a"}); err != nil || !d.Allowed {
			t.Fatal(d, err)
		}
	}
}

// Redis down: a caller with an identity is refused (ErrUnavailable → 503);
// an anonymous caller is decided by the in-process fallback when one is
// configured, and refused otherwise. When Redis is back, so is the shared budget.
func TestRedisDownFailsClosed(t *testing.T) {
	srv := redisserver.Start(t)
	p := mustCompile(t, Spec{Default: Limit{Requests: 2, Per: time.Hour}}, "public")
	counters := NewCounters(p)
	c := newClient(t, srv)
	withFallback := NewRedis(p, c, RedisOptions{Fallback: NewLocal(p, LocalOptions{}), Counters: counters})
	without := NewRedis(p, c, RedisOptions{})
	ctx := context.Background()
	srv.Kill()

	session := Request{Route: "public", Caller: "session-a"}
	anon := Request{Route: "public", Caller: "ip:192.0.2.1", Anonymous: true}
	cases := []struct {
		name     string
		l        *Redis
		req      Request
		wantErr  bool
		allowed  []bool // successive decisions when no error
		degraded bool
	}{
		{"session caller, fallback configured", withFallback, session, true, nil, false},
		{"session caller, no fallback", without, session, true, nil, false},
		{"anonymous caller, no fallback", without, anon, true, nil, false},
		{"anonymous caller, fallback still limits", withFallback, anon, false, []bool{true, true, false}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := max(len(tc.allowed), 1)
			for i := range n {
				d, err := tc.l.Allow(ctx, tc.req)
				if tc.wantErr {
					if !errors.Is(err, ErrUnavailable) || d.Allowed {
						t.Fatalf("got %+v %v, want ErrUnavailable and not allowed", d, err)
					}
					if strings.Contains(err.Error(), tc.req.Caller) {
						t.Fatalf("error names the caller: %v", err)
					}
					continue
				}
				if err != nil || d.Allowed != tc.allowed[i] || d.Degraded != tc.degraded {
					t.Fatalf("request %d: %+v %v, want allowed=%v degraded", i, d, err, tc.allowed[i])
				}
			}
		})
	}
	if counters.Decisions("public", ResultUnavailable) != 1 || counters.Decisions("public", ResultDegraded) != 3 {
		t.Errorf("unavailable %d, degraded %d", counters.Decisions("public", ResultUnavailable), counters.Decisions("public", ResultDegraded))
	}

	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := withFallback.Allow(ctx, session)
		if err == nil {
			if !d.Allowed || d.Degraded {
				t.Fatalf("after restart: %+v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d, err := withFallback.Allow(ctx, anon); err != nil || d.Degraded || !d.Allowed {
		t.Fatalf("anonymous after restart: %+v %v, want the shared budget again", d, err)
	}
}

// countingScripter counts the script calls that reach Redis, so tests and
// benchmarks can state how many requests each round trip serves. An EVALSHA
// refused with NOSCRIPT and then retried as EVAL counts once.
type countingScripter struct {
	redis.Scripter
	calls atomic.Int64
}

func (c *countingScripter) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	c.calls.Add(1)
	return c.Scripter.Eval(ctx, script, keys, args...)
}

func (c *countingScripter) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	cmd := c.Scripter.EvalSha(ctx, sha1, keys, args...)
	if !redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		c.calls.Add(1)
	}
	return cmd
}

// BenchmarkRedisAllow: one caller hitting the shared limiter as hard as it
// can, sequentially and from 32 goroutines (the load benchmark's 32
// connections on one session), under the load benchmark's budget (10^6/s).
// The caller changes every 100 000 requests, so it never reaches its budget
// and every op is an admitted request (allowed/op says so). redis-calls/op
// is the round trips per request.
func BenchmarkRedisAllow(b *testing.B) {
	srv := redisserver.Start(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true, PoolSize: 64,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer c.Close()
	p, err := Compile(Spec{Default: Limit{Requests: 1_000_000, Per: time.Second}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	const perCaller = 100_000
	report := func(b *testing.B, cs *countingScripter, allowed int64) {
		b.ReportMetric(float64(cs.calls.Load())/float64(b.N), "redis-calls/op")
		b.ReportMetric(float64(allowed)/float64(b.N), "allowed/op")
	}
	b.Run("hot-caller", func(b *testing.B) {
		cs := &countingScripter{Scripter: c}
		l := NewRedis(p, cs, RedisOptions{KeyPrefix: "bench-seq:" + strconv.Itoa(b.N) + ":"})
		req := Request{Caller: "session-0"}
		var allowed int64
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i++; i%perCaller == 0 {
				req.Caller = "session-" + strconv.Itoa(i/perCaller)
			}
			d, err := l.Allow(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			if d.Allowed {
				allowed++
			}
		}
		report(b, cs, allowed)
	})
	b.Run("hot-caller-32-goroutines", func(b *testing.B) {
		cs := &countingScripter{Scripter: c}
		l := NewRedis(p, cs, RedisOptions{KeyPrefix: "bench-par:" + strconv.Itoa(b.N) + ":"})
		var n, allowed atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			req, cur := Request{Caller: "session-0"}, int64(0)
			for pb.Next() {
				if k := n.Add(1) / perCaller; k != cur {
					cur, req.Caller = k, "session-"+strconv.Itoa(int(k))
				}
				d, err := l.Allow(context.Background(), req)
				if err != nil {
					b.Error(err)
					return
				}
				if d.Allowed {
					allowed.Add(1)
				}
			}
		})
		report(b, cs, allowed.Load())
	})
}

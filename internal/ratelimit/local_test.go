package ratelimit

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
)

func mustCompile(t testing.TB, s Spec, routes ...string) *Policies {
	t.Helper()
	p, err := Compile(s, routes)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// One session over its limit is refused; another session, and the same
// session on a route with its own limit, are not affected.
func TestLocalOneCallerOverLimitOthersUnaffected(t *testing.T) {
	p := mustCompile(t, Spec{
		Default: Limit{Requests: 3, Per: time.Minute},
		Routes:  map[string]Limit{"billing": {Requests: 2, Per: time.Minute}},
	}, "orders", "billing")
	var clock testclock.Clock
	c := NewCounters(p)
	l := NewLocal(p, LocalOptions{Now: clock.Now, Counters: c})
	ctx := context.Background()
	a := Request{Route: "orders", Caller: "session-a"}
	steps := []struct {
		req       Request
		allowed   bool
		remaining int
	}{
		{a, true, 2}, {a, true, 1}, {a, true, 0},
		{a, false, 0}, {a, false, 0},
		{Request{Route: "orders", Caller: "session-b"}, true, 2},
		{Request{Route: "billing", Caller: "session-a"}, true, 1},
		{Request{Route: "billing", Caller: "session-a"}, true, 0},
		{Request{Route: "billing", Caller: "session-a"}, false, 0},
		// /bff/* endpoints and unknown names share the default budget.
		{Request{Route: "bff_login", Caller: "session-a"}, false, 0},
	}
	for i, s := range steps {
		d, err := l.Allow(ctx, s.req)
		if err != nil || d.Allowed != s.allowed || d.Remaining != s.remaining {
			t.Fatalf("step %d (%+v): allowed=%v remaining=%d err=%v, want %v %d", i, s.req, d.Allowed, d.Remaining, err, s.allowed, s.remaining)
		}
		if !d.Allowed && (d.RetryAfter <= 0 || d.RetryAfter > 30*time.Second) {
			t.Fatalf("step %d: retry after %s, want (0, 30s] (one request per 20s or 30s)", i, d.RetryAfter)
		}
	}
	if got := c.Decisions("orders", ResultLimited); got != 2 {
		t.Errorf("orders limited = %d, want 2", got)
	}
	if got := c.Decisions(OtherRoute, ResultLimited); got != 1 {
		t.Errorf("other limited = %d, want 1", got)
	}
	// After one interval (20s) one request is admitted again.
	clock.Advance(20 * time.Second)
	if d, _ := l.Allow(ctx, a); !d.Allowed {
		t.Fatalf("after refill: %+v", d)
	}
	if d, _ := l.Allow(ctx, a); d.Allowed {
		t.Fatalf("only one request refilled: %+v", d)
	}
}

// Many goroutines on one caller: exactly the burst passes (the window is an
// hour, so at most one more request refills while the test runs).
func TestLocalConcurrentCallersGetOneBudget(t *testing.T) {
	p := mustCompile(t, Spec{Default: Limit{Requests: 100, Per: time.Hour}})
	l := NewLocal(p, LocalOptions{})
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if d, _ := l.Allow(context.Background(), Request{Caller: "s"}); d.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n < 100 || n > 101 {
		t.Fatalf("allowed %d of 400, want 100 (+1 refill)", n)
	}
}

// 100,000 distinct callers: the table holds at most MaxEntries budgets, and
// the heap stays within what that many entries need.
func TestLocalMemoryBoundedWith100kCallers(t *testing.T) {
	const callers, maxEntries = 100_000, 10_000
	p := mustCompile(t, Spec{Default: Limit{Requests: 10, Per: time.Minute}})
	c := NewCounters(p)
	l := NewLocal(p, LocalOptions{MaxEntries: maxEntries, Counters: c})
	keys := make([]string, callers)
	for i := range keys {
		keys[i] = "ip:10." + strconv.Itoa(i>>16) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ctx := context.Background()
	for i, k := range keys {
		// Half anonymous, half with an identity: each half has half the table.
		if d, _ := l.Allow(ctx, Request{Caller: k, Anonymous: i%2 == 0}); !d.Allowed {
			t.Fatal("a new caller was refused")
		}
		if i%1000 == 0 {
			if n := l.Len(); n > maxEntries {
				t.Fatalf("table grew to %d entries", n)
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keys)
	if n := l.Len(); n > maxEntries || n < maxEntries*9/10 {
		t.Fatalf("entries = %d, want about %d and never more", n, maxEntries)
	}
	if _, capacity := c.Evictions(); capacity < callers-maxEntries {
		t.Errorf("capacity evictions = %d, want at least %d", capacity, callers-maxEntries)
	}
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew %d bytes for %d entries (%d B/entry)", grew, l.Len(), grew/int64(l.Len()))
	// An unbounded table would hold 100,000 entries (> 25 MB); 10,000 need about 2.8 MB.
	if limit := int64(maxEntries) * 400; grew > limit {
		t.Fatalf("heap grew %d bytes, want at most %d for %d entries", grew, limit, maxEntries)
	}
}

// An entry idle long enough for its bucket to refill is dropped as new
// callers arrive, without touching the capacity path.
func TestLocalIdleEntriesAreDropped(t *testing.T) {
	p := mustCompile(t, Spec{Default: Limit{Requests: 10, Per: time.Minute}})
	var clock testclock.Clock
	c := NewCounters(p)
	l := NewLocal(p, LocalOptions{MaxEntries: 64_000, Now: clock.Now, Counters: c})
	ctx := context.Background()
	for i := range 1000 {
		l.Allow(ctx, Request{Caller: "old-" + strconv.Itoa(i)})
	}
	clock.Advance(time.Minute + time.Second) // a full bucket again
	for i := range 3000 {
		l.Allow(ctx, Request{Caller: "new-" + strconv.Itoa(i)})
	}
	idle, capacity := c.Evictions()
	if capacity != 0 || idle < 990 || l.Len() > 3010 {
		t.Fatalf("idle %d, capacity %d, len %d: want the 1000 idle entries dropped", idle, capacity, l.Len())
	}
}

// From the attacker's side: a flood of requests from ever new client
// addresses (an IPv6 /64 holds 2^64 of them) churns the anonymous half of the
// table, but cannot push out a session's budget to reset its refusal.
func TestLocalAnonymousFloodCannotResetASessionBudget(t *testing.T) {
	p := mustCompile(t, Spec{Default: Limit{Requests: 1, Per: time.Hour}})
	c := NewCounters(p)
	l := NewLocal(p, LocalOptions{MaxEntries: 128, Counters: c})
	ctx := context.Background()
	victim := Request{Caller: "session-over-its-limit"}
	l.Allow(ctx, victim)
	for i := range 10_000 {
		l.Allow(ctx, Request{Caller: "ip:2001:db8::" + strconv.FormatInt(int64(i), 16), Anonymous: true})
	}
	if _, capacity := c.Evictions(); capacity == 0 {
		t.Fatal("the flood did not fill the anonymous half; the test proves nothing")
	}
	if d, _ := l.Allow(ctx, victim); d.Allowed {
		t.Fatal("the anonymous flood reset a session's budget")
	}
}

// A caller still using its budget is not dropped as idle: its refusals hold.
func TestLocalBusyEntryIsNotDroppedAsIdle(t *testing.T) {
	p := mustCompile(t, Spec{Default: Limit{Requests: 1, Per: time.Hour}})
	var clock testclock.Clock
	l := NewLocal(p, LocalOptions{Now: clock.Now})
	ctx := context.Background()
	l.Allow(ctx, Request{Caller: "busy"})
	clock.Advance(30 * time.Minute)
	for i := range 500 {
		l.Allow(ctx, Request{Caller: "other-" + strconv.Itoa(i)})
	}
	if d, _ := l.Allow(ctx, Request{Caller: "busy"}); d.Allowed {
		t.Fatal("busy caller's budget was reset by new callers")
	}
}

// Allow for an existing caller does not allocate.
func TestLocalAllowExistingCallerDoesNotAllocate(t *testing.T) {
	p := mustCompile(t, Spec{Default: Limit{Requests: 1000, Per: time.Second}}, "orders")
	l := NewLocal(p, LocalOptions{Counters: NewCounters(p)})
	req := Request{Route: "orders", Caller: "session-a"}
	ctx := context.Background()
	l.Allow(ctx, req)
	if n := testing.AllocsPerRun(1000, func() { l.Allow(ctx, req) }); n != 0 {
		t.Fatalf("Allow allocates %v times per call", n)
	}
}

func BenchmarkLocalAllowExisting(b *testing.B) {
	p := mustCompile(b, Spec{Default: Limit{Requests: 1_000_000, Per: time.Second}}, "orders")
	l := NewLocal(p, LocalOptions{Counters: NewCounters(p)})
	req := Request{Route: "orders", Caller: "session-a"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(ctx, req)
	}
}

func BenchmarkLocalAllowParallelCallers(b *testing.B) {
	p := mustCompile(b, Spec{Default: Limit{Requests: 1_000_000, Per: time.Second}}, "orders")
	l := NewLocal(p, LocalOptions{Counters: NewCounters(p)})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "session-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(context.Background(), Request{Route: "orders", Caller: keys[i&1023]})
			i++
		}
	})
}

package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// A burst of slow requests from one caller: no more than the cap ever
// reaches the upstream, the rest are refused with 429 at once, and another
// caller still gets through while the first is saturated.
func TestConcurrencyCapHoldsUnderBurstOfSlowRequests(t *testing.T) {
	const capPerCaller, burst = 4, 40
	p := mustCompile(t, Spec{ConcurrentPerCaller: capPerCaller}, "slow")
	counters := NewCounters(p)
	conc := NewConcurrency(p, ConcurrencyOptions{Counters: counters})

	var inFlight, maxInFlight, reached atomic.Int64
	entered := make(chan struct{}, burst)
	release := make(chan struct{})
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		reached.Add(1)
		entered <- struct{}{}
		<-release // slow: holds until the test lets go
		inFlight.Add(-1)
	})
	// The limit stage as the integrator will write it.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := Request{Route: "slow", Caller: r.Header.Get("X-Caller")}
		d := conc.Acquire(req)
		if !d.Allowed {
			WriteRefusal(w, d)
			return
		}
		defer conc.Release(req)
		upstream.ServeHTTP(w, r)
	}))
	defer srv.Close()

	get := func(caller string) int {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("X-Caller", caller)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	codes := make(chan int, burst)
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() { codes <- get("session-a") })
	}
	// Every request either entered the upstream or was refused.
	refused := 0
	for range capPerCaller {
		<-entered
	}
	for refused < burst-capPerCaller {
		if c := <-codes; c != http.StatusTooManyRequests {
			t.Fatalf("a request beyond the cap got %d", c)
		}
		refused++
	}
	// Another caller is not affected by session-a's saturation.
	bDone := make(chan int)
	go func() { bDone <- get("session-b") }()
	<-entered
	if got := conc.InFlight(Request{Caller: "session-a"}); got != capPerCaller {
		t.Errorf("in flight for session-a = %d", got)
	}
	close(release)
	if c := <-bDone; c != http.StatusOK {
		t.Errorf("session-b got %d", c)
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("an admitted request got %d", c)
		}
	}
	if m := maxInFlight.Load(); m > capPerCaller+1 { // + session-b
		t.Errorf("max in flight at the upstream = %d, want at most %d", m, capPerCaller+1)
	}
	if r := reached.Load(); r != capPerCaller+1 {
		t.Errorf("%d requests reached the upstream, want %d", r, capPerCaller+1)
	}
	if got := counters.Decisions("slow", ResultConcurrency); got != burst-capPerCaller {
		t.Errorf("concurrency refusals counted = %d", got)
	}
	if n := conc.Callers(); n != 0 {
		t.Errorf("%d callers still tracked after every request ended", n)
	}
}

func TestConcurrencyAcquireRelease(t *testing.T) {
	p := mustCompile(t, Spec{ConcurrentPerCaller: 2})
	c := NewConcurrency(p, ConcurrencyOptions{MaxCallers: 128}) // one caller per shard
	a := Request{Caller: "a"}
	steps := []struct {
		op        string // acquire | release
		caller    string
		allowed   bool
		remaining int
	}{
		{"acquire", "a", true, 1},
		{"acquire", "a", true, 0},
		{"acquire", "a", false, 0},
		{"release", "a", false, 0},
		{"acquire", "a", true, 0},
		{"release", "a", false, 0},
		{"release", "a", false, 0},
		{"release", "a", false, 0}, // extra release: no negative count
		{"acquire", "a", true, 1},
		{"acquire", "a", true, 0},
		{"acquire", "a", false, 0},
	}
	for i, s := range steps {
		if s.op == "release" {
			c.Release(Request{Caller: s.caller})
			continue
		}
		d := c.Acquire(Request{Caller: s.caller})
		if d.Allowed != s.allowed || d.Remaining != s.remaining {
			t.Fatalf("step %d: %+v, want allowed=%v remaining=%d", i, d, s.allowed, s.remaining)
		}
	}
	c.Release(a)
	c.Release(a)
	if c.Callers() != 0 {
		t.Fatal("released caller still tracked")
	}
}

// Memory is bounded by callers in flight: a full table refuses new callers
// (fail closed) and keeps serving the ones it tracks; 100,000 callers that
// come and go leave nothing behind.
func TestConcurrencyMemoryBounded(t *testing.T) {
	p := mustCompile(t, Spec{ConcurrentPerCaller: 3})
	c := NewConcurrency(p, ConcurrencyOptions{MaxCallers: 128 * 4})
	held := []string{}
	refusedNew := 0
	for i := range 10_000 {
		k := "s" + strconv.Itoa(i)
		if d := c.Acquire(Request{Caller: k}); d.Allowed {
			held = append(held, k)
		} else {
			refusedNew++
		}
	}
	if c.Callers() > 64*4 || refusedNew == 0 { // identified callers: half the table
		t.Fatalf("callers %d, refused %d: table not bounded", c.Callers(), refusedNew)
	}
	if d := c.Acquire(Request{Caller: held[0]}); !d.Allowed {
		t.Fatal("a tracked caller was refused because the table is full")
	}
	c.Release(Request{Caller: held[0]})
	// Anonymous callers have their own half: still admitted.
	if d := c.Acquire(Request{Caller: "ip:192.0.2.1", Anonymous: true}); !d.Allowed {
		t.Fatal("an anonymous caller was refused because sessions filled their half")
	}
	c.Release(Request{Caller: "ip:192.0.2.1", Anonymous: true})
	for _, k := range held {
		c.Release(Request{Caller: k})
	}
	for i := range 100_000 {
		k := "t" + strconv.Itoa(i)
		if d := c.Acquire(Request{Caller: k}); !d.Allowed {
			t.Fatalf("caller %d refused with an empty table", i)
		}
		c.Release(Request{Caller: k})
	}
	if c.Callers() != 0 {
		t.Fatalf("%d callers left", c.Callers())
	}
}

// With no concurrent_per_caller everything is admitted and nothing is tracked.
func TestConcurrencyOff(t *testing.T) {
	c := NewConcurrency(mustCompile(t, Spec{}), ConcurrencyOptions{})
	for range 1000 {
		if d := c.Acquire(Request{Caller: "a"}); !d.Allowed {
			t.Fatal("refused with no cap")
		}
	}
	if c.Callers() != 0 {
		t.Fatal("tracked with no cap")
	}
}

func TestConcurrencyAcquireReleaseDoesNotAllocate(t *testing.T) {
	c := NewConcurrency(mustCompile(t, Spec{ConcurrentPerCaller: 8}), ConcurrencyOptions{})
	req := Request{Caller: "session-a"}
	c.Acquire(req) // keep the entry present
	if n := testing.AllocsPerRun(1000, func() { c.Acquire(req); c.Release(req) }); n != 0 {
		t.Fatalf("allocates %v per acquire/release", n)
	}
}

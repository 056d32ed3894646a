package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
	"github.com/redis/go-redis/v9"
)

func testLimits(t *testing.T, spec ratelimit.Spec, rc redis.Scripter) *limits {
	t.Helper()
	p, err := ratelimit.Compile(spec, []string{"orders", bffLoginRoute, bffCallbackRoute})
	if err != nil {
		t.Fatal(err)
	}
	return newLimits(p, limitsOptions{Redis: rc, Metrics: telemetry.NewMetrics(), Client: "web", Now: time.Now})
}

// run runs the limit stage as the wrapped handler would, returning the
// refusal and the flight (still in progress: the caller ends it).
func run(l *limits, caller pipeline.Caller) (*pipeline.Refusal, *flight) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &flight{cancel: cancel}
	ctx = context.WithValue(ctx, flightKey{}, f)
	r := &pipeline.Request{Route: "orders", ClientIP: netip.MustParseAddr("192.0.2.1"), Caller: caller}
	return l.Run(ctx, r), f
}

var (
	sessionCaller = pipeline.Caller{Kind: pipeline.SessionCookie, SessionID: "s1"}
	anonCaller    = pipeline.Caller{}
)

// Redis down: a caller with a session is refused 503 (fail closed, nothing
// passes unlimited); an anonymous caller is decided by this instance's
// budget instead (allowed within it, 429 beyond it).
func TestLimitStageRedisDown(t *testing.T) {
	srv := redisserver.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rc.Close() })
	l := testLimits(t, ratelimit.Spec{Routes: map[string]ratelimit.Limit{"orders": {Requests: 2, Per: time.Hour}}, ConcurrentPerCaller: 8}, rc)
	if ref, f := run(l, sessionCaller); ref != nil {
		t.Fatalf("redis up: %v", ref)
	} else {
		l.done(f)
	}
	srv.Kill()
	ref, f := run(l, sessionCaller)
	l.done(f)
	if ref == nil || ref.Status != http.StatusServiceUnavailable || ref.Code != codeRateLimitUnavail {
		t.Fatalf("session caller, redis down: %+v; want 503 %s", ref, codeRateLimitUnavail)
	}
	for i, want := range []int{0, 0, http.StatusTooManyRequests} {
		ref, f := run(l, anonCaller)
		l.done(f)
		got := 0
		if ref != nil {
			got = ref.Status
		}
		if got != want {
			t.Fatalf("anonymous request %d, redis down: %+v; want status %d (local fallback budget of 2)", i, ref, want)
		}
	}
	if l.conc.Callers() != 0 {
		t.Fatal("a refused request kept its concurrency slot")
	}
}

// The refusal carries the 429's headers in Refusal.Header; the sampler
// marks all but the first refusal per caller and route in a window
// Unaudited, and the next audited one carries the count.
func TestLimitStageRefusalHeadersAndSampling(t *testing.T) {
	l := testLimits(t, ratelimit.Spec{Routes: map[string]ratelimit.Limit{"orders": {Requests: 1, Per: time.Hour}}, ConcurrentPerCaller: 8}, nil)
	ref, f := run(l, sessionCaller)
	l.done(f)
	if ref != nil {
		t.Fatal(ref)
	}
	var refs []*pipeline.Refusal
	for range 3 {
		ref, f := run(l, sessionCaller)
		l.done(f)
		refs = append(refs, ref)
	}
	first := refs[0]
	if first == nil || first.Status != 429 || first.Code != codeRateLimited || first.Unaudited {
		t.Fatalf("first refusal: %+v", first)
	}
	for _, h := range []string{"Retry-After", "RateLimit", "RateLimit-Policy"} {
		if first.Header.Get(h) == "" {
			t.Fatalf("refusal lacks %s: %v", h, first.Header)
		}
	}
	if !refs[1].Unaudited || !refs[2].Unaudited {
		t.Fatal("refusals after the first in the window are audited individually")
	}
}

// A session's end cancels its requests in flight, and only its own; a
// request tracked just after its session ended is cancelled at once.
func TestFlightsEndCancelsTheSessionsRequests(t *testing.T) {
	l := testLimits(t, ratelimit.Spec{ConcurrentPerCaller: 8}, nil)
	l.flights.grace = 0 // the e2e test covers the grace period
	ref, mine := run(l, sessionCaller)
	if ref != nil {
		t.Fatal(ref)
	}
	other := pipeline.Caller{Kind: pipeline.SessionCookie, SessionID: "s2"}
	_, theirs := run(l, other)
	ctxOf := func(f *flight) context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		inner := f.cancel
		f.cancel = func() { inner(); cancel() }
		return ctx
	}
	mineCtx, theirsCtx := ctxOf(mine), ctxOf(theirs)
	if n := l.flights.end("s1", nil); n != 1 {
		t.Fatalf("end cancelled %d requests, want 1", n)
	}
	if mineCtx.Err() == nil {
		t.Fatal("the ended session's request was not cancelled")
	}
	if theirsCtx.Err() != nil {
		t.Fatal("another session's request was cancelled")
	}
	l.done(mine)
	l.done(theirs)
	if l.flights.inFlight("s2") != 0 || l.conc.Callers() != 0 {
		t.Fatal("done left the request tracked or its slot held")
	}
	// Identified before the end, tracked after it: cancelled at once.
	lateCtx, cancel := context.WithCancel(context.Background())
	l.flights.add("s1", &flight{cancel: cancel, sid: "s1"})
	if lateCtx.Err() == nil {
		t.Fatal("a request of an ended session was tracked, not cancelled")
	}
}

// The stage refuses (500) rather than pass unlimited when the handler was
// not wrapped by track; a wrapped handler's slot is returned when it ends.
func TestLimitStageNeedsTrack(t *testing.T) {
	l := testLimits(t, ratelimit.Spec{ConcurrentPerCaller: 1}, nil)
	r := &pipeline.Request{Route: "orders", Caller: sessionCaller}
	if ref := l.Run(context.Background(), r); ref == nil || ref.Status != 500 {
		t.Fatalf("unwrapped: %+v, want 500", ref)
	}
	var inner *pipeline.Refusal
	h := l.track(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		inner = l.Run(req.Context(), &pipeline.Request{Route: "orders", Caller: sessionCaller})
	}))
	for range 3 { // cap 1: passes each time only if the slot came back
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/orders/x", nil))
		if inner != nil {
			t.Fatalf("wrapped request refused: %+v", inner)
		}
	}
}

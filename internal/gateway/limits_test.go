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
	f := &flight{Context: ctx, cancel: cancel}
	r := &pipeline.Request{Route: "orders", ClientIP: netip.MustParseAddr("192.0.2.1"), Caller: caller}
	return l.Run(f, r), f
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
// request done before the end is untracked; a request tracked just after
// its session ended is cancelled at once.
func TestFlightsEndCancelsTheSessionsRequests(t *testing.T) {
	l := testLimits(t, ratelimit.Spec{ConcurrentPerCaller: 8}, nil)
	l.flights.grace = 0 // the e2e test covers the grace period
	var mine []*flight
	for range 4 {
		ref, f := run(l, sessionCaller)
		if ref != nil {
			t.Fatal(ref)
		}
		mine = append(mine, f)
	}
	_, theirs := run(l, pipeline.Caller{Kind: pipeline.SessionCookie, SessionID: "s2"})
	l.done(mine[1]) // finished before the end: unlinked from the middle
	if n := l.flights.inFlight("s1"); n != 3 {
		t.Fatalf("%d requests tracked, want 3", n)
	}
	if n := l.flights.end("s1", mine[3]); n != 2 {
		t.Fatalf("end cancelled %d requests, want 2 (the one that ended the session is spared)", n)
	}
	if mine[0].Err() == nil || mine[2].Err() == nil {
		t.Fatal("the ended session's requests were not cancelled")
	}
	if mine[3].Err() != nil {
		t.Fatal("the request that ended its own session was cancelled")
	}
	if theirs.Err() != nil {
		t.Fatal("another session's request was cancelled")
	}
	for _, f := range append(mine, theirs) {
		l.done(f)
	}
	if l.flights.inFlight("s1") != 0 || l.flights.inFlight("s2") != 0 || l.conc.Callers() != 0 {
		t.Fatal("done left a request tracked or its slot held")
	}
	lateCtx, cancel := context.WithCancel(context.Background())
	l.flights.add("s1", &flight{Context: lateCtx, cancel: cancel})
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

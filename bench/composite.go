package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"time"
)

// compositeDelay is the latency injected into each of the composite's three
// calls (the upstream's /slow/ paths).
const compositeDelay = 20 * time.Millisecond

// compositeScenario measures a composite of three parallel calls, each to
// an upstream answering after compositeDelay, against the same three calls
// sent by the client in parallel through Gatehouse's route (what a SPA does
// without the composite), which is as slow as the slowest of the three.
// Target: the composite's p50 is at most that slowest call's p50 + 1 ms.
// (Against one direct call the composite would be charged for the spread of
// three latencies: the median of the slowest of three samples is a single
// call's 79th percentile.)
func (e *environment) compositeScenario(ctx context.Context) ([]result, error) {
	dir := filepath.Join(e.dir, "composite")
	gh, err := e.startGatehouse(ctx, dir, gatehouseConfig{store: "bolt", extraYAML: `composites:
  - name: dash
    path: /api/dash
    calls:
      a: { route: profile, path: /slow/a, query: { n: "{query.n}" } }
      b: { route: profile, path: /slow/b, query: { n: "{query.n}" } }
      c: { route: profile, path: /slow/c, query: { n: "{query.n}" } }
`})
	if err != nil {
		return nil, err
	}
	defer gh.stop()
	cookie, err := e.login(ctx)
	if err != nil {
		return nil, err
	}
	e.upstream.delay.Store(int64(compositeDelay))
	defer e.upstream.delay.Store(0)
	direct := func(rnd *rand.Rand) request {
		n := strconv.FormatUint(rnd.Uint64(), 36)
		var q request
		for _, c := range []string{"a", "b", "c"} {
			q.fanout = append(q.fanout, request{method: http.MethodGet, path: "/api/profile/slow/" + c + "?n=" + n, cookie: cookie})
		}
		return q
	}
	comp := func(rnd *rand.Rand) request {
		// A distinct query per request: identical in-flight calls of one
		// caller are shared, which would flatter the measurement.
		return request{method: http.MethodGet, path: "/api/dash?n=" + strconv.FormatUint(rnd.Uint64(), 36), cookie: cookie}
	}
	var dRounds, cRounds []round
	for i := 0; i < e.f.rounds; i++ {
		r, err := drive(ctx, e, gh, e.f.conns, e.f.duration, direct)
		if err != nil {
			return nil, err
		}
		dRounds = append(dRounds, r)
		if r, err = drive(ctx, e, gh, e.f.conns, e.f.duration, comp); err != nil {
			return nil, err
		}
		cRounds = append(cRounds, r)
	}
	d, c := summarize("3 client calls", dRounds), summarize("gatehouse", cRounds)
	if c.Non2xx > 0 || c.Errors > 0 || d.Non2xx > 0 || d.Errors > 0 {
		return nil, fmt.Errorf("composite: %d+%d non-2xx, %d+%d errors: the benchmark measures successes only\n%s", c.Non2xx, d.Non2xx, c.Errors, d.Errors, tail(gh.out.Bytes()))
	}
	res := result{Scenario: "composite", What: fmt.Sprintf("composite of 3 parallel calls, each %s upstream latency, vs the same 3 calls sent in parallel by the client, i.e. the slowest of them (Bare column): p50 %+.2f ms over the slowest call (target <= +1 ms)",
		compositeDelay, (c.P50us-d.P50us)/1000),
		Bare: &d, Gatehouse: c, Extra: map[string]any{
			"p50_over_slowest_ms": (c.P50us - d.P50us) / 1000,
			"p50_ratio":           c.P50us / d.P50us,
			"target_p50_ms":       "<= slowest + 1",
		}}
	if d.RPS > 0 {
		res.Ratio = c.RPS / d.RPS
	}
	return []result{res}, nil
}

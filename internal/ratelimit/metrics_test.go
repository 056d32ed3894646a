package ratelimit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The counters are labelled by route and result only: no caller key reaches
// a scraper, and unknown route names are folded into "other".
func TestCountersLabelRoutesNeverCallers(t *testing.T) {
	p := mustCompile(t, Spec{Default: Limit{Requests: 1, Per: time.Hour}, ConcurrentPerCaller: 1}, "orders")
	c := NewCounters(p)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	l := NewLocal(p, LocalOptions{MaxEntries: 64, Counters: c})
	conc := NewConcurrency(p, ConcurrencyOptions{Counters: c})
	ctx := context.Background()
	callers := []string{"session-secret-1", "ip:203.0.113.9"}
	for i := range 200 {
		caller := callers[i%2] + strings.Repeat("x", i)
		l.Allow(ctx, Request{Route: "orders", Caller: caller})
		l.Allow(ctx, Request{Route: "orders", Caller: caller})
		l.Allow(ctx, Request{Route: "/attacker/path/" + caller, Caller: caller})
	}
	conc.Acquire(Request{Route: "orders", Caller: "session-secret-1"})
	conc.Acquire(Request{Route: "orders", Caller: "session-secret-1"})

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			n++
			for _, lp := range m.Label {
				if strings.Contains(lp.GetValue(), "session") || strings.Contains(lp.GetValue(), "ip:") || strings.Contains(lp.GetValue(), "/") {
					t.Errorf("label %s=%q carries a request value", lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	// 2 routes (orders, other) × 5 results + 2 eviction reasons.
	if n != 12 {
		t.Errorf("%d series, want 12", n)
	}
	checks := []struct {
		route string
		r     Result
		want  uint64
	}{
		{"orders", ResultAllowed, 200}, {"orders", ResultLimited, 200}, {"orders", ResultConcurrency, 1},
		{OtherRoute, ResultLimited, 200},
	}
	for _, ck := range checks {
		if got := c.Decisions(ck.route, ck.r); got != ck.want {
			t.Errorf("%s %s = %d, want %d", ck.route, ck.r, got, ck.want)
		}
	}
	if _, capacity := c.Evictions(); capacity == 0 {
		t.Error("capacity evictions not counted")
	}
}

package ratelimit

import (
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
)

// A flood from one caller on one route yields one audited refusal per window;
// the rest are counted and reported with the next audited one.
func TestSamplerFloodIsAggregated(t *testing.T) {
	var clock testclock.Clock
	s := NewSampler(SamplerOptions{Window: time.Minute})
	type step struct {
		advance            time.Duration
		caller, route      string
		n                  int    // refusals in this step
		audited            int    // how many of them are to be audited
		suppressedReported uint64 // sum of suppressed counts returned
	}
	steps := []step{
		{0, "ip:192.0.2.1", "public", 10_000, 1, 0},
		// Another route and another caller are audited on their own.
		{0, "ip:192.0.2.1", "login", 5, 1, 0},
		{0, "session-b", "public", 1, 1, 0},
		// Next window: the first refusal is audited and carries the 9,999 counted.
		{time.Minute, "ip:192.0.2.1", "public", 3, 1, 9_999},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		audited, reported := 0, uint64(0)
		for range st.n {
			a, sup := s.Refused(st.caller, st.route, clock.Now())
			if a {
				audited++
			}
			reported += sup
		}
		if audited != st.audited || reported != st.suppressedReported {
			t.Fatalf("step %d: audited %d, suppressed reported %d; want %d, %d", i, audited, reported, st.audited, st.suppressedReported)
		}
	}
	// The flood stops: the timer's Flush reports what the ended windows counted.
	clock.Advance(time.Minute)
	got := s.Flush(clock.Now())
	want := []Summary{{Caller: "ip:192.0.2.1", Route: "login", Suppressed: 4}, {Caller: "ip:192.0.2.1", Route: "public", Suppressed: 2}}
	if len(got) != len(want) {
		t.Fatalf("flush = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Caller != want[i].Caller || got[i].Route != want[i].Route || got[i].Suppressed != want[i].Suppressed || got[i].Since.IsZero() {
			t.Errorf("summary %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if s.Len() != 0 {
		t.Errorf("%d pairs still tracked after their windows were flushed", s.Len())
	}
	if again := s.Flush(clock.Now()); len(again) != 0 {
		t.Errorf("counts reported twice: %+v", again)
	}
	// After a flush the next refusal starts afresh.
	if a, sup := s.Refused("ip:192.0.2.1", "public", clock.Now()); !a || sup != 0 {
		t.Errorf("after flush: audit=%v suppressed=%d", a, sup)
	}
}

// A flood of distinct callers keeps the sampler bounded, and no refusal goes
// uncounted: audited + suppressed reported + flushed = refusals.
func TestSamplerBoundedAndLossless(t *testing.T) {
	var clock testclock.Clock
	s := NewSampler(SamplerOptions{Window: time.Minute, MaxKeys: 100})
	var total, accounted uint64
	for round := range 3 {
		for i := range 1000 {
			for range 3 {
				a, sup := s.Refused("ip:10.0.0."+strconv.Itoa(i), "public", clock.Now())
				total++
				if a {
					accounted++
				}
				accounted += sup
			}
			if s.Len() > 100 {
				t.Fatalf("round %d: %d pairs tracked", round, s.Len())
			}
		}
		clock.Advance(30 * time.Second)
	}
	clock.Advance(time.Hour)
	for _, sum := range s.Flush(clock.Now()) {
		accounted += sum.Suppressed
	}
	if accounted != total {
		t.Fatalf("accounted for %d of %d refusals", accounted, total)
	}
}

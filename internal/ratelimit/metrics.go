package ratelimit

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Result is what a limiter decided, as counted in the metrics.
type Result int

// Results. Each is a value of the "result" label.
const (
	// ResultAllowed: the request passed.
	ResultAllowed Result = iota
	// ResultLimited: refused by a rate limit (429).
	ResultLimited
	// ResultConcurrency: refused by the concurrency cap (429).
	ResultConcurrency
	// ResultUnavailable: the shared store failed and the caller was refused (503).
	ResultUnavailable
	// ResultDegraded: the shared store failed and the in-process fallback decided.
	ResultDegraded
	numResults
)

// String is the result's label value.
func (r Result) String() string {
	switch r {
	case ResultAllowed:
		return "allowed"
	case ResultLimited:
		return "limited"
	case ResultConcurrency:
		return "concurrency_limited"
	case ResultUnavailable:
		return "unavailable"
	case ResultDegraded:
		return "degraded"
	}
	return "unknown"
}

// Counters count decisions per route and result. Their only labels are the
// route names given to Compile (plus "other") and the fixed result words:
// never a caller key, so cardinality is bounded and no identity reaches a
// scraper. Counters implement prometheus.Collector; the integrator registers
// them (Metrics.Registry().MustRegister(counters)). All methods are safe for
// concurrent use and do not allocate.
type Counters struct {
	labels    []string
	decisions [][numResults]atomic.Uint64
	// evictions of in-process entries and of leases: idle (lossless) or
	// capacity (the table was full and the least recently used entry was dropped).
	evictIdle, evictCapacity atomic.Uint64

	descDecisions, descEvictions *prometheus.Desc
}

// NewCounters makes the counters for p's routes.
func NewCounters(p *Policies) *Counters {
	return &Counters{
		labels:    p.labels,
		decisions: make([][numResults]atomic.Uint64, len(p.labels)),
		descDecisions: prometheus.NewDesc("gatehouse_ratelimit_decisions_total",
			"Rate-limit and concurrency decisions, by route and result (allowed, limited, concurrency_limited, unavailable, degraded).",
			[]string{"route", "result"}, nil),
		descEvictions: prometheus.NewDesc("gatehouse_ratelimit_evictions_total",
			"In-process limiter entries (with Redis: leases) dropped, by reason: idle (lossless) or capacity (table full; the least recently used caller's budget was reset, or its lease lost).",
			[]string{"reason"}, nil),
	}
}

// count adds one decision for the route with label index labelIdx. A nil
// *Counters counts nothing.
func (c *Counters) count(labelIdx int, r Result) {
	if c == nil {
		return
	}
	c.decisions[labelIdx][r].Add(1)
}

// Decisions returns the count for a route label and result (for tests and admin views).
func (c *Counters) Decisions(route string, r Result) uint64 {
	for i, l := range c.labels {
		if l == route {
			return c.decisions[i][r].Load()
		}
	}
	return 0
}

// Evictions returns how many in-process entries were dropped because they
// were idle, and because the table was full.
func (c *Counters) Evictions() (idle, capacity uint64) {
	return c.evictIdle.Load(), c.evictCapacity.Load()
}

// Describe implements prometheus.Collector.
func (c *Counters) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.descDecisions
	ch <- c.descEvictions
}

// Collect implements prometheus.Collector.
func (c *Counters) Collect(ch chan<- prometheus.Metric) {
	for i, l := range c.labels {
		for r := range numResults {
			ch <- prometheus.MustNewConstMetric(c.descDecisions, prometheus.CounterValue, float64(c.decisions[i][r].Load()), l, r.String())
		}
	}
	ch <- prometheus.MustNewConstMetric(c.descEvictions, prometheus.CounterValue, float64(c.evictIdle.Load()), "idle")
	ch <- prometheus.MustNewConstMetric(c.descEvictions, prometheus.CounterValue, float64(c.evictCapacity.Load()), "capacity")
}

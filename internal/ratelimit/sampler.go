package ratelimit

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// SamplerOptions configure a Sampler.
type SamplerOptions struct {
	// Window is how often at most one refusal per caller and route is audited
	// individually (default 1 minute).
	Window time.Duration
	// MaxKeys caps the caller+route pairs tracked (default 10,000). When full,
	// the least recently refused pair is dropped and its pending count is
	// moved to a per-route total, so no refusal goes uncounted.
	MaxKeys int
}

// Sampler keeps a flood of refusals from flooding the audit log: it
// aggregates. The first refusal of a caller on a route in each window is
// audited individually; the rest of that window's refusals are only counted,
// and the count is reported with the next audited refusal of the same caller
// and route, or by Flush (which the integrator calls on a timer) once the
// window has ended. So every refusal is either audited or counted in a later
// record, and one caller produces at most one record per route per window
// (plus one summary).
type Sampler struct {
	window time.Duration
	max    int

	mu       sync.Mutex
	m        map[sampleKey]*sample
	head     sample // LRU ring sentinel
	overflow map[string]uint64
}

type sampleKey struct{ caller, route string }

type sample struct {
	key        sampleKey
	start      time.Time
	suppressed uint64
	prev, next *sample
}

// Summary is a count of refusals that were not audited individually.
type Summary struct {
	// Caller is the caller key, or "" for refusals of several callers whose
	// counts were folded together when the sampler was full.
	Caller string
	Route  string
	// Suppressed is how many refusals were counted, not audited.
	Suppressed uint64
	// Since is the start of the window they fell in (zero for folded counts).
	Since time.Time
}

// NewSampler builds a Sampler.
func NewSampler(opts SamplerOptions) *Sampler {
	if opts.Window <= 0 {
		opts.Window = time.Minute
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = 10_000
	}
	s := &Sampler{window: opts.Window, max: opts.MaxKeys, m: make(map[sampleKey]*sample), overflow: make(map[string]uint64)}
	s.head.next, s.head.prev = &s.head, &s.head
	return s
}

// Refused records one refusal of caller on route at now. When audit is true,
// the integrator writes an audit record for this refusal and includes
// suppressed (refusals of the same caller and route counted, not audited,
// since the previous audited one; often 0). When audit is false it writes
// nothing: the refusal has been counted.
func (s *Sampler) Refused(caller, route string, now time.Time) (audit bool, suppressed uint64) {
	k := sampleKey{caller, route}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[k]
	if e == nil {
		if len(s.m) >= s.max {
			old := s.head.prev
			s.unlink(old)
			delete(s.m, old.key)
			if old.suppressed > 0 {
				s.overflow[old.key.route] += old.suppressed
			}
		}
		e = &sample{key: k, start: now}
		s.m[k] = e
		s.pushFront(e)
		return true, 0
	}
	s.unlink(e)
	s.pushFront(e)
	if now.Sub(e.start) < s.window {
		e.suppressed++
		return false, 0
	}
	suppressed, e.suppressed, e.start = e.suppressed, 0, now
	return true, suppressed
}

// Flush returns the counts of every window that has ended by now and forgets
// them, plus the folded per-route counts. Call it on a timer (every Window)
// and write one audit record per Summary, so a flood that stops is still
// accounted for.
func (s *Sampler) Flush(now time.Time) []Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Summary
	for k, e := range s.m {
		if now.Sub(e.start) < s.window {
			continue
		}
		if e.suppressed > 0 {
			out = append(out, Summary{Caller: k.caller, Route: k.route, Suppressed: e.suppressed, Since: e.start})
		}
		s.unlink(e)
		delete(s.m, k)
	}
	for route, n := range s.overflow {
		out = append(out, Summary{Route: route, Suppressed: n})
		delete(s.overflow, route)
	}
	slices.SortFunc(out, func(a, b Summary) int {
		if c := strings.Compare(a.Route, b.Route); c != 0 {
			return c
		}
		return strings.Compare(a.Caller, b.Caller)
	})
	return out
}

// Len is the number of caller+route pairs tracked.
func (s *Sampler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *Sampler) unlink(e *sample) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *Sampler) pushFront(e *sample) {
	e.prev, e.next = &s.head, s.head.next
	s.head.next.prev = e
	s.head.next = e
}

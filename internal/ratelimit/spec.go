package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Limit is one rate: Requests per Per, of which up to Burst may be spent at once.
type Limit struct {
	// Requests is how many requests are refilled per Per.
	Requests int
	// Per is the refill window; whole seconds, because the RateLimit headers carry
	// windows in integer seconds.
	Per time.Duration
	// Burst is the bucket's size: how many requests may arrive at once. Zero means
	// Requests, so a client may spend a whole window's quota at once.
	Burst int
}

// Spec is the rate_limits section as the limiters consume it.
type Spec struct {
	// Default applies to every route without a limit of its own, and to the
	// /bff/* endpoints; all of them share one budget per caller. The zero Limit
	// means DefaultLimit(): there is always a default (the promise "no single
	// client can exhaust capacity shared by all").
	Default Limit
	// Routes are per-route limits, by route name. A route with its own limit has
	// its own budget per caller and does not draw from Default.
	Routes map[string]Limit
	// ConcurrentPerCaller caps requests in flight per caller across all routes
	// (per instance); 0 means no cap.
	ConcurrentPerCaller int
}

// DefaultLimit is used when Spec.Default is the zero Limit: 600 per minute,
// burst 100 (the example configuration's value).
func DefaultLimit() Limit { return Limit{Requests: 600, Per: time.Minute, Burst: 100} }

// Caps keep a typo from becoming an effectively unlimited or a never-refilling limit.
const (
	MaxRequests   = 1_000_000
	MaxBurst      = 1_000_000
	MinPer        = time.Second
	MaxPer        = 24 * time.Hour
	MaxConcurrent = 100_000
)

// DefaultPolicy is the policy name of Spec.Default in the RateLimit headers.
const DefaultPolicy = "default"

// ConcurrencyPolicy is the policy name of the concurrency cap in the RateLimit headers.
const ConcurrencyPolicy = "concurrency"

// Validate reports every problem, each prefixed with its key path
// (rate_limits.routes.billing.per: ...). knownRoutes, when not nil, are the
// configured route names; a limit for any other name is an error.
func (s Spec) Validate(knownRoutes []string) error {
	var errs []error
	if s.Default != (Limit{}) {
		errs = append(errs, s.Default.validate("rate_limits.default")...)
	}
	names := make([]string, 0, len(s.Routes))
	for name := range s.Routes {
		names = append(names, name)
	}
	slices.Sort(names) // stable messages
	for _, name := range names {
		path := "rate_limits.routes." + name
		switch {
		case name == "":
			errs = append(errs, errors.New("rate_limits.routes: a route name is empty"))
			continue
		case name == DefaultPolicy || name == ConcurrencyPolicy:
			errs = append(errs, fmt.Errorf("%s: %q is the name of a built-in policy in the RateLimit headers; rename the route", path, name))
			continue
		case !headerSafe(name):
			errs = append(errs, fmt.Errorf("%s: a route name with a limit must be printable ASCII without quotes or backslashes", path))
			continue
		case knownRoutes != nil && !slices.Contains(knownRoutes, name):
			errs = append(errs, fmt.Errorf("%s: there is no route named %q; use the name of a route in routes", path, name))
			continue
		}
		errs = append(errs, s.Routes[name].validate(path)...)
	}
	if s.ConcurrentPerCaller < 0 || s.ConcurrentPerCaller > MaxConcurrent {
		errs = append(errs, fmt.Errorf("rate_limits.concurrent_per_caller: %d is out of range; use 1 to %d, or leave it out for no cap", s.ConcurrentPerCaller, MaxConcurrent))
	}
	return errors.Join(errs...)
}

func (l Limit) validate(path string) []error {
	var errs []error
	if l.Requests < 1 || l.Requests > MaxRequests {
		errs = append(errs, fmt.Errorf("%s.requests: %d is out of range; use 1 to %d", path, l.Requests, MaxRequests))
	}
	switch {
	case l.Per == 0:
		errs = append(errs, fmt.Errorf("%s.per: is required; write a duration like 1m", path))
	case l.Per < MinPer || l.Per > MaxPer:
		errs = append(errs, fmt.Errorf("%s.per: %s is out of range; use 1s to 24h", path, l.Per))
	case l.Per%time.Second != 0:
		errs = append(errs, fmt.Errorf("%s.per: %s is not a whole number of seconds (the RateLimit headers count whole seconds); write e.g. 1s, 30s, 1m", path, l.Per))
	}
	if l.Burst < 0 || l.Burst > MaxBurst {
		errs = append(errs, fmt.Errorf("%s.burst: %d is out of range; use 1 to %d, or leave it out to allow a whole window's requests at once", path, l.Burst, MaxBurst))
	} else if len(errs) == 0 && l.Burst > l.Requests {
		// A bucket that takes longer than MaxPer to refill never forgets a
		// flood, and its Redis arithmetic would leave the exact range of a Lua number.
		if fill := time.Duration(float64(l.Per) * float64(l.Burst) / float64(l.Requests)); fill > MaxPer {
			errs = append(errs, fmt.Errorf("%s.burst: %d with %d per %s takes %s to refill; keep burst × per / requests at most 24h", path, l.Burst, l.Requests, l.Per, fill.Round(time.Second)))
		}
	}
	return errs
}

// headerSafe reports whether s can be written as a Structured Fields String
// without escapes (RFC 8941 §3.3.3: printable ASCII; we also exclude '"' and
// '\\' so that the name appears verbatim).
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// policy is one compiled Limit.
type policy struct {
	name     string
	requests int
	per      time.Duration
	burst    int
	// interval is the time one request's quota takes to refill (GCRA's emission interval).
	interval time.Duration
	// full is the time an empty bucket takes to fill: an entry idle this long
	// behaves exactly like a new one, so dropping it loses nothing.
	full time.Duration
	// policyField is the precomputed RateLimit-Policy value.
	policyField string
	// quoted is the policy name as a Structured Fields String.
	quoted string
}

func compile(name string, l Limit) policy {
	if l.Burst == 0 {
		l.Burst = l.Requests
	}
	p := policy{name: name, requests: l.Requests, per: l.Per, burst: l.Burst}
	p.interval = l.Per / time.Duration(l.Requests)
	if p.interval <= 0 {
		p.interval = time.Nanosecond
	}
	full := float64(l.Per) * float64(l.Burst) / float64(l.Requests)
	p.full = time.Duration(math.Min(full, float64(math.MaxInt64)))
	p.quoted = `"` + name + `"`
	p.policyField = p.quoted + ";q=" + strconv.Itoa(l.Requests) + ";w=" + strconv.FormatInt(int64(l.Per/time.Second), 10)
	return p
}

// Policies is a validated Spec, compiled once at start-up and shared by the
// limiters: which limit a route uses, and the header values each limit writes.
type Policies struct {
	policies []policy // [0] is the default
	byRoute  map[string]int
	// labels are the metric route labels: known routes, then "other".
	labels   []string
	labelIdx map[string]int

	concurrent      int
	concurrentField string
}

// OtherRoute is the metric label for a route name that was not known at Compile.
const OtherRoute = "other"

// Compile validates spec and builds the Policies. routes are the names the
// integrator will pass as Request.Route (the configured routes, plus any names
// it uses for /bff/* endpoints); they become the metric labels, and any other
// name is counted as "other". A route limit for a name not in routes is an
// error when routes is not nil.
func Compile(spec Spec, routes []string) (*Policies, error) {
	if err := spec.Validate(routes); err != nil {
		return nil, err
	}
	def := spec.Default
	if def == (Limit{}) {
		def = DefaultLimit()
	}
	p := &Policies{
		policies: []policy{compile(DefaultPolicy, def)},
		byRoute:  make(map[string]int, len(spec.Routes)),
		labelIdx: make(map[string]int, len(routes)+len(spec.Routes)+1),
	}
	names := make([]string, 0, len(spec.Routes))
	for name := range spec.Routes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p.byRoute[name] = len(p.policies)
		p.policies = append(p.policies, compile(name, spec.Routes[name]))
	}
	for _, r := range slices.Concat(routes, names) {
		if _, dup := p.labelIdx[r]; !dup && r != OtherRoute {
			p.labelIdx[r] = len(p.labels)
			p.labels = append(p.labels, r)
		}
	}
	p.labelIdx[OtherRoute] = len(p.labels)
	p.labels = append(p.labels, OtherRoute)
	p.concurrent = spec.ConcurrentPerCaller
	if p.concurrent > 0 {
		p.concurrentField = `"` + ConcurrencyPolicy + `";q=` + strconv.Itoa(p.concurrent) + `;qu="concurrent-requests"`
	}
	return p, nil
}

// policyFor returns the index of the policy a route uses.
func (p *Policies) policyFor(route string) int {
	if i, ok := p.byRoute[route]; ok {
		return i
	}
	return 0
}

// label returns the metric label index of a route.
func (p *Policies) label(route string) int {
	if i, ok := p.labelIdx[route]; ok {
		return i
	}
	return len(p.labels) - 1
}

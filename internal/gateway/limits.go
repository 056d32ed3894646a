package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// The /bff/* endpoints limited by client address, as named in the limiter's
// policies, metric labels and audit records (route names cannot contain '/').
const (
	bffLoginRoute    = "/bff/login"
	bffCallbackRoute = "/bff/callback"
)

// Codes of the limit stage's refusals.
const (
	codeRateLimited        = "rate_limited"
	codeRateLimitUnavail   = "rate_limit_unavailable"
	summaryReason          = "rate_limited_summary"
	suppressedReasonSuffix = ";suppressed="
)

// compileLimits compiles rate_limits for the configured routes and the
// /bff/* names. Check and New both call it.
func compileLimits(cfg *config.Config) (*ratelimit.Policies, error) {
	names := make([]string, 0, len(cfg.Routes)+len(cfg.Composites)+2)
	for _, r := range cfg.Routes {
		names = append(names, r.Name)
	}
	// Composites are limited as one request (their calls are not limited
	// again) under the default budget; their names label the metrics.
	for _, c := range cfg.Composites {
		names = append(names, c.Name)
	}
	names = append(names, bffLoginRoute, bffCallbackRoute)
	return ratelimit.Compile(cfg.RateLimits.Spec, names)
}

// limits is the limit stage (rate limit and concurrency cap per caller),
// the /bff/login and /bff/callback limits by client address, and the
// in-flight tracker that ends a session's open requests when it ends.
type limits struct {
	counters *ratelimit.Counters // registered by newLimits; the frontend unregisters them
	lim      ratelimit.Limiter
	conc     *ratelimit.Concurrency
	sampler  *ratelimit.Sampler
	window   time.Duration
	flights  *flights
	audit    *audit.Logger
	metrics  *telemetry.Metrics
	client   string
	log      *slog.Logger
	now      func() time.Time
	clientIP func(*http.Request) netip.Addr
}

// limitsOptions are newLimits' inputs.
type limitsOptions struct {
	// Redis, when not nil, holds the shared budgets (the session store's
	// client); otherwise each instance keeps its own.
	Redis     redis.Scripter
	KeyPrefix string
	Audit     *audit.Logger
	Metrics   *telemetry.Metrics
	// Registerer receives the limiter's counters (default: the metrics
	// registry). Each frontend of each configuration generation registers
	// its own, labelled, and unregisters them when it closes.
	Registerer prometheus.Registerer
	Client     string
	Logger     *slog.Logger
	Now        func() time.Time
}

// samplerWindow is how often at most one rate-limit refusal per caller and
// route is audited individually (and how often summaries are written).
const samplerWindow = time.Minute

func newLimits(p *ratelimit.Policies, o limitsOptions) *limits {
	counters := ratelimit.NewCounters(p)
	reg := o.Registerer
	if reg == nil {
		reg = o.Metrics.Registry()
	}
	reg.MustRegister(counters)
	local := ratelimit.NewLocal(p, ratelimit.LocalOptions{Now: o.Now, Counters: counters})
	var lim ratelimit.Limiter = local
	if o.Redis != nil {
		// Anonymous callers fall back to this instance's budget while Redis
		// is down; callers with an identity are refused (503).
		lim = ratelimit.NewRedis(p, o.Redis, ratelimit.RedisOptions{KeyPrefix: o.KeyPrefix, Fallback: local, Counters: counters})
	}
	return &limits{
		counters: counters,
		lim:      lim,
		conc:     ratelimit.NewConcurrency(p, ratelimit.ConcurrencyOptions{Counters: counters}),
		sampler:  ratelimit.NewSampler(ratelimit.SamplerOptions{Window: samplerWindow}),
		window:   samplerWindow,
		flights:  newFlights(o.Now),
		audit:    o.Audit, metrics: o.Metrics, client: o.Client, log: o.Logger, now: o.Now,
	}
}

// flight is one request in progress: its cancellable context (it is the
// request's context, so the limit stage finds it without a WithValue
// layer), the concurrency slot it holds and the session it is tracked
// under (an intrusive list: tracking allocates nothing).
type flight struct {
	context.Context
	cancel context.CancelFunc
	req    ratelimit.Request
	held   bool
	sid    string
	// prev and next link the session's requests; tracked says f is linked.
	prev, next *flight
	tracked    bool
}

type flightKey struct{}

// Value answers flightKey with the flight itself.
func (f *flight) Value(key any) any {
	if _, ok := key.(flightKey); ok {
		return f
	}
	return f.Context.Value(key)
}

// track wraps the API handler: each request gets a cancellable context,
// the flight the limit stage fills in. When the handler returns — after the
// whole response, including a stream or a hijacked WebSocket, whose copy
// httputil.ReverseProxy runs inside ServeHTTP — the slot is released and
// the request untracked.
func (l *limits) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		f := &flight{Context: ctx, cancel: cancel}
		defer l.done(f)
		next.ServeHTTP(w, r.WithContext(f))
	})
}

// done ends a flight: the slot is returned, the session no longer tracks it.
func (l *limits) done(f *flight) {
	if f.sid != "" {
		l.flights.remove(f)
	}
	if f.held {
		l.conc.Release(f.req)
	}
	f.cancel()
}

// Run is the limit stage (pipeline.Stage): after identify, the caller is
// the session, agent grant or native handle (Caller.Key), or on anonymous
// routes the client address (ratelimit.AddrKey: IPv4, or the IPv6 /64).
func (l *limits) Run(ctx context.Context, r *pipeline.Request) *pipeline.Refusal {
	f := flightOf(ctx)
	if f == nil {
		return &pipeline.Refusal{Status: http.StatusInternalServerError, Code: "not_limited", Message: "the request could not be rate limited",
			Err: errors.New("limit stage: the handler is not wrapped by limits.track")}
	}
	req := ratelimit.Request{Route: r.Route}
	if r.Caller.Kind == pipeline.Anonymous {
		req.Caller, req.Anonymous = ratelimit.AddrKey(r.ClientIP), true
	} else {
		req.Caller = r.Caller.Key()
	}
	if ref := l.admit(ctx, f, req); ref != nil {
		return ref
	}
	if sid := r.Caller.SessionID; sid != "" {
		l.flights.add(sid, f)
	}
	return nil
}

// admit takes a concurrency slot (held by f until done) and one request of
// the caller's budget.
func (l *limits) admit(ctx context.Context, f *flight, req ratelimit.Request) *pipeline.Refusal {
	d := l.conc.Acquire(req)
	if !d.Allowed {
		return l.refusal(req, d)
	}
	f.req, f.held = req, true
	d, err := l.lim.Allow(ctx, req)
	if err != nil {
		// Fail closed: nothing passes unlimited (only callers with an
		// identity get here; anonymous ones fall back to the local budget).
		return &pipeline.Refusal{Status: http.StatusServiceUnavailable, Code: codeRateLimitUnavail,
			Message: "the rate-limit store is unavailable; try again shortly", Err: err}
	}
	if !d.Allowed {
		return l.refusal(req, d)
	}
	return nil
}

// refusal is the 429 for d. The sampler decides whether it is audited
// individually (the first per caller and route in each window, carrying the
// count suppressed before it) or only counted.
func (l *limits) refusal(req ratelimit.Request, d ratelimit.Decision) *pipeline.Refusal {
	h := make(http.Header, 3)
	msg := ratelimit.RefusalHeaders(h, d)
	ref := &pipeline.Refusal{Status: http.StatusTooManyRequests, Code: codeRateLimited, Message: msg, Header: h}
	audited, suppressed := l.sampler.Refused(req.Caller, req.Route, l.now())
	switch {
	case !audited:
		ref.Unaudited = true
	case suppressed > 0:
		ref.AuditReason = codeRateLimited + suppressedReasonSuffix + strconv.FormatUint(suppressed, 10)
	}
	return ref
}

// bff limits a /bff/* endpoint by client address (after trusted-proxy
// resolution): a flood of sign-ins from one address gets 429 while other
// addresses sign in.
func (l *limits) bff(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := l.clientIP(r)
		req := ratelimit.Request{Route: route, Caller: ratelimit.AddrKey(ip), Anonymous: true}
		f := &flight{cancel: func() {}}
		defer l.done(f)
		if ref := l.admit(r.Context(), f, req); ref != nil {
			ref.Write(w)
			l.metrics.Refused(route, ref.Code, ref.Status)
			if !ref.Unaudited {
				reason := ref.AuditReason
				if reason == "" {
					reason = ref.Code
				}
				rec := audit.Record{Event: audit.EventAccess, Outcome: audit.OutcomeDeny, Reason: reason, Client: l.client,
					Route: route, Method: r.Method, Path: route, Status: ref.Status, TraceID: telemetry.TraceID(r.Context())}
				if ip.IsValid() {
					rec.RemoteIP = ip.String()
				}
				if err := l.audit.Log(context.WithoutCancel(r.Context()), rec); err != nil {
					l.log.Error("audit record not written", "event", "access", "route", route, "err", err)
				}
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}

// flush writes one audit record per caller and route whose window ended
// with refusals that were counted but not audited.
func (l *limits) flush(ctx context.Context, now time.Time) {
	for _, s := range l.sampler.Flush(now) {
		rec := audit.Record{Event: audit.EventAccess, Outcome: audit.OutcomeDeny, Client: l.client, Route: s.Route,
			Status: http.StatusTooManyRequests, Reason: summaryReason + suppressedReasonSuffix + strconv.FormatUint(s.Suppressed, 10)}
		switch kind, v, _ := strings.Cut(s.Caller, ":"); kind {
		case "session":
			rec.Session = v
		case "ip":
			rec.RemoteIP = v
		}
		if err := l.audit.Log(ctx, rec); err != nil {
			l.log.Error("audit record not written", "event", "access", "reason", summaryReason, "route", s.Route, "err", err)
		}
	}
}

// runSummaries flushes the sampler every window until ctx ends, then once
// more for everything still counted, so a flood that stops is accounted for.
func (l *limits) runSummaries(ctx context.Context) {
	t := time.NewTicker(l.window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.flush(context.WithoutCancel(ctx), l.now().Add(2*l.window))
			return
		case <-t.C:
			l.flush(ctx, l.now())
		}
	}
}

// flights tracks requests in progress by session id, so that a session's
// end (session.Manager.OnEnd: logout, revocation, back-channel logout, a
// refused refresh, expiry, another instance's end over pub/sub) cancels
// them: the upstream request is cancelled, a stream's copy fails and the
// client connection is aborted, a WebSocket's back-end connection is closed
// by httputil.ReverseProxy, which then closes the hijacked client
// connection.
type flights struct {
	mu sync.Mutex
	// bySession holds the first of each session's requests.
	bySession map[string]*flight
	// ended remembers recently ended sessions for endedFor, so a request
	// identified just before its session ended, and tracked just after, is
	// cancelled too. Session ids are random and never reused.
	ended map[string]time.Time
	now   func() time.Time
	// grace is how long an ended session's requests may still finish
	// before they are cancelled (endGrace; 0 in unit tests).
	grace time.Duration
}

// endGrace lets a request that is finishing as its session ends complete
// (e.g. the very call that revoked the session, whose answer is on its way
// back): ordinary requests end within it, so only streams and WebSockets
// are cut. It is the bound's fixed part: a session's open requests end at
// most endGrace after the end reaches this instance.
const endGrace = time.Second

// endedFor is how long an ended session id is remembered: far longer than
// the gap between identify and the limit stage.
const endedFor = time.Minute

// pruneEndedAt is the size at which expired ids are dropped (amortised:
// one pass per pruneEndedAt ends at most while ends are spread out).
const pruneEndedAt = 1024

func newFlights(now func() time.Time) *flights {
	return &flights{bySession: map[string]*flight{}, ended: map[string]time.Time{}, now: now, grace: endGrace}
}

func (t *flights) add(sid string, f *flight) {
	t.mu.Lock()
	if _, gone := t.ended[sid]; gone {
		t.mu.Unlock()
		t.cancelLater(f)
		return
	}
	f.sid, f.tracked, f.prev = sid, true, nil
	f.next = t.bySession[sid]
	if f.next != nil {
		f.next.prev = f
	}
	t.bySession[sid] = f
	t.mu.Unlock()
}

func (t *flights) remove(f *flight) {
	t.mu.Lock()
	if f.tracked {
		if f.prev != nil {
			f.prev.next = f.next
		} else if f.next != nil {
			t.bySession[f.sid] = f.next
		} else {
			delete(t.bySession, f.sid)
		}
		if f.next != nil {
			f.next.prev = f.prev
		}
		f.prev, f.next, f.tracked = nil, nil, false
	}
	t.mu.Unlock()
}

// flightOf is the request a context belongs to (nil outside one).
func flightOf(ctx context.Context) *flight {
	f, _ := ctx.Value(flightKey{}).(*flight)
	return f
}

// end cancels every request of the session but except and returns how many.
// except is the request that ended the session itself (a refresh the IdP
// refused, a logout): it answers on its own (401), cancelling it would turn
// that answer into a 502.
func (t *flights) end(sid string, except *flight) int {
	now := t.now()
	var fs []*flight
	t.mu.Lock()
	if len(t.ended) >= pruneEndedAt {
		for id, at := range t.ended {
			if now.Sub(at) > endedFor {
				delete(t.ended, id)
			}
		}
	}
	t.ended[sid] = now
	for f := t.bySession[sid]; f != nil; {
		next := f.next
		f.prev, f.next, f.tracked = nil, nil, false
		if f != except {
			fs = append(fs, f)
		}
		f = next
	}
	delete(t.bySession, sid)
	t.mu.Unlock()
	for _, f := range fs {
		t.cancelLater(f)
	}
	return len(fs)
}

// cancelLater cancels f after the grace period. Cancelling a finished
// request's context does nothing, so the timer needs no stopping.
func (t *flights) cancelLater(f *flight) {
	if t.grace <= 0 {
		f.cancel()
		return
	}
	time.AfterFunc(t.grace, f.cancel)
}

// inFlight is how many requests of the session are tracked (tests).
func (t *flights) inFlight(sid string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for f := t.bySession[sid]; f != nil; f = f.next {
		n++
	}
	return n
}

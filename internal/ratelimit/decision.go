package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apierror"
)

// Request names what one request is limited by.
type Request struct {
	// Route is the configured route name (or a name the integrator gave a /bff/*
	// endpoint at Compile); it selects the limit.
	Route string
	// Caller is the pipeline's Caller.Key(): a session id, agent grant id,
	// native handle id, or "ip:<addr>". It is never written to a metric, a
	// header or (in Redis) a key in clear.
	Caller string
	// Anonymous is true when Caller is a client address rather than an
	// authenticated identity. It decides the behaviour when Redis is down.
	Anonymous bool
}

// Decision is the outcome of one rate-limit check.
type Decision struct {
	// Allowed is false when the request must be refused with 429.
	Allowed bool
	// Policy is the name of the limit that decided ("default", a route name, or
	// "concurrency").
	Policy string
	// Limit is the quota: requests per Window (or requests in flight for the
	// concurrency policy, whose Window is 0).
	Limit  int
	Window time.Duration
	// Remaining is how many more requests would be admitted right now.
	Remaining int
	// Reset is how long until the budget is whole again (0 for concurrency).
	Reset time.Duration
	// RetryAfter is how long until the next request can be admitted; 0 when Allowed.
	RetryAfter time.Duration
	// Degraded is true when the shared (Redis) budget was unavailable and the
	// in-process fallback decided instead (anonymous callers only).
	Degraded bool

	policyField string // precomputed RateLimit-Policy value
	quoted      string // policy name as a Structured Fields String
}

// Limiter decides whether one more request may pass. The in-process and the
// Redis limiter implement it.
type Limiter interface {
	Allow(ctx context.Context, req Request) (Decision, error)
}

// ErrUnavailable wraps every error from a shared limiter whose store cannot be
// reached. The integrator answers 503 (fail closed): nothing is let through
// unlimited.
var ErrUnavailable = errors.New("rate limit store unavailable")

// Header names (draft-ietf-httpapi-ratelimit-headers-11 and later).
const (
	HeaderPolicy     = "RateLimit-Policy"
	HeaderRateLimit  = "RateLimit"
	HeaderRetryAfter = "Retry-After"
)

// SetHeaders writes RateLimit-Policy and RateLimit for d, e.g.
//
//	RateLimit-Policy: "default";q=600;w=60
//	RateLimit: "default";r=42;t=17
//
// The concurrency policy is written with qu="concurrent-requests" and no w/t.
// A zero Decision writes nothing.
func SetHeaders(h http.Header, d Decision) {
	if d.policyField == "" {
		return
	}
	h.Set(HeaderPolicy, d.policyField)
	var buf [64]byte
	b := append(buf[:0], d.quoted...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(max(d.Remaining, 0)), 10)
	if d.Window > 0 {
		t := ceilSeconds(d.Reset)
		if !d.Allowed {
			// Retry-After must not point before the end of the effective window.
			t = retryAfterSeconds(d.RetryAfter)
		}
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, t, 10)
	}
	h.Set(HeaderRateLimit, string(b))
}

// WriteRefusal answers a refused request: 429 with the RateLimit headers,
// Retry-After (whole seconds, at least 1) and the JSON body
// {"error":"rate_limited","message":"..."}. The message names the policy, never
// the caller.
func WriteRefusal(w http.ResponseWriter, d Decision) {
	msg := RefusalHeaders(w.Header(), d)
	apierror.Write(w, http.StatusTooManyRequests, "rate_limited", msg)
}

// RefusalHeaders writes a refusal's headers (the RateLimit headers and
// Retry-After) into h and returns its message, for an integrator that
// answers through its own error type; WriteRefusal is the two together
// with the JSON body. The message names the policy, never the caller.
func RefusalHeaders(h http.Header, d Decision) (message string) {
	SetHeaders(h, d)
	secs := retryAfterSeconds(d.RetryAfter)
	h.Set(HeaderRetryAfter, strconv.FormatInt(secs, 10))
	if d.Policy == ConcurrencyPolicy {
		return "too many requests in flight from this caller; wait for one to finish and retry"
	}
	return "too many requests under the " + strconv.Quote(d.Policy) + " rate limit; retry after " + strconv.FormatInt(secs, 10) + " s (see the Retry-After header)"
}

// retryAfterSeconds rounds up to whole seconds, at least 1: a client told
// "0" would retry at once and be refused again.
func retryAfterSeconds(d time.Duration) int64 { return max(ceilSeconds(d), 1) }

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// decision builds a Decision with pol's name, quota and header values.
func (pol *policy) decision(allowed bool, remaining int, reset, retry time.Duration) Decision {
	return Decision{
		Allowed: allowed, Policy: pol.name, Limit: pol.requests, Window: pol.per,
		Remaining: remaining, Reset: reset, RetryAfter: retry,
		policyField: pol.policyField, quoted: pol.quoted,
	}
}

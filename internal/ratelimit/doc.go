// Package ratelimit limits requests per caller: a token-bucket rate per caller
// and route policy (in-process, or shared by every instance through Redis), a
// cap on requests in flight per caller, the RateLimit/RateLimit-Policy/
// Retry-After answer of a refusal, an audit sampler and metrics.
//
// The integrator compiles the rate_limits section once ([Compile]), builds a
// [Limiter] ([NewLocal] for the embedded store, [NewRedis] with a [Local]
// fallback when the store is Redis) and a [Concurrency] cap, and calls them
// from the limit stage, after identify:
//
//	d := conc.Acquire(req)            // req.Caller = Caller.Key()
//	if !d.Allowed { refuse(d) }       // 429
//	defer conc.Release(req)
//	d, err := lim.Allow(ctx, req)
//	if err != nil { 503 }             // errors.Is(err, ErrUnavailable): fail closed
//	if !d.Allowed { refuse(d) }       // WriteRefusal + Sampler.Refused for the audit record
//	SetHeaders(w.Header(), d)         // optional on allowed answers
//
// With Redis, a busy caller's instance leases tokens of the shared budget in
// small batches and spends them locally for at most 100 ms, so most requests
// cost no round trip; leasing errs toward refusing only (lease.go).
//
// See docs/ratelimits.md for the configuration and the choices made.
package ratelimit

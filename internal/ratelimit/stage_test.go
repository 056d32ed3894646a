package ratelimit

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// stage is the limit stage as the integrator will write it (the caller key
// comes from identify; here a test header stands in for it).
func stage(lim Limiter, conc *Concurrency, sampler *Sampler, audited *atomic.Int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := Request{Route: "orders", Caller: r.Header.Get("X-Test-Caller")}
		if d := conc.Acquire(req); !d.Allowed {
			WriteRefusal(w, d)
			return
		}
		defer conc.Release(req)
		d, err := lim.Allow(r.Context(), req)
		switch {
		case errors.Is(err, ErrUnavailable):
			apierror.Write(w, http.StatusServiceUnavailable, "rate_limit_unavailable", "the rate-limit store is unreachable; retry shortly")
			return
		case !d.Allowed:
			if a, _ := sampler.Refused(req.Caller, req.Route, time.Now()); a {
				audited.Add(1)
			}
			WriteRefusal(w, d)
			return
		}
		SetHeaders(w.Header(), d)
		next.ServeHTTP(w, r)
	})
}

// From the attacker's side: a session over its limit gets 429 with
// Retry-After and the RateLimit headers, and none of its refused requests
// reaches the upstream; another session is unaffected. Once with the
// in-process limiter, once with two instances sharing one Redis budget.
func TestStageSessionOverLimitGets429OthersUnaffected(t *testing.T) {
	p := mustCompile(t, Spec{Default: Limit{Requests: 5, Per: time.Hour}, ConcurrentPerCaller: 10}, "orders")
	cases := []struct {
		name      string
		instances func(t *testing.T) []Limiter
	}{
		{"in-process", func(t *testing.T) []Limiter { return []Limiter{NewLocal(p, LocalOptions{})} }},
		{"two instances on one redis", func(t *testing.T) []Limiter {
			srv := redisserver.Start(t)
			return []Limiter{NewRedis(p, newClient(t, srv), RedisOptions{}), NewRedis(p, newClient(t, srv), RedisOptions{})}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var reached, audited atomic.Int64
			upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) })
			sampler := NewSampler(SamplerOptions{})
			var servers []*httptest.Server
			for _, l := range tc.instances(t) {
				s := httptest.NewServer(stage(l, NewConcurrency(p, ConcurrencyOptions{}), sampler, &audited, upstream))
				t.Cleanup(s.Close)
				servers = append(servers, s)
			}
			do := func(i int, caller string) *http.Response {
				s := servers[i%len(servers)]
				req, _ := http.NewRequest("GET", s.URL+"/api/orders", nil)
				req.Header.Set("X-Test-Caller", caller)
				res, err := s.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res
			}
			for i := range 5 {
				res := do(i, "session-a")
				if res.StatusCode != 200 || res.Header.Get("RateLimit") != `"default";r=`+strconv.Itoa(4-i)+`;t=`+strconv.Itoa(720*(i+1)) {
					t.Fatalf("request %d: %d %q", i, res.StatusCode, res.Header.Get("RateLimit"))
				}
			}
			for i := range 20 {
				s := servers[i%len(servers)]
				req, _ := http.NewRequest("GET", s.URL+"/api/orders", nil)
				req.Header.Set("X-Test-Caller", "session-a")
				res, err := s.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var body apierror.Body
				_ = json.NewDecoder(res.Body).Decode(&body)
				res.Body.Close()
				ra, _ := strconv.Atoi(res.Header.Get("Retry-After"))
				if res.StatusCode != 429 || body.Error != "rate_limited" || ra < 1 || ra > 720 ||
					res.Header.Get("RateLimit-Policy") != `"default";q=5;w=3600` || res.Header.Get("RateLimit") != `"default";r=0;t=`+strconv.Itoa(ra) {
					t.Fatalf("refusal %d: %d %+v Retry-After=%q RateLimit=%q", i, res.StatusCode, body, res.Header.Get("Retry-After"), res.Header.Get("RateLimit"))
				}
			}
			if n := reached.Load(); n != 5 {
				t.Fatalf("%d requests reached the upstream, want the 5 allowed", n)
			}
			if n := audited.Load(); n != 1 {
				t.Errorf("%d refusals audited individually, want 1 (the rest counted)", n)
			}
			if res := do(0, "session-b"); res.StatusCode != 200 {
				t.Fatalf("session-b: %d", res.StatusCode)
			}
		})
	}
}

package ratelimit

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHeaders(t *testing.T) {
	p, err := Compile(Spec{Default: Limit{Requests: 100, Per: time.Minute}, ConcurrentPerCaller: 64}, nil)
	if err != nil {
		t.Fatal(err)
	}
	def := &p.policies[0]
	conc := NewConcurrency(p, ConcurrencyOptions{})
	cases := []struct {
		name                string
		d                   Decision
		policy, limit, retr string
	}{
		{"allowed", def.decision(true, 42, 16200*time.Millisecond, 0), `"default";q=100;w=60`, `"default";r=42;t=17`, ""},
		{"allowed, bucket full", def.decision(true, 99, 600*time.Millisecond, 0), `"default";q=100;w=60`, `"default";r=99;t=1`, ""},
		// Refused: t is Retry-After's point in time, never earlier.
		{"refused", def.decision(false, 0, time.Minute, 300*time.Millisecond), `"default";q=100;w=60`, `"default";r=0;t=1`, "1"},
		{"refused, long wait", def.decision(false, 0, time.Minute, 4100*time.Millisecond), `"default";q=100;w=60`, `"default";r=0;t=5`, "5"},
		{"refused, no wait known", def.decision(false, 0, 0, 0), `"default";q=100;w=60`, `"default";r=0;t=1`, "1"},
		{"concurrency", conc.Acquire(Request{Caller: "a"}), `"concurrency";q=64;qu="concurrent-requests"`, `"concurrency";r=63`, ""},
		{"zero decision writes nothing", Decision{Allowed: true}, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			SetHeaders(h, tc.d)
			if h.Get(HeaderPolicy) != tc.policy || h.Get(HeaderRateLimit) != tc.limit {
				t.Errorf("headers %q / %q, want %q / %q", h.Get(HeaderPolicy), h.Get(HeaderRateLimit), tc.policy, tc.limit)
			}
			if tc.d.Allowed {
				return
			}
			rec := httptest.NewRecorder()
			WriteRefusal(rec, tc.d)
			if rec.Code != http.StatusTooManyRequests {
				t.Errorf("status %d", rec.Code)
			}
			if got := rec.Header().Get("Retry-After"); got != tc.retr {
				t.Errorf("Retry-After %q, want %q", got, tc.retr)
			}
			if rec.Header().Get(HeaderRateLimit) != tc.limit {
				t.Errorf("429 RateLimit %q", rec.Header().Get(HeaderRateLimit))
			}
			var body struct{ Error, Message string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "rate_limited" || body.Message == "" {
				t.Errorf("body %q (%v)", rec.Body.String(), err)
			}
			if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
				t.Errorf("content type %q", rec.Header().Get("Content-Type"))
			}
		})
	}
}

// A concurrency refusal says to wait for a request to finish, with Retry-After 1.
func TestConcurrencyRefusalAnswer(t *testing.T) {
	p, _ := Compile(Spec{ConcurrentPerCaller: 1}, nil)
	c := NewConcurrency(p, ConcurrencyOptions{})
	c.Acquire(Request{Caller: "a"})
	d := c.Acquire(Request{Caller: "a"})
	rec := httptest.NewRecorder()
	WriteRefusal(rec, d)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "1" || rec.Header().Get(HeaderRateLimit) != `"concurrency";r=0` ||
		!strings.Contains(rec.Body.String(), `"error":"rate_limited"`) {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}

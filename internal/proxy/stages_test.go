package proxy

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
)

// bearerID is a non-cookie identifier (like the coming agent-token one).
type bearerID struct{}

func (bearerID) Recognises(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer gha_ok"
}
func (bearerID) CookieBorne() bool { return false }
func (bearerID) Identify(_ context.Context, r *pipeline.Request) *pipeline.Refusal {
	r.Caller = pipeline.Caller{Kind: pipeline.AgentBearer, SessionID: "sid-agent", Subject: "alice",
		Agent: &pipeline.Agent{Name: "bot", ID: "grant-1"}, IP: r.ClientIP}
	return nil
}

// cookieOnly recognises requests carrying a Cookie header.
type cookieOnly struct{ authenticatorIdentifier }

func (cookieOnly) Recognises(r *http.Request) bool { return r.Header.Get("Cookie") != "" }

// limitStage refuses the second request of a caller key.
type limitStage struct {
	mu   sync.Mutex
	seen map[string]int
}

func (l *limitStage) Run(_ context.Context, r *pipeline.Request) *pipeline.Refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[r.Caller.Key()]++
	if l.seen[r.Caller.Key()] > 1 {
		return &pipeline.Refusal{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "slow down"}
	}
	return nil
}

// A stage list with a second identifier and a custom (limit) stage: the
// non-cookie identifier skips CSRF, a cookie request still needs it, and
// the custom stage sees the identified caller; its refusal is counted and
// nothing reaches the upstream.
func TestStageListIdentifierChainAndCustomStage(t *testing.T) {
	cnt := &countingCounter{}
	lim := &limitStage{seen: map[string]int{}}
	h := newHarness(t, withCounter(cnt), func(h *harness, specs []RouteSpec, o *Options) []RouteSpec {
		chain := pipeline.Chain{cookieOnly{authenticatorIdentifier{h.auth}}, bearerID{}}
		o.Stages = []Stage{Route(), CSRF(chain), Identify(chain), Custom(lim), Authorize(), AttachCredential(), Audit(), Forward()}
		return specs
	})
	// Agent request: no CSRF header, no cookie: passes (CSRF does not apply).
	r := h.req("GET", "/api/profile/me", nil)
	r.Header.Del("X-CSRF")
	r.Header.Del("Cookie")
	r.Header.Set("Authorization", "Bearer gha_ok")
	if res, body := h.do(r); res.StatusCode != 200 {
		t.Fatalf("agent request: %d %s", res.StatusCode, body)
	}
	if lim.seen["agent:grant-1"] != 1 {
		t.Errorf("limit stage saw %v, want the agent's key", lim.seen)
	}
	// Cookie request without the CSRF header: refused.
	r = h.req("GET", "/api/profile/me", nil)
	r.Header.Del("X-CSRF")
	if res, _ := h.do(r); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("cookie request without CSRF header: %d", res.StatusCode)
	}
	// Second agent request: the limit stage refuses; nothing forwarded.
	h.ups["profile"].reset()
	r = h.req("GET", "/api/profile/me", nil)
	r.Header.Del("Cookie")
	r.Header.Set("Authorization", "Bearer gha_ok")
	if res, _ := h.do(r); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("limited request: %d", res.StatusCode)
	}
	if n := len(h.ups["profile"].Hits()); n != 0 {
		t.Fatalf("a limited request reached the upstream (%d)", n)
	}
	// A cookie and an agent token on one request: ambiguous, refused.
	r = h.req("GET", "/api/profile/me", nil)
	r.Header.Set("Authorization", "Bearer gha_ok")
	if res, body := h.do(r); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("cookie + agent token: %d %s", res.StatusCode, body)
	}
	if n := len(h.ups["profile"].Hits()); n != 0 {
		t.Fatalf("a refused request reached the upstream (%d)", n)
	}
	if cnt.get("profile", "rate_limited") != 1 {
		t.Errorf("rate_limited not counted: %v", cnt.refused)
	}
}

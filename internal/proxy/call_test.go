package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
)

// countingCounter records pipeline.Counter calls.
type countingCounter struct {
	mu       sync.Mutex
	refused  map[[2]string]int // route, code
	upstream map[[2]string]int // route, kind
}

func (c *countingCounter) Refused(route, code string, _ int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused == nil {
		c.refused = map[[2]string]int{}
	}
	c.refused[[2]string{route, code}]++
}

func (c *countingCounter) UpstreamError(route, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.upstream == nil {
		c.upstream = map[[2]string]int{}
	}
	c.upstream[[2]string{route, kind}]++
}

func (c *countingCounter) get(route, code string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused[[2]string{route, code}]
}

func withCounter(c *countingCounter) harnessOpt {
	return func(h *harness, specs []RouteSpec, o *Options) []RouteSpec {
		o.Counter = c
		return specs
	}
}

var alice = pipeline.Caller{Kind: pipeline.SessionCookie, SessionID: "sid-alice", Subject: "alice"}

// Call gives a Go caller (a composite) exactly the route's policy,
// credential and audit record, and returns the upstream's response.
func TestCallRunsTheRoutesPolicyCredentialAndAudit(t *testing.T) {
	cnt := &countingCounter{}
	h := newHarness(t, withCounter(cnt))
	ctx := context.Background()

	resp, err := h.p.Call(ctx, &alice, "billing", "GET", "/api/billing/plan", "x=1", nil)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	hits := h.ups["billing"].Hits()
	if len(hits) != 1 || hits[0].Path != "/v1/plan" || hits[0].RawQuery != "x=1" {
		t.Fatalf("upstream hits: %+v", hits)
	}
	if got := hits[0].Header.Get("Authorization"); got != "Bearer xchg-1-billing-api-for-user-at-alice" {
		t.Errorf("billing got %q, want its exchanged token", got)
	}
	_, committed, _ := h.audit.last()
	if len(committed) != 1 || committed[0].Route != "billing" || committed[0].Decision != "allow" || committed[0].SessionID != "sid-alice" || committed[0].Status != 200 {
		t.Errorf("audit: %+v", committed)
	}

	// The route's policy applies: a denial is a Refusal, audited, counted,
	// and nothing reaches the upstream.
	h.ups["billing"].reset()
	h.denyAll.Store(true)
	_, err = h.p.Call(ctx, &alice, "billing", "GET", "/api/billing/plan", "", nil)
	var ref *pipeline.Refusal
	if !errors.As(err, &ref) || ref.Status != http.StatusForbidden || ref.Code != "policy_denied" {
		t.Fatalf("denied Call: %v", err)
	}
	h.denyAll.Store(false)
	if cnt.get("billing", "policy_denied") != 1 {
		t.Errorf("policy_denied not counted: %v", cnt.refused)
	}
	_, _, recorded := h.audit.last()
	if len(recorded) != 1 || recorded[0].Code != "policy_denied" || recorded[0].Decision != "deny" {
		t.Errorf("refusal not audited: %+v", recorded)
	}

	// A path of another route, an anonymous caller on a session route, a
	// method the route does not allow, an unknown route: refused, nothing sent.
	for _, c := range []struct {
		caller        *pipeline.Caller
		route, method string
		path          string
		code          string
	}{
		{&alice, "billing", "GET", "/api/profile/me", "no_route"},
		{&alice, "billing", "GET", "/api/billing/../profile/me", "no_route"},
		{nil, "billing", "GET", "/api/billing/plan", "unauthenticated"},
		{&pipeline.Caller{}, "billing", "GET", "/api/billing/plan", "unauthenticated"},
		{&alice, "billing", "DELETE", "/api/billing/plan", "method_not_allowed"},
		{&alice, "nope", "GET", "/api/billing/plan", "no_route"},
	} {
		_, err := h.p.Call(ctx, c.caller, c.route, c.method, c.path, "", nil)
		if !errors.As(err, &ref) || ref.Code != c.code {
			t.Errorf("Call(%s %s %s): %v, want %s", c.route, c.method, c.path, err, c.code)
		}
	}
	for name, u := range h.ups {
		if n := len(u.Hits()); n != 0 {
			t.Errorf("upstream %s reached %d times by refused calls", name, n)
		}
	}
}

// Every refusal is counted with its code, including the ones the audit log
// cannot take (audit_unavailable) and those of dependencies that are down.
func TestEveryRefusalIsCountedByCode(t *testing.T) {
	cnt := &countingCounter{}
	h := newHarness(t, withCounter(cnt))
	down := errors.New("store down")
	h.auth.err.Store(&down)
	if res, _ := h.do(h.req("GET", "/api/profile/me", nil)); res.StatusCode != 503 {
		t.Fatalf("store down: %d", res.StatusCode)
	}
	h.auth.err.Store(nil)
	h.authzErr.Store(&down)
	if res, _ := h.do(h.req("GET", "/api/profile/me", nil)); res.StatusCode != 503 {
		t.Fatalf("PDP down: %d", res.StatusCode)
	}
	h.authzErr.Store(nil)
	h.audit.reserveErr.Store(&down)
	if res, _ := h.do(h.req("GET", "/api/profile/me", nil)); res.StatusCode != 503 {
		t.Fatalf("audit down: %d", res.StatusCode)
	}
	h.audit.reserveErr.Store(nil)
	r := h.req("GET", "/api/profile/me", nil)
	r.Header.Del("X-CSRF")
	h.do(r)
	for _, code := range []string{"session_unavailable", "policy_unavailable", "audit_unavailable"} {
		if cnt.get("profile", code) != 1 {
			t.Errorf("%s counted %d times, want 1 (%v)", code, cnt.get("profile", code), cnt.refused)
		}
	}
	n := 0
	for k, v := range cnt.refused {
		if k[0] == "profile" && k[1] != "session_unavailable" && k[1] != "policy_unavailable" && k[1] != "audit_unavailable" {
			n += v
		}
	}
	if n != 1 {
		t.Errorf("the CSRF refusal was not counted: %v", cnt.refused)
	}
}

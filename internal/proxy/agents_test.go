package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// grantOf allows exactly the listed "route method" pairs.
type grantOf map[string]bool

func (g grantOf) Allows(route, method string) bool { return g[route+" "+method] }

func agentFor(sessionID, subject string, g grantOf, expires time.Time) *pipeline.Caller {
	return &pipeline.Caller{Kind: pipeline.AgentBearer, SessionID: sessionID, Subject: subject,
		Agent: &pipeline.Agent{ID: "grant-1", Name: "bot", Expires: expires, Grant: g}}
}

// A composite's sub-call made for an agent stays inside the agent's grant:
// outside it, 403 agent_scope, audited with the actor, nothing forwarded.
func TestCallKeepsAnAgentInsideItsGrant(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	bot := agentFor("sid-alice", "alice", grantOf{"profile GET": true}, h.clock.Now().Add(time.Hour))
	resp, err := h.p.Call(ctx, bot, "profile", "GET", "/api/profile/me", "", nil)
	if err != nil {
		t.Fatalf("granted call: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, committed, _ := h.audit.last()
	if len(committed) != 1 || len(committed[0].Actor) != 1 || committed[0].Actor[0] != "agent:grant-1:bot" {
		t.Errorf("allowed record actor = %+v", committed)
	}
	h.resetHits()
	for _, c := range [][2]string{{"profile", "POST"}, {"billing", "GET"}, {"admin", "GET"}} {
		_, err := h.p.Call(ctx, bot, c[0], c[1], "/api/"+c[0]+"/x", "", nil)
		var ref *pipeline.Refusal
		if !errors.As(err, &ref) || ref.Status != 403 || ref.Code != "agent_scope" {
			t.Errorf("%s %s: %v, want 403 agent_scope", c[1], c[0], err)
		}
	}
	h.wantNothingForwarded()
	if _, _, recorded := h.audit.last(); len(recorded) != 3 || recorded[0].Actor[0] != "agent:grant-1:bot" {
		t.Errorf("refusals audited as %+v", recorded)
	}
}

// actorExchanger records the actor each exchange names.
type actorExchanger struct {
	testExchanger
	mu     sync.Mutex
	actors []string
}

func (x *actorExchanger) ExchangeAs(ctx context.Context, subject secret.Secret, a *pipeline.Agent, audience, scope, resource string) (secret.Secret, time.Time, error) {
	x.mu.Lock()
	x.actors = append(x.actors, a.ID)
	x.mu.Unlock()
	tok, exp, err := x.Exchange(ctx, subject, audience, scope, resource)
	return secret.New(tok.Reveal() + "-act-" + a.ID), exp, err
}

// An agent's exchange names it as actor; its token is cached apart from the
// user's own (each gets the one naming, or not naming, the agent) and never
// beyond the grant's expiry.
func TestAgentTokenExchangeNamesTheActorAndIsNotSharedWithTheUser(t *testing.T) {
	var xa *actorExchanger
	h := newHarness(t, func(h *harness, specs []RouteSpec, o *Options) []RouteSpec {
		xa = &actorExchanger{testExchanger: testExchanger{ttl: 5 * time.Minute, now: h.clock.Now}}
		o.Exchanger = xa
		return specs
	})
	ctx := context.Background()
	bot := agentFor("sid-alice", "alice", grantOf{"billing GET": true}, h.clock.Now().Add(time.Minute))
	got := func(c *pipeline.Caller) string {
		t.Helper()
		resp, err := h.p.Call(ctx, c, "billing", "GET", "/api/billing/plan", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		hits := h.ups["billing"].Hits()
		return hits[len(hits)-1].Header.Get("Authorization")
	}
	user1, agent1 := got(&alice), got(bot)
	user2, agent2 := got(&alice), got(bot)
	if user1 == agent1 || user1 != user2 || agent1 != agent2 {
		t.Fatalf("user %q/%q, agent %q/%q: want one cached token each, different", user1, user2, agent1, agent2)
	}
	if want := "-act-grant-1"; agent1[len(agent1)-len(want):] != want {
		t.Errorf("agent token %q does not name the actor", agent1)
	}
	if fmt.Sprint(xa.actors) != "[grant-1]" || xa.calls.Load() != 2 {
		t.Errorf("actors %v, exchanges %d", xa.actors, xa.calls.Load())
	}
	h.clock.Advance(time.Minute) // the grant's end: its exchanged token is not used past it
	got(bot)
	if xa.calls.Load() != 3 {
		t.Errorf("the agent's exchanged token outlived its grant (exchanges %d)", xa.calls.Load())
	}
}

// An exchanger that cannot name the actor never hands an agent a token that
// hides it: the request fails, nothing is forwarded.
func TestAgentTokenExchangeWithoutActorSupportFails(t *testing.T) {
	h := newHarness(t)
	bot := agentFor("sid-alice", "alice", grantOf{"billing GET": true}, h.clock.Now().Add(time.Hour))
	_, err := h.p.Call(context.Background(), bot, "billing", "GET", "/api/billing/plan", "", nil)
	var ref *pipeline.Refusal
	if !errors.As(err, &ref) || ref.Code != "token_exchange_failed" {
		t.Fatalf("err = %v, want token_exchange_failed", err)
	}
	h.wantNothingForwarded()
}

package gateway

import (
	"net/http"
	"slices"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/compose"
	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
)

// testScope is a grant: route → allowed methods.
type testScope map[string][]string

func (s testScope) Allows(route, method string) bool { return slices.Contains(s[route], method) }

// An agent may call a composite only when its grant covers every required
// call's route and method; optional calls outside it are refused one by one
// (the Doer), never widening the grant.
func TestAgentGrantMustCoverEveryRequiredCall(t *testing.T) {
	set, err := compose.Compile([]compose.Spec{{Name: "dash", Path: "/api/dash", Calls: []compose.CallSpec{
		{Name: "me", Route: "profile", Path: "/me"},
		{Name: "pay", Route: "billing", Path: "/pay", Method: http.MethodPost},
		{Name: "news", Route: "news", Path: "/n", Optional: true},
	}}}, []compose.RouteInfo{
		{Name: "profile", Path: "/api/profile/"},
		{Name: "billing", Path: "/api/billing/", Methods: []string{"GET", "POST"}},
		{Name: "news", Path: "/api/news/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cp := set.Composites()[0]
	cases := []struct {
		name     string
		agent    pipeline.Agent
		ok       bool
		failCall string
	}{
		{"every required route and method", pipeline.Agent{Grant: testScope{"profile": {"GET"}, "billing": {"POST"}}}, true, ""},
		{"optional call outside the grant is fine", pipeline.Agent{Grant: testScope{"profile": {"GET"}, "billing": {"GET", "POST"}}}, true, ""},
		{"a required route missing", pipeline.Agent{Grant: testScope{"profile": {"GET", "POST"}}}, false, "pay"},
		{"a required method missing", pipeline.Agent{Grant: testScope{"profile": {"GET"}, "billing": {"GET"}}}, false, "pay"},
		{"methods are per route, not a union", pipeline.Agent{Routes: []string{"profile", "billing"}, Methods: []string{"GET", "POST"},
			Grant: testScope{"profile": {"POST"}, "billing": {"GET", "POST"}}}, false, "me"},
		{"no grant allows nothing", pipeline.Agent{Routes: []string{"profile", "billing"}, Methods: []string{"GET", "POST"}}, false, "me"},
		{"the composite's name is not a grant of its calls", pipeline.Agent{Grant: testScope{"dash": {"GET", "POST"}}}, false, "me"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			call, ok := agentCovers(&tc.agent, cp)
			if ok != tc.ok || call != tc.failCall {
				t.Fatalf("agentCovers = %q, %v; want %q, %v", call, ok, tc.failCall, tc.ok)
			}
		})
	}
	if agentAllows(&pipeline.Agent{Grant: testScope{"profile": {"GET"}}}, "news", http.MethodGet) {
		t.Fatal("an optional call outside the grant was allowed")
	}
}

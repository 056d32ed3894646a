package gateway

import (
	"net/http"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/compose"
	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
)

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
		{"every required route and method", pipeline.Agent{Routes: []string{"profile", "billing"}, Methods: []string{"GET", "POST"}}, true, ""},
		{"optional call outside the grant is fine", pipeline.Agent{Routes: []string{"profile", "billing"}, Methods: []string{"GET", "POST"}}, true, ""},
		{"a required route missing", pipeline.Agent{Routes: []string{"profile"}, Methods: []string{"GET", "POST"}}, false, "pay"},
		{"a required method missing", pipeline.Agent{Routes: []string{"profile", "billing"}, Methods: []string{"GET"}}, false, "pay"},
		{"no methods means read-only", pipeline.Agent{Routes: []string{"profile", "billing"}}, false, "pay"},
		{"the composite's name is not a grant of its calls", pipeline.Agent{Routes: []string{"dash"}, Methods: []string{"GET", "POST"}}, false, "me"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			call, ok := agentCovers(&tc.agent, cp)
			if ok != tc.ok || call != tc.failCall {
				t.Fatalf("agentCovers = %q, %v; want %q, %v", call, ok, tc.failCall, tc.ok)
			}
		})
	}
	if agentAllows(&pipeline.Agent{Routes: []string{"profile"}}, "news", http.MethodGet) {
		t.Fatal("an optional call outside the grant was allowed")
	}
}

package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// parseWithAgents parses like Parse but with the agents section accepted, as
// it will be once the request path honours agent tokens.
func parseWithAgents(t *testing.T, src string) (*Config, error) {
	t.Helper()
	t.Setenv("GH_TEST_CLIENT_SECRET", "test-client-secret-value")
	abs, err := filepath.Abs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := &decoder{file: "t.yaml", baseDir: abs, budget: maxVisits, allowAgents: true}
	cfg := d.decodeFile([]byte(src))
	d.scrub()
	if len(d.problems) > 0 {
		sortProblems(d.problems)
		return nil, &Errors{Problems: d.problems}
	}
	return cfg, nil
}

// twoRoutes starts at line 6 and ends at line 15; agents: goes on line 16.
const twoRoutes = route0 + `  - name: pub
    path: /api/pub/
    upstream: http://pub.internal/
    credential: none
    anonymous: true
`

func TestAgentsSectionDefaults(t *testing.T) {
	cfg, err := parseWithAgents(t, head+twoRoutes+"agents:\n  delegable_routes: [a]\n")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Agents
	if a == nil {
		t.Fatal("Agents is nil")
	}
	if a.MaxTTL != 15*time.Minute || a.DefaultTTL != 5*time.Minute || a.MaxTokensPerSession != 10 || a.RateLimit != nil {
		t.Errorf("defaults = %+v", a)
	}
	if len(a.DelegableRoutes) != 1 || a.DelegableRoutes[0] != "a" {
		t.Errorf("delegable = %v", a.DelegableRoutes)
	}
}

func TestAgentsSectionValues(t *testing.T) {
	cfg, err := parseWithAgents(t, head+twoRoutes+`agents:
  max_ttl: 2m
  delegable_routes: [a]
  max_tokens_per_session: 3
  rate_limit: { requests: 60, per: 1m, burst: 5 }
`)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Agents
	// default_ttl (5m) above an explicit, shorter max_ttl follows max_ttl.
	if a.MaxTTL != 2*time.Minute || a.DefaultTTL != 2*time.Minute || a.MaxTokensPerSession != 3 {
		t.Errorf("agents = %+v", a)
	}
	if a.RateLimit == nil || *a.RateLimit != (AgentRateLimit{Requests: 60, Per: time.Minute, Burst: 5}) {
		t.Errorf("rate limit = %+v", a.RateLimit)
	}
}

func TestAgentsSectionAbsentMeansNoDelegation(t *testing.T) {
	cfg, err := parseWithAgents(t, head+twoRoutes)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Agents != nil {
		t.Errorf("Agents = %+v, want nil", cfg.Agents)
	}
}

func TestAgentsSectionErrorsNameFileLineAndKey(t *testing.T) {
	const at = head + twoRoutes // agents: is line 16, its first key line 17
	cases := []struct{ name, src, want string }{
		{"empty section", at + "agents:\n",
			`t.yaml:16: agents: the section is empty; set at least delegable_routes`},
		{"delegable missing", at + "agents:\n  max_ttl: 5m\n",
			`t.yaml:16: agents.delegable_routes: required key is missing; list the routes a user may hand to an agent`},
		{"delegable empty", at + "agents:\n  delegable_routes: []\n",
			`t.yaml:17: agents.delegable_routes: the list is empty, so nothing could be delegated`},
		{"delegable not a list", at + "agents:\n  delegable_routes: a\n",
			`t.yaml:17: agents.delegable_routes: expected a list such as [profile, billing]`},
		{"unknown route", at + "agents:\n  delegable_routes: [a, nope]\n",
			`t.yaml:17: agents.delegable_routes[1]: "nope" is not a configured route or composite`},
		{"anonymous route", at + "agents:\n  delegable_routes: [pub]\n",
			`t.yaml:17: agents.delegable_routes[0]: route "pub" is anonymous: it needs no session, so there is nothing to delegate`},
		{"listed twice", at + "agents:\n  delegable_routes: [a, a]\n",
			`t.yaml:17: agents.delegable_routes[1]: "a" is listed twice`},
		{"max_ttl not a duration", at + "agents:\n  max_ttl: 300\n  delegable_routes: [a]\n",
			`t.yaml:17: agents.max_ttl: "300" is not a duration (a unit is required)`},
		{"max_ttl zero", at + "agents:\n  max_ttl: 0s\n  delegable_routes: [a]\n",
			`t.yaml:17: agents.max_ttl: must be more than zero`},
		{"max_ttl too long", at + "agents:\n  max_ttl: 48h\n  delegable_routes: [a]\n",
			`t.yaml:17: agents.max_ttl: "48h" is longer than 24h0m0s`},
		{"default above max", at + "agents:\n  max_ttl: 1m\n  default_ttl: 2m\n  delegable_routes: [a]\n",
			`t.yaml:18: agents.default_ttl: is longer than agents.max_ttl (1m0s)`},
		{"tokens per session zero", at + "agents:\n  delegable_routes: [a]\n  max_tokens_per_session: 0\n",
			`t.yaml:18: agents.max_tokens_per_session: must be between 1 and 1000`},
		{"tokens per session not a number", at + "agents:\n  delegable_routes: [a]\n  max_tokens_per_session: many\n",
			`t.yaml:18: agents.max_tokens_per_session: expected a whole number`},
		{"rate limit without requests", at + "agents:\n  delegable_routes: [a]\n  rate_limit: { per: 1m }\n",
			`t.yaml:18: agents.rate_limit.requests: required key is missing`},
		{"rate limit fractional window", at + "agents:\n  delegable_routes: [a]\n  rate_limit: { requests: 5, per: 1500ms }\n",
			`t.yaml:18: agents.rate_limit.per: must be whole seconds between 1s and 24h0m0s`},
		{"rate limit unknown key", at + "agents:\n  delegable_routes: [a]\n  rate_limit: { requests: 5, per: 1m, window: 2 }\n",
			`t.yaml:18: agents.rate_limit.window: unknown key "window"`},
		{"unknown key", at + "agents:\n  delegable_routes: [a]\n  max_tll: 5m\n",
			`t.yaml:18: agents.max_tll: unknown key "max_tll"; did you mean "max_ttl"?`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseWithAgents(t, tc.src)
			if err == nil {
				t.Fatal("accepted")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T", err)
			}
			got := errs.Problems[0].String()
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("got  %s\nwant %s…", got, tc.want)
			}
		})
	}
}

// Until agent tokens are honoured on the request path, a valid section is
// refused rather than accepted and ignored.
func TestAgentsSectionRefusedUntilWired(t *testing.T) {
	if agentsWired {
		t.Skip("agents are wired")
	}
	_, err := parseString(t, head+twoRoutes+"agents:\n  delegable_routes: [a]\n")
	ps := problemsOf(t, err)
	if len(ps) != 1 || !strings.HasPrefix(ps[0].String(), "t.yaml:16: agents: not supported yet") {
		t.Errorf("problems = %v", ps)
	}
}

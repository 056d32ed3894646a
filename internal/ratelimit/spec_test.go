package ratelimit

import (
	"strings"
	"testing"
	"time"
)

func TestSpecValidate(t *testing.T) {
	ok := Limit{Requests: 60, Per: time.Minute}
	cases := []struct {
		name   string
		spec   Spec
		routes []string
		want   []string // substrings of the error; none = valid
	}{
		{"zero spec uses the default", Spec{}, nil, nil},
		{"example", Spec{Default: Limit{600, time.Minute, 100}, Routes: map[string]Limit{"billing": ok}, ConcurrentPerCaller: 64}, []string{"billing"}, nil},
		{"requests zero", Spec{Default: Limit{Per: time.Minute}}, nil, []string{"rate_limits.default.requests: 0 is out of range; use 1 to 1000000"}},
		{"requests negative", Spec{Default: Limit{Requests: -1, Per: time.Minute}}, nil, []string{"rate_limits.default.requests: -1 is out of range"}},
		{"requests huge", Spec{Default: Limit{Requests: MaxRequests + 1, Per: time.Minute}}, nil, []string{"rate_limits.default.requests"}},
		{"per missing", Spec{Default: Limit{Requests: 10}}, nil, []string{"rate_limits.default.per: is required"}},
		{"per sub-second", Spec{Default: Limit{Requests: 10, Per: 500 * time.Millisecond}}, nil, []string{"rate_limits.default.per: 500ms is out of range; use 1s to 24h"}},
		{"per fractional seconds", Spec{Default: Limit{Requests: 10, Per: 1500 * time.Millisecond}}, nil, []string{"not a whole number of seconds"}},
		{"per too long", Spec{Default: Limit{Requests: 10, Per: 48 * time.Hour}}, nil, []string{"rate_limits.default.per: 48h0m0s is out of range"}},
		{"burst negative", Spec{Default: Limit{Requests: 10, Per: time.Second, Burst: -1}}, nil, []string{"rate_limits.default.burst: -1 is out of range"}},
		{"burst above requests is allowed", Spec{Default: Limit{Requests: 10, Per: time.Second, Burst: 50}}, nil, nil},
		{"burst that never refills", Spec{Default: Limit{Requests: 1, Per: time.Hour, Burst: 25}}, nil, []string{"rate_limits.default.burst: 25 with 1 per 1h0m0s takes 25h0m0s to refill"}},
		{"route unknown", Spec{Routes: map[string]Limit{"biling": ok}}, []string{"billing"}, []string{`rate_limits.routes.biling: there is no route named "biling"`}},
		{"route named default", Spec{Routes: map[string]Limit{"default": ok}}, nil, []string{`rate_limits.routes.default: "default" is the name of a built-in policy`}},
		{"route name with a quote", Spec{Routes: map[string]Limit{`a"b`: ok}}, nil, []string{"printable ASCII"}},
		{"route limit invalid", Spec{Routes: map[string]Limit{"billing": {Requests: 0}}}, nil, []string{"rate_limits.routes.billing.requests", "rate_limits.routes.billing.per: is required"}},
		{"concurrency negative", Spec{ConcurrentPerCaller: -1}, nil, []string{"rate_limits.concurrent_per_caller: -1 is out of range"}},
		{"concurrency huge", Spec{ConcurrentPerCaller: MaxConcurrent + 1}, nil, []string{"rate_limits.concurrent_per_caller"}},
		{"all problems at once", Spec{Default: Limit{}, Routes: map[string]Limit{"a": {}, "b": {}}, ConcurrentPerCaller: -5}, nil,
			[]string{"routes.a.requests", "routes.b.requests", "concurrent_per_caller"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate(tc.routes)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want valid", err)
				}
				if _, err := Compile(tc.spec, tc.routes); err != nil {
					t.Fatalf("Compile = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := Compile(tc.spec, tc.routes); err == nil {
				t.Error("Compile accepted what Validate refused")
			}
		})
	}
}

func TestCompilePolicies(t *testing.T) {
	p, err := Compile(Spec{Routes: map[string]Limit{"billing": {Requests: 60, Per: time.Minute}}, ConcurrentPerCaller: 8}, []string{"billing", "orders"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		route, policy, field string
		burst                int
	}{
		// The zero Default is DefaultLimit; the policy says q per w, burst is not advertised.
		{"orders", "default", `"default";q=600;w=60`, 100},
		{"not-a-route", "default", `"default";q=600;w=60`, 100},
		// burst omitted: a whole window's requests at once.
		{"billing", "billing", `"billing";q=60;w=60`, 60},
	}
	for _, tc := range cases {
		pol := p.policies[p.policyFor(tc.route)]
		if pol.name != tc.policy || pol.policyField != tc.field || pol.burst != tc.burst {
			t.Errorf("%s: policy %s %q burst %d, want %s %q burst %d", tc.route, pol.name, pol.policyField, pol.burst, tc.policy, tc.field, tc.burst)
		}
	}
	if got := p.labels; strings.Join(got, ",") != "billing,orders,other" {
		t.Errorf("labels = %v", got)
	}
	if p.concurrentField != `"concurrency";q=8;qu="concurrent-requests"` {
		t.Errorf("concurrency field = %q", p.concurrentField)
	}
}

package config

import (
	"strings"
	"testing"
)

// `gatehouse check -c examples/bad.yaml` must print every problem of the
// file in one run, each with file:line and key.
func TestBadExampleReportsEveryProblem(t *testing.T) {
	_, err := Load("../../examples/bad.yaml")
	ps := problemsOf(t, err)
	want := []string{
		"bad.yaml:5: lisen: unknown key \"lisen\"; did you mean \"listen\"?",
		"bad.yaml:6: public_url: plain http on app.example.com would send the session cookie in clear",
		"bad.yaml:8: identity.client_id: required key is missing",
		"bad.yaml:9: identity.issuer: \"idp.example.com\" is not an absolute http(s) URL",
		"bad.yaml:10: identity.client_secret: environment variable GATEHOUSE_EXAMPLE_UNSET_SECRET is not set",
		"bad.yaml:11: identity.client_auth: \"private_key\" is not one of client_secret_basic | client_secret_post | private_key_jwt",
		"bad.yaml:12: identity.scopes: expected a list such as [openid, profile, email, offline_access], got text",
		"bad.yaml:15: session.store: \"postgres\" is not one of memory | bolt | redis",
		"bad.yaml:16: session.same_site: none is not allowed",
		"bad.yaml:17: session.idle_timeout: \"30 minutes\" is not a duration; use Go duration syntax such as 5s or 1m30s",
		"bad.yaml:22: csrf.allowed_origins[0]: \"*\" is not an origin",
		"bad.yaml:26: routes[0].path: \"api/profile/\" must start with /",
		"bad.yaml:28: routes[0].credential: unknown credential kind \"user_tokn\"; did you mean \"user_token\"?",
		"bad.yaml:29: routes[1].name: route name \"profile\" is already used by routes[0] (line 25)",
		"bad.yaml:31: routes[1].upstream: \"billing.internal\" is not an absolute http(s) URL",
		"bad.yaml:33: routes[1].credential: names 2 kinds (token_exchange, client_credentials)",
		"bad.yaml:35: routes[1].timeout: \"5 seconds\" is not a duration",
		"bad.yaml:36: routes[2].upstream: required key is missing",
		"bad.yaml:37: routes[2].path: path \"/api/billing/\" is already used by routes[1] (line 29)",
		"bad.yaml:39: routes[2].max_body: \"lots\" is not a size",
		"bad.yaml:42: composites[0].path: required key is missing",
		"bad.yaml:42: composites[0].calls: required key is missing",
		"bad.yaml:45: audit.sink: \"syslog\" is not one of stdout | file",
		"bad.yaml:48: telemetry.log_level: \"verbose\" is not one of debug | info | warn | error",
	}
	out := err.Error()
	for _, w := range want {
		if !containsLinePrefix(out, "../../examples/"+w) {
			t.Errorf("missing: %s", w)
		}
	}
	if len(ps) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(ps), len(want), out)
	}
	if strings.Count(out, "\n")+1 != len(ps) {
		t.Errorf("Error() must print one problem per line:\n%s", out)
	}
}

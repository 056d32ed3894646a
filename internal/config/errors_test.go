package config

import (
	"errors"
	"strings"
	"testing"
)

// head is a valid start of a file: 5 lines, so a case's own text starts at line 6.
const head = `public_url: https://app.example.com
identity:
  issuer: https://idp.example.com
  client_id: web
  client_secret: ${env:GH_TEST_CLIENT_SECRET}
`

// route0 starts at line 6; its keys are on lines 7-10; extra route keys go on line 11.
const route0 = `routes:
  - name: a
    path: /api/a/
    upstream: http://a.internal/
    credential: user_token
`

func parseString(t *testing.T, src string) (*Config, error) {
	t.Helper()
	t.Setenv("GH_TEST_CLIENT_SECRET", "test-client-secret-value")
	return Parse([]byte(src), "t.yaml", t.TempDir())
}

func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	if err == nil {
		t.Fatal("Parse accepted the file; want an error")
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want *config.Errors: %v", err, err)
	}
	return errs.Problems
}

// Every class of configuration mistake is refused with the file, the line,
// the key path and a way to fix it.
// errorClassCases are the error tests' inputs; the check/serve agreement
// test (agreement_test.go) runs every one through both.
func errorClassCases() []errorClassCase {
	return []errorClassCase{
		// unknown keys, with the closest known key suggested
		{"unknown key suggests closest", head + "lisen: 127.0.0.1:8080\n",
			`t.yaml:6: lisen: unknown key "lisen"; did you mean "listen"?`},
		{"unknown key in a section", head + "session:\n  idle_timout: 5m\n",
			`t.yaml:7: session.idle_timout: unknown key "idle_timout"; did you mean "idle_timeout"?`},
		{"key in the wrong section", head + "cookie_name: sid\n",
			`t.yaml:6: cookie_name: unknown key "cookie_name" here; it belongs at session.cookie_name`},
		{"unknown route key", head + route0 + "    timeuot: 5s\n",
			`t.yaml:11: routes[0].timeuot: unknown key "timeuot"; did you mean "timeout"?`},
		{"unknown key far from any", head + "frobnicate: 1\n",
			`t.yaml:6: frobnicate: unknown key "frobnicate"; the keys allowed here are: client, listen`},
		{"key set twice", head + "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n",
			`t.yaml:7: listen: key is set twice (first at line 6); keep one`},

		// wrong types
		{"routes not a list", head + "routes: all\n",
			`t.yaml:6: routes: expected a list of routes (lines starting with - name: …), got text`},
		{"scopes not a list", head[:len(head)] + "session: [a]\n",
			`t.yaml:6: session: expected a mapping (key: value lines), got a list`},
		{"bool given as text", head + route0 + "    strip_prefix: \"yes\"\n",
			`t.yaml:11: routes[0].strip_prefix: expected true or false, got text "yes"`},
		{"string given as bool", head + "client: true\n",
			`t.yaml:6: client: expected a string, got boolean true; quote it ("true") if you mean the text`},
		{"list given as scalar", head + route0 + "    methods: GET\n",
			`t.yaml:11: routes[0].methods: expected a list such as [GET, POST], got text`},

		// URLs
		{"upstream not absolute", head + "routes:\n  - name: a\n    path: /api/a/\n    upstream: a.internal:8080\n    credential: none\n",
			`t.yaml:9: routes[0].upstream: "a.internal:8080" is not an absolute http(s) URL; write it like https://host.example/path`},
		{"issuer not http", "public_url: https://app.example.com\nidentity:\n  issuer: ftp://idp.example.com\n  client_id: web\n  client_secret: ${env:GH_TEST_CLIENT_SECRET}\n",
			`t.yaml:3: identity.issuer: "ftp://idp.example.com" is not an absolute http(s) URL`},
		{"public_url with query", strings.Replace(head, "https://app.example.com", "https://app.example.com/app?x=1", 1),
			`t.yaml:1: public_url: must be scheme://host[:port] or scheme://host[:port]/prefix, without a query or fragment`},
		{"public_url with an unclean path", strings.Replace(head, "https://app.example.com", "https://app.example.com/a/../b", 1),
			`t.yaml:1: public_url: the path "/a/../b" contains a . or .. segment`},
		{"path-bound frontend with a __Host- cookie", strings.Replace(head, "https://app.example.com", "https://app.example.com/shop", 1) + "session:\n  cookie_name: __Host-x\n",
			`t.yaml:7: session.cookie_name: "__Host-x" is impossible for a path-bound frontend`},
		{"credentials in a URL", head + "telemetry:\n  otlp_endpoint: https://u:p@otel.example/\n",
			`t.yaml:7: telemetry.otlp_endpoint: the URL contains user:password@; credentials belong in a secret key, not in a URL`},
		{"plain http public_url off loopback", strings.Replace(head, "https://app.example.com", "http://app.example.com", 1),
			`t.yaml:1: public_url: plain http on app.example.com would send the session cookie in clear; use https`},

		// durations and sizes
		{"duration in words", head + route0 + "    timeout: 5 seconds\n",
			`t.yaml:11: routes[0].timeout: "5 seconds" is not a duration; use Go duration syntax such as 5s or 1m30s`},
		{"duration without unit", head + "session:\n  idle_timeout: 30\n",
			`t.yaml:7: session.idle_timeout: "30" is not a duration (a unit is required); use Go duration syntax such as 5s or 1m30s, e.g. 30s`},
		{"zero timeout", head + route0 + "    timeout: 0s\n",
			`t.yaml:11: routes[0].timeout: must be more than zero`},
		{"zero cache memory", head + "session:\n  cache_memory: 0\n",
			`t.yaml:7: session.cache_memory: must be more than zero (the cache of decrypted sessions cannot be turned off; 1MiB holds about a thousand sessions)`},
		{"cache memory not a size", head + "session:\n  cache_memory: lots\n",
			`t.yaml:7: session.cache_memory: "lots" is not a size; write a size such as 512KiB, 10MiB or 1GB (or a number of bytes)`},
		{"negative duration", head + "session:\n  refresh_before_expiry: -5s\n",
			`t.yaml:7: session.refresh_before_expiry: "-5s" is negative; durations must be zero or more`},
		{"idle longer than absolute", head + "session:\n  idle_timeout: 13h\n",
			`t.yaml:7: session.idle_timeout: is longer than session.absolute_timeout (12h0m0s), so it could never take effect; make it shorter`},
		{"max_idle_conns zero", head + route0 + "    max_idle_conns: 0\n",
			`t.yaml:11: routes[0].max_idle_conns: must be between 1 and 65536 (idle keep-alive connections kept per upstream; default 256)`},
		{"max_idle_conns not a number", head + route0 + "    max_idle_conns: many\n",
			`t.yaml:11: routes[0].max_idle_conns: expected a whole number, got text`},
		{"bad size", head + route0 + "    max_body: 10 megs\n",
			`t.yaml:11: routes[0].max_body: "10 megs" is not a size; write a size such as 512KiB, 10MiB or 1GB (or a number of bytes)`},

		// route paths
		{"path without leading slash", head + "routes:\n  - name: a\n    path: api/a/\n    upstream: http://a.internal/\n    credential: none\n",
			`t.yaml:8: routes[0].path: "api/a/" must start with /, e.g. /api/profile/`},
		{"path with dot segment", head + "routes:\n  - name: a\n    path: /api/../admin/\n    upstream: http://a.internal/\n    credential: none\n",
			`t.yaml:8: routes[0].path: "/api/../admin/" contains a . or .. segment; write it clean`},
		{"path under /bff", head + "routes:\n  - name: a\n    path: /bff/user\n    upstream: http://a.internal/\n    credential: none\n",
			`t.yaml:8: routes[0].path: "/bff/user" is under /bff, which Gatehouse reserves for its own endpoints`},
		{"path under /BFF in another case", head + "routes:\n  - name: a\n    path: /BFF/\n    upstream: http://a.internal/\n    credential: none\n",
			`t.yaml:8: routes[0].path: "/BFF/" is under /bff, which Gatehouse reserves for its own endpoints`},
		{"path /bff itself", head + "routes:\n  - name: a\n    path: /bff\n    upstream: http://a.internal/\n    credential: none\n",
			`t.yaml:8: routes[0].path: "/bff" is under /bff, which Gatehouse reserves for its own endpoints`},
		{"path under /.well-known", head + "routes:\n  - name: a\n    path: /.well-known/oauth-protected-resource\n    upstream: http://a.internal/\n    credential: none\n",
			`t.yaml:8: routes[0].path: "/.well-known/oauth-protected-resource" is under /.well-known, which Gatehouse reserves for its discovery documents`},
		{"path with query", head + "routes:\n  - name: a\n    path: /api/a?x=1\n    upstream: http://a.internal/\n    credential: none\n",
			`t.yaml:8: routes[0].path: "/api/a?x=1" must be a path only: routes match the path, never the query`},

		// duplicate routes
		{"same route name twice", head + route0 + "  - name: a\n    path: /api/b/\n    upstream: http://b.internal/\n    credential: none\n",
			`t.yaml:11: routes[1].name: route name "a" is already used by routes[0] (line 7); names must be unique`},
		{"same route path twice", head + route0 + "  - name: b\n    path: /api/a/\n    upstream: http://b.internal/\n    credential: none\n",
			`t.yaml:12: routes[1].path: path "/api/a/" is already used by routes[0] (line 7); each path belongs to one route`},

		// credentials
		{"unknown credential kind", head + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n    credential: user_tokens\n",
			`t.yaml:10: routes[0].credential: unknown credential kind "user_tokens"; did you mean "user_token"?`},
		{"unknown credential kind in a mapping", head + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n    credential:\n      jwt_bearer: {}\n",
			`t.yaml:11: routes[0].credential.jwt_bearer: unknown credential kind "jwt_bearer"; the keys allowed here are: user_token, token_exchange, client_credentials, header, none`},
		{"two credential kinds", head + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n    credential:\n      client_credentials: {scope: x}\n      token_exchange: {audience: y}\n",
			`t.yaml:11: routes[0].credential: names 2 kinds (client_credentials, token_exchange); a route attaches exactly one credential: keep one`},
		{"token_exchange without options", head + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n    credential: token_exchange\n",
			`t.yaml:10: routes[0].credential: token_exchange needs options: write credential: { token_exchange: { audience: my-api } }`},
		{"token_exchange without audience", head + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n    credential:\n      token_exchange: {scope: a}\n",
			`t.yaml:11: routes[0].credential.token_exchange.audience: required key is missing; say which API the exchanged token is for`},
		{"user_token with options", head + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n    credential:\n      user_token: {scope: a}\n",
			`t.yaml:11: routes[0].credential.user_token: user_token takes no options; write credential: user_token`},
		{"header credential on Cookie", head + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n    credential:\n      header: {name: cookie, value: \"${env:GH_TEST_CLIENT_SECRET}\"}\n",
			`t.yaml:11: routes[0].credential.header.name: Cookie is set by Gatehouse or the connection itself and cannot carry a credential`},
		{"anonymous route with the user's token", head + route0 + "    anonymous: true\n",
			`t.yaml:11: routes[0].anonymous: an anonymous route has no signed-in user, so it cannot use credential user_token; use client_credentials, header or none`},

		{"websocket route without GET", head + route0 + "    methods: [POST]\n    websocket: true\n",
			`t.yaml:11: routes[0].methods: a websocket route must allow GET (the WebSocket handshake is a GET request)`},
		{"PDP token over plain http", head + "policy:\n  pdp:\n    url: http://pdp.internal/\n    token: \"${env:GH_TEST_CLIENT_SECRET}\"\n",
			`t.yaml:8: policy.pdp.url: plain http would send policy.pdp.token in clear; use https`},
		{"token exchange resource not absolute", head + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n    credential:\n      token_exchange: {audience: a, resource: /rel}\n",
			`t.yaml:11: routes[0].credential.token_exchange.resource: "/rel" is not an absolute URI without #fragment (RFC 8707)`},
		{"audit fsync zero", head + "audit:\n  fsync_interval: 0s\n",
			`t.yaml:7: audit.fsync_interval: must be more than zero`},

		// enums
		{"unknown store", head + "session:\n  store: postgres\n",
			`t.yaml:7: session.store: "postgres" is not one of memory | bolt | redis`},
		{"enum typo suggests", head + "audit:\n  sink: stdot\n",
			`t.yaml:7: audit.sink: "stdot" is not one of stdout | file; did you mean "stdout"?`},
		{"same_site none", head + "session:\n  same_site: none\n",
			`t.yaml:7: session.same_site: none is not allowed: the session cookie must not travel on cross-site requests; use strict (default) or lax`},
		{"unknown method", head + route0 + "    methods: [GET, FETCH]\n",
			`t.yaml:11: routes[0].methods[1]: "FETCH" is not a supported method; use GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS`},

		// missing required keys
		{"missing public_url", "identity:\n  issuer: https://idp.example.com\n  client_id: web\n  client_secret: ${env:GH_TEST_CLIENT_SECRET}\n",
			`t.yaml:1: public_url: required key is missing; add the frontend's origin as browsers see it`},
		{"missing identity", "public_url: https://app.example.com\n",
			`t.yaml:1: identity: required key is missing; add identity: with issuer, client_id and client_secret`},
		{"missing issuer", "public_url: https://app.example.com\nidentity:\n  client_id: web\n  client_secret: ${env:GH_TEST_CLIENT_SECRET}\n",
			`t.yaml:2: identity.issuer: required key is missing; add the OpenID Provider's issuer URL`},
		{"missing client_id", "public_url: https://app.example.com\nidentity:\n  issuer: https://idp.example.com\n  client_secret: ${env:GH_TEST_CLIENT_SECRET}\n",
			`t.yaml:2: identity.client_id: required key is missing`},
		{"missing upstream", head + "routes:\n  - name: a\n    path: /api/a/\n    credential: none\n",
			`t.yaml:7: routes[0].upstream: required key is missing; add the URL requests are forwarded to`},
		{"missing credential", head + "routes:\n  - name: a\n    path: /api/a/\n    upstream: http://a.internal/\n",
			`t.yaml:7: routes[0].credential: required key is missing; say what the upstream receives`},
		{"store redis without redis", head + "session:\n  store: redis\n",
			`t.yaml:7: session.redis: session.store is redis but session.redis is missing; add session.redis.url (or addrs)`},

		// composites (the loader checks their shape; internal/compose the rest, at build)
		{"composite without path and calls", head + route0 + "composites:\n  - name: dashboard\n",
			`t.yaml:12: composites[0].path: required key is missing; add the exact path the composite answers`},
		{"composite calls not a mapping", head + route0 + "composites:\n  - name: d\n    path: /api/d\n    calls: [a]\n",
			`t.yaml:14: composites[0].calls: expected a mapping of call name to call`},
		{"composite call unknown key", head + route0 + "composites:\n  - name: d\n    path: /api/d\n    calls:\n      a: { route: a, path: /x, tiemout: 2s }\n",
			`t.yaml:15: composites[0].calls.a.tiemout: unknown key "tiemout"; did you mean "timeout"?`},
		{"composite call without route", head + route0 + "composites:\n  - name: d\n    path: /api/d\n    calls:\n      a: { path: /x }\n",
			`t.yaml:15: composites[0].calls.a.route: required key is missing`},
		{"composite path with trailing slash", head + route0 + "composites:\n  - name: d\n    path: /api/d/\n    calls:\n      a: { route: a, path: /x }\n",
			`t.yaml:13: composites[0].path: "/api/d/" must not end with /`},
		{"composite bad timeout", head + route0 + "composites:\n  - name: d\n    path: /api/d\n    timeout: soon\n    calls:\n      a: { route: a, path: /x }\n",
			`t.yaml:14: composites[0].timeout: "soon" is not a duration`},

		// not supported yet: refused, never accepted and ignored
		{"private_key_jwt with a client secret", head + "  client_auth: private_key_jwt\n  private_key: ${env:GH_TEST_CLIENT_SECRET}\n",
			`t.yaml:5: identity.client_secret: is not used with client_auth: private_key_jwt; remove it`},
		{"private_key_jwt without private_key", strings.Replace(head, "  client_secret: ${env:GH_TEST_CLIENT_SECRET}\n", "  client_auth: private_key_jwt\n", 1),
			`t.yaml:2: identity.private_key: required key is missing; add private_key: ${file:/path/to/key.pem}`},
		{"private_key not PEM", strings.Replace(head, "  client_secret: ${env:GH_TEST_CLIENT_SECRET}\n", "  client_auth: private_key_jwt\n  private_key: ${env:GH_TEST_CLIENT_SECRET}\n", 1),
			`t.yaml:6: identity.private_key: is not a PEM private key`},
		{"private_key without private_key_jwt", head + "  private_key: ${env:GH_TEST_CLIENT_SECRET}\n",
			`t.yaml:6: identity.private_key: is used only with client_auth: private_key_jwt; remove it or set client_auth`},

		// rate_limits (values checked by ratelimit.Spec.Validate, placed at the key's line)
		{"rate limit for an unknown route", head + route0 + "rate_limits:\n  routes:\n    biling: { requests: 5, per: 1m }\n",
			`t.yaml:13: rate_limits.routes.biling: there is no route named "biling"; use the name of a route in routes`},
		{"rate limit per not whole seconds", head + route0 + "rate_limits:\n  default:\n    requests: 10\n    per: 1500ms\n",
			`t.yaml:14: rate_limits.default.per: 1.5s is not a whole number of seconds`},
		{"rate limit requests out of range", head + route0 + "rate_limits:\n  routes:\n    a: { requests: 0, per: 1m }\n",
			`t.yaml:13: rate_limits.routes.a.requests: 0 is out of range; use 1 to 1000000`},
		{"rate limit per missing", head + route0 + "rate_limits:\n  default: { requests: 10 }\n",
			`t.yaml:12: rate_limits.default.per: required key is missing; write the window as a duration, e.g. per: 1m`},
		{"rate limit burst never refills", head + route0 + "rate_limits:\n  default: { requests: 1, per: 1h, burst: 100 }\n",
			`t.yaml:12: rate_limits.default.burst: 100 with 1 per 1h0m0s takes 100h0m0s to refill`},
		{"rate limit unknown key", head + route0 + "rate_limits:\n  default: { requests: 1, per: 1m, brust: 2 }\n",
			`t.yaml:12: rate_limits.default.brust: unknown key "brust"; did you mean "burst"?`},
		{"rate limit reserved route name", head + "routes:\n  - name: default\n    path: /api/a/\n    upstream: http://a.internal/\n    credential: none\nrate_limits:\n  routes:\n    default: { requests: 1, per: 1m }\n",
			`t.yaml:13: rate_limits.routes.default: "default" is the name of a built-in policy`},
		{"concurrency cap zero", head + "rate_limits:\n  concurrent_per_caller: 0\n",
			`t.yaml:7: rate_limits.concurrent_per_caller: 0 is out of range; use 1 to 100000 (leave it out for 64)`},
		{"concurrency cap too large", head + "rate_limits:\n  concurrent_per_caller: 100001\n",
			`t.yaml:7: rate_limits.concurrent_per_caller: 100001 is out of range; use 1 to 100000`},

		// secrets
		{"missing environment variable", strings.Replace(head, "GH_TEST_CLIENT_SECRET", "GH_TEST_SURELY_UNSET_VAR", 1),
			`t.yaml:5: identity.client_secret: environment variable GH_TEST_SURELY_UNSET_VAR is not set (referenced as ${env:GH_TEST_SURELY_UNSET_VAR}): set it or change the reference`},
		{"unreadable secret file", strings.Replace(head, "${env:GH_TEST_CLIENT_SECRET}", "${file:no/such/file}", 1),
			`t.yaml:5: identity.client_secret: read secret file: open `},
		{"malformed reference", strings.Replace(head, "${env:GH_TEST_CLIENT_SECRET}", "${vault:x}", 1),
			`t.yaml:5: identity.client_secret: malformed secret reference; use ${env:NAME} or ${file:/path}`},
		{"reference in a non-secret key", strings.Replace(head, "client_id: web", "client_id: ${env:CLIENT_ID}", 1),
			`t.yaml:4: identity.client_id: secret references (${env:…}, ${file:…}) are only resolved in secret keys`},
		{"short cookie key", head + "session:\n  cookie_keys: [\"${env:GH_TEST_SHORT}\"]\n",
			`t.yaml:7: session.cookie_keys[0]: the key is shorter than 16 bytes`},

		// other
		{"redis password in url", head + "session:\n  store: redis\n  redis:\n    url: redis://:pw@127.0.0.1:6379/0\n",
			`t.yaml:9: session.redis.url: the URL contains a password; put it in session.redis.password as ${env:NAME} or ${file:/path}`},
		{"bad CIDR", head + "trusted_proxies: [10.0.0.0/33]\n",
			`t.yaml:6: trusted_proxies[0]: "10.0.0.0/33" is not a CIDR; write it like 10.0.0.0/8 or 192.0.2.7/32`},
		{"CIDR with host bits", head + "trusted_proxies: [10.1.2.3/8]\n",
			`t.yaml:6: trusted_proxies[0]: "10.1.2.3/8" has bits set beyond its prefix length; did you mean 10.0.0.0/8?`},
		{"YAML syntax error", head + "routes:\n  - name: a\n   path: x\n",
			`t.yaml:6: invalid YAML: did not find expected '-' indicator`}, // the YAML library reports the enclosing block's line
		{"two documents", head + "---\nlisten: x\n",
			`t.yaml:6: a second YAML document (after ---) is not allowed`},
		{"empty file", "# nothing\n",
			`t.yaml:1: the file is empty; start from examples/gatehouse.yaml`},
		{"admin and public on one port", head + "listen: 127.0.0.1:9000\nadmin_listen: 127.0.0.1:9000\n",
			`t.yaml:7: admin_listen: uses the same port as listen (127.0.0.1:9000); the admin listener must be separate`},
	}
}

type errorClassCase struct {
	name string
	src  string
	want string // a line of the error output
}

func TestEveryErrorClassNamesFileLineAndKey(t *testing.T) {
	for _, tc := range errorClassCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GH_TEST_SHORT", "too-short")
			_, err := parseString(t, tc.src)
			problemsOf(t, err)
			if !containsLinePrefix(err.Error(), tc.want) {
				t.Errorf("error output lacks\n  %s\ngot:\n%s", tc.want, err)
			}
		})
	}
}

// containsLinePrefix reports whether some line of out starts with want.
func containsLinePrefix(out, want string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, want) {
			return true
		}
	}
	return false
}

func TestProblemsAreCollectedNotStoppedAtTheFirst(t *testing.T) {
	src := head + `lisen: x
session:
  store: postgres
routes:
  - name: a
    path: api
    upstream: nope
    credential: magic
    timeout: soon
`
	_, err := parseString(t, src)
	ps := problemsOf(t, err)
	wantKeys := []string{"lisen", "session.store", "routes[0].path", "routes[0].upstream", "routes[0].credential", "routes[0].timeout"}
	if len(ps) != len(wantKeys) {
		t.Fatalf("got %d problems, want %d:\n%s", len(ps), len(wantKeys), err)
	}
	for i, p := range ps {
		if p.Key != wantKeys[i] {
			t.Errorf("problem %d key = %q, want %q (problems are in file order)", i, p.Key, wantKeys[i])
		}
		if p.File != "t.yaml" || p.Line < 6 || p.Column < 1 {
			t.Errorf("problem %d has position %s:%d:%d", i, p.File, p.Line, p.Column)
		}
	}
}

package policy

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// docExamples holds, for every ```cel block of docs/policy.md (keyed by its exact text), the
// inputs it must allow and deny. A block without an entry, or an entry whose block is gone,
// fails: every example in the docs is compiled and evaluated.
var docExamples = map[string]struct {
	allow, deny []func() *Input
}{
	`has(user.groups) && "admins" in user.groups`: {
		allow: []func() *Input{withClaim("groups", []any{"staff", "admins"})},
		deny:  []func() *Input{userInput, withoutClaim("groups")},
	},
	`has(user.groups) && user.groups.exists(g, g in ["finance", "auditors"])`: {
		allow: []func() *Input{withClaim("groups", []any{"auditors"})},
		deny:  []func() *Input{userInput, withoutClaim("groups")},
	},
	`user.email_verified == true && user.email.lowerAscii().endsWith("@example.com")`: {
		allow: []func() *Input{userInput, withClaim("email", "Ada@EXAMPLE.com")},
		deny:  []func() *Input{withClaim("email_verified", false), withClaim("email", "ada@example.com.evil.test")},
	},
	`request.method in ["GET", "HEAD"] || (has(user.roles) && "editor" in user.roles)`: {
		allow: []func() *Input{userInput, with(withMethod("PUT"), withClaim("roles", []any{"editor"}))},
		deny:  []func() *Input{withMethod("PUT"), with(withMethod("DELETE"), withClaim("roles", []any{"viewer"}))},
	},
	`request.path.startsWith("/api/tenants/" + user.tenant + "/")`: {
		allow: []func() *Input{with(withClaim("tenant", "acme"), withPath("/api/tenants/acme/orders"))},
		deny: []func() *Input{with(withClaim("tenant", "acme"), withPath("/api/tenants/globex/orders")),
			with(withClaim("tenant", "acme"), withPath("/api/tenants/acme-evil/orders")), withPath("/api/tenants/acme/orders")},
	},
	`"x-tenant" in request.headers && request.headers["x-tenant"] == user.tenant`: {
		allow: []func() *Input{withClaim("tenant", "acme")},
		deny:  []func() *Input{withClaim("tenant", "globex"), func() *Input { in := withClaim("tenant", "acme")(); in.Request.Header.Del("X-Tenant"); return in }},
	},
	`agent == null`: {
		allow: []func() *Input{userInput},
		deny:  []func() *Input{func() *Input { return withAgent(userInput()) }},
	},
	`agent != null && route in agent.grant.routes && request.method in agent.grant.methods`: {
		allow: []func() *Input{func() *Input { return withAgent(userInput()) }},
		deny:  []func() *Input{userInput, func() *Input { in := withAgent(userInput()); in.Request.Method = "POST"; return in }},
	},
	`request.method != "DELETE" || (session.age < duration("15m") && "otp" in session.amr)`: {
		allow: []func() *Input{userInput, withMethod("DELETE")},
		deny: []func() *Input{func() *Input { in := withMethod("DELETE")(); in.Session.Age = time.Hour; return in },
			func() *Input { in := withMethod("DELETE")(); in.Session.AMR = []string{"pwd"}; return in }},
	},
	`has(user.access_until) && session.auth_time < timestamp(user.access_until) && session.auth_time > timestamp("2026-01-01T00:00:00Z")`: {
		allow: []func() *Input{withAuthTime(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), "2026-12-31T00:00:00Z")},
		deny: []func() *Input{withAuthTime(time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC), "2026-12-31T00:00:00Z"),
			withAuthTime(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), "2026-12-31T00:00:00Z"), userInput},
	},
}

func TestDocsPolicyExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```cel\n(.*?)\n```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 10 {
		t.Fatalf("docs/policy.md has %d examples, want at least 10", len(blocks))
	}
	env := newTestEnv(t)
	seen := map[string]bool{}
	for _, b := range blocks {
		expr := strings.TrimSpace(b[1])
		seen[expr] = true
		ex, ok := docExamples[expr]
		if !ok {
			t.Errorf("docs/policy.md example has no test in docExamples:\n%s", expr)
			continue
		}
		p, err := env.Compile(expr)
		if err != nil {
			t.Errorf("example does not compile: %s\n%v", expr, err)
			continue
		}
		for i, in := range ex.allow {
			if d := NewAuthorizer(p, nil).Decide(context.Background(), in(), "r"); !d.Allow {
				t.Errorf("%s\nallow case %d: denied (%s, %v)", expr, i, d.Reason, d.Err)
			}
		}
		for i, in := range ex.deny {
			if d := NewAuthorizer(p, nil).Decide(context.Background(), in(), "r"); d.Allow {
				t.Errorf("%s\ndeny case %d: allowed", expr, i)
			}
		}
	}
	for expr := range docExamples {
		if !seen[expr] {
			t.Errorf("docExamples tests an expression docs/policy.md no longer shows:\n%s", expr)
		}
	}
}

func with(fs ...func() *Input) func() *Input {
	return func() *Input {
		in := fs[0]()
		for _, f := range fs[1:] {
			g := f()
			for k, v := range g.User {
				in.User[k] = v
			}
			if g.Request.Method != userInput().Request.Method {
				in.Request.Method = g.Request.Method
			}
			if g.Request.Path != userInput().Request.Path {
				in.Request.Path = g.Request.Path
			}
		}
		return in
	}
}

func withClaim(k string, v any) func() *Input {
	return func() *Input { in := userInput(); in.User[k] = v; return in }
}

func withoutClaim(k string) func() *Input {
	return func() *Input { in := userInput(); delete(in.User, k); return in }
}

func withMethod(m string) func() *Input {
	return func() *Input { in := userInput(); in.Request.Method = m; return in }
}

func withPath(p string) func() *Input {
	return func() *Input { in := userInput(); in.Request.Path = p; return in }
}

func withAuthTime(at time.Time, until string) func() *Input {
	return func() *Input {
		in := userInput()
		in.Session.AuthTime = at
		in.User["access_until"] = until
		return in
	}
}

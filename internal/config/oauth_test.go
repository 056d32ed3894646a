package config

import (
	"strings"
	"testing"
)

// oauthHead has one route (a, lines 6-10); the oauth section starts at line 11.
const oauthHead = head + route0

func TestOAuthClientsDecode(t *testing.T) {
	cfg, err := parseString(t, oauthHead+`oauth:
  clients:
    - client_id: ios-app
      kind: native
      redirect_uris: ["com.example.app:/oauth/callback", "http://127.0.0.1/cb"]
      routes: [a]
    - client_id: other-app
      kind: native
      dpop: required
      redirect_uris: ["https://app.example.com/app/cb"]
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OAuth == nil || len(cfg.OAuth.Clients) != 2 {
		t.Fatalf("oauth = %+v", cfg.OAuth)
	}
	c := cfg.OAuth.Clients[0]
	if c.ClientID != "ios-app" || c.Kind != "native" || c.DPoP != "required" || len(c.RedirectURIs) != 2 || c.Routes[0] != "a" || c.Pos.Line != 13 {
		t.Fatalf("client %+v", c)
	}
	if cfg2, err := parseString(t, oauthHead); err != nil || cfg2.OAuth != nil {
		t.Fatalf("no oauth section: %v %+v", err, cfg2)
	}
}

// agentsHead has routes a and b, agents delegating a, and an open clients list.
const agentsHead = head + route0 + `  - name: b
    path: /api/b/
    upstream: http://b.internal/
    credential: user_token
agents:
  delegable_routes: [a]
oauth:
  clients:
`

func TestOAuthAgentClientDecodes(t *testing.T) {
	cfg, err := parseString(t, agentsHead+"    - client_id: mcp\n      kind: agent\n      redirect_uris: [\"http://127.0.0.1/cb\"]\n      routes: [a]\n")
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.OAuth.Clients[0]; c.Kind != "agent" || c.DPoP != "optional" || c.Routes[0] != "a" {
		t.Fatalf("agent client %+v", c)
	}
}

func TestOAuthClientsErrors(t *testing.T) {
	client := func(extra string) string {
		return oauthHead + "oauth:\n  clients:\n    - client_id: ios-app\n      kind: native\n" + extra
	}
	cases := []struct{ name, src, want string }{
		{"agent client without agents", oauthHead + "oauth:\n  clients:\n    - client_id: mcp\n      kind: agent\n      redirect_uris: [\"http://127.0.0.1/cb\"]\n      routes: [a]\n",
			"t.yaml:14: oauth.clients[0].kind: an agent client gets agent grants: add an agents section"},
		{"agent client without routes", agentsHead + "    - client_id: mcp\n      kind: agent\n      redirect_uris: [\"http://127.0.0.1/cb\"]\n",
			"oauth.clients[0].routes: required key is missing"},
		{"agent route not delegable", agentsHead + "    - client_id: mcp\n      kind: agent\n      redirect_uris: [\"http://127.0.0.1/cb\"]\n      routes: [b]\n",
			`oauth.clients[0].routes[0]: "b" is not in agents.delegable_routes`},
		{"agent with required DPoP", agentsHead + "    - client_id: mcp\n      kind: agent\n      redirect_uris: [\"http://127.0.0.1/cb\"]\n      routes: [a]\n      dpop: required\n",
			"oauth.clients[0].dpop: not supported yet: agent tokens are not DPoP-bound"},
		{"agent with a private-use scheme", agentsHead + "    - client_id: mcp\n      kind: agent\n      redirect_uris: [\"com.example.agent:/cb\"]\n      routes: [a]\n",
			"only native clients may use a private-use scheme"},
		{"unknown key", client("      redirect_uris: [\"com.example.app:/cb\"]\n      secret: x\n"),
			`t.yaml:16: oauth.clients[0].secret: unknown key`},
		{"unknown section key", oauthHead + "oauth:\n  client: []\n", `t.yaml:12: oauth.client: unknown key "client"; did you mean "clients"?`},
		{"unknown kind", oauthHead + "oauth:\n  clients:\n    - client_id: x\n      kind: web\n      redirect_uris: [\"https://a.example/cb\"]\n",
			`t.yaml:14: oauth.clients[0].kind: "web" is not one of native | agent`},
		{"missing redirect_uris", client(""), `t.yaml:13: oauth.clients[0].redirect_uris: required key is missing`},
		{"plain http off loopback", client("      redirect_uris: [\"http://evil.example/cb\"]\n"),
			`t.yaml:15: oauth.clients[0].redirect_uris[0]: "http://evil.example/cb": plain http is allowed only for loopback`},
		{"fragment", client("      redirect_uris: [\"https://a.example/cb#x\"]\n"),
			`t.yaml:15: oauth.clients[0].redirect_uris[0]: "https://a.example/cb#x": a redirect URI must not have a fragment`},
		{"scheme without a dot", client("      redirect_uris: [\"myapp:/cb\"]\n"),
			`oauth.clients[0].redirect_uris[0]: "myapp:/cb": a private-use scheme must be a reverse domain name`},
		{"unknown route", client("      redirect_uris: [\"com.example.app:/cb\"]\n      routes: [a, nope]\n"),
			`t.yaml:16: oauth.clients[0].routes[1]: "nope" is not a configured route`},
		{"native without DPoP", client("      redirect_uris: [\"com.example.app:/cb\"]\n      dpop: optional\n"),
			`t.yaml:16: oauth.clients[0].dpop: native clients always use DPoP`},
		{"duplicate client", client("      redirect_uris: [\"com.example.app:/cb\"]\n    - client_id: ios-app\n      kind: native\n      redirect_uris: [\"com.example.app:/cb\"]\n"),
			`t.yaml:16: oauth.clients[1].client_id: client_id "ios-app" is already registered (line 13)`},
		{"empty clients", oauthHead + "oauth:\n  clients: []\n", `t.yaml:12: oauth.clients: the list is empty`},
		{"bad client_id", oauthHead + "oauth:\n  clients:\n    - client_id: \"a b\"\n      kind: native\n      redirect_uris: [\"com.example.app:/cb\"]\n",
			`t.yaml:13: oauth.clients[0].client_id: "a b" is not a usable client_id`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseString(t, tc.src)
			found := false
			for _, p := range problemsOf(t, err) {
				if strings.Contains(p.String(), tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want a problem containing %q, got %v", tc.want, err)
			}
		})
	}
}

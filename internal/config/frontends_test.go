package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// multi is a valid frontends: file; its line numbers are used below.
const multi = `listen: "0.0.0.0:8080"
trusted_proxies: [10.0.0.0/8]
session:
  store: memory
frontends:
  - client: web
    public_url: https://app.example.com
    identity:
      issuer: https://idp.example.com
      client_id: web-bff
      client_secret: ${env:GH_TEST_CLIENT_SECRET}
    session: { idle_timeout: 10m, cache_memory: 256MiB }
    routes:
      - { name: profile, path: /api/profile/, upstream: "http://profile.internal/", credential: user_token }
  - client: partners
    public_url: https://Partners.example.com:443/
    identity:
      issuer: https://partners-idp.example.com
      client_id: partner-bff
      client_secret: ${env:GH_TEST_CLIENT_SECRET}
    routes:
      - { name: orders, path: /api/orders/, upstream: "http://orders.internal/", credential: user_token, allow: 'true' }
  - client: shop
    public_url: https://app.example.com/shop/
    identity:
      issuer: https://idp.example.com
      client_id: shop-bff
      client_secret: ${env:GH_TEST_CLIENT_SECRET}
`

func TestFrontendsFormGivesOneConfigPerFrontend(t *testing.T) {
	cfg, err := parseString(t, multi)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.MultiFrontend() || cfg.Client != "" || len(cfg.Routes) != 0 || cfg.PublicURL != nil {
		t.Fatalf("root holds per-frontend settings: multi=%v client=%q routes=%d", cfg.MultiFrontend(), cfg.Client, len(cfg.Routes))
	}
	fs := cfg.Frontends()
	if len(fs) != 3 {
		t.Fatalf("%d frontends, want 3", len(fs))
	}
	tests := []struct {
		client, url, prefix, cookie, cookiePath, key string
		idle                                         string
		routes                                       int
	}{
		{"web", "https://app.example.com", "", "__Host-gatehouse", "/", "frontends[0]", "10m0s", 1},
		{"partners", "https://partners.example.com", "", "__Host-gatehouse", "/", "frontends[1]", "30m0s", 1},
		{"shop", "https://app.example.com/shop", "/shop", "__Secure-gatehouse-shop", "/shop", "frontends[2]", "30m0s", 0},
	}
	for i, tt := range tests {
		f := fs[i]
		got := []string{f.Client, f.PublicURL.String(), f.PathPrefix(), f.EffectiveCookieName(), f.CookiePath(), f.Key, f.Session.IdleTimeout.String()}
		want := []string{tt.client, tt.url, tt.prefix, tt.cookie, tt.cookiePath, tt.key, tt.idle}
		if !reflect.DeepEqual(got, want) || len(f.Routes) != tt.routes {
			t.Errorf("frontend %d = %q (%d routes), want %q (%d)", i, got, len(f.Routes), want, tt.routes)
		}
		// Process-wide settings are shared.
		if f.Listen != "0.0.0.0:8080" || f.Session.Store != StoreMemory || len(f.TrustedProxies) != 1 || f.Audit.Sink != cfg.Audit.Sink {
			t.Errorf("frontend %d lacks the process-wide settings: listen=%s store=%s", i, f.Listen, f.Session.Store)
		}
	}
	// Each frontend has a cache of its own, sized by its own key.
	if fs[0].Session.CacheMemory != 256<<20 || fs[1].Session.CacheMemory != DefaultSessionCacheMemory {
		t.Errorf("session.cache_memory = %d, %d; want 256MiB, then the default", fs[0].Session.CacheMemory, fs[1].Session.CacheMemory)
	}
	if k := fs[1].Routes[0].Allow.Key; k != "frontends[1].routes[0].allow" {
		t.Errorf("allow key = %q; policy compile errors must name the frontend", k)
	}
	if len(cfg.Secrets()) != 3 {
		t.Errorf("Secrets() = %d values, want each frontend's client secret", len(cfg.Secrets()))
	}
	var warned bool
	for _, w := range cfg.Warnings() {
		if w.Key == "frontends[2].session.cookie_keys" && w.Frontend == "shop" {
			warned = true
		}
	}
	if !warned {
		t.Errorf("warnings do not name their frontend: %v", cfg.Warnings())
	}
}

func TestOneFrontendFormIsTheOneElementCase(t *testing.T) {
	cfg, err := parseString(t, head+route0)
	if err != nil {
		t.Fatal(err)
	}
	fs := cfg.Frontends()
	if cfg.MultiFrontend() || len(fs) != 1 || fs[0] != cfg || cfg.Key != "" {
		t.Fatalf("one-frontend form: multi=%v frontends=%d", cfg.MultiFrontend(), len(fs))
	}
}

func TestFrontendsFormProblems(t *testing.T) {
	entry := func(client, url string) string {
		return "  - client: " + client + "\n    public_url: " + url + "\n    identity: { issuer: https://idp.example.com, client_id: x, client_secret: \"${env:GH_TEST_CLIENT_SECRET}\" }\n"
	}
	tests := []struct {
		name, src string
		want      []string
	}{
		{"per-frontend keys at the top level", "client: web\npublic_url: https://a.example.com\nsession:\n  cookie_name: x\n  store: memory\nfrontends:\n" + entry("a", "https://a.example.com"),
			[]string{
				"t.yaml:1: client: is a per-frontend key, but this file lists its frontends under frontends: (line 6); move client into each frontends[] entry",
				"t.yaml:2: public_url: is a per-frontend key",
				"t.yaml:4: session.cookie_name: is per frontend, but this file lists its frontends under frontends:",
			}},
		{"process-wide keys in an entry", "frontends:\n" + entry("a", "https://a.example.com") + "    listen: 127.0.0.1:1\n    session: { store: memory }\n",
			[]string{
				"t.yaml:5: frontends[0].listen: is process-wide: set it once at the top level",
				"t.yaml:6: frontends[0].session.store: the session store is shared by every frontend: set session.store once at the top level",
			}},
		{"duplicate client", "frontends:\n" + entry("a", "https://a.example.com") + entry("a", "https://b.example.com"),
			[]string{`t.yaml:5: frontends[1].client: client name "a" is already used by frontends[0]`}},
		{"same host and prefix", "frontends:\n" + entry("a", "https://a.example.com/x") + entry("b", "https://A.example.com:443/x/"),
			[]string{`t.yaml:6: frontends[1].public_url: "https://a.example.com/x" is already claimed by frontends[0] (a)`}},
		{"same host, same cookie, nested paths", "frontends:\n" + entry("a", "https://a.example.com") + entry("b", "https://a.example.com/x") +
			"    session: { cookie_name: __Host-gatehouse }\n",
			[]string{`t.yaml:8: frontends[1].session.cookie_name: "__Host-gatehouse" is impossible for a path-bound frontend`}},
		{"same host, same cookie name", "frontends:\n" + entry("a", "https://a.example.com") + entry("b", "https://a.example.com:8443"),
			[]string{`t.yaml:6: frontends[1].session.cookie_name: a and b are on the same host and both name their session cookie __Host-gatehouse`}},
		{"missing client and a problem inside an entry", "frontends:\n  - public_url: https://a.example.com\n    identity: { issuer: https://idp.example.com, client_id: x, client_secret: \"${env:GH_TEST_CLIENT_SECRET}\" }\n    routes:\n      - { name: r, path: api, upstream: http://x/, credential: none }\n",
			[]string{
				"t.yaml:2: frontends[0].client: required key is missing",
				`t.yaml:5: frontends[0].routes[0].path: "api" must start with /`,
			}},
		{"empty list", "frontends: []\n", []string{"t.yaml:1: frontends: is empty"}},
		{"not a list", "frontends: web\n", []string{"t.yaml:1: frontends: expected a list of frontends"}},
		{"unknown key in an entry", "frontends:\n" + entry("a", "https://a.example.com") + "    rutes: []\n",
			[]string{`t.yaml:5: frontends[0].rutes: unknown key "rutes"; did you mean "routes"?`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseString(t, tt.src)
			ps := problemsOf(t, err)
			var lines []string
			for _, p := range ps {
				lines = append(lines, p.String())
			}
			out := strings.Join(lines, "\n")
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("error output lacks\n  %s\ngot:\n%s", w, out)
				}
			}
		})
	}
}

// Problems inside an entry carry the entry's client name, so that
// `gatehouse check` can report per frontend.
func TestFrontendProblemsNameTheirFrontend(t *testing.T) {
	src := strings.Replace(multi, "upstream: \"http://orders.internal/\"", "upstream: orders.internal", 1)
	_, err := parseString(t, src)
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Frontend != "partners" || ps[0].Key != "frontends[1].routes[0].upstream" || ps[0].Line != 22 {
		t.Fatalf("problems = %+v, want one in frontend partners at line 22", ps)
	}
}

// Every configuration shipped in examples/ loads unchanged (bad.yaml must
// fail: it is the catalogue of mistakes).
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			if filepath.Base(f) == "bad.yaml" {
				if err == nil {
					t.Fatal("bad.yaml loaded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := os.Stat("../../examples/gatehouse.yaml"); err != nil {
		t.Fatal(err)
	}
}

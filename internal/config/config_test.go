package config

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
)

func TestDesignExampleLoads(t *testing.T) {
	c, err := Load("../../examples/gatehouse.yaml")
	if err != nil {
		t.Fatalf("examples/gatehouse.yaml does not load:\n%v", err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("the example should load without warnings, got %v", w)
	}
	examples, _ := filepath.Abs("../../examples")
	if c.BaseDir != examples {
		t.Errorf("BaseDir = %q, want %q", c.BaseDir, examples)
	}
	if got := c.Identity.ClientSecret.Get().Reveal(); got != "dev-only-FAKE-client-secret-do-not-use" {
		t.Errorf("client secret from examples/secrets/client-secret not resolved relative to the config file (got %d bytes)", len(got))
	}
	if c.Frontend.StaticDir != filepath.Join(examples, "dist") {
		t.Errorf("StaticDir = %q", c.Frontend.StaticDir)
	}
	if c.Session.Bolt.Path != filepath.Join(examples, "data", "sessions.db") {
		t.Errorf("Bolt.Path = %q", c.Session.Bolt.Path)
	}
	if c.Audit.Path != filepath.Join(examples, "data", "audit.jsonl") {
		t.Errorf("Audit.Path = %q", c.Audit.Path)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}; !slices.Equal(c.TrustedProxies, want) {
		t.Errorf("TrustedProxies = %v", c.TrustedProxies)
	}
	kinds := map[string]CredentialKind{}
	for _, r := range c.Routes {
		kinds[r.Name] = r.Credential.Kind
	}
	want := map[string]CredentialKind{"profile": CredUserToken, "billing": CredTokenExchange, "catalog": CredClientCredentials, "weather": CredHeader, "notifications": CredUserToken}
	if len(kinds) != len(want) {
		t.Fatalf("routes = %v", kinds)
	}
	for n, k := range want {
		if kinds[n] != k {
			t.Errorf("route %s credential = %q, want %q", n, kinds[n], k)
		}
	}
	billing := c.Route("billing")
	if te := billing.Credential.TokenExchange; te == nil || te.Audience != "billing-api" || te.Scope != "billing:read billing:write" {
		t.Errorf("billing token exchange = %+v", te)
	}
	if billing.MaxBody != 1<<20 {
		t.Errorf("billing MaxBody = %d, want 1MiB", billing.MaxBody)
	}
	weather := c.Route("weather")
	if h := weather.Credential.Header; h == nil || h.Name != "X-Api-Key" || h.Value.Get().Reveal() != "dev-only-FAKE-weather-api-key" {
		t.Errorf("weather header credential not resolved: %+v", h)
	}
	if weather.Timeout != 5*time.Second {
		t.Errorf("weather timeout = %v", weather.Timeout)
	}
	profile := c.Route("profile")
	if profile.Allow.Source != "user.email_verified == true" || profile.Allow.Pos.Line != 55 || profile.Allow.Key != "routes[0].allow" {
		t.Errorf("profile allow = %+v", profile.Allow)
	}
	if !profile.StripPrefix || profile.Timeout != DefaultRouteTimeout || profile.MaxBody != DefaultMaxBody || profile.MaxIdleConns != DefaultMaxIdleConns {
		t.Errorf("route defaults not applied: %+v", profile)
	}
	if !slices.Equal(c.Route("catalog").Methods, []string{"GET"}) {
		t.Errorf("methods default = %v, want [GET]", c.Route("catalog").Methods)
	}
	if !c.Route("catalog").Anonymous || !c.Route("notifications").WebSocket {
		t.Error("anonymous / websocket flags lost")
	}
	if got := len(c.Secrets()); got != 4 { // client secret, cookie key, weather key, admin token
		t.Errorf("Secrets() has %d values, want 4", got)
	}
	for _, s := range c.Secrets() {
		if !s.Reloadable() {
			t.Errorf("file-backed secret %s is not reloadable", s.Source())
		}
	}
}

// A minimal file gets every documented default.
func TestDefaults(t *testing.T) {
	c, err := parseString(t, head)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"client", c.Client, "web"},
		{"listen", c.Listen, "127.0.0.1:8080"},
		{"admin_listen", c.AdminListen, "127.0.0.1:9090"},
		{"store", c.Session.Store, StoreBolt},
		{"bolt path", c.Session.Bolt.Path, filepath.Join(c.BaseDir, "data", "sessions.db")},
		{"cookie_name", c.Session.CookieName, "__Host-gatehouse"},
		{"effective cookie name", c.EffectiveCookieName(), "__Host-gatehouse"},
		{"secure cookies", c.SecureCookies(), true},
		{"same_site", c.Session.SameSite, http.SameSiteStrictMode},
		{"idle", c.Session.IdleTimeout, 30 * time.Minute},
		{"absolute", c.Session.AbsoluteTimeout, 12 * time.Hour},
		{"refresh_before_expiry", c.Session.RefreshBeforeExpiry, 30 * time.Second},
		{"cache_memory", c.Session.CacheMemory, int64(128 << 20)},
		{"random cookie keys", c.RandomCookieKeys(), true},
		{"csrf header", c.CSRF.Header, "X-CSRF"},
		{"allowed origins", strings.Join(c.CSRF.AllowedOrigins, ","), "https://app.example.com"},
		{"scopes", strings.Join(c.Identity.Scopes, " "), "openid profile email offline_access"},
		{"client_auth", c.Identity.ClientAuth, ClientSecretBasic},
		{"par", c.Identity.PushedAuthorizationRequests, PARAuto},
		{"post logout", c.Identity.PostLogoutRedirect.String(), "https://app.example.com/"},
		{"audit sink", c.Audit.Sink, AuditFile},
		{"audit path", c.Audit.Path, filepath.Join(c.BaseDir, "data", "audit.jsonl")},
		{"audit fsync", c.Audit.FsyncInterval, time.Second},
		{"audit on_failure", c.Audit.OnFailure, AuditFailDeny},
		{"log level", c.Telemetry.LogLevel, slog.LevelInfo},
		{"pdp", c.Policy.PDP == nil, true},
		{"admin token", c.Admin.Token == nil, true},
		{"trusted proxies", len(c.TrustedProxies), 0},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestPlainHTTPOnLoopbackDropsTheCookiePrefixWithAWarning(t *testing.T) {
	for _, origin := range []string{"http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080", "http://app.localhost"} {
		t.Run(origin, func(t *testing.T) {
			c, err := parseString(t, strings.Replace(head, "https://app.example.com", origin, 1))
			if err != nil {
				t.Fatal(err)
			}
			if !c.Development() || c.SecureCookies() {
				t.Error("plain http on loopback must be development mode without Secure cookies")
			}
			if got := c.EffectiveCookieName(); got != "gatehouse" {
				t.Errorf("EffectiveCookieName() = %q, want gatehouse", got)
			}
			if c.Session.CookieName != "__Host-gatehouse" {
				t.Errorf("configured name changed to %q", c.Session.CookieName)
			}
			if !hasWarning(c, "session.cookie_name", "the cookie is named gatehouse") || !hasWarning(c, "public_url", "development mode") {
				t.Errorf("missing development warnings: %v", c.Warnings())
			}
		})
	}
}

// An https public_url with a cookie name lacking __Host- is refused at
// file:line (serve's OIDC client refuses it; it used to pass check with a
// warning and then never become ready).
func TestHTTPSWithoutHostPrefixIsRefused(t *testing.T) {
	_, err := parseString(t, head+"session:\n  cookie_name: sid\n")
	if err == nil || !strings.Contains(err.Error(), "session.cookie_name") || !strings.Contains(err.Error(), "use __Host-sid") {
		t.Fatalf("err = %v", err)
	}
}

func TestWarnings(t *testing.T) {
	src := head + `admin_listen: 0.0.0.0:9090
session:
  store: memory
audit:
  on_failure: continue
admin:
  token: literal-admin-token-0123456789
`
	c, err := parseString(t, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ key, text string }{
		{"admin_listen", "must never be public"},
		{"session.store", "memory sessions are lost on restart"},
		{"audit.on_failure", "leave no trace"},
		{"admin.token", "secret written in the config file; move it to ${env:NAME} or ${file:/path}"},
		{"session.cookie_keys", "only correct for a single instance"},
		{"routes", "no routes"},
	} {
		if !hasWarning(c, w.key, w.text) {
			t.Errorf("no warning %s: …%s…; got %v", w.key, w.text, c.Warnings())
		}
	}
	for _, w := range c.Warnings() {
		if w.Line < 1 || w.File != "t.yaml" {
			t.Errorf("warning without position: %+v", w)
		}
	}
}

func hasWarning(c *Config, key, text string) bool {
	for _, w := range c.Warnings() {
		if w.Key == key && strings.Contains(w.Message, text) {
			return true
		}
	}
	return false
}

func TestRelativePathsResolveAgainstTheConfigDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "conf", "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "conf", "site"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf", "secrets", "cs"), []byte("client-secret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `public_url: https://app.example.com
frontend: {static_dir: site}
identity:
  issuer: https://idp.example.com
  client_id: web
  client_secret: ${file:secrets/cs}
session:
  bolt: {path: state/s.db}
audit:
  path: ../logs/audit.jsonl
`
	path := filepath.Join(dir, "conf", "g.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	// Load from another working directory: paths must not depend on it.
	t.Chdir(t.TempDir())
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "conf")
	if c.Frontend.StaticDir != filepath.Join(conf, "site") || c.Session.Bolt.Path != filepath.Join(conf, "state", "s.db") ||
		c.Audit.Path != filepath.Join(dir, "logs", "audit.jsonl") {
		t.Errorf("paths: static %q bolt %q audit %q", c.Frontend.StaticDir, c.Session.Bolt.Path, c.Audit.Path)
	}
	if c.Identity.ClientSecret.Get().Reveal() != "client-secret-from-file" {
		t.Error("relative ${file:} reference not resolved against the config directory (or newline not trimmed)")
	}
}

func TestCredentialShapes(t *testing.T) {
	src := head + `routes:
  - name: cc-scalar
    path: /api/a/
    upstream: http://a.internal/
    credential: client_credentials
  - name: cc-map
    path: /api/b/
    upstream: http://b.internal/
    credential: { client_credentials: { scope: catalog:read, audience: catalog } }
  - name: none
    path: /api/c/
    upstream: http://c.internal/
    credential: none
  - name: te-resource
    path: /api/d/
    upstream: http://d.internal/
    credential:
      token_exchange: { audience: d-api, resource: "https://d.example/", scope: d }
  - name: hdr
    path: /api/e/
    upstream: https://e.example/
    credential:
      header: { name: authorization, value: "${env:GH_TEST_CLIENT_SECRET}" }
    methods: [get, post]
`
	c, err := parseString(t, src)
	if err != nil {
		t.Fatal(err)
	}
	if cc := c.Route("cc-scalar").Credential.ClientCredentials; cc == nil || *cc != (ClientCredentials{}) {
		t.Errorf("cc-scalar = %+v", cc)
	}
	if cc := c.Route("cc-map").Credential.ClientCredentials; cc == nil || cc.Scope != "catalog:read" || cc.Audience != "catalog" {
		t.Errorf("cc-map = %+v", cc)
	}
	if cr := c.Route("none").Credential; cr.Kind != CredNone || cr.Header != nil || cr.TokenExchange != nil || cr.ClientCredentials != nil {
		t.Errorf("none = %+v", cr)
	}
	if te := c.Route("te-resource").Credential.TokenExchange; te == nil || te.Resource != "https://d.example/" || te.Audience != "d-api" {
		t.Errorf("te-resource = %+v", te)
	}
	hdr := c.Route("hdr")
	if hdr.Credential.Header.Name != "Authorization" || hdr.Credential.Header.Value.Source() != "env:GH_TEST_CLIENT_SECRET" {
		t.Errorf("hdr = %+v", hdr.Credential.Header)
	}
	if !slices.Equal(hdr.Methods, []string{"GET", "POST"}) {
		t.Errorf("methods = %v, want upper case", hdr.Methods)
	}
}

func TestRedisModes(t *testing.T) {
	tests := []struct {
		redis string
		mode  RedisMode
		db    int
	}{
		{"url: redis://127.0.0.1:6379/3", RedisStandalone, 3},
		{"url: rediss://cache.internal:6380\n    db: 2", RedisStandalone, 2},
		{"addrs: [s1:26379, s2:26379]\n    master_name: mymaster\n    db: 1", RedisSentinel, 1},
		{"addrs: [n1:6379, n2:6379, n3:6379]", RedisCluster, 0},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode), func(t *testing.T) {
			c, err := parseString(t, head+"session:\n  store: redis\n  cookie_keys: [\"${env:GH_TEST_CLIENT_SECRET}\"]\n  redis:\n    "+tc.redis+"\n    password: \"${env:GH_TEST_CLIENT_SECRET}\"\n")
			if err != nil {
				t.Fatal(err)
			}
			r := c.Session.Redis
			if r.Mode != tc.mode || r.DB != tc.db || r.KeyPrefix != "gatehouse:" || r.Password == nil {
				t.Errorf("redis = %+v", r)
			}
		})
	}
}

func TestAliasesAndMergeKeys(t *testing.T) {
	src := head + `routes:
  - &base
    name: a
    path: /api/a/
    upstream: http://a.internal/
    credential: user_token
    timeout: 7s
    max_idle_conns: 512
  - <<: *base
    name: b
    path: /api/b/
`
	c, err := parseString(t, src)
	if err != nil {
		t.Fatal(err)
	}
	b := c.Route("b")
	if b == nil || b.Timeout != 7*time.Second || b.MaxIdleConns != 512 || b.Upstream.Host != "a.internal" || b.Path != "/api/b/" {
		t.Errorf("merged route = %+v", b)
	}
}

func TestAliasBombIsRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString(head + "x0: &a0 {store: bolt}\n")
	// Each level merges the previous one ten times: 10^29 entries without a budget.
	for i := 1; i < 30; i++ {
		fmt.Fprintf(&b, "x%d: &a%d {<<: [%s*a%d]}\n", i, i, strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), i-1)
	}
	b.WriteString("session: *a29\n")
	_, err := parseString(t, b.String())
	problemsOf(t, err)
	if !strings.Contains(err.Error(), "the file expands into too many values through aliases or merge keys") {
		t.Errorf("no budget error:\n%.2000s", err)
	}
}

// The policy stage compiles allow expressions and reports its errors in the
// loader's format.
func TestExprProblemFormatsLikeLoaderErrors(t *testing.T) {
	c, err := parseString(t, head+route0+"    allow: 'user.email_verified = true'\n")
	if err != nil {
		t.Fatal(err)
	}
	allow := c.Routes[0].Allow
	errs := &Errors{}
	errs.Add(allow.Problem("Syntax error: token recognition error at: '= '"))
	want := "t.yaml:11: routes[0].allow: Syntax error: token recognition error at: '= '"
	if got := errs.ErrOrNil().Error(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if (&Errors{}).ErrOrNil() != nil {
		t.Error("empty Errors must be a nil error")
	}
}

func TestCookieKeyRing(t *testing.T) {
	c, err := Load("../../examples/gatehouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := c.Session.CookieKeyRing()
	if err != nil {
		t.Fatal(err)
	}
	// A second ring from the same configured key opens what the first sealed:
	// the key is shared between instances, unlike the random default.
	other, _ := c.Session.CookieKeyRing()
	if _, err := other.Open(kr.Seal([]byte("state"), nil), nil); err != nil {
		t.Errorf("configured cookie key does not round-trip: %v", err)
	}
	var none Session
	r1, _ := none.CookieKeyRing()
	r2, _ := none.CookieKeyRing()
	if _, err := r2.Open(r1.Seal([]byte("state"), nil), nil); err == nil {
		t.Error("without cookie_keys each ring must be random")
	}
}

func TestRateLimitsDecoded(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want ratelimit.Spec
	}{
		{"absent: ratelimit's default budget, the default cap", head + route0,
			ratelimit.Spec{ConcurrentPerCaller: DefaultConcurrentPerCaller}},
		{"all keys", head + route0 + "rate_limits:\n  default: { requests: 600, per: 1m, burst: 100 }\n  routes:\n    a: { requests: 60, per: 1m }\n  concurrent_per_caller: 8\n",
			ratelimit.Spec{Default: ratelimit.Limit{Requests: 600, Per: time.Minute, Burst: 100},
				Routes: map[string]ratelimit.Limit{"a": {Requests: 60, Per: time.Minute}}, ConcurrentPerCaller: 8}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseString(t, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.RateLimits.Spec, tc.want) {
				t.Fatalf("spec = %+v, want %+v", c.RateLimits.Spec, tc.want)
			}
		})
	}
}

package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// leakFixture writes secret files and sets secret environment variables,
// returning the directory and every secret value.
func leakFixture(t *testing.T) (dir string, values []string) {
	t.Helper()
	dir = t.TempDir()
	files := map[string]string{
		"client-secret": "FILE-SECRET-client-7f3a9c",
		"cookie-key":    "FILE-SECRET-cookiekey-0123456789",
		"header-key":    "FILE-SECRET-header-4b1d",
		"short-key":     "FILE-SHORT-2c",
	}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		values = append(values, v)
	}
	envs := map[string]string{
		"GH_LEAK_PDP":   "ENV-SECRET-pdp-91e2",
		"GH_LEAK_ADMIN": "ENV-SECRET-admin-0123456789abcdef",
		"GH_LEAK_REDIS": "ENV-SECRET-redis-55aa",
	}
	for name, v := range envs {
		t.Setenv(name, v)
		values = append(values, v)
	}
	return dir, values
}

const leakGood = `public_url: https://app.example.com
identity:
  issuer: https://idp.example.com
  client_id: web
  client_secret: ${file:client-secret}
session:
  store: redis
  redis:
    url: redis://127.0.0.1:6379/0
    password: ${env:GH_LEAK_REDIS}
  cookie_keys:
    - ${file:cookie-key}
routes:
  - name: weather
    path: /api/weather/
    upstream: https://api.weather.example/
    credential:
      header:
        name: X-Api-Key
        value: ${file:header-key}
policy:
  pdp:
    url: https://pdp.internal/access/v1/evaluation
    token: ${env:GH_LEAK_PDP}
admin:
  token: ${env:GH_LEAK_ADMIN}
`

func assertNoSecret(t *testing.T, where, out string, values []string) {
	t.Helper()
	for _, v := range values {
		if strings.Contains(out, v) {
			t.Errorf("%s contains the secret %q:\n%s", where, v, out)
		}
	}
}

// A secret given by reference never appears in any printed, serialised or
// logged form of the loaded configuration.
func TestSecretByReferenceNeverInOutputOfTheConfig(t *testing.T) {
	dir, values := leakFixture(t)
	c, err := Parse([]byte(leakGood), "leak.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(c.Secrets()); got != 6 {
		t.Fatalf("Secrets() = %d values, want 6 (client secret, redis password, cookie key, header, pdp token, admin token)", got)
	}
	// The values really were resolved (so their absence below means something).
	if c.Admin.Token.Get().Reveal() != "ENV-SECRET-admin-0123456789abcdef" || c.Routes[0].Credential.Header.Value.Get().Reveal() != "FILE-SECRET-header-4b1d" {
		t.Fatal("secrets not resolved")
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		assertNoSecret(t, "fmt "+verb+" of *Config", fmt.Sprintf(verb, c), values)
		assertNoSecret(t, "fmt "+verb+" of Config", fmt.Sprintf(verb, *c), values)
		assertNoSecret(t, "fmt "+verb+" of Route", fmt.Sprintf(verb, c.Routes[0]), values)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "json.Marshal", string(js), values)

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).Debug("config loaded", "config", c, "identity", c.Identity, "secrets", c.Secrets())
	slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).Debug("config loaded", "config", c, "session", c.Session)
	if !strings.Contains(buf.String(), "config loaded") {
		t.Fatal("nothing was logged")
	}
	assertNoSecret(t, "slog debug line", buf.String(), values)
	for _, w := range c.Warnings() {
		assertNoSecret(t, "warning", w.String(), values)
	}
}

// A secret never reaches an error message: not from the secret keys
// themselves (short key, wrong shape), and not when the same text was
// written into a non-secret key whose error would quote it.
func TestSecretByReferenceNeverInConfigErrors(t *testing.T) {
	dir, values := leakFixture(t)
	bad := leakGood +
		"listen: FILE-SECRET-client-7f3a9c\n" + // not host:port: the message quotes the value
		"client: \"ENV-SECRET-redis-55aa!\"\n" +
		"audit:\n  sink: ENV-SECRET-pdp-91e2\n" +
		"telemetry:\n  otlp_endpoint: FILE-SECRET-header-4b1d\n" +
		"csrf:\n  allowed_origins: [FILE-SECRET-cookiekey-0123456789]\n"
	bad = strings.Replace(bad, "    - ${file:cookie-key}\n", "    - ${file:cookie-key}\n    - ${file:short-key}\n", 1) // too short
	bad = strings.Replace(bad, "    path: /api/weather/\n", "    path: /api/weather/\n    timeout: ENV-SECRET-admin-0123456789abcdef\n", 1)
	_, err := Parse([]byte(bad), "leak.yaml", dir)
	ps := problemsOf(t, err)
	out := err.Error()
	assertNoSecret(t, "error", out, values)
	assertNoSecret(t, "error %+v", fmt.Sprintf("%+v %#v", err, ps), values)
	for _, key := range []string{"listen", "client", "audit.sink", "telemetry.otlp_endpoint", "csrf.allowed_origins[0]", "session.cookie_keys[1]", "routes[0].timeout"} {
		found := false
		for _, p := range ps {
			found = found || p.Key == key
		}
		if !found {
			t.Errorf("no problem reported for %s:\n%s", key, out)
		}
	}
	if !strings.Contains(out, "[REDACTED]") {
		t.Errorf("quoted secret text should read [REDACTED]:\n%s", out)
	}
}

// Secrets written into the file are accepted with a warning; wrong shapes in
// secret keys never describe the value.
func TestLiteralSecretsWarnAndWrongShapesDoNotEcho(t *testing.T) {
	src := strings.Replace(head, "${env:GH_TEST_CLIENT_SECRET}", "literal-client-secret-9d8e", 1) +
		"admin:\n  token: tiny-admin\n" +
		"policy:\n  pdp:\n    url: https://pdp.internal/\n    token: [list-secret-1f2e]\n"
	_, err := parseString(t, src)
	problemsOf(t, err)
	for _, v := range []string{"tiny-admin", "list-secret-1f2e", "literal-client-secret-9d8e"} {
		if strings.Contains(err.Error(), v) {
			t.Errorf("error echoes a secret-key value %q:\n%s", v, err)
		}
	}
	if !containsLinePrefix(err.Error(), "t.yaml:7: admin.token: the token is shorter than 16 bytes") ||
		!containsLinePrefix(err.Error(), "t.yaml:11: policy.pdp.token: expected a secret reference such as ${env:NAME} or ${file:/path}, got a list or mapping") {
		t.Errorf("unexpected errors:\n%s", err)
	}

	c, err := parseString(t, strings.Replace(head, "${env:GH_TEST_CLIENT_SECRET}", "literal-client-secret-9d8e", 1))
	if err != nil {
		t.Fatal(err)
	}
	if !hasWarning(c, "identity.client_secret", "secret written in the config file") {
		t.Errorf("no literal-secret warning: %v", c.Warnings())
	}
	for _, w := range c.Warnings() {
		if strings.Contains(w.String(), "literal-client-secret-9d8e") {
			t.Errorf("warning echoes the secret: %s", w)
		}
	}
}

// The scrubber hides the whole value that holds a secret, never just the
// matching part: "x-[REDACTED]-y" would show where the secret starts and
// ends. A secret that %q escapes in the message (here one with a quote) is
// found too, and its escaped form never appears.
func TestConfigErrorScrubberReplacesWholeValues(t *testing.T) {
	dir, values := leakFixture(t)
	const quoted = `q"uote-secret-1234567890`
	t.Setenv("GH_LEAK_QUOTE", quoted)
	values = append(values, quoted)
	src := strings.Replace(leakGood, "${env:GH_LEAK_ADMIN}", "${env:GH_LEAK_QUOTE}", 1) +
		"listen: \"x-ENV-SECRET-redis-55aa-y\"\n" +
		"client: 'pre q\"uote-secret-1234567890 post'\n" +
		"audit:\n  sink: ENV-SECRET-pdp-91e2:tail\n"
	_, err := Parse([]byte(src), "leak.yaml", dir)
	ps := problemsOf(t, err)
	out := err.Error() + fmt.Sprintf("%#v", ps)
	assertNoSecret(t, "error", out, values)
	escaped := strconv.Quote(quoted)
	if strings.Contains(out, escaped[1:len(escaped)-1]) {
		t.Errorf("the %%q-escaped form of a secret leaks:\n%s", out)
	}
	for _, part := range []string{"x-", "-y", ":tail", "pre ", " post"} {
		for _, p := range ps {
			if strings.Contains(p.Message, part+"[REDACTED]") || strings.Contains(p.Message, "[REDACTED]"+part) {
				t.Errorf("%s: the scrubber left %q beside the redaction: %s", p.Key, part, p.Message)
			}
		}
	}
	if !strings.Contains(out, `"[REDACTED]"`) {
		t.Errorf("want whole quoted values redacted:\n%s", err)
	}
}

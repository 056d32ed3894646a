package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse: no input makes Parse panic, and every problem it reports has a
// file and a line.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"../../examples/gatehouse.yaml", "../../examples/bad.yaml", "../../examples/gatehouse.frontends.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "~", "[]", "a: b: c", "---\n---\n", "routes: [{credential: {header: {}}}]",
		head + route0 + "    allow: x\n",
		head + "session: &s {store: redis, redis: {addrs: [a]}}\nx: *s\n",
		head + "routes:\n  - <<: [{name: a}, {path: /a}]\n    credential: {token_exchange: ~}\n",
		head + "trusted_proxies: [::1, 10.0.0.1, fe80::/10]\nsession: {cookie_keys: [\"${file:/nonexistent}\"]}\n",
		multi, "frontends: [{client: a, public_url: \"http://localhost/x\", identity: {issuer: \"http://localhost/\", client_id: a, client_secret: s}}]\n",
		"client: a\nfrontends: [{client: a}, {client: a}, ~, 3]\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml", dir)
		if err == nil {
			if c == nil {
				t.Fatal("accepted without a configuration")
			}
			for _, fc := range c.Frontends() {
				if fc.PublicURL == nil || fc.Identity.ClientSecret == nil || fc.Client == "" {
					t.Fatalf("accepted a frontend without required values: %+v", fc)
				}
			}
			for _, w := range c.Warnings() {
				if w.File != "fuzz.yaml" || w.Line < 1 {
					t.Fatalf("warning without position: %+v", w)
				}
			}
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(errs.Problems) == 0 {
			t.Fatalf("error is not a non-empty *Errors: %T %v", err, err)
		}
		for _, p := range errs.Problems {
			if p.File != "fuzz.yaml" || p.Line < 1 || p.Message == "" {
				t.Fatalf("problem without position or message: %+v", p)
			}
		}
	})
}

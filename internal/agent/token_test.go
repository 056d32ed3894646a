package agent

import (
	"fmt"
	"strings"
	"testing"
)

func TestTokenRoundTripAndFormat(t *testing.T) {
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	v := tok.Value().Reveal()
	if !strings.HasPrefix(v, "gha_") || len(v) != 68 {
		t.Fatalf("token %q: want gha_ and 64 characters", v)
	}
	got, err := ParseToken(v)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != tok.ID() || got.raw != tok.raw {
		t.Error("parse does not return the same token")
	}
	if len(tok.ID()) != 27 || strings.Contains(v, tok.ID()) {
		t.Errorf("id %q must be a 27-character hash, not part of the token", tok.ID())
	}
}

func TestTokensAreRandom(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok.ID()] {
			t.Fatal("two tokens share an id")
		}
		seen[tok.ID()] = true
	}
}

func TestTokenNeverPrints(t *testing.T) {
	tok, _ := NewToken()
	v := tok.Value().Reveal()
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d", "%q"} {
		if out := fmt.Sprintf(f, tok); strings.Contains(out, v[4:20]) {
			t.Errorf("%s prints the token: %s", f, out)
		}
	}
	if out := fmt.Sprint(tok.Value()); strings.Contains(out, v[4:20]) {
		t.Errorf("Value prints the token: %s", out)
	}
}

func TestMalformedTokensAreRefused(t *testing.T) {
	tok, _ := NewToken()
	v := tok.Value().Reveal()
	cases := map[string]string{
		"empty":          "",
		"prefix only":    "gha_",
		"no prefix":      v[4:],
		"other prefix":   "ghp_" + v[4:],
		"upper prefix":   "GHA_" + v[4:],
		"short":          v[:67],
		"long":           v + "A",
		"padding":        v[:66] + "==",
		"standard b64":   v[:67] + "+",
		"slash":          v[:67] + "/",
		"newline inside": v[:30] + "\n" + v[31:],
		"space":          v[:67] + " ",
		"nul":            v[:67] + "\x00",
	}
	for name, in := range cases {
		if _, err := ParseToken(in); err != ErrMalformedToken {
			t.Errorf("%s: err = %v, want ErrMalformedToken", name, err)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	tok, _ := NewToken()
	f.Add(tok.Value().Reveal())
	f.Add("gha_")
	f.Add("gha_" + strings.Repeat("A", 64))
	f.Add("gha_" + strings.Repeat("_", 63) + "\n")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseToken(s)
		if err != nil {
			return
		}
		// Exactly one spelling: what parses re-encodes to the same text.
		if got.Value().Reveal() != s {
			t.Fatalf("%q parses but re-encodes to another value", s)
		}
	})
}

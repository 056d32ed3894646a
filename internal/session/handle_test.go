package session

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestHandleRoundTrip(t *testing.T) {
	h, err := NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	c := h.Cookie().Reveal()
	if len(c) != 64 {
		t.Fatalf("cookie length %d, want 64", len(c))
	}
	p, err := ParseHandle(c)
	if err != nil {
		t.Fatalf("ParseHandle(own cookie): %v", err)
	}
	if p != h || p.ID() != h.ID() || len(h.ID()) != publicIDLen {
		t.Fatalf("round trip changed the handle")
	}
	if strings.Contains(h.ID(), c[:10]) {
		t.Fatal("public id reveals the cookie")
	}
}

func TestMalformedCookieIsRejected(t *testing.T) {
	h, _ := NewHandle()
	c := h.Cookie().Reveal()
	cases := map[string]string{
		"empty":           "",
		"short":           c[:63],
		"long":            c + "A",
		"standard base64": strings.NewReplacer("-", "+", "_", "/").Replace(strings.Repeat("-_", 32)),
		"padding":         c[:62] + "==",
		"newline inside":  c[:30] + "\n" + c[31:],
		"space":           c[:63] + " ",
		"non-ascii":       c[:62] + "é",
		"nul":             c[:63] + "\x00",
		"percent-encoded": c[:61] + "%2D",
		"dot":             c[:63] + ".",
		"std with plus":   strings.Repeat("+", 64),
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseHandle(v); !errors.Is(err, ErrInvalidHandle) {
				t.Fatalf("ParseHandle(%s) = %v, want ErrInvalidHandle", name, err)
			}
		})
	}
}

func TestHandleNeverPrintsItsKey(t *testing.T) {
	h, _ := NewHandle()
	c := h.Cookie().Reveal()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		out := fmt.Sprintf(verb, h)
		if strings.Contains(out, c) || strings.Contains(out, fmt.Sprintf("%x", h.key())) || strings.Contains(out, fmt.Sprint(h.raw[rawIDLen])+" ") {
			t.Errorf("%s printed key material: %q", verb, out)
		}
	}
	if out := fmt.Sprint(h.Cookie()); strings.Contains(out, c) {
		t.Errorf("Cookie() printed: %q", out)
	}
}

func FuzzParseHandle(f *testing.F) {
	h, _ := NewHandle()
	f.Add(h.Cookie().Reveal())
	f.Add("")
	f.Add(strings.Repeat("A", 64))
	f.Add(strings.Repeat("=", 64))
	f.Add(strings.Repeat("A", 62) + "\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHandle(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidHandle) || !h.IsZero() {
				t.Fatalf("error %v with handle %v", err, h)
			}
			return
		}
		// Exactly one spelling per handle: what parses re-encodes to itself.
		if got := h.Cookie().Reveal(); got != s {
			t.Fatalf("accepted non-canonical %q (canonical %q)", s, got)
		}
		if len(h.ID()) != publicIDLen {
			t.Fatalf("id length %d", len(h.ID()))
		}
	})
}

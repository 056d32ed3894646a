package opaque

import (
	"encoding/base64"
	"testing"
)

func TestDecodeAcceptsExactlyOneSpelling(t *testing.T) {
	raw := []byte{0xfb, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e}
	good := base64.RawURLEncoding.EncodeToString(raw)
	var dst [16]byte
	if !Decode(dst[:], good) || dst != [16]byte(raw) {
		t.Fatalf("canonical %q refused", good)
	}
	for _, bad := range []string{
		"", good[:len(good)-1], good + "A", good + "=", "+/" + good[2:], // wrong length, padding, std alphabet
		good[:10] + "\n" + good[11:], good[:10] + " " + good[11:], // CR/LF and spaces the decoder would skip
		good[:len(good)-1] + "B", // non-zero trailing bits: a second spelling of the same bytes
	} {
		if Decode(dst[:], bad) {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("_-_-_-_-_-_-_-_-_-_-_w")
	f.Fuzz(func(t *testing.T, s string) {
		var dst [16]byte
		if Decode(dst[:], s) && base64.RawURLEncoding.EncodeToString(dst[:]) != s {
			t.Fatalf("accepted %q, which is not the canonical spelling", s)
		}
	})
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	s := base64.RawURLEncoding.EncodeToString(make([]byte, 48))
	var dst [48]byte
	if n := testing.AllocsPerRun(100, func() { Decode(dst[:], s) }); n != 0 {
		t.Fatalf("Decode allocates %v times", n)
	}
}

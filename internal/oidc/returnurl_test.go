package oidc

import (
	"net/url"
	"strings"
	"testing"
)

func TestReturnURLAcceptsLocalPaths(t *testing.T) {
	for _, s := range []string{
		"/",
		"/app",
		"/app/",
		"/app/orders/42",
		"/app?tab=1&x=y",
		"/app?next=%2Fother",
		"/app#/route/inside/spa",
		"/app?q=a%20b#frag",
		"/caf%C3%A9",
		"/a:b@c",
		"/javascript:alert(1)", // a path segment, not a scheme
	} {
		got, err := ValidateReturnURL(s)
		if err != nil || got != s {
			t.Errorf("ValidateReturnURL(%q) = %q, %v; want accepted unchanged", s, got, err)
		}
	}
}

func TestReturnURLRejectsOpenRedirectTricks(t *testing.T) {
	for _, s := range []string{
		"",
		"app",                     // relative
		"https://evil.example",    // absolute
		"http:evil.example",       // scheme, no slashes
		"javascript:alert(1)",     // script scheme
		"JaVaScRiPt:alert(1)",     // case
		"data:text/html,<script>", // data scheme
		"//evil.example",          // scheme-relative
		"///evil.example",         // triple slash
		"/\\evil.example",         // slash backslash
		"\\\\evil.example",        // double backslash
		"/app\\..\\..\\evil",      // backslash later
		"/%2fevil.example",        // encoded slash
		"/%2Fevil.example",        // encoded slash upper
		"/%5cevil.example",        // encoded backslash
		"/%5Cevil.example",        // encoded backslash upper
		"/%09/evil.example",       // encoded tab
		"/%0a/evil.example",       // encoded newline
		"/%0d%0aSet-Cookie:x=y",   // header injection
		"/\t/evil.example",        // raw tab (browsers strip it)
		"/\n/evil.example",        // raw newline
		"/\r\nLocation: //evil",   // raw CRLF
		"/\x00",                   // NUL
		"/ /evil",                 // raw space
		"/.//evil.example",        // dot segment collapsing to //
		"/./evil",                 // dot segment
		"/../evil",                // parent segment
		"/app/..",                 // trailing parent
		"/%2e%2e/evil",            // encoded dots
		"/%252f/evil",             // double-encoded slash
		"/a//b",                   // empty segment
		"/／evil.example",          // fullwidth solidus (U+FF0F)
		"/＼evil.example",          // fullwidth reverse solidus
		"/\u2215evil.example",     // division slash
		"/app?x=\\",               // backslash in query
		"/app#%5c",                // encoded backslash in fragment
		"/app?x=%0a",              // encoded newline in query
		"/app?x=\x7f",             // DEL
		"/%",                      // broken escape
		"/%zz",                    // broken escape
		"/%2",                     // truncated escape
		"/app#a#b",                // two fragments
		"/" + strings.Repeat("a", 2000),
	} {
		if got, err := ValidateReturnURL(s); err == nil {
			t.Errorf("ValidateReturnURL(%q) accepted as %q; want rejected", s, got)
		}
	}
}

func FuzzReturnURLNeverLeavesOrigin(f *testing.F) {
	for _, s := range []string{"/", "/app?x=1#y", "//evil", "/\\evil", "/%2fevil", "/.//evil", "/\t/evil", "/a:b@c", "https://x"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://app.example.com/bff/login")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ValidateReturnURL(s)
		if err != nil {
			return
		}
		if got != s {
			t.Fatalf("accepted value changed: %q -> %q", s, got)
		}
		for i := 0; i < len(got); i++ {
			if c := got[i]; c < 0x21 || c >= 0x7f || c == '\\' {
				t.Fatalf("accepted %q with byte %#x", got, c)
			}
		}
		ref, err := url.Parse(got)
		if err != nil {
			t.Fatalf("accepted unparsable %q: %v", got, err)
		}
		abs := base.ResolveReference(ref)
		if abs.Scheme != "https" || abs.Host != "app.example.com" || abs.User != nil {
			t.Fatalf("accepted %q resolves off-origin to %s", got, abs.Redacted())
		}
		// The resolved path (after dot-segment removal, as a browser does)
		// must not start with "//": re-emitted as a relative reference it
		// would become scheme-relative.
		if strings.HasPrefix(abs.EscapedPath(), "//") {
			t.Fatalf("accepted %q resolves to path %q", got, abs.EscapedPath())
		}
		// Decoding once more (an SPA router might) must not make it off-origin either.
		if dec, err := url.PathUnescape(ref.EscapedPath()); err == nil {
			if strings.HasPrefix(dec, "//") || strings.ContainsAny(dec, "\\\t\r\n") {
				t.Fatalf("accepted %q decodes to %q", got, dec)
			}
		}
	})
}

package oidc

import (
	"errors"
	"net/url"
	"strings"
)

// maxReturnURLLen bounds returnUrl: it travels inside the login-state cookie,
// which must stay well under browsers' 4 KiB cookie limit.
const maxReturnURLLen = 1024

// ErrInvalidReturnURL is returned by ValidateReturnURL. It never carries the
// rejected value: that came from the request.
var ErrInvalidReturnURL = errors.New("returnUrl must be a local absolute path such as /app/page")

// ValidateReturnURL accepts only a local absolute path (with optional query
// and fragment) that every browser resolves against Gatehouse's own origin,
// and returns it unchanged. It is an allow-list, not a deny-list: the path may
// hold only RFC 3986 path characters and percent-escapes that do not decode to
// a separator, a dot, a percent sign, whitespace or a control character, so
// tricks such as //evil, /\evil, /%2f/evil, /.//evil, tab/newline stripping and
// non-ASCII look-alikes are all refused.
func ValidateReturnURL(s string) (string, error) {
	if s == "" || len(s) > maxReturnURLLen || s[0] != '/' {
		return "", ErrInvalidReturnURL
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return "", ErrInvalidReturnURL
	}
	pathEnd := strings.IndexAny(s, "?#")
	p, rest := s, ""
	if pathEnd >= 0 {
		p, rest = s[:pathEnd], s[pathEnd:]
	}
	if !validPath(p) || !validQueryFragment(rest) {
		return "", ErrInvalidReturnURL
	}
	// Belt and braces: whatever passed the allow-list must parse as a
	// relative reference with no scheme, host or user info.
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "", ErrInvalidReturnURL
	}
	return s, nil
}

// validPath checks an absolute path: pchar and "/" only, no empty segment
// (which could become "//" after dot-segment removal), no dot segment, and
// percent-escapes only for bytes that are not separators or controls.
func validPath(p string) bool {
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			seg := p[segStart:i]
			// An empty segment is allowed only as the trailing slash ("/a/").
			if seg == "" && i != len(p) {
				return false
			}
			if seg == "." || seg == ".." {
				return false
			}
			segStart = i + 1
			continue
		}
		c := p[i]
		if c == '%' {
			b, ok := unhex2(p, i)
			if !ok || forbiddenEscapeInPath(b) {
				return false
			}
			i += 2
			continue
		}
		if !isPchar(c) {
			return false
		}
	}
	return true
}

// validQueryFragment checks "?query#fragment" (either part optional).
func validQueryFragment(s string) bool {
	seenHash := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			b, ok := unhex2(s, i)
			if !ok || b < 0x20 || b == 0x7f || b == '\\' {
				return false
			}
			i += 2
		case c == '#':
			if seenHash {
				return false
			}
			seenHash = true
		case c == '?' || c == '/' || isPchar(c):
		default:
			return false
		}
	}
	return true
}

func forbiddenEscapeInPath(b byte) bool {
	return b <= 0x20 || b == 0x7f || b == '/' || b == '\\' || b == '.' || b == '%'
}

// isPchar reports RFC 3986 pchar minus "%" (handled by the caller):
// unreserved / sub-delims / ":" / "@".
func isPchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@':
		return true
	}
	return false
}

func unhex2(s string, i int) (byte, bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	h, ok1 := unhex(s[i+1])
	l, ok2 := unhex(s[i+2])
	return h<<4 | l, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

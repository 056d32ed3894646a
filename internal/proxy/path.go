package proxy

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultMaxPathLength bounds the escaped request path CleanPath accepts.
const DefaultMaxPathLength = 2048

// ErrBadPath is wrapped by every CleanPath error. Its messages never quote the
// path: a request value must not end up in a log line or an error body.
var ErrBadPath = errors.New("bad request path")

type pathError struct{ reason string }

func (e *pathError) Error() string { return "bad request path: " + e.reason }
func (e *pathError) Unwrap() error { return ErrBadPath }

// The errors are values so that rejecting a path allocates nothing.
var (
	errPathEmpty       = &pathError{"path must start with /"}
	errPathTooLong     = &pathError{"path is too long"}
	errPathEscape      = &pathError{"invalid percent-encoding"}
	errPathEncSlash    = &pathError{"percent-encoded slash (%2F) is not allowed"}
	errPathBackslash   = &pathError{"backslash (\\ or %5C) is not allowed"}
	errPathDoubleEnc   = &pathError{"percent-encoded percent sign (%25) is not allowed"}
	errPathControl     = &pathError{"control characters are not allowed"}
	errPathParam       = &pathError{"path parameters (;) are not allowed"}
	errPathDelim       = &pathError{"encoded ? or # is not allowed in a path"}
	errPathRawByte     = &pathError{"non-ASCII bytes must be percent-encoded"}
	errPathUTF8        = &pathError{"path is not valid UTF-8"}
	errPathConfusable  = &pathError{"path contains a character that imitates a slash or dot"}
	errPathAboveRoot   = &pathError{"path climbs above the root with .."}
	errPathDotSegment  = &pathError{"segment of only dots and spaces is ambiguous"}
	errPathFragmentRaw = &pathError{"? or # is not allowed in an escaped path"}
)

// CleanPath turns a request's escaped path (url.URL.EscapedPath) into the one
// decoded path Gatehouse both matches and forwards. It decodes percent-encoding
// exactly once, resolves "." and ".." segments and collapses repeated slashes.
// It rejects, rather than guesses at, anything an upstream could read
// differently: encoded slashes and percent signs, backslashes, control
// characters, ";" path parameters, encoded "?" and "#", invalid escapes or
// UTF-8, Unicode look-alikes of "/" and ".", ".." above the root, and paths
// longer than DefaultMaxPathLength bytes.
//
// The result starts with "/", contains no "//", no dot segments, and CleanPath
// of its escaped form returns it unchanged.
func CleanPath(raw string) (string, error) { return cleanPath(raw, DefaultMaxPathLength) }

// cleanPath is CleanPath with a length limit (DefaultMaxPathLength when
// maxLen <= 0).
func cleanPath(raw string, maxLen int) (string, error) {
	if maxLen <= 0 {
		maxLen = DefaultMaxPathLength
	}
	if len(raw) > maxLen {
		return "", errPathTooLong
	}
	if raw == "" || raw[0] != '/' {
		return "", errPathEmpty
	}
	// Fast path: nothing to decode or resolve (the common case) returns raw
	// itself, without allocating.
	if plainPath(raw) {
		return raw, nil
	}
	dec := make([]byte, 0, len(raw))
	nonASCII := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return "", errPathEscape
			}
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
			switch c {
			case '/':
				return "", errPathEncSlash
			case '%':
				return "", errPathDoubleEnc
			case '?', '#':
				return "", errPathDelim
			}
		} else {
			switch {
			case c >= 0x80:
				return "", errPathRawByte
			case c == '#', c == '?':
				return "", errPathFragmentRaw
			}
		}
		switch {
		case c < 0x20 || c == 0x7f:
			return "", errPathControl
		case c == '\\':
			return "", errPathBackslash
		case c == ';':
			return "", errPathParam
		case c >= 0x80:
			nonASCII = true
		}
		dec = append(dec, c)
	}
	if nonASCII {
		if err := checkUnicode(dec); err != nil {
			return "", err
		}
	}
	return resolveDots(dec)
}

// plainPath reports whether p needs no decoding and no segment resolution.
func plainPath(p string) bool {
	prevSlash := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if prevSlash {
				return false
			}
			prevSlash = true
			continue
		case c == '.':
			// A segment starting with a dot may be "." or ".."; let the
			// slow path decide.
			if prevSlash {
				return false
			}
		case c == '%' || c == ';' || c == '\\' || c == '#' || c == '?' || c < 0x21 || c >= 0x7f:
			return false
		}
		prevSlash = false
	}
	return true
}

// confusables are characters some servers and frameworks normalise (NFKC,
// best-fit mappings) into "/", "\" or "."; accepting them would let an upstream
// see a different path from the one matched.
var confusables = [...]rune{
	'\uff0f', // FULLWIDTH SOLIDUS
	'\uff3c', // FULLWIDTH REVERSE SOLIDUS
	'\uff0e', // FULLWIDTH FULL STOP
	'\u2215', // DIVISION SLASH
	'\u2216', // SET MINUS
	'\u2044', // FRACTION SLASH
	'\u29f8', // BIG SOLIDUS
	'\u29f9', // BIG REVERSE SOLIDUS
	'\ufe68', // SMALL REVERSE SOLIDUS
	'\u2024', // ONE DOT LEADER
	'\u2025', // TWO DOT LEADER
	'\u2026', // HORIZONTAL ELLIPSIS
	'\ufe52', // SMALL FULL STOP
	'\u3002', // IDEOGRAPHIC FULL STOP
	'\uff61', // HALFWIDTH IDEOGRAPHIC FULL STOP
}

func checkUnicode(b []byte) error {
	if !utf8.Valid(b) {
		return errPathUTF8
	}
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		if r < utf8.RuneSelf {
			continue
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return errPathControl
		}
		for _, c := range confusables {
			if r == c {
				return errPathConfusable
			}
		}
	}
	return nil
}

// resolveDots applies RFC 3986 remove_dot_segments to a decoded path and
// collapses empty segments. A trailing "/", "/." or "/.." leaves a trailing
// slash, as the RFC does.
func resolveDots(p []byte) (string, error) {
	s := string(p)
	segs := make([]string, 0, strings.Count(s, "/"))
	trailing := false
	for seg := range strings.SplitSeq(s[1:], "/") {
		trailing = false
		switch {
		case seg == "":
			trailing = true
		case seg == ".":
			trailing = true
		case seg == "..":
			if len(segs) == 0 {
				return "", errPathAboveRoot
			}
			segs = segs[:len(segs)-1]
			trailing = true
		case onlyDotsAndSpaces(seg):
			// "...", ". ." and ".. " are read as ".." by some file servers.
			return "", errPathDotSegment
		default:
			segs = append(segs, seg)
		}
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, seg := range segs {
		b.WriteByte('/')
		b.WriteString(seg)
	}
	if trailing || len(segs) == 0 {
		b.WriteByte('/')
	}
	return b.String(), nil
}

func onlyDotsAndSpaces(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && s[i] != ' ' {
			return false
		}
	}
	return strings.IndexByte(s, '.') >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

package proxy

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Route confusion through upstream normalisation.
//
// Gatehouse matches the cleaned path byte for byte, but many upstreams do
// not: IIS, ASP.NET Core and Express (by default) match case-insensitively,
// Windows file systems drop trailing dots and spaces from names and read
// "name::$DATA" or "name:stream" as the file "name", and some frameworks
// apply Unicode compatibility normalisation (NFKC: "ａdmin" is "admin").
// A request for /api/echo/ADMIN/x would then match a broad route
// (/api/echo/) here and be served as the stricter /api/echo/admin/ there.
// So each request's path is also folded the way such upstreams would read
// it; when the folded path matches a different route than the path itself,
// the request is refused (400) before anything is forwarded.

// foldIndex is the route table keyed by folded route paths.
type foldIndex struct {
	t table
	// plain is true when every route path is its own fold: then a request
	// path that is its own fold (checked without allocating) cannot match
	// another route folded.
	plain bool
}

func newFoldIndex() foldIndex {
	return foldIndex{t: table{exact: map[string]*route{}, prefix: map[string]*route{}}, plain: true}
}

// add indexes rt by its folded path. Two routes whose paths fold alike are
// a configuration error: a case-insensitive upstream could not tell them
// apart, and no request could be routed to both safely.
func (f *foldIndex) add(rt *route) error {
	fp, ok := foldPath(rt.path)
	if !ok {
		return fmt.Errorf("route %q: path %s is ambiguous to upstreams that fold case, trailing dots or spaces, or Unicode forms; write it plainly", rt.name, rt.path)
	}
	if fp != rt.path {
		f.plain = false
	}
	m := f.t.exact
	if rt.prefix {
		m = f.t.prefix
	}
	if other, dup := m[fp]; dup {
		return fmt.Errorf("route %q: path %s is the same as route %q's path %s to upstreams that ignore case, trailing dots or spaces, or Unicode forms", rt.name, rt.path, other.name, other.path)
	}
	m[fp] = rt
	return nil
}

// confused reports whether the cleaned path, which matched rt, would match
// another route (or a prefix route's own path) once folded, or uses a
// Windows alternate data stream or 8.3 short name, which name other files
// than they spell. It allocates only for paths that need folding.
func (f *foldIndex) confused(path string, rt *route) bool {
	if f.plain && plainFold(path) {
		return false
	}
	if windowsAlias(path) {
		return true
	}
	fp, ok := foldPath(path)
	if !ok {
		return true
	}
	if m := f.t.match(fp); m != rt {
		return true
	}
	// "/api/echo/ADMIN" is served as the directory /api/echo/admin/ by
	// upstreams that redirect or fall through to the trailing slash.
	if m, ok := f.t.prefix[fp+"/"]; ok && m != rt && !strings.HasSuffix(fp, "/") {
		return true
	}
	return false
}

// plainFold reports, without allocating, whether foldPath(p) == p: ASCII
// without upper case, ":" or "~", and no segment ending in "." or " ".
func plainFold(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= utf8.RuneSelf, c >= 'A' && c <= 'Z', c == ':', c == '~':
			return false
		case c == '.' || c == ' ':
			if i+1 == len(p) || p[i+1] == '/' {
				return false
			}
		}
	}
	return true
}

// windowsAlias reports whether a segment is an NTFS stream reference
// ("admin::$DATA", "admin:$I30:$INDEX_ALLOCATION") or an 8.3 short name
// ("ADMINI~1", "ADMIN~12.JS"): both open a file by another name, so no
// route can vouch for what they reach.
func windowsAlias(p string) bool {
	if strings.Contains(p, ":$") {
		return true
	}
	for seg := range strings.SplitSeq(p, "/") {
		if i := strings.IndexByte(seg, '~'); i > 0 && i+1 < len(seg) && seg[i+1] >= '0' && seg[i+1] <= '9' {
			rest := seg[i+1:]
			j := 0
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			if j == len(rest) || rest[j] == '.' {
				return true
			}
		}
	}
	return false
}

// foldPath is p as a lenient upstream reads it: NFKC-normalised, case-folded
// (every letter to one representative of its case-folding orbit, so "K",
// "k" and KELVIN SIGN agree), and each segment cut at ":" (NTFS streams)
// with trailing dots and spaces removed. ok is false when folding leaves a
// segment that is empty, "." or "..": such a path means something else to
// the upstream than any route here.
func foldPath(p string) (string, bool) {
	s := norm.NFKC.String(p)
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		b.WriteRune(foldRune(r))
	}
	s = b.String()
	b.Reset()
	b.Grow(len(s))
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		if i > 0 {
			b.WriteByte('/')
		}
		if seg == "" { // the leading "/" and a prefix route's trailing one
			if i != 0 && i != len(segs)-1 {
				return "", false
			}
			continue
		}
		if j := strings.IndexByte(seg, ':'); j >= 0 {
			seg = seg[:j]
		}
		seg = strings.TrimRight(seg, ". ")
		if seg == "" {
			return "", false
		}
		b.WriteString(seg)
	}
	return b.String(), true
}

// foldRune maps r to the lower case of the smallest rune of its simple
// case-folding orbit (Unicode's own equivalence, wider than ToLower: "ſ"
// folds with "s", KELVIN SIGN with "k"); ASCII maps to lower case.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		return unicode.ToLower(r)
	}
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	return unicode.ToLower(m)
}

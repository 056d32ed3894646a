package compose

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse-dev/gatehouse/internal/proxy"
)

// srcKind says where a template part's value comes from.
type srcKind uint8

const (
	litPart  srcKind = iota
	srcUser          // {user.<claim>}: the caller's claims
	srcParam         // {param.<name>}: a composite path parameter
	srcQuery         // {query.<name>}: the composite request's query
	srcCall          // {calls.<call>.<field>}: a dependency's JSON result
)

// part is a literal run or one placeholder.
type part struct {
	kind  srcKind
	text  string   // the literal; or the claim, parameter or call name
	raw   string   // the placeholder as written, for error messages
	idx   int      // parameter or call index
	field []string // srcCall: path into the result
}

// template is a parsed path or query-value template.
type template struct {
	parts []part
	// static is the whole value when the template has no placeholder.
	static string
	dyn    bool
}

// refCtx is what placeholders may name.
type refCtx struct {
	params []string
	calls  map[string]int // name -> index+1
	deps   []string
}

// parseTemplate parses s. Path templates must be a clean path once each
// placeholder is replaced by a plain segment, and contain only characters
// that need no escaping, so the literal and the escaped form are the same.
// The message is "" when s is valid.
func parseTemplate(s string, isPath bool, refs refCtx) (template, string) {
	var t template
	rest := s
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			t.parts = append(t.parts, part{text: rest})
			break
		}
		if rest[i] == '}' {
			return t, "unmatched } (a placeholder is {user.<claim>}, {param.<name>}, {query.<name>} or {calls.<call>.<field>})"
		}
		if i > 0 {
			t.parts = append(t.parts, part{text: rest[:i]})
		}
		j := strings.IndexAny(rest[i+1:], "{}")
		if j < 0 || rest[i+1+j] != '}' {
			return t, "unterminated { (a placeholder is {user.<claim>}, {param.<name>}, {query.<name>} or {calls.<call>.<field>})"
		}
		p, msg := parsePlaceholder(rest[i+1:i+1+j], refs)
		if msg != "" {
			return t, msg
		}
		t.parts = append(t.parts, p)
		t.dyn = true
		rest = rest[i+j+2:]
	}
	var probe strings.Builder
	for _, p := range t.parts {
		if p.kind == litPart {
			probe.WriteString(p.text)
		} else {
			probe.WriteByte('x')
		}
	}
	ps := probe.String()
	if isPath {
		if clean, err := proxy.CleanPath(ps); err != nil || clean != ps || !literalSafe(ps) {
			return t, "path template " + strconv.Quote(s) + " is not a clean path (no dot segments, //, escapes, ;, ?, #, spaces or backslashes; put query parameters under query:)"
		}
	} else if !utf8Clean(ps) {
		return t, "query template has control characters or invalid UTF-8"
	}
	if !t.dyn {
		t.static = ps
		if len(t.parts) == 0 {
			t.static = ""
		}
	}
	return t, ""
}

func parsePlaceholder(in string, refs refCtx) (part, string) {
	raw := "{" + in + "}"
	kind, name, ok := strings.Cut(in, ".")
	if !ok || name == "" {
		return part{}, "placeholder " + raw + " must be {user.<claim>}, {param.<name>}, {query.<name>} or {calls.<call>.<field>}"
	}
	if strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return part{}, "placeholder " + raw + " has spaces or control characters"
	}
	p := part{raw: raw, text: name}
	switch kind {
	case "user":
		p.kind = srcUser
	case "query":
		p.kind = srcQuery
	case "param":
		p.kind = srcParam
		p.idx = slices.Index(refs.params, name)
		if p.idx < 0 {
			return p, "placeholder " + raw + " names no parameter of the composite's path (parameters: " + strings.Join(refs.params, ", ") + ")"
		}
	case "calls":
		p.kind = srcCall
		call, field, ok := strings.Cut(name, ".")
		if !ok || field == "" {
			return p, "placeholder " + raw + " must name a field of the call's result: {calls.<call>.<field>}"
		}
		p.text = call
		p.idx = refs.calls[call] - 1
		if p.idx < 0 {
			return p, "placeholder " + raw + " names unknown call " + strconv.Quote(call)
		}
		if !slices.Contains(refs.deps, call) {
			return p, "placeholder " + raw + " reads call " + strconv.Quote(call) + ", which is not in depends_on"
		}
		p.field = strings.Split(field, ".")
		if slices.Contains(p.field, "") {
			return p, "placeholder " + raw + " has an empty field name"
		}
	default:
		return p, "placeholder " + raw + ": unknown source " + strconv.Quote(kind) + " (use user, param, query or calls)"
	}
	return p, ""
}

// literalSafe reports whether s has only characters that percent-encoding
// leaves as they are in a path: unreserved, sub-delims but ";", ":", "@", "/".
func literalSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			continue
		}
		switch c {
		case '/', '!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '@':
			continue
		}
		return false
	}
	return true
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// utf8Clean reports whether s is valid UTF-8 without control or format
// characters (which some upstreams strip, changing what they read).
func utf8Clean(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029') {
			return false
		}
	}
	return true
}

// values is what placeholders read during one composite request.
type values struct {
	claims  map[string]any
	params  []string
	query   url.Values
	results []any
}

// failure says why a template could not be expanded: code is CodeBadInput
// (a value from the caller: claim, parameter, query) or CodeBadResult (from a
// dependency's result), and placeholder is the placeholder as written — never
// the value.
type failure struct {
	code        Code
	placeholder string
	reason      string
}

// value returns the text of placeholder p, or false when it is missing or is
// not a string or a number.
func (p *part) value(v *values) (string, bool) {
	switch p.kind {
	case srcUser:
		c, ok := v.claims[p.text]
		if !ok {
			return "", false
		}
		return scalarText(c)
	case srcParam:
		if p.idx >= len(v.params) {
			return "", false
		}
		return v.params[p.idx], true
	case srcQuery:
		q := v.query[p.text]
		if len(q) != 1 { // absent, or given twice: ambiguous
			return "", false
		}
		return q[0], true
	case srcCall:
		cur := v.results[p.idx]
		for _, f := range p.field {
			switch x := cur.(type) {
			case map[string]any:
				var ok bool
				if cur, ok = x[f]; !ok {
					return "", false
				}
			case []any:
				n, err := strconv.Atoi(f)
				if err != nil || n < 0 || n >= len(x) {
					return "", false
				}
				cur = x[n]
			default:
				return "", false
			}
		}
		return scalarText(cur)
	}
	return p.text, true
}

// scalarText formats a JSON string or number; any other value (bool, null,
// object, array) is not a template value.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	case float64:
		if x == float64(int64(x)) && x > -1<<53 && x < 1<<53 {
			return strconv.FormatInt(int64(x), 10), true
		}
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case json.Number:
		return string(x), true
	}
	return "", false
}

func (p *part) fail(reason string) *failure {
	c := CodeBadInput
	if p.kind == srcCall {
		c = CodeBadResult
	}
	return &failure{code: c, placeholder: p.raw, reason: reason}
}

// expandPath fills the path template and returns the cleaned path, which is
// guaranteed to equal the template with each value as exactly one segment
// (part), under routePath.
func (t *template) expandPath(v *values, routePath string, prefix bool) (string, *failure) {
	if !t.dyn {
		return t.static, nil
	}
	var escBuf, decBuf [256]byte
	esc, dec := escBuf[:0], decBuf[:0]
	for i := range t.parts {
		p := &t.parts[i]
		if p.kind == litPart {
			esc = append(esc, p.text...)
			dec = append(dec, p.text...)
			continue
		}
		s, ok := p.value(v)
		switch {
		case !ok:
			return "", p.fail("is missing or not a string or number")
		case s == "":
			return "", p.fail("is empty")
		case !utf8Clean(s):
			return "", p.fail("has control characters or invalid UTF-8")
		}
		for j := 0; j < len(s); j++ {
			if c := s[j]; unreserved(c) {
				esc = append(esc, c)
			} else {
				esc = append(esc, '%', hexDigit[c>>4], hexDigit[c&15])
			}
		}
		dec = append(dec, s...)
	}
	escaped := string(esc)
	// Check after expansion: cleaning the escaped path must change nothing
	// (no segment added, removed or resolved), and it must stay in the route.
	clean, err := proxy.CleanPath(escaped)
	if err != nil || clean != string(dec) {
		return "", t.culprit(v, "cannot be used as one path segment")
	}
	if prefix && !strings.HasPrefix(clean, routePath) || !prefix && clean != routePath {
		return "", t.culprit(v, "leaves the route's path")
	}
	return clean, nil
}

// culprit finds the placeholder whose value alone is not one clean segment
// (on the error path only, so the check costs nothing when values are fine);
// when each is fine alone but their combination is not ("{a}{b}" with "."
// twice), it blames the first placeholder.
func (t *template) culprit(v *values, reason string) *failure {
	var first *part
	for i := range t.parts {
		p := &t.parts[i]
		if p.kind == litPart {
			continue
		}
		if first == nil {
			first = p
		}
		s, _ := p.value(v)
		seg := "/" + escapeSegment(s)
		if clean, err := proxy.CleanPath(seg); err != nil || clean != "/"+s {
			return p.fail(reason)
		}
	}
	return first.fail(reason)
}

func escapeSegment(s string) string {
	b := make([]byte, 0, len(s)*3)
	for j := 0; j < len(s); j++ {
		if c := s[j]; unreserved(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hexDigit[c>>4], hexDigit[c&15])
		}
	}
	return string(b)
}

// expandQuery fills a query-value template.
func (t *template) expandQuery(v *values) (string, *failure) {
	if !t.dyn {
		return t.static, nil
	}
	if len(t.parts) == 1 {
		s, ok := t.parts[0].value(v)
		if !ok {
			return "", t.parts[0].fail("is missing or not a string or number")
		}
		if !utf8Clean(s) {
			return "", t.parts[0].fail("has control characters or invalid UTF-8")
		}
		return s, nil
	}
	var b strings.Builder
	for i := range t.parts {
		p := &t.parts[i]
		s, ok := p.value(v)
		if !ok {
			return "", p.fail("is missing or not a string or number")
		}
		if p.kind != litPart && !utf8Clean(s) {
			return "", p.fail("has control characters or invalid UTF-8")
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

const hexDigit = "0123456789ABCDEF"

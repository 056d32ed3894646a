package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// Load reads, checks and defaults the configuration file at path. Relative
// paths inside it resolve against its directory. On failure the error is an
// *Errors listing every problem found, each with file:line (except when the
// file itself cannot be read).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve config path %s: %w", path, err)
	}
	return Parse(data, path, filepath.Dir(abs))
}

// Parse checks and defaults configuration data. filename names the data in
// problems; relative paths (files, secret file references) resolve against
// baseDir. On failure the error is an *Errors.
func Parse(data []byte, filename, baseDir string) (*Config, error) {
	abs, err := filepath.Abs(baseDir)
	if err != nil {
		return nil, fmt.Errorf("resolve base directory %s: %w", baseDir, err)
	}
	d := &decoder{file: filename, baseDir: abs, budget: maxVisits, allowAgents: agentsWired}
	cfg := d.decodeFile(data)
	d.scrub()
	if len(d.problems) > 0 {
		sortProblems(d.problems)
		if len(d.problems) > maxProblems {
			rest := d.problems[maxProblems]
			rest.Key, rest.Message = "", fmt.Sprintf("… and %d more problems; fix the ones above first", len(d.problems)-maxProblems)
			d.problems = append(d.problems[:maxProblems], rest)
		}
		return nil, &Errors{Problems: d.problems}
	}
	sortProblems(d.warnings)
	cfg.warnings = d.warnings
	return cfg, nil
}

// maxVisits bounds the work aliases and merge keys can cause: a small file
// must not expand into an exponential walk.
const maxVisits = 200_000

// maxProblems bounds the report: past it, the file is not a configuration
// with mistakes but something else, and the rest would only scroll away.
const maxProblems = 200

// maxMergeDepth bounds nested merge keys (<<).
const maxMergeDepth = 16

// decoder walks the YAML node tree and collects problems instead of stopping
// at the first one. Its state lives for one Parse call.
type decoder struct {
	file      string
	baseDir   string
	problems  []Problem
	warnings  []Problem
	secrets   []*secret.Value
	budget    int
	exhausted bool
	tooDeep   bool
	// publicURLNode is where public_url is written, for warnings derived from it.
	publicURLNode *yaml.Node
	// prefix is prepended to every problem's key while a frontends[] entry
	// is decoded ("frontends[1].").
	prefix string
	// allowAgents accepts a valid agents section (agentsWired; tests of the
	// section's decoding set it).
	allowAgents bool
	// lines is the file's text by line, to place errors inside multi-line
	// values (policy expressions in block scalars).
	lines []string
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) decodeFile(data []byte) *Config {
	d.lines = strings.Split(string(data), "\n")
	root, ok := d.parseYAML(data)
	if !ok {
		return nil
	}
	return d.decodeRoot(root)
}

// parseYAML returns the top-level node of the one document in data.
func (d *decoder) parseYAML(data []byte) (n *yaml.Node, ok bool) {
	defer func() {
		// The YAML library is a parser of operator input; a bug in it must
		// become a clear error, not a crash of `gatehouse check`.
		if r := recover(); r != nil {
			d.problems = append(d.problems, Problem{File: d.file, Line: 1, Column: 1,
				Message: "the YAML parser failed on this file; check its syntax"})
			n, ok = nil, false
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.problems = append(d.problems, Problem{File: d.file, Line: 1, Column: 1,
				Message: "the file is empty; start from examples/gatehouse.yaml"})
			return nil, false
		}
		d.syntaxError(err)
		return nil, false
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
		return nil, false
	default:
		d.problems = append(d.problems, Problem{File: d.file, Line: max(extra.Line, 1), Column: max(extra.Column, 1),
			Message: "a second YAML document (after ---) is not allowed; one file configures one process (list several frontends under frontends:)"})
		return nil, false
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		d.problems = append(d.problems, Problem{File: d.file, Line: 1, Column: 1,
			Message: "the file is empty; start from examples/gatehouse.yaml"})
		return nil, false
	}
	return doc.Content[0], true
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if l, err := strconv.Atoi(m[1]); err == nil && l > 0 {
			line = l
		}
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Column: 1,
		Message: "invalid YAML: " + msg})
}

// scrub removes every resolved secret value from every message: a secret
// must never reach an error, even when the same text was also (wrongly)
// written into a non-secret key whose problem message quotes it. It replaces
// the whole value that holds a secret, never just the matching substring:
// "x[REDACTED]y" would tell the reader where the secret starts and ends
// (and, for a short secret, what it is).
func (d *decoder) scrub() {
	var vals []string
	for _, s := range d.secrets {
		if v := s.Get().Reveal(); v != "" {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return
	}
	for _, ps := range [][]Problem{d.problems, d.warnings} {
		for i := range ps {
			ps[i].Message = scrubText(ps[i].Message, vals)
			if holdsSecret(ps[i].Key, vals) {
				ps[i].Key = redacted
			}
		}
	}
}

const redacted = "[REDACTED]"

func holdsSecret(s string, vals []string) bool {
	for _, v := range vals {
		if strings.Contains(s, v) {
			return true
		}
	}
	return false
}

// scrubText replaces each quoted value (as %q writes them) whose text holds
// a secret by "[REDACTED]" whole, then each remaining space-separated word
// that still holds one. Quoted values are compared unquoted, so a secret
// that %q escaped (a quote, a control character) is found too.
func scrubText(msg string, vals []string) string {
	var b strings.Builder
	rest := msg
	found := false
	for {
		i := strings.IndexByte(rest, '"')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		q, err := strconv.QuotedPrefix(rest[i:])
		if err != nil {
			b.WriteByte('"')
			rest = rest[i+1:]
			continue
		}
		if uq, err := strconv.Unquote(q); err == nil && (holdsSecret(uq, vals) || holdsSecret(q, vals)) {
			b.WriteString(`"` + redacted + `"`)
			found = true
		} else {
			b.WriteString(q)
		}
		rest = rest[i+len(q):]
	}
	out := b.String()
	if !found && !holdsSecret(out, vals) {
		return msg
	}
	if !holdsSecret(out, vals) {
		return out
	}
	words := strings.Split(out, " ")
	for i, w := range words {
		if holdsSecret(w, vals) {
			words[i] = redacted
		}
	}
	out = strings.Join(words, " ")
	if holdsSecret(out, vals) { // a secret with a space in it
		return "a value here matches a configured secret and is not shown " + redacted
	}
	return out
}

func (d *decoder) at(n *yaml.Node, key, format string, args ...any) Problem {
	if d.prefix != "" {
		key = d.prefix + key
	}
	p := Problem{File: d.file, Line: 1, Column: 1, Key: strings.TrimSuffix(key, "."), Message: fmt.Sprintf(format, args...)}
	if n != nil && n.Line > 0 {
		p.Line, p.Column = n.Line, n.Column
	}
	return p
}

// errf records a problem at n.
func (d *decoder) errf(n *yaml.Node, key, format string, args ...any) {
	d.problems = append(d.problems, d.at(n, key, format, args...))
}

// warnf records a warning at n.
func (d *decoder) warnf(n *yaml.Node, key, format string, args ...any) {
	d.warnings = append(d.warnings, d.at(n, key, format, args...))
}

// visit charges one unit of work; false means the budget is spent.
func (d *decoder) visit(n *yaml.Node) bool {
	d.budget--
	if d.budget >= 0 {
		return true
	}
	if !d.exhausted {
		d.exhausted = true
		d.errf(n, "", "the file expands into too many values through aliases or merge keys; write it out plainly")
	}
	return false
}

// deref follows aliases. It returns nil for a missing node, a null value, or
// when the work budget is spent: every caller treats nil as "not set".
func (d *decoder) deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		if !d.visit(n) {
			return nil
		}
		n = n.Alias
	}
	if n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null") {
		return nil
	}
	return n
}

// entry is one key of a mapping.
type entry struct {
	key *yaml.Node
	val *yaml.Node
}

// fields is a checked mapping: unknown and duplicate keys were reported.
type fields struct {
	node *yaml.Node // the mapping node
	pos  *yaml.Node // where to report a missing key: the mapping's own key if known
	path string
	m    map[string]entry
	// names lists every key written (known or not, explicit or merged), in order.
	names []string
}

// mapping checks that n is a mapping whose keys are all in known, reporting
// the others with a suggestion. It returns nil when n is absent or not a
// mapping (after reporting the latter). section names the schema entry used
// for suggestions (e.g. "session.redis", "routes[]").
func (d *decoder) mapping(n *yaml.Node, pos *yaml.Node, path, section string) *fields {
	n = d.deref(n)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.errf(n, path, "expected a mapping (key: value lines), got %s", describe(n))
		return nil
	}
	if pos == nil {
		pos = n
	}
	f := &fields{node: n, pos: pos, path: path, m: map[string]entry{}}
	explicit, merged := d.pairs(n, path, 0)
	known := knownKeys(section)
	for _, e := range explicit {
		name := e.key.Value
		f.names = append(f.names, name)
		if prev, dup := f.m[name]; dup {
			d.errf(e.key, join(path, name), "key is set twice (first at line %d); keep one", prev.key.Line)
			continue
		}
		if !slices.Contains(known, name) {
			d.errf(e.key, join(path, name), "%s", unknownKeyMessage(name, section))
			continue
		}
		f.m[name] = e
	}
	for _, e := range merged {
		name := e.key.Value
		if _, set := f.m[name]; set || slices.Contains(f.names, name) {
			continue // explicit keys override merged ones
		}
		f.names = append(f.names, name)
		if !slices.Contains(known, name) {
			d.errf(e.key, join(path, name), "%s (merged from the anchor here)", unknownKeyMessage(name, section))
			continue
		}
		f.m[name] = e
	}
	return f
}

// pairs lists the mapping's explicit entries and, separately, those brought
// in by merge keys (<<), earlier merge sources taking precedence.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) (explicit, merged []entry) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !d.visit(k) {
			return explicit, merged
		}
		if k.Kind != yaml.ScalarNode {
			d.errf(k, path, "a key must be a plain word, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			if depth >= maxMergeDepth {
				if !d.tooDeep {
					d.tooDeep = true
					d.errf(k, path, "merge keys (<<) are nested too deeply; write the values out")
				}
				continue
			}
			merged = append(merged, d.mergeSources(v, path, depth)...)
			continue
		}
		explicit = append(explicit, entry{key: k, val: v})
	}
	return explicit, merged
}

func (d *decoder) mergeSources(v *yaml.Node, path string, depth int) []entry {
	v = d.deref(v)
	if v == nil {
		return nil
	}
	var sources []*yaml.Node
	switch v.Kind {
	case yaml.MappingNode:
		sources = []*yaml.Node{v}
	case yaml.SequenceNode:
		for _, s := range v.Content {
			sources = append(sources, d.deref(s))
		}
	default:
		d.errf(v, path, "a merge key (<<) takes an alias of a mapping, such as <<: *defaults")
		return nil
	}
	var out []entry
	for _, s := range sources {
		if s == nil {
			continue
		}
		if s.Kind != yaml.MappingNode {
			d.errf(s, path, "a merge key (<<) takes an alias of a mapping, such as <<: *defaults")
			continue
		}
		ex, mg := d.pairs(s, path, depth+1)
		out = append(out, ex...)
		out = append(out, mg...)
	}
	return out
}

// get returns the value of key, or nil when it is absent or null.
func (f *fields) get(d *decoder, key string) *yaml.Node {
	if f == nil {
		return nil
	}
	e, ok := f.m[key]
	if !ok {
		return nil
	}
	return d.deref(e.val)
}

// has reports whether key is present, even with a null value.
func (f *fields) has(key string) bool {
	if f == nil {
		return false
	}
	_, ok := f.m[key]
	return ok
}

// keyNode returns the node of key itself (for positions), or nil.
func (f *fields) keyNode(key string) *yaml.Node {
	if f == nil {
		return nil
	}
	return f.m[key].key
}

// missing reports a required key that is absent.
func (d *decoder) missing(f *fields, key, hint string) {
	d.errf(f.pos, join(f.path, key), "required key is missing; %s", hint)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe names a node's kind for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!bool":
		return "boolean " + n.Value
	case "!!int", "!!float":
		return "number " + n.Value
	case "!!null":
		return "nothing"
	case "!!str":
		return "text"
	}
	return "a value tagged " + n.Tag
}

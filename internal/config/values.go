package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// quote shows a user's value in a message, shortened so that a pasted blob
// does not flood the output.
func quote(s string) string {
	const maxShown = 60
	if len(s) > maxShown {
		s = s[:maxShown] + "…"
	}
	return strconv.Quote(s)
}

func looksLikeReference(s string) bool {
	return secret.IsReference(s) || strings.HasPrefix(s, "${env:") || strings.HasPrefix(s, "${file:")
}

// scalarText returns the text of a scalar that may stand for a string:
// quoted or plain text, and numbers or dates written without quotes (their
// text is kept exactly as written). Booleans and other kinds are refused.
func (d *decoder) scalarText(n *yaml.Node, key, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errf(n, key, "expected %s, got %s", want, describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!timestamp":
		return n.Value, true
	case "!!bool":
		d.errf(n, key, "expected %s, got boolean %s; quote it (\"%s\") if you mean the text", want, n.Value, n.Value)
		return "", false
	}
	d.errf(n, key, "expected %s, got %s", want, describe(n))
	return "", false
}

// str decodes a plain (non-secret) string. Secret references are refused
// here: they are resolved only in secret keys, and silently using
// "${env:X}" as a literal would be accepting and ignoring.
func (d *decoder) str(n *yaml.Node, key string) (string, bool) {
	if n == nil {
		return "", false
	}
	s, ok := d.scalarText(n, key, "a string")
	if !ok {
		return "", false
	}
	if looksLikeReference(s) {
		d.errf(n, key, "secret references (${env:…}, ${file:…}) are only resolved in secret keys (%s); write the value itself here", strings.Join(secretKeys, ", "))
		return "", false
	}
	return s, true
}

// nonEmpty is str that also refuses "".
func (d *decoder) nonEmpty(n *yaml.Node, key string) (string, bool) {
	s, ok := d.str(n, key)
	if ok && strings.TrimSpace(s) == "" {
		d.errf(n, key, "must not be empty; remove the key to use the default")
		return "", false
	}
	return s, ok
}

func (d *decoder) boolean(n *yaml.Node, key string) (bool, bool) {
	if n == nil {
		return false, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		hint := ""
		if n.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf(" %s", quote(n.Value))
		}
		d.errf(n, key, "expected true or false, got %s%s", describe(n), hint)
		return false, false
	}
	b, err := strconv.ParseBool(n.Value)
	if err != nil { // YAML 1.1 spellings such as "on" are tagged !!bool but not Go bools
		d.errf(n, key, "expected true or false, got %s", quote(n.Value))
		return false, false
	}
	return b, true
}

func (d *decoder) integer(n *yaml.Node, key string) (int, bool) {
	if n == nil {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.errf(n, key, "expected a whole number, got %s", describe(n))
		return 0, false
	}
	i, err := strconv.ParseInt(n.Value, 0, 32)
	if err != nil {
		d.errf(n, key, "%s is not a whole number in range", quote(n.Value))
		return 0, false
	}
	return int(i), true
}

// duration decodes a Go duration; negative durations are refused.
func (d *decoder) duration(n *yaml.Node, key string) (time.Duration, bool) {
	if n == nil {
		return 0, false
	}
	const fix = "use Go duration syntax such as 5s or 1m30s"
	if n.Kind != yaml.ScalarNode {
		d.errf(n, key, "expected a duration, got %s; %s", describe(n), fix)
		return 0, false
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.ShortTag() == "!!bool" {
		if n.ShortTag() == "!!int" {
			d.errf(n, key, "%s is not a duration (a unit is required); %s, e.g. %ss", quote(n.Value), fix, n.Value)
		} else {
			d.errf(n, key, "%s is not a duration; %s", quote(n.Value), fix)
		}
		return 0, false
	}
	if v < 0 {
		d.errf(n, key, "%s is negative; durations must be zero or more", quote(n.Value))
		return 0, false
	}
	return v, true
}

// positive is duration that also refuses zero.
func (d *decoder) positive(n *yaml.Node, key string) (time.Duration, bool) {
	v, ok := d.duration(n, key)
	if ok && v == 0 {
		d.errf(n, key, "must be more than zero")
		return 0, false
	}
	return v, ok
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first so that "MiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"kB", 1000}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// size decodes a byte size: a whole number of bytes or a number with a unit
// (B, kB, MB, GB, KiB, MiB, GiB), e.g. 10MiB.
func (d *decoder) size(n *yaml.Node, key string) (int64, bool) {
	if n == nil {
		return 0, false
	}
	const fix = "write a size such as 512KiB, 10MiB or 1GB (or a number of bytes)"
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		d.errf(n, key, "expected a size, got %s; %s", describe(n), fix)
		return 0, false
	}
	s := strings.TrimSpace(n.Value)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		d.errf(n, key, "%s is not a size; %s", quote(n.Value), fix)
		return 0, false
	}
	return v * mult, true
}

// item is one string of a list, with its node and key path for messages.
type item struct {
	val  string
	node *yaml.Node
	key  string
}

// strItems decodes a list of strings, returning the good items (bad ones
// are reported) and whether all items were good.
func (d *decoder) strItems(n *yaml.Node, key, example string) ([]item, bool) {
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		d.errf(n, key, "expected a list such as %s, got %s", example, describe(n))
		return nil, false
	}
	out := make([]item, 0, len(n.Content))
	ok := true
	for i, raw := range n.Content {
		k := fmt.Sprintf("%s[%d]", key, i)
		node := d.deref(raw)
		if node == nil {
			d.errf(raw, k, "list item is empty; remove it")
			ok = false
			continue
		}
		s, good := d.nonEmpty(node, k)
		if !good {
			ok = false
			continue
		}
		out = append(out, item{val: s, node: node, key: k})
	}
	return out, ok
}

// enum decodes one of allowed.
func (d *decoder) enum(n *yaml.Node, key string, allowed ...string) (string, bool) {
	s, ok := d.str(n, key)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		msg := fmt.Sprintf("%s is not one of %s", quote(s), strings.Join(allowed, " | "))
		if best := closest(s, allowed); best != "" {
			msg += fmt.Sprintf("; did you mean %q?", best)
		}
		d.errf(n, key, "%s", msg)
		return "", false
	}
	return s, true
}

// httpURL decodes an absolute http or https URL without credentials or a
// fragment.
func (d *decoder) httpURL(n *yaml.Node, key string) (*url.URL, bool) {
	s, ok := d.str(n, key)
	if !ok {
		return nil, false
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		d.errf(n, key, "%s is not an absolute http(s) URL; write it like https://host.example/path", quote(s))
		return nil, false
	}
	if u.User != nil {
		d.errf(n, key, "the URL contains user:password@; credentials belong in a secret key, not in a URL")
		return nil, false
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		d.errf(n, key, "%s has a #fragment; remove it", quote(s))
		return nil, false
	}
	if u.Port() != "" {
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			d.errf(n, key, "%s has an invalid port", quote(s))
			return nil, false
		}
	}
	return u, true
}

// secretValue decodes a secret key: a reference is resolved now (its errors
// name the reference, never a value); a literal is accepted with a warning.
func (d *decoder) secretValue(n *yaml.Node, key string) (*secret.Value, bool) {
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!bool" ||
		(n.ShortTag() != "!!str" && n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		// Never describe the value itself: it is a secret.
		kind := "a list or mapping"
		if n.Kind == yaml.ScalarNode {
			kind = "a non-text value"
		}
		d.errf(n, key, "expected a secret reference such as ${env:NAME} or ${file:/path}, got %s", kind)
		return nil, false
	}
	s := n.Value
	if strings.TrimSpace(s) == "" {
		d.errf(n, key, "must not be empty; use a reference such as ${env:NAME} or ${file:/path}, or remove the key")
		return nil, false
	}
	if strings.HasPrefix(s, "${") && !secret.IsReference(s) {
		// A malformed reference: name the forms, never echo the text.
		d.errf(n, key, "malformed secret reference; use ${env:NAME} or ${file:/path}")
		return nil, false
	}
	v, err := secret.Resolve(s, d.baseDir)
	if err != nil {
		d.errf(n, key, "%v", err)
		return nil, false
	}
	d.secrets = append(d.secrets, v)
	if !secret.IsReference(s) {
		d.warnf(n, key, "secret written in the config file; move it to ${env:NAME} or ${file:/path} so it stays out of the file and can rotate")
	}
	return v, true
}

// hostPort validates a listen address (host may be empty: all interfaces).
func (d *decoder) hostPort(n *yaml.Node, key, example string) (string, bool) {
	s, ok := d.nonEmpty(n, key)
	if !ok {
		return "", false
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		d.errf(n, key, "%s is not host:port; write it like %s", quote(s), example)
		return "", false
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		d.errf(n, key, "%s has an invalid port; write it like %s", quote(s), example)
		return "", false
	}
	return s, true
}

// isToken reports whether s is an RFC 9110 token (header and cookie names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isLoopbackHost reports whether host (without port) always means this
// machine: localhost, *.localhost (RFC 6761), 127.0.0.0/8 or ::1.
func isLoopbackHost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

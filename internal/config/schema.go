package config

import (
	"fmt"
	"slices"
	"strings"
)

// schema lists the keys each mapping accepts, by section. It is read-only.
var schema = map[string][]string{
	"": {"client", "listen", "admin_listen", "public_url", "trusted_proxies", "frontend", "identity",
		"session", "csrf", "routes", "composites", "agents", "oauth", "rate_limits", "policy", "audit", "telemetry", "admin",
		"security_headers", "server", "tls", "frontends"},
	"tls":      {"cert_file", "key_file"},
	"frontend": {"static_dir", "upstream"},
	"identity": {"issuer", "client_id", "client_secret", "client_auth", "private_key", "private_key_id", "scopes",
		"pushed_authorization_requests", "post_logout_redirect"},
	"session": {"store", "bolt", "redis", "cookie_name", "same_site", "idle_timeout", "absolute_timeout",
		"refresh_before_expiry", "cache_memory", "cookie_keys"},
	"session.bolt":  {"path"},
	"session.redis": {"url", "addrs", "master_name", "password", "db", "key_prefix"},
	"csrf":          {"header", "allowed_origins"},
	"routes[]": {"name", "path", "upstream", "strip_prefix", "methods", "credential", "allow", "anonymous",
		"timeout", "max_body", "websocket", "allow_set_cookie", "allow_caching", "allow_method_override", "max_idle_conns"},
	"composites[]":                  {"name", "path", "method", "timeout", "calls", "shape"},
	"composites[].calls.*":          {"route", "path", "method", "query", "optional", "timeout", "depends_on", "max_body"},
	"credential":                    credentialKinds,
	"credential.token_exchange":     {"audience", "scope", "resource"},
	"credential.client_credentials": {"scope", "audience"},
	"credential.header":             {"name", "value"},
	"rate_limits":                   {"default", "routes", "concurrent_per_caller"},
	"rate_limits.limit":             {"requests", "per", "burst"},
	"oauth":                         {"clients"},
	"oauth.clients[]":               {"client_id", "kind", "redirect_uris", "routes", "dpop"},
	"agents":                        {"max_ttl", "default_ttl", "delegable_routes", "max_tokens_per_session", "rate_limit"},
	"agents.rate_limit":             {"requests", "per", "burst"},
	"policy":                        {"pdp"},
	"policy.pdp":                    {"url", "token", "timeout", "cache_ttl"},
	"audit":                         {"sink", "path", "durability", "fsync_interval", "max_size", "buffer", "on_failure"},
	"telemetry":                     {"otlp_endpoint", "log_level"},
	"admin":                         {"token"},
	"security_headers": {"content_security_policy", "frame_options", "hsts", "cross_origin_opener_policy",
		"cross_origin_resource_policy", "referrer_policy"},
	"security_headers.hsts": {"max_age", "include_subdomains", "preload"},
	"server":                {"shutdown_timeout", "drain_delay", "body_read_timeout", "max_connections", "ready_requires_idp"},
}

// processKeys are the top-level keys shared by every frontend of the
// process. Every other top-level key (but frontends) is per frontend: in the
// frontends: form it goes into each entry. A new top-level key is per
// frontend unless listed here.
var processKeys = []string{"listen", "admin_listen", "tls", "trusted_proxies", "policy", "audit", "telemetry", "admin", "server"}

// sessionProcessKeys are the keys of session shared by every frontend (the
// store); the others (cookie, timeouts, cookie keys) are per frontend.
var sessionProcessKeys = []string{"store", "bolt", "redis"}

// knownKeys returns the keys a schema section accepts. A frontends[] entry
// accepts the top-level keys (the process-wide ones are then reported with
// a clear message rather than as unknown).
func knownKeys(section string) []string {
	if section == "frontends[]" {
		return slices.DeleteFunc(slices.Clone(schema[""]), func(k string) bool { return k == "frontends" })
	}
	return schema[section]
}

var credentialKinds = []string{"user_token", "token_exchange", "client_credentials", "header", "none"}

// secretKeys are the keys whose values are secrets (resolved from references).
var secretKeys = []string{"identity.client_secret", "identity.private_key", "session.redis.password", "session.cookie_keys",
	"routes[].credential.header.value", "policy.pdp.token", "admin.token"}

// sectionPath shows a schema section the way a user writes the path.
func sectionPath(section string) string {
	switch {
	case section == "":
		return "the top level"
	case section == "frontends[]":
		return "frontends[]"
	case strings.HasPrefix(section, "credential"):
		return "routes[]." + section
	case section == "composites[].calls.*":
		return "composites[].calls.<name>"
	}
	return section
}

// unknownKeyMessage explains an unknown key: the closest key of the same
// mapping, else the section where the key does exist, else the known keys.
func unknownKeyMessage(name, section string) string {
	known := knownKeys(section)
	what := "unknown key"
	if section == "credential" {
		what = "unknown credential kind"
	}
	if best := closest(name, known); best != "" {
		return fmt.Sprintf("%s %s; did you mean %q?", what, quote(name), best)
	}
	var elsewhere []string
	for sec, keys := range schema {
		if sec != section && sec != "credential" && slices.Contains(keys, name) {
			elsewhere = append(elsewhere, join(strings.TrimSuffix(sectionPath(sec), "the top level"), name))
		}
	}
	if len(elsewhere) > 0 {
		slices.Sort(elsewhere)
		return fmt.Sprintf("%s %s here; it belongs at %s", what, quote(name), strings.Join(elsewhere, " or "))
	}
	return fmt.Sprintf("%s %s; the keys allowed here are: %s", what, quote(name), strings.Join(known, ", "))
}

// closest returns the candidate nearest to s when it is near enough to be a
// likely typo, else "".
func closest(s string, candidates []string) string {
	best, bestDist := "", 0
	for _, c := range candidates {
		dist := levenshtein(strings.ToLower(s), c)
		if best == "" || dist < bestDist {
			best, bestDist = c, dist
		}
	}
	limit := max(2, len(best)/3)
	if best == "" || bestDist > limit {
		return ""
	}
	return best
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 { // not a typo of a key name; spare the work
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

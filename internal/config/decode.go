package config

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults, as documented in docs/configuration.md.
const (
	DefaultClient         = "web"
	DefaultListen         = "127.0.0.1:8080"
	DefaultAdminListen    = "127.0.0.1:9090"
	DefaultBoltPath       = "data/sessions.db" // relative to the config file
	DefaultRedisKeyPrefix = "gatehouse:"
	DefaultCookieName     = "__Host-gatehouse"
	// DefaultPathCookiePrefix, then the client name, is the default cookie
	// name of a path-bound frontend (public_url with a path), where __Host-
	// is impossible: "__Secure-gatehouse-shop". The client name keeps it
	// apart from a root frontend's cookie on the same host (which the
	// browser also sends under the prefix), in development too, where the
	// __Host-/__Secure- prefixes are dropped.
	DefaultPathCookiePrefix    = "__Secure-gatehouse-"
	DefaultIdleTimeout         = 30 * time.Minute
	DefaultAbsoluteTimeout     = 12 * time.Hour
	DefaultRefreshBeforeExpiry = 30 * time.Second
	// DefaultSessionCacheMemory is session.DefaultCacheMemory (pinned by a
	// test in gateway).
	DefaultSessionCacheMemory = 128 << 20 // 128 MiB
	DefaultCSRFHeader         = "X-CSRF"
	DefaultRouteTimeout       = 30 * time.Second
	DefaultMaxBody            = 10 << 20 // 10 MiB
	// DefaultMaxIdleConns is a route's idle upstream connections kept for
	// reuse: more than the concurrent requests one instance serves to one
	// upstream on a typical host, so a busy route does not open (and leave
	// in TIME_WAIT) a connection per request as Go's default of 2 would.
	DefaultMaxIdleConns  = 256
	DefaultPDPTimeout    = 200 * time.Millisecond
	DefaultAuditPath     = "data/audit.jsonl" // relative to the config file
	DefaultFsyncInterval = time.Second
	// MinSecretKeyLength is the least length of cookie keys and the admin token.
	MinSecretKeyLength = 16
)

// DefaultScopes are requested when identity.scopes is not set.
func DefaultScopes() []string { return []string{"openid", "profile", "email", "offline_access"} }

var allowedMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func (d *decoder) decodeRoot(root *yaml.Node) *Config {
	c := &Config{File: d.file, BaseDir: d.baseDir}
	if d.deref(root) == nil {
		d.errf(root, "", "the file has no settings; start from examples/gatehouse.yaml")
		return c
	}
	top := d.mapping(root, nil, "", "")
	if top == nil {
		return c
	}
	if top.has("frontends") {
		d.frontendsForm(c, top)
		return c
	}
	// The top-level one-frontend form: the file is exactly one frontend's
	// entry merged with the process-wide keys.
	sf := d.section(top, "session", "session", "session", "")
	d.processWide(c, top, sf)
	d.perFrontend(c, top, sf)
	return c
}

// processWide decodes the keys shared by every frontend of the process;
// sf is the top-level session section (only its store keys are read here).
func (d *decoder) processWide(c *Config, top, sf *fields) {
	d.listeners(c, top)
	d.tls(c, top)
	d.trustedProxies(c, top)
	d.sessionStore(c, sf)
	d.policy(c, top)
	d.audit(c, top)
	d.telemetry(c, top)
	d.admin(c, top)
	d.server(c, top)
}

// perFrontend decodes one frontend's keys from f (the top level in the
// one-frontend form, a frontends[] entry otherwise); sf is its session section.
func (d *decoder) perFrontend(c *Config, f, sf *fields) {
	// Features not built yet are refused, never accepted and ignored.

	c.Client = DefaultClient
	if n := f.get(d, "client"); n != nil {
		if s, ok := d.nonEmpty(n, "client"); ok {
			if !isName(s) {
				d.errf(n, "client", "%s is not a valid name; use letters, digits, - and _ (e.g. web)", quote(s))
			}
			c.Client = s
		}
	}
	d.publicURL(c, f)
	d.frontend(c, f)
	d.identity(c, f)
	d.sessionCookie(c, sf)
	d.csrf(c, f)
	d.routes(c, f)
	d.rateLimits(c, f) // after routes: limits name routes
	d.composites(c, f) // checked against the routes by internal/compose at build
	d.agents(c, f)
	if c.Agents != nil && !d.allowAgents {
		d.errf(f.keyNode("agents"), "agents", "not supported yet: agent delegation is not wired into the request path of this version of Gatehouse; remove the agents section")
	}
	d.oauth(c, f)
	d.securityHeaders(c, f)
}

// section returns the checked mapping under key, reporting it when it is
// required and absent.
func (d *decoder) section(top *fields, key, path, schemaName, requiredHint string) *fields {
	n := top.get(d, key)
	if n == nil {
		if requiredHint != "" {
			d.missing(top, key, requiredHint)
		}
		return nil
	}
	return d.mapping(n, top.keyNode(key), path, schemaName)
}

func (d *decoder) listeners(c *Config, top *fields) {
	c.Listen, c.AdminListen = DefaultListen, DefaultAdminListen
	ln := top.get(d, "listen")
	if n := ln; n != nil {
		if s, ok := d.hostPort(n, "listen", DefaultListen); ok {
			c.Listen = s
		}
	}
	an := top.get(d, "admin_listen")
	if an != nil {
		if s, ok := d.hostPort(an, "admin_listen", DefaultAdminListen); ok {
			c.AdminListen = s
		}
	}
	lh, lp, _ := net.SplitHostPort(c.Listen)
	ah, ap, _ := net.SplitHostPort(c.AdminListen)
	if lp == ap && lp != "0" && (lh == ah || lh == "" || ah == "") {
		d.errf(firstNode(an, ln), "admin_listen", "uses the same port as listen (%s); the admin listener must be separate", c.Listen)
	}
	if !isLoopbackHost(ah) {
		d.warnf(an, "admin_listen", "%s is reachable from other machines; the admin listener must never be public: bind it to 127.0.0.1 or a private network", quote(c.AdminListen))
	}
}

func (d *decoder) publicURL(c *Config, top *fields) {
	n := top.get(d, "public_url")
	if n == nil {
		d.missing(top, "public_url", "add the frontend's origin as browsers see it, e.g. public_url: https://app.example.com")
		return
	}
	d.publicURLNode = n
	u, ok := d.httpURL(n, "public_url")
	if !ok {
		return
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		d.errf(n, "public_url", "must be scheme://host[:port] or scheme://host[:port]/prefix, without a query or fragment")
		return
	}
	// A path makes the frontend path-bound: its /bff/*, routes and cookie
	// live under the prefix (docs/frontends.md).
	prefix := strings.TrimSuffix(u.Path, "/")
	if prefix != "" {
		msg := checkRoutePath(prefix)
		if msg == "" && strings.TrimLeft(prefix, "/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
			// Only unreserved characters: then the prefix is the same in
			// the decoded and the escaped path, and binding by it is exact.
			msg = "may contain only letters, digits, / and - . _ ~"
		}
		if msg != "" {
			d.errf(n, "public_url", "the path %s %s", quote(prefix), strings.Replace(msg, "is under /bff, which Gatehouse reserves for its own endpoints", "is under /bff, which Gatehouse reserves", 1))
			return
		}
	}
	u.Path, u.RawPath = prefix, ""
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	// The scheme's default port is what browsers omit from Host; dropping it
	// here lets frontends be compared and bound by host and port alike.
	if p := u.Port(); (u.Scheme == "https" && p == "443") || (u.Scheme == "http" && p == "80") {
		u.Host = u.Hostname()
		if strings.Contains(u.Host, ":") {
			u.Host = "[" + u.Host + "]"
		}
	}
	if u.Scheme == "http" {
		if !isLoopbackHost(u.Hostname()) {
			d.errf(n, "public_url", "plain http on %s would send the session cookie in clear; use https (plain http is allowed only on localhost or 127.0.0.1 for development)", u.Hostname())
			return
		}
		d.warnf(n, "public_url", "plain http on a loopback host: development mode, cookies are not Secure and their __Host-/__Secure- prefix is dropped")
	}
	c.PublicURL = u
}

func (d *decoder) trustedProxies(c *Config, top *fields) {
	n := top.get(d, "trusted_proxies")
	items, _ := d.strItems(n, "trusted_proxies", "[10.0.0.0/8]")
	for _, it := range items {
		s, item, key := it.val, it.node, it.key
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			p, err = netip.ParsePrefix(s)
			if err != nil {
				d.errf(item, key, "%s is not a CIDR; write it like 10.0.0.0/8 or 192.0.2.7/32", quote(s))
				continue
			}
			if p.Masked() != p {
				d.errf(item, key, "%s has bits set beyond its prefix length; did you mean %s?", quote(s), p.Masked())
				continue
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				d.errf(item, key, "%s is not a CIDR; write it like 10.0.0.0/8 or 192.0.2.7/32", quote(s))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Bits() == 0 {
			d.warnf(item, key, "%s trusts every client to set X-Forwarded-*; list only your proxies' addresses", p)
		}
		c.TrustedProxies = append(c.TrustedProxies, p)
	}
}

func (d *decoder) frontend(c *Config, top *fields) {
	f := d.section(top, "frontend", "frontend", "frontend", "")
	if f == nil {
		return
	}
	sd, up := f.get(d, "static_dir"), f.get(d, "upstream")
	if sd != nil && up != nil {
		d.errf(up, "frontend.upstream", "set either frontend.static_dir or frontend.upstream, not both")
		return
	}
	if s, ok := d.nonEmpty(sd, "frontend.static_dir"); ok {
		p := d.path(s)
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			d.errf(sd, "frontend.static_dir", "%s is not a directory (relative paths start at the config file's directory)", quote(p))
		} else {
			c.Frontend.StaticDir = p
		}
	}
	if u, ok := d.httpURL(up, "frontend.upstream"); ok {
		c.Frontend.Upstream = u
	}
}

// firstNode returns the first non-nil node, for reporting a problem at the
// most specific position available.
func firstNode(ns ...*yaml.Node) *yaml.Node {
	for _, n := range ns {
		if n != nil {
			return n
		}
	}
	return nil
}

// tls decodes the public listener's certificate files and checks that they
// load as a pair now, so a wrong path or a mismatched key fails at start.
func (d *decoder) tls(c *Config, top *fields) {
	f := d.section(top, "tls", "tls", "tls", "")
	if f == nil {
		return
	}
	cn, kn := f.get(d, "cert_file"), f.get(d, "key_file")
	cert, cok := d.nonEmpty(cn, "tls.cert_file")
	key, kok := d.nonEmpty(kn, "tls.key_file")
	if cn == nil {
		d.missing(f, "cert_file", "add tls.cert_file: the PEM certificate chain for the public listener")
	}
	if kn == nil {
		d.missing(f, "key_file", "add tls.key_file: the PEM private key for tls.cert_file")
	}
	if !cok || !kok {
		return
	}
	t := &TLS{CertFile: d.path(cert), KeyFile: d.path(key)}
	if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
		d.errf(cn, "tls.cert_file", "the certificate and key do not load: %v; give PEM files of one key pair", err)
		return
	}
	c.TLS = t
}

// path makes p absolute against the config file's directory.
func (d *decoder) path(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(d.baseDir, p)
}

func (d *decoder) identity(c *Config, top *fields) {
	id := &c.Identity
	id.ClientAuth = ClientSecretBasic
	id.Scopes = DefaultScopes()
	id.PushedAuthorizationRequests = PARAuto
	if c.PublicURL != nil {
		id.PostLogoutRedirect = c.PublicURL.JoinPath("/")
	}
	f := d.section(top, "identity", "identity", "identity", "add identity: with issuer, client_id and client_secret")
	if f == nil {
		return
	}
	if n := f.get(d, "issuer"); n == nil {
		d.missing(f, "issuer", "add the OpenID Provider's issuer URL, e.g. issuer: https://idp.example.com")
	} else if u, ok := d.httpURL(n, "identity.issuer"); ok {
		switch {
		case u.RawQuery != "" || u.ForceQuery:
			d.errf(n, "identity.issuer", "an issuer has no query part (OpenID Connect Discovery §3); remove it")
		default:
			if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
				d.warnf(n, "identity.issuer", "the IdP is reached over plain http: the client secret and tokens travel in clear; use https outside local development")
			}
			id.Issuer = n.Value
		}
	}
	if n := f.get(d, "client_id"); n == nil {
		d.missing(f, "client_id", "add the client ID Gatehouse is registered under at the IdP")
	} else if s, ok := d.nonEmpty(n, "identity.client_id"); ok {
		id.ClientID = s
	}
	authNode := f.get(d, "client_auth")
	if authNode != nil {
		if s, ok := d.enum(authNode, "identity.client_auth", string(ClientSecretBasic), string(ClientSecretPost), string(PrivateKeyJWT)); ok {
			id.ClientAuth = ClientAuth(s)
		}
	}
	if id.ClientAuth == PrivateKeyJWT {
		d.privateKey(id, f)
	} else {
		for _, k := range []string{"private_key", "private_key_id"} {
			if n := f.get(d, k); n != nil {
				d.errf(n, "identity."+k, "is used only with client_auth: private_key_jwt; remove it or set client_auth")
			}
		}
		if n := f.get(d, "client_secret"); n == nil {
			d.missing(f, "client_secret", "add client_secret: ${file:/path/to/secret} or ${env:NAME} (or use client_auth: private_key_jwt with private_key)")
		} else if v, ok := d.secretValue(n, "identity.client_secret"); ok {
			id.ClientSecret = v
		}
	}
	if n := f.get(d, "scopes"); n != nil {
		if items, ok := d.strItems(n, "identity.scopes", "[openid, profile, email, offline_access]"); ok {
			good := true
			var list []string
			for _, it := range items {
				if strings.ContainsAny(it.val, " \t") {
					d.errf(it.node, it.key, "one scope per list item: write [%s]", strings.Join(strings.Fields(it.val), ", "))
					good = false
				}
				list = append(list, it.val)
			}
			if !slices.Contains(list, "openid") {
				d.errf(n, "identity.scopes", "must include openid (Gatehouse signs users in with OpenID Connect)")
				good = false
			}
			if good {
				id.Scopes = list
			}
		}
	}
	if n := f.get(d, "pushed_authorization_requests"); n != nil {
		if s, ok := d.enum(n, "identity.pushed_authorization_requests", string(PARAuto), string(PARAlways), string(PARNever)); ok {
			id.PushedAuthorizationRequests = PARMode(s)
		}
	}
	if n := f.get(d, "post_logout_redirect"); n != nil {
		const key = "identity.post_logout_redirect"
		if s, ok := d.nonEmpty(n, key); ok {
			switch {
			case strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") && !strings.Contains(s, `\`):
				if u, err := url.Parse(s); err != nil {
					d.errf(n, key, "%s is not a valid path", quote(s))
				} else if c.PublicURL != nil {
					id.PostLogoutRedirect = c.PublicURL.ResolveReference(u)
				}
			default:
				if u, ok := d.httpURL(n, key); ok {
					id.PostLogoutRedirect = u
				}
			}
		}
	}
}

// privateKey reads identity.private_key (and private_key_id) for
// private_key_jwt; client_secret is refused then (it would be unused).
func (d *decoder) privateKey(id *Identity, f *fields) {
	if n := f.get(d, "client_secret"); n != nil {
		d.errf(n, "identity.client_secret", "is not used with client_auth: private_key_jwt; remove it")
	}
	if n := f.get(d, "private_key"); n == nil {
		d.missing(f, "private_key", "add private_key: ${file:/path/to/key.pem} (a PEM private key whose public key is registered at the IdP)")
	} else if v, ok := d.secretValue(n, "identity.private_key"); ok {
		// A light check here (gatehouse check); the key itself is parsed at start.
		if b, _ := pem.Decode([]byte(v.Get().Reveal())); b == nil || !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			d.errf(n, "identity.private_key", "is not a PEM private key (want -----BEGIN PRIVATE KEY-----, RSA or EC)")
		} else {
			id.PrivateKey = v
		}
	}
	if n := f.get(d, "private_key_id"); n != nil {
		if s, ok := d.nonEmpty(n, "identity.private_key_id"); ok {
			id.PrivateKeyID = s
		}
	}
}

// sessionStore decodes the process-wide part of session (store, bolt, redis).
func (d *decoder) sessionStore(c *Config, f *fields) {
	s := &c.Session
	s.Store = StoreBolt
	s.Bolt.Path = d.path(DefaultBoltPath)
	if n := f.get(d, "store"); n != nil {
		if v, ok := d.enum(n, "session.store", string(StoreMemory), string(StoreBolt), string(StoreRedis)); ok {
			s.Store = StoreKind(v)
		}
		if s.Store == StoreMemory {
			d.warnf(n, "session.store", "memory sessions are lost on restart and not shared between instances; use bolt or redis outside tests")
		}
	}
	if bf := d.section(f, "bolt", "session.bolt", "session.bolt", ""); bf != nil {
		if p, ok := d.nonEmpty(bf.get(d, "path"), "session.bolt.path"); ok {
			s.Bolt.Path = d.path(p)
		}
		if s.Store != StoreBolt {
			d.warnf(f.keyNode("bolt"), "session.bolt", "unused: session.store is %s", s.Store)
		}
	}
	if rf := d.section(f, "redis", "session.redis", "session.redis", ""); rf != nil {
		d.redis(s, rf)
		if s.Store != StoreRedis {
			d.warnf(f.keyNode("redis"), "session.redis", "unused: session.store is %s", s.Store)
		}
	} else if s.Store == StoreRedis {
		pos := f.keyNode("store")
		d.errf(pos, "session.redis", "session.store is redis but session.redis is missing; add session.redis.url (or addrs)")
	}
}

// sessionCookie decodes the per-frontend part of session: the cookie,
// timeouts and login-state cookie keys.
func (d *decoder) sessionCookie(c *Config, f *fields) {
	s := &c.Session
	s.CookieName = DefaultCookieName
	if c.PathPrefix() != "" {
		// A path-bound frontend's cookie has Path=<prefix>, which the
		// __Host- prefix forbids (RFC 6265bis §4.1.3.2).
		s.CookieName = DefaultPathCookiePrefix + c.Client
	}
	s.SameSite = http.SameSiteStrictMode
	s.IdleTimeout, s.AbsoluteTimeout = DefaultIdleTimeout, DefaultAbsoluteTimeout
	s.RefreshBeforeExpiry = DefaultRefreshBeforeExpiry
	s.CacheMemory = DefaultSessionCacheMemory
	if n := f.get(d, "cookie_name"); n != nil {
		if v, ok := d.nonEmpty(n, "session.cookie_name"); ok {
			if !isToken(v) {
				d.errf(n, "session.cookie_name", "%s is not a valid cookie name; use letters, digits and - _ .", quote(v))
			} else {
				s.CookieName = v
			}
		}
	}
	if n := f.get(d, "same_site"); n != nil {
		if n.Kind == yaml.ScalarNode && strings.EqualFold(n.Value, "none") {
			d.errf(n, "session.same_site", "none is not allowed: the session cookie must not travel on cross-site requests; use strict (default) or lax")
		} else if v, ok := d.enum(n, "session.same_site", "strict", "lax"); ok {
			s.SameSite = map[string]http.SameSite{"strict": http.SameSiteStrictMode, "lax": http.SameSiteLaxMode}[v]
		}
	}
	idle := f.get(d, "idle_timeout")
	if v, ok := d.positive(idle, "session.idle_timeout"); ok {
		s.IdleTimeout = v
	}
	if v, ok := d.positive(f.get(d, "absolute_timeout"), "session.absolute_timeout"); ok {
		s.AbsoluteTimeout = v
	}
	if s.IdleTimeout > s.AbsoluteTimeout {
		d.errf(idle, "session.idle_timeout", "is longer than session.absolute_timeout (%s), so it could never take effect; make it shorter", s.AbsoluteTimeout)
	}
	if v, ok := d.duration(f.get(d, "refresh_before_expiry"), "session.refresh_before_expiry"); ok {
		s.RefreshBeforeExpiry = v
	}
	if n := f.get(d, "cache_memory"); n != nil {
		if v, ok := d.size(n, "session.cache_memory"); ok {
			if v == 0 {
				d.errf(n, "session.cache_memory", "must be more than zero (the cache of decrypted sessions cannot be turned off; 1MiB holds about a thousand sessions)")
			} else {
				s.CacheMemory = v
			}
		}
	}
	if n := f.get(d, "cookie_keys"); n != nil {
		if n.Kind != yaml.SequenceNode {
			d.errf(n, "session.cookie_keys", "expected a list of secret references such as [${file:/run/secrets/cookie-key}], got %s", describeNoValue(n))
		} else {
			for i, item := range n.Content {
				key := fmt.Sprintf("session.cookie_keys[%d]", i)
				item = d.deref(item)
				if item == nil {
					d.errf(n, key, "list item is empty; remove it")
					continue
				}
				if v, ok := d.secretValue(item, key); ok {
					if len(v.Get().Reveal()) < MinSecretKeyLength {
						d.errf(item, key, "the key is shorter than %d bytes; use 32 random bytes, e.g. `openssl rand -base64 32`", MinSecretKeyLength)
						continue
					}
					s.CookieKeys = append(s.CookieKeys, v)
				}
			}
		}
	}
	if len(s.CookieKeys) == 0 {
		var pos *yaml.Node
		if f != nil {
			pos = f.pos
		}
		msg := "not set: the login-state cookie key is random per process, which is only correct for a single instance (a login started on one instance fails on another, and a restart mid-login fails it); set cookie_keys to shared secret references"
		d.warnf(pos, "session.cookie_keys", "%s", msg)
	}
	if c.PublicURL != nil {
		prefixed := stripCookiePrefix(s.CookieName) != s.CookieName
		switch {
		case c.PathPrefix() != "" && strings.HasPrefix(strings.ToLower(s.CookieName), "__host-"):
			d.errf(firstNode(f.keyNode("cookie_name"), d.publicURLNode), "session.cookie_name", "%s is impossible for a path-bound frontend: public_url has the path %s, so the cookie has Path=%s, and browsers drop __Host- cookies whose Path is not /; use the __Secure- prefix (the default here is %s)", quote(s.CookieName), c.PathPrefix(), c.PathPrefix(), DefaultPathCookiePrefix+c.Client)
		case c.Development() && prefixed:
			d.warnf(firstNode(f.keyNode("cookie_name"), d.publicURLNode), "session.cookie_name", "public_url is plain http, so the cookie is named %s (browsers refuse the %s prefix without https); development only", stripCookiePrefix(s.CookieName), strings.TrimSuffix(s.CookieName, stripCookiePrefix(s.CookieName)))
		case c.PathPrefix() != "" && !c.Development() && !strings.HasPrefix(s.CookieName, "__Secure-"):
			// Path-bound: __Host- is impossible (see above); __Secure- is the
			// best available, and the OIDC client requires it.
			d.errf(firstNode(f.keyNode("cookie_name"), d.publicURLNode), "session.cookie_name", "a path-bound frontend on https needs a cookie named __Secure-… (__Host- is impossible with Path=%s); use __Secure-%s", c.PathPrefix(), stripCookiePrefix(s.CookieName))
		case c.PathPrefix() != "":
		case !c.Development() && !strings.HasPrefix(s.CookieName, "__Host-"):
			// Refused, not warned: the OIDC client refuses it too, and a
			// config `check` accepts must start (issue 9).
			d.errf(firstNode(f.keyNode("cookie_name"), d.publicURLNode), "session.cookie_name", "with an https public_url the session cookie must be named __Host-…: without the prefix a sibling subdomain can plant a cookie of the same name; use __Host-%s", stripCookiePrefix(s.CookieName))
		}
	}
}

func stripCookiePrefix(name string) string {
	for _, p := range []string{"__Host-", "__Secure-"} {
		if len(name) > len(p) && strings.EqualFold(name[:len(p)], p) {
			return name[len(p):]
		}
	}
	return name
}

// describeNoValue is describe without the value, for secret keys.
func describeNoValue(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a single value"
}

func (d *decoder) redis(s *Session, f *fields) {
	r := &s.Redis
	r.KeyPrefix = DefaultRedisKeyPrefix
	un, an, mn := f.get(d, "url"), f.get(d, "addrs"), f.get(d, "master_name")
	if un != nil && an != nil {
		d.errf(an, "session.redis.addrs", "set either url (one server) or addrs (sentinel with master_name, or cluster), not both")
		return
	}
	dbNode := f.get(d, "db")
	db, dbSet := d.integer(dbNode, "session.redis.db")
	if dbSet && db < 0 {
		d.errf(dbNode, "session.redis.db", "must be zero or more")
	}
	switch {
	case un != nil:
		r.Mode = RedisStandalone
		if mn != nil {
			d.errf(mn, "session.redis.master_name", "master_name goes with addrs (the sentinels), not with url")
		}
		raw, ok := d.nonEmpty(un, "session.redis.url")
		if !ok {
			break
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			d.errf(un, "session.redis.url", "%s is not a Redis URL; write it like redis://host:6379/0 (rediss:// for TLS)", quote(raw))
			break
		}
		if _, has := u.User.Password(); has {
			d.errf(un, "session.redis.url", "the URL contains a password; put it in session.redis.password as ${env:NAME} or ${file:/path}")
			break
		}
		if u.RawQuery != "" || u.Fragment != "" {
			d.errf(un, "session.redis.url", "URL options (?…) are not supported; write redis://host:port/db")
			break
		}
		if p := strings.Trim(u.Path, "/"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 {
				d.errf(un, "session.redis.url", "the path must be a database number, as in redis://host:6379/0")
				break
			}
			if dbSet && db != n {
				d.errf(dbNode, "session.redis.db", "conflicts with the database %d in session.redis.url; keep one", n)
			}
			r.DB = n
		} else if dbSet {
			r.DB = db
		}
		r.URL = raw
	case an != nil:
		items, ok := d.strItems(an, "session.redis.addrs", "[10.0.0.1:6379, 10.0.0.2:6379]")
		var addrs []string
		for _, it := range items {
			if _, _, err := net.SplitHostPort(it.val); err != nil {
				d.errf(it.node, it.key, "%s is not host:port", quote(it.val))
			}
			addrs = append(addrs, it.val)
		}
		if !ok {
			break
		}
		if len(addrs) == 0 {
			d.errf(an, "session.redis.addrs", "is empty; list host:port of the sentinels or cluster nodes")
			break
		}
		r.Addrs = addrs
		if mn != nil {
			r.Mode = RedisSentinel
			if m, ok := d.nonEmpty(mn, "session.redis.master_name"); ok {
				r.MasterName = m
			}
			if dbSet {
				r.DB = db
			}
		} else {
			r.Mode = RedisCluster
			if dbSet && db != 0 {
				d.errf(dbNode, "session.redis.db", "Redis Cluster has only database 0; remove db (or set master_name if these addrs are sentinels)")
			}
		}
	default:
		d.missing(f, "url", "set url (redis://host:6379/0), or addrs with master_name (sentinel), or addrs alone (cluster)")
	}
	if v, ok := d.secretValue(f.get(d, "password"), "session.redis.password"); ok {
		r.Password = v
	}
	if n := f.get(d, "key_prefix"); n != nil {
		if v, ok := d.str(n, "session.redis.key_prefix"); ok {
			r.KeyPrefix = v
		}
	}
}

func (d *decoder) csrf(c *Config, top *fields) {
	c.CSRF.Header = DefaultCSRFHeader
	if c.PublicURL != nil {
		c.CSRF.AllowedOrigins = []string{c.Origin()}
	}
	f := d.section(top, "csrf", "csrf", "csrf", "")
	if n := f.get(d, "header"); n != nil {
		if v, ok := d.nonEmpty(n, "csrf.header"); ok {
			if !isToken(v) {
				d.errf(n, "csrf.header", "%s is not a valid header name", quote(v))
			} else {
				c.CSRF.Header = v
			}
		}
	}
	n := f.get(d, "allowed_origins")
	items, _ := d.strItems(n, "csrf.allowed_origins", "[https://admin.example.com]")
	for _, it := range items {
		s, item, key := it.val, it.node, it.key
		u, err := url.Parse(s)
		if s == "*" || s == "null" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			d.errf(item, key, "%s is not an origin; write scheme://host[:port] such as https://admin.example.com (wildcards are not allowed)", quote(s))
			continue
		}
		o := strings.ToLower(u.Scheme + "://" + u.Host)
		if !slices.Contains(c.CSRF.AllowedOrigins, o) {
			c.CSRF.AllowedOrigins = append(c.CSRF.AllowedOrigins, o)
		}
	}
}

func (d *decoder) routes(c *Config, top *fields) {
	n := top.get(d, "routes")
	if n == nil {
		d.warnf(top.keyNode("routes"), "routes", "no routes: only the /bff/* endpoints and the frontend are served")
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errf(n, "routes", "expected a list of routes (lines starting with - name: …), got %s", describe(n))
		return
	}
	byName := map[string]*Route{}
	byPath := map[string]*Route{}
	for i, item := range n.Content {
		key := fmt.Sprintf("routes[%d]", i)
		item = d.deref(item)
		if item == nil {
			d.errf(n, key, "list item is empty; remove it")
			continue
		}
		f := d.mapping(item, item, key, "routes[]")
		if f == nil {
			continue
		}
		r, ok := d.route(f, key)
		if r.Name != "" {
			if prev := byName[r.Name]; prev != nil {
				d.errf(f.get(d, "name"), key+".name", "route name %s is already used by %s (line %d); names must be unique", quote(r.Name), prev.Key, prev.Pos.Line)
				ok = false
			} else {
				byName[r.Name] = &r
			}
		}
		if r.Path != "" {
			// "/api/a/" (a subtree) and "/api/a" (one path) are different routes.
			norm := r.Path
			if prev := byPath[norm]; prev != nil {
				d.errf(f.get(d, "path"), key+".path", "path %s is already used by %s (line %d); each path belongs to one route", quote(r.Path), prev.Key, prev.Pos.Line)
				ok = false
			} else {
				byPath[norm] = &r
			}
		}
		if ok {
			c.Routes = append(c.Routes, r)
		}
	}
}

func (d *decoder) route(f *fields, key string) (Route, bool) {
	start := len(d.problems)
	r := Route{
		Pos:          Pos{File: d.file, Line: f.node.Line, Column: f.node.Column},
		Key:          d.prefix + key,
		StripPrefix:  true,
		Timeout:      DefaultRouteTimeout,
		MaxBody:      DefaultMaxBody,
		Methods:      []string{"GET"},
		MaxIdleConns: DefaultMaxIdleConns,
	}
	if n := f.get(d, "name"); n == nil {
		d.missing(f, "name", "give the route a unique name (letters, digits, - and _), e.g. name: profile")
	} else if s, ok := d.nonEmpty(n, key+".name"); ok {
		if !isName(s) {
			d.errf(n, key+".name", "%s is not a valid name; use letters, digits, - and _ (at most 64)", quote(s))
		}
		r.Name = s
	}
	if n := f.get(d, "path"); n == nil {
		d.missing(f, "path", "add the path prefix this route serves, e.g. path: /api/profile/")
	} else if s, ok := d.nonEmpty(n, key+".path"); ok {
		if msg := checkRoutePath(s); msg != "" {
			d.errf(n, key+".path", "%s %s", quote(s), msg)
		}
		r.Path = s
	}
	if n := f.get(d, "upstream"); n == nil {
		d.missing(f, "upstream", "add the URL requests are forwarded to, e.g. upstream: http://profile.internal:8080/")
	} else if u, ok := d.httpURL(n, key+".upstream"); ok {
		if u.RawQuery != "" || u.ForceQuery {
			d.errf(n, key+".upstream", "an upstream URL has no query part; remove it")
		}
		r.Upstream = u
	}
	if v, ok := d.boolean(f.get(d, "strip_prefix"), key+".strip_prefix"); ok {
		r.StripPrefix = v
	}
	mn := f.get(d, "methods")
	if items, ok := d.strItems(mn, key+".methods", "[GET, POST]"); mn != nil {
		r.Methods = nil
		if ok && len(items) == 0 {
			d.errf(mn, key+".methods", "is empty; list the methods allowed, or remove the key for the default [GET]")
		}
		for _, it := range items {
			up := strings.ToUpper(it.val)
			switch {
			case !slices.Contains(allowedMethods, up):
				d.errf(it.node, it.key, "%s is not a supported method; use %s", quote(it.val), strings.Join(allowedMethods, ", "))
			case slices.Contains(r.Methods, up):
				d.errf(it.node, it.key, "%s is listed twice; remove one", up)
			default:
				r.Methods = append(r.Methods, up)
			}
		}
	}
	if n := f.get(d, "credential"); n == nil {
		d.missing(f, "credential", "say what the upstream receives: credential: user_token | client_credentials | none, or a mapping for token_exchange, client_credentials or header")
	} else if cr, ok := d.credential(n, key+".credential"); ok {
		r.Credential = cr
	}
	if n := f.get(d, "allow"); n != nil {
		if s, ok := d.nonEmpty(n, key+".allow"); ok {
			r.Allow = d.expr(n, s, key+".allow")
		}
	}
	an := f.get(d, "anonymous")
	if v, ok := d.boolean(an, key+".anonymous"); ok {
		r.Anonymous = v
	}
	if v, ok := d.positive(f.get(d, "timeout"), key+".timeout"); ok {
		r.Timeout = v
	}
	if mb := f.get(d, "max_body"); mb != nil {
		if v, ok := d.size(mb, key+".max_body"); ok {
			if v == 0 {
				d.errf(mb, key+".max_body", "must be more than zero")
			} else {
				r.MaxBody = v
			}
		}
	}
	if v, ok := d.boolean(f.get(d, "websocket"), key+".websocket"); ok {
		r.WebSocket = v
		if v && !slices.Contains(r.Methods, "GET") {
			d.errf(mn, key+".methods", "a websocket route must allow GET (the WebSocket handshake is a GET request)")
		}
	}
	if v, ok := d.boolean(f.get(d, "allow_set_cookie"), key+".allow_set_cookie"); ok {
		r.AllowSetCookie = v
	}
	if v, ok := d.boolean(f.get(d, "allow_caching"), key+".allow_caching"); ok {
		r.AllowCaching = v
	}
	if v, ok := d.boolean(f.get(d, "allow_method_override"), key+".allow_method_override"); ok {
		r.AllowMethodOverride = v
	}
	if n := f.get(d, "max_idle_conns"); n != nil {
		if v, ok := d.integer(n, key+".max_idle_conns"); ok {
			if v < 1 || v > 65536 {
				d.errf(n, key+".max_idle_conns", "must be between 1 and 65536 (idle keep-alive connections kept per upstream; default %d)", DefaultMaxIdleConns)
			} else {
				r.MaxIdleConns = v
			}
		}
	}
	if r.Anonymous && (r.Credential.Kind == CredUserToken || r.Credential.Kind == CredTokenExchange) {
		d.errf(an, key+".anonymous", "an anonymous route has no signed-in user, so it cannot use credential %s; use client_credentials, header or none", r.Credential.Kind)
	}
	return r, len(d.problems) == start
}

// checkRoutePath returns why p cannot be a route path, or "".
func checkRoutePath(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "must start with /, e.g. /api/profile/"
	case strings.ContainsAny(p, "?#"):
		return "must be a path only: routes match the path, never the query"
	case strings.ContainsAny(p, "%\\"):
		return "must be written decoded and with / only (no %-escapes, no backslashes)"
	case strings.Contains(p, "//"):
		return "contains an empty segment (//); write it clean"
	case underReserved(p, "/bff"):
		return "is under /bff, which Gatehouse reserves for its own endpoints"
	case underReserved(p, "/.well-known"):
		return "is under /.well-known, which Gatehouse reserves for its discovery documents"
	}
	for _, c := range p {
		if c <= ' ' || c == 0x7f {
			return "contains a space or control character"
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return "contains a . or .. segment; write it clean"
		}
	}
	return ""
}

// underReserved reports whether p is root or below it, in any letter case
// (so /BFF/x cannot be routed past case-insensitive upstreams either).
func underReserved(p, root string) bool {
	return len(p) >= len(root) && strings.EqualFold(p[:len(root)], root) && (len(p) == len(root) || p[len(root)] == '/')
}

// isName reports whether s can name a route or client: it appears in
// metrics, audit records and policies.
func isName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && (c == '-' || c == '_'))) {
			return false
		}
	}
	return true
}

// credential decodes a route's credential: a kind name, or a single-key
// mapping from kind to its options.
func (d *decoder) credential(n *yaml.Node, key string) (Credential, bool) {
	const shapes = "write credential: user_token | client_credentials | none, or one of { token_exchange: {audience: …} }, { client_credentials: {scope: …} }, { header: {name: …, value: ${file:…}} }"
	switch n.Kind {
	case yaml.ScalarNode:
		s, ok := d.str(n, key)
		if !ok {
			return Credential{}, false
		}
		switch CredentialKind(s) {
		case CredUserToken, CredNone:
			return Credential{Kind: CredentialKind(s)}, true
		case CredClientCredentials:
			return Credential{Kind: CredClientCredentials, ClientCredentials: &ClientCredentials{}}, true
		case CredTokenExchange:
			d.errf(n, key, "token_exchange needs options: write credential: { token_exchange: { audience: my-api } }")
		case CredHeader:
			d.errf(n, key, "header needs options: write credential: { header: { name: X-Api-Key, value: ${file:/run/secrets/api-key} } }")
		default:
			if best := closest(s, credentialKinds); best != "" {
				d.errf(n, key, "unknown credential kind %s; did you mean %q?", quote(s), best)
			} else {
				d.errf(n, key, "unknown credential kind %s; %s", quote(s), shapes)
			}
		}
		return Credential{}, false
	case yaml.MappingNode:
	default:
		d.errf(n, key, "expected one credential kind, got %s; %s", describe(n), shapes)
		return Credential{}, false
	}
	f := d.mapping(n, n, key, "credential")
	if f == nil {
		return Credential{}, false
	}
	if total := len(f.names); total != 1 {
		if total == 0 {
			d.errf(n, key, "is empty; %s", shapes)
		} else {
			d.errf(n, key, "names %d kinds (%s); a route attaches exactly one credential: keep one", total, strings.Join(f.names, ", "))
		}
		return Credential{}, false
	}
	if len(f.m) != 1 {
		return Credential{}, false // the unknown kind was reported by mapping
	}
	var kind string
	for k := range f.m {
		kind = k
	}
	opts := f.get(d, kind)
	okey := key + "." + kind
	switch CredentialKind(kind) {
	case CredUserToken, CredNone:
		if opts != nil {
			d.errf(opts, okey, "%s takes no options; write credential: %s", kind, kind)
			return Credential{}, false
		}
		return Credential{Kind: CredentialKind(kind)}, true
	case CredTokenExchange:
		of := d.mapping(opts, f.keyNode(kind), okey, "credential.token_exchange")
		if of == nil {
			if opts == nil {
				d.errf(f.keyNode(kind), okey, "needs audience: { token_exchange: { audience: my-api } }")
			}
			return Credential{}, false
		}
		te := &TokenExchange{}
		start := len(d.problems)
		te.Audience, _ = d.nonEmpty(of.get(d, "audience"), okey+".audience")
		te.Scope, _ = d.nonEmpty(of.get(d, "scope"), okey+".scope")
		if rn := of.get(d, "resource"); rn != nil {
			if s, ok := d.nonEmpty(rn, okey+".resource"); ok {
				if u, err := url.Parse(s); err != nil || !u.IsAbs() || u.Fragment != "" {
					d.errf(rn, okey+".resource", "%s is not an absolute URI without #fragment (RFC 8707), e.g. https://api.example.com/", quote(s))
				} else {
					te.Resource = s
				}
			}
		}
		if !of.has("audience") && len(d.problems) == start {
			d.missing(of, "audience", "say which API the exchanged token is for, e.g. audience: billing-api")
		}
		return Credential{Kind: CredTokenExchange, TokenExchange: te}, len(d.problems) == start
	case CredClientCredentials:
		cc := &ClientCredentials{}
		if opts != nil {
			of := d.mapping(opts, f.keyNode(kind), okey, "credential.client_credentials")
			if of == nil {
				return Credential{}, false
			}
			start := len(d.problems)
			cc.Scope, _ = d.nonEmpty(of.get(d, "scope"), okey+".scope")
			cc.Audience, _ = d.nonEmpty(of.get(d, "audience"), okey+".audience")
			if len(d.problems) != start {
				return Credential{}, false
			}
		}
		return Credential{Kind: CredClientCredentials, ClientCredentials: cc}, true
	case CredHeader:
		of := d.mapping(opts, f.keyNode(kind), okey, "credential.header")
		if of == nil {
			if opts == nil {
				d.errf(f.keyNode(kind), okey, "needs name and value: { header: { name: X-Api-Key, value: ${file:/run/secrets/api-key} } }")
			}
			return Credential{}, false
		}
		h := &HeaderCredential{}
		start := len(d.problems)
		if nn := of.get(d, "name"); nn == nil {
			d.missing(of, "name", "add the header name, e.g. name: X-Api-Key")
		} else if s, ok := d.nonEmpty(nn, okey+".name"); ok {
			canon := textproto.CanonicalMIMEHeaderKey(s)
			switch {
			case !isToken(s):
				d.errf(nn, okey+".name", "%s is not a valid header name", quote(s))
			case forbiddenCredentialHeader(canon):
				d.errf(nn, okey+".name", "%s is set by Gatehouse or the connection itself and cannot carry a credential; use a header such as X-Api-Key or Authorization", canon)
			default:
				h.Name = canon
			}
		}
		if vn := of.get(d, "value"); vn == nil {
			d.missing(of, "value", "add value: ${file:/run/secrets/api-key} or ${env:NAME}")
		} else if v, ok := d.secretValue(vn, okey+".value"); ok {
			h.Value = v
		}
		return Credential{Kind: CredHeader, Header: h}, len(d.problems) == start
	}
	return Credential{}, false
}

func forbiddenCredentialHeader(canon string) bool {
	switch canon {
	case "Host", "Cookie", "Set-Cookie", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection",
		"Keep-Alive", "Upgrade", "Te", "Trailer", "Forwarded", "Proxy-Authorization", "Proxy-Connection":
		return true
	}
	return strings.HasPrefix(canon, "X-Forwarded-") || strings.HasPrefix(canon, "Sec-")
}

func (d *decoder) policy(c *Config, top *fields) {
	f := d.section(top, "policy", "policy", "policy", "")
	pf := d.section(f, "pdp", "policy.pdp", "policy.pdp", "")
	if pf == nil {
		return
	}
	p := &PDP{Timeout: DefaultPDPTimeout}
	start := len(d.problems)
	if n := pf.get(d, "url"); n == nil {
		d.missing(pf, "url", "add the AuthZEN evaluation endpoint, e.g. url: https://pdp.internal/access/v1/evaluation")
	} else if u, ok := d.httpURL(n, "policy.pdp.url"); ok {
		p.URL = u
	}
	if v, ok := d.secretValue(pf.get(d, "token"), "policy.pdp.token"); ok {
		p.Token = v
		if p.URL != nil && p.URL.Scheme == "http" && !isLoopbackHost(p.URL.Hostname()) {
			d.errf(pf.get(d, "url"), "policy.pdp.url", "plain http would send policy.pdp.token in clear; use https (plain http is allowed only on a loopback host)")
		}
	}
	if v, ok := d.positive(pf.get(d, "timeout"), "policy.pdp.timeout"); ok {
		p.Timeout = v
	}
	if v, ok := d.duration(pf.get(d, "cache_ttl"), "policy.pdp.cache_ttl"); ok {
		p.CacheTTL = v
	}
	if len(d.problems) == start {
		c.Policy.PDP = p
	}
}

func (d *decoder) audit(c *Config, top *fields) {
	a := &c.Audit
	a.Sink = AuditFile
	a.Path = d.path(DefaultAuditPath)
	a.FsyncInterval = DefaultFsyncInterval
	a.OnFailure = AuditFailDeny
	f := d.section(top, "audit", "audit", "audit", "")
	if v, ok := d.enum(f.get(d, "sink"), "audit.sink", string(AuditStdout), string(AuditFile)); ok {
		a.Sink = AuditSink(v)
	}
	if n := f.get(d, "path"); n != nil {
		if p, ok := d.nonEmpty(n, "audit.path"); ok {
			a.Path = d.path(p)
		}
		if a.Sink != AuditFile {
			d.warnf(n, "audit.path", "unused: audit.sink is %s", a.Sink)
		}
	}
	if a.Sink != AuditFile {
		a.Path = ""
	}
	a.Durability = "written"
	if v, ok := d.enum(f.get(d, "durability"), "audit.durability", "sync", "written", "interval"); ok {
		a.Durability = v
	}
	if v, ok := d.positive(f.get(d, "fsync_interval"), "audit.fsync_interval"); ok {
		a.FsyncInterval = v
	}
	if n := f.get(d, "buffer"); n != nil {
		if v, ok := d.integer(n, "audit.buffer"); ok {
			if v < 4 {
				d.errf(n, "audit.buffer", "must be at least 4 (default 4096)")
			} else {
				a.Buffer = v
			}
		}
	}
	if v, ok := d.size(f.get(d, "max_size"), "audit.max_size"); ok {
		a.MaxSize = v
	}
	if n := f.get(d, "on_failure"); n != nil {
		if v, ok := d.enum(n, "audit.on_failure", string(AuditFailDeny), string(AuditFailContinue)); ok {
			a.OnFailure = AuditFailure(v)
			if a.OnFailure == AuditFailContinue {
				d.warnf(n, "audit.on_failure", "continue serves requests whose audit record could not be written; they leave no trace in the audit log")
			}
		}
	}
}

func (d *decoder) telemetry(c *Config, top *fields) {
	c.Telemetry.LogLevel = slog.LevelInfo
	f := d.section(top, "telemetry", "telemetry", "telemetry", "")
	if u, ok := d.httpURL(f.get(d, "otlp_endpoint"), "telemetry.otlp_endpoint"); ok {
		c.Telemetry.OTLPEndpoint = u
	}
	if v, ok := d.enum(f.get(d, "log_level"), "telemetry.log_level", "debug", "info", "warn", "error"); ok {
		c.Telemetry.LogLevel = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo,
			"warn": slog.LevelWarn, "error": slog.LevelError}[v]
	}
}

func (d *decoder) server(c *Config, top *fields) {
	s := &c.Server
	s.ShutdownTimeout, s.BodyReadTimeout = 30*time.Second, 10*time.Second
	f := d.section(top, "server", "server", "server", "")
	if v, ok := d.positive(f.get(d, "shutdown_timeout"), "server.shutdown_timeout"); ok {
		s.ShutdownTimeout = v
	}
	if v, ok := d.duration(f.get(d, "drain_delay"), "server.drain_delay"); ok {
		s.DrainDelay = v
	}
	if v, ok := d.positive(f.get(d, "body_read_timeout"), "server.body_read_timeout"); ok {
		s.BodyReadTimeout = v
	}
	if n := f.get(d, "max_connections"); n != nil {
		if v, ok := d.integer(n, "server.max_connections"); ok {
			if v < 1 {
				d.errf(n, "server.max_connections", "must be at least 1 (leave it out to derive it from the open-file limit)")
			} else {
				s.MaxConnections = v
			}
		}
	}
	if v, ok := d.boolean(f.get(d, "ready_requires_idp"), "server.ready_requires_idp"); ok {
		s.ReadyRequiresIdP = v
	}
}

func (d *decoder) admin(c *Config, top *fields) {
	f := d.section(top, "admin", "admin", "admin", "")
	n := f.get(d, "token")
	if v, ok := d.secretValue(n, "admin.token"); ok {
		if len(v.Get().Reveal()) < MinSecretKeyLength {
			d.errf(n, "admin.token", "the token is shorter than %d bytes; use a random one, e.g. `openssl rand -base64 32`", MinSecretKeyLength)
			return
		}
		c.Admin.Token = v
	}
}

// expr keeps an expression with enough position information to report an
// error inside it at its real file line: for a block scalar (| or >) each
// line of its content is found in the file after the key's line.
func (d *decoder) expr(n *yaml.Node, src, key string) Expr {
	e := Expr{Source: src, Pos: Pos{File: d.file, Line: n.Line, Column: n.Column}, Key: d.prefix + key}
	col := n.Column
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		col++
	}
	e.segs = []exprSeg{{off: 0, line: n.Line, col: col}}
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
		return e
	}
	// Block content starts on the line after the indicator (n.Line is 1-based,
	// so d.lines[n.Line] is that next line).
	cursor, indent := 0, -1
	e.segs = e.segs[:0]
	for i := n.Line; i < len(d.lines) && cursor < len(src); i++ {
		raw := strings.TrimRight(d.lines[i], "\r")
		text := strings.TrimLeft(raw, " ")
		if text == "" {
			continue
		}
		ind := len(raw) - len(text)
		if indent < 0 {
			indent = ind
		} else if ind < indent {
			break
		}
		content := raw[indent:]
		j := strings.Index(src[cursor:], content)
		if j < 0 {
			break
		}
		e.segs = append(e.segs, exprSeg{off: cursor + j, line: i + 1, col: indent + 1})
		cursor += j + len(content)
	}
	if len(e.segs) == 0 {
		e.segs = []exprSeg{{off: 0, line: n.Line + 1, col: 1}}
	}
	return e
}

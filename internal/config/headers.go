package config

import (
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Off disables a security header (security_headers.<key>: off).
const Off = "off"

// SecurityHeaders overrides the headers Gatehouse adds to every response it
// sends the browser. An empty string keeps Gatehouse's default; Off sends no
// such header at all (an upstream's own then passes through).
type SecurityHeaders struct {
	// ContentSecurityPolicy replaces the default CSP (see docs/configuration.md).
	ContentSecurityPolicy string
	// FrameOptions is DENY, SAMEORIGIN or Off (X-Frame-Options).
	FrameOptions string
	// CrossOriginOpenerPolicy and CrossOriginResourcePolicy (COOP, CORP).
	CrossOriginOpenerPolicy   string
	CrossOriginResourcePolicy string
	// ReferrerPolicy (Referrer-Policy).
	ReferrerPolicy string
	HSTS           HSTS
}

// HSTS configures Strict-Transport-Security, sent only when public_url is https.
type HSTS struct {
	// Disabled: hsts: off.
	Disabled bool
	// MaxAge defaults to two years.
	MaxAge time.Duration
	// IncludeSubDomains defaults to true; Preload to false.
	IncludeSubDomains bool
	Preload           bool
}

// DefaultHSTSMaxAge is two years, what the HSTS preload list asks for.
const DefaultHSTSMaxAge = 2 * 365 * 24 * time.Hour

var headerChoices = map[string][]string{
	"frame_options":                {"DENY", "SAMEORIGIN", Off},
	"cross_origin_opener_policy":   {"same-origin", "same-origin-allow-popups", "unsafe-none", Off},
	"cross_origin_resource_policy": {"same-origin", "same-site", "cross-origin", Off},
	"referrer_policy": {"no-referrer", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin",
		"same-origin", "strict-origin", "strict-origin-when-cross-origin", "unsafe-url", Off},
}

func (d *decoder) securityHeaders(c *Config, top *fields) {
	c.SecurityHeaders.HSTS = HSTS{MaxAge: DefaultHSTSMaxAge, IncludeSubDomains: true}
	f := d.section(top, "security_headers", "security_headers", "security_headers", "")
	if f == nil {
		return
	}
	sh := &c.SecurityHeaders
	if n := f.get(d, "content_security_policy"); n != nil {
		if s, ok := d.nonEmpty(n, "security_headers.content_security_policy"); ok {
			if strings.ContainsAny(s, "\r\n") {
				d.errf(n, "security_headers.content_security_policy", "write the policy on one line (directives separated by ;)")
			} else {
				sh.ContentSecurityPolicy = strings.TrimSpace(s)
			}
		}
	}
	for key, dst := range map[string]*string{
		"frame_options": &sh.FrameOptions, "cross_origin_opener_policy": &sh.CrossOriginOpenerPolicy,
		"cross_origin_resource_policy": &sh.CrossOriginResourcePolicy, "referrer_policy": &sh.ReferrerPolicy,
	} {
		n := f.get(d, key)
		if n == nil {
			continue
		}
		s, ok := d.nonEmpty(n, "security_headers."+key)
		if !ok {
			continue
		}
		choices := headerChoices[key]
		i := slices.IndexFunc(choices, func(c string) bool { return strings.EqualFold(c, s) })
		if i < 0 {
			d.errf(n, "security_headers."+key, "%s is not one of %s", quote(s), strings.Join(choices, ", "))
			continue
		}
		*dst = choices[i]
	}
	n := f.get(d, "hsts")
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode {
		if s, ok := d.str(n, "security_headers.hsts"); ok {
			if s != Off {
				d.errf(n, "security_headers.hsts", "write hsts: off, or a mapping with max_age, include_subdomains, preload")
				return
			}
			sh.HSTS.Disabled = true
		}
		return
	}
	h := d.mapping(n, f.keyNode("hsts"), "security_headers.hsts", "security_headers.hsts")
	if h == nil {
		return
	}
	if v, ok := d.positive(h.get(d, "max_age"), "security_headers.hsts.max_age"); ok {
		sh.HSTS.MaxAge = v
	}
	if v, ok := d.boolean(h.get(d, "include_subdomains"), "security_headers.hsts.include_subdomains"); ok {
		sh.HSTS.IncludeSubDomains = v
	}
	if v, ok := d.boolean(h.get(d, "preload"), "security_headers.hsts.preload"); ok {
		sh.HSTS.Preload = v
	}
	if sh.HSTS.Preload && (!sh.HSTS.IncludeSubDomains || sh.HSTS.MaxAge < 365*24*time.Hour) {
		d.errf(h.keyNode("preload"), "security_headers.hsts.preload", "the preload list requires include_subdomains: true and max_age of at least 8760h (one year)")
	}
}

package gateway

import (
	"net/url"

	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/server"
)

// headerSet maps security_headers onto the server's precomputed headers.
func headerSet(c *config.Config) *server.HeaderSet {
	sh := c.SecurityHeaders
	o := server.HeaderOptions{
		CSP: sh.ContentSecurityPolicy, FrameOptions: sh.FrameOptions,
		COOP: sh.CrossOriginOpenerPolicy, CORP: sh.CrossOriginResourcePolicy, ReferrerPolicy: sh.ReferrerPolicy,
		HSTS: c.PublicURL != nil && c.PublicURL.Scheme == "https" && !sh.HSTS.Disabled, HSTSMaxAge: sh.HSTS.MaxAge,
		HSTSIncludeSubDomains: sh.HSTS.IncludeSubDomains, HSTSPreload: sh.HSTS.Preload,
	}
	if o.HSTSMaxAge == 0 {
		o.HSTSMaxAge = config.DefaultHSTSMaxAge
	}
	// Silent login runs the IdP's authorization endpoint in an iframe.
	if u, err := url.Parse(c.Identity.Issuer); err == nil && u.Host != "" {
		o.FrameSources = []string{u.Scheme + "://" + u.Host}
	}
	// A dev server behind Gatehouse in development gets a CSP it can work with.
	if up := c.Frontend.Upstream; up != nil && c.Development() {
		o.DevServer = up.Scheme + "://" + up.Host
	}
	return server.NewHeaderSet(o)
}

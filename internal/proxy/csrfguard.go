package proxy

import (
	"net/http"
	"net/url"
)

// CSRFGuard is the API routes' CSRF check (CSRF header, Origin,
// Sec-Fetch-Site) for cookie-authenticated handlers outside the route table,
// such as the /bff/agents/tokens endpoints, so both refuse exactly alike.
type CSRFGuard struct{ c *csrfCheck }

// NewCSRFGuard builds the check with the same options as the proxy's.
func NewCSRFGuard(publicURL *url.URL, o CSRFOptions) (*CSRFGuard, error) {
	c, err := newCSRFCheck(publicURL, o)
	if err != nil {
		return nil, err
	}
	return &CSRFGuard{c: c}, nil
}

// Check returns an error code and message when the request fails, or "".
func (g *CSRFGuard) Check(h http.Header) (code, message string) { return g.c.check(h, false) }

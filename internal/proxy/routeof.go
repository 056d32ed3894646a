package proxy

// RouteOf returns the name of the route a cleaned path matches (as the
// Route stage matches it), or "" when none does.
func (p *Proxy) RouteOf(cleanPath string) string {
	if rt := p.routes.match(cleanPath); rt != nil {
		return rt.name
	}
	// An endpoint (composite) is an API path too.
	if p.opts.Endpoints != nil {
		if name, _, ok := p.opts.Endpoints.Endpoint(cleanPath); ok {
			return name
		}
	}
	return ""
}

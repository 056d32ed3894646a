// Package oauthserver is Gatehouse's OAuth 2.1 front door for its non-browser
// clients (native apps, agents): client registry, authorization request
// validation, PKCE, and the RFC 8414 / RFC 9728 metadata documents.
//
// This file set holds the protocol rules; the HTTP handlers, the code store
// and the session side live with the gateway's wiring.
package oauthserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// Kind is what a client is.
type Kind string

const (
	// KindNative is a first-party app: it gets a session of its own, bound to
	// its DPoP key.
	KindNative Kind = "native"
	// KindAgent is an agent the user approves on a consent page: it gets an
	// agent grant on the user's browser session.
	KindAgent Kind = "agent"
)

// DPoPMode says whether a client must bind its tokens with DPoP.
type DPoPMode string

const (
	// DPoPRequired refuses token requests without a proof.
	DPoPRequired DPoPMode = "required"
	// DPoPOptional binds when a proof is sent (MCP clients send none).
	DPoPOptional DPoPMode = "optional"
)

// ClientSpec is one `oauth.clients` entry as configured.
type ClientSpec struct {
	ClientID     string
	Kind         Kind
	RedirectURIs []string
	Routes       []string
	DPoP         DPoPMode
}

// Client is a validated, registered public client.
type Client struct {
	ID     string
	Kind   Kind
	Routes []string // agent: the most it may be granted; native: empty = all
	DPoP   DPoPMode
	exact  map[string]bool
	loop   []loopbackURI // loopback redirects: any port
}

type loopbackURI struct {
	scheme, host, path, rawQuery string
}

// Registry holds the registered clients.
type Registry struct {
	clients map[string]*Client
}

// NewRegistry validates every spec and returns all problems found, each
// naming its client. knownRoutes lists the routes and composites a client may
// name.
func NewRegistry(specs []ClientSpec, knownRoutes []string) (*Registry, error) {
	reg := &Registry{clients: map[string]*Client{}}
	var errs []error
	for i, s := range specs {
		c, err := newClient(s, knownRoutes)
		if err != nil {
			errs = append(errs, fmt.Errorf("oauth.clients[%d]: %w", i, err))
			continue
		}
		if _, dup := reg.clients[c.ID]; dup {
			errs = append(errs, fmt.Errorf("oauth.clients[%d]: client_id %q is registered twice", i, c.ID))
			continue
		}
		reg.clients[c.ID] = c
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return reg, nil
}

func newClient(s ClientSpec, knownRoutes []string) (*Client, error) {
	if s.ClientID == "" || len(s.ClientID) > 128 || strings.ContainsFunc(s.ClientID, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return nil, fmt.Errorf("client_id %q: give 1 to 128 visible ASCII characters", s.ClientID)
	}
	c := &Client{ID: s.ClientID, Kind: s.Kind, Routes: slices.Clone(s.Routes), DPoP: s.DPoP, exact: map[string]bool{}}
	switch s.Kind {
	case KindNative:
		switch s.DPoP {
		case "", DPoPRequired:
			c.DPoP = DPoPRequired
		default:
			return nil, fmt.Errorf("client %q: native clients always use DPoP; remove dpop: %s", s.ClientID, s.DPoP)
		}
	case KindAgent:
		switch s.DPoP {
		case "":
			c.DPoP = DPoPOptional
		case DPoPRequired, DPoPOptional:
		default:
			return nil, fmt.Errorf("client %q: dpop must be required or optional, not %q", s.ClientID, s.DPoP)
		}
		if len(s.Routes) == 0 {
			return nil, fmt.Errorf("client %q: an agent client needs routes: the most its users may grant it", s.ClientID)
		}
	default:
		return nil, fmt.Errorf("client %q: kind must be native or agent, not %q", s.ClientID, s.Kind)
	}
	for _, r := range s.Routes {
		if !slices.Contains(knownRoutes, r) {
			return nil, fmt.Errorf("client %q: routes: %q is no route or composite", s.ClientID, r)
		}
	}
	if len(s.RedirectURIs) == 0 {
		return nil, fmt.Errorf("client %q: needs at least one redirect_uri", s.ClientID)
	}
	for _, raw := range s.RedirectURIs {
		if err := c.addRedirect(raw); err != nil {
			return nil, fmt.Errorf("client %q: redirect_uri %q: %w", s.ClientID, raw, err)
		}
	}
	return c, nil
}

func (c *Client) addRedirect(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return errors.New("not an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return errors.New("a redirect URI must not have a fragment (RFC 6749 §3.1.2)")
	}
	if u.User != nil {
		return errors.New("a redirect URI must not carry user information")
	}
	switch {
	case u.Scheme == "https":
		if u.Host == "" {
			return errors.New("an https redirect URI needs a host")
		}
	case u.Scheme == "http":
		if !isLoopbackIP(u.Hostname()) {
			// RFC 8252 §8.3: plain http only to the loopback interface, and
			// §7.3: by IP literal (a "localhost" name can be re-pointed).
			return errors.New("plain http is allowed only for loopback IP literals (http://127.0.0.1/... or http://[::1]/...)")
		}
		c.loop = append(c.loop, loopbackURI{scheme: u.Scheme, host: u.Hostname(), path: u.EscapedPath(), rawQuery: u.RawQuery})
		return nil
	default:
		// A private-use URI scheme (RFC 8252 §7.1), for native apps only: an
		// agent on another machine must not get a code through a scheme any
		// local app may claim.
		if c.Kind != KindNative {
			return errors.New("only native clients may use a private-use scheme; use https or a loopback redirect")
		}
		if !strings.Contains(u.Scheme, ".") {
			return errors.New("a private-use scheme must be a reverse domain name (e.g. com.example.app:/callback, RFC 8252 §7.1)")
		}
	}
	c.exact[raw] = true
	return nil
}

// CheckRedirectURI reports why raw cannot be a redirect URI of a client of
// kind, or nil. The configuration decoder calls it to place the problem at
// its line; NewRegistry applies the same rules.
func CheckRedirectURI(kind Kind, raw string) error {
	c := &Client{Kind: kind, exact: map[string]bool{}}
	return c.addRedirect(raw)
}

func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Lookup returns a registered client.
func (r *Registry) Lookup(id string) (*Client, bool) {
	c, ok := r.clients[id]
	return c, ok
}

// HasKind reports whether a client of kind k is registered.
func (r *Registry) HasKind(k Kind) bool {
	for _, c := range r.clients {
		if c.Kind == k {
			return true
		}
	}
	return false
}

// Len is the number of registered clients.
func (r *Registry) Len() int { return len(r.clients) }

// RedirectAllowed reports whether raw is one of the client's redirect URIs:
// byte for byte, except that a loopback redirect matches any port (RFC 8252
// §7.3) with everything else equal.
func (c *Client) RedirectAllowed(raw string) bool {
	if c.exact[raw] {
		return true
	}
	if len(c.loop) == 0 || strings.Contains(raw, "#") {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Scheme != "http" {
		return false
	}
	if p := u.Port(); p != "" {
		// A port is digits only: url.Parse accepts "127.0.0.1:" and leading zeros.
		for _, ch := range p {
			if ch < '0' || ch > '9' {
				return false
			}
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return false
	}
	for _, l := range c.loop {
		if u.Hostname() == l.host && u.EscapedPath() == l.path && u.RawQuery == l.rawQuery && !u.ForceQuery {
			return true
		}
	}
	return false
}

// Narrow returns the requested scopes (route names) the client may have:
// those in requested that allowed holds, or all of allowed when nothing was
// requested. Requests beyond what the client may have are narrowed, never
// refused (strict clients fail on invalid_scope).
func Narrow(requested, allowed []string) []string {
	if len(requested) == 0 {
		return slices.Clone(allowed)
	}
	out := make([]string, 0, len(requested))
	for _, r := range requested {
		if slices.Contains(allowed, r) && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

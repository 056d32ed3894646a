package config

import (
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-dev/gatehouse/internal/oauthserver"
)

// OAuth configures Gatehouse's own OAuth 2.1 authorization server, the front
// door of its non-browser clients. Config.OAuth is nil when the section is
// absent: then the /bff/oauth/* endpoints and their metadata are not served.
type OAuth struct {
	// Pos is where the section starts.
	Pos     Pos
	Clients []OAuthClient
}

// OAuthClient is one registered public client.
type OAuthClient struct {
	Pos      Pos
	Key      string // "oauth.clients[i]"
	ClientID string
	// Kind is native (a first-party app: a session of its own, DPoP-bound)
	// or agent (the user approves on a consent page; an agent grant on the
	// user's browser session).
	Kind         string
	RedirectURIs []string
	// Routes narrows what the client may reach (route names); empty = every
	// route (native only: an agent client needs routes, each one of
	// agents.delegable_routes).
	Routes []string
	// DPoP is "required" for native clients (always) and "optional" for
	// agent clients (their tokens are Bearer tokens).
	DPoP string
}

// Spec is the client as internal/oauthserver registers it.
func (c OAuthClient) Spec() oauthserver.ClientSpec {
	return oauthserver.ClientSpec{ClientID: c.ClientID, Kind: oauthserver.Kind(c.Kind),
		RedirectURIs: slices.Clone(c.RedirectURIs), Routes: slices.Clone(c.Routes), DPoP: oauthserver.DPoPMode(c.DPoP)}
}

func (d *decoder) oauth(c *Config, top *fields) {
	if !top.has("oauth") {
		return
	}
	f := d.section(top, "oauth", "oauth", "oauth", "")
	if f == nil {
		d.errf(top.keyNode("oauth"), "oauth", "the section is empty; list oauth.clients or remove it")
		return
	}
	start := len(d.problems)
	o := &OAuth{Pos: Pos{File: d.file, Line: f.pos.Line, Column: f.pos.Column}}
	n := f.get(d, "clients")
	switch {
	case n == nil:
		d.missing(f, "clients", "register at least one client, e.g. clients: [{client_id: ios-app, kind: native, redirect_uris: [com.example.app:/oauth/callback]}]")
	case n.Kind != yaml.SequenceNode:
		d.errf(n, "oauth.clients", "expected a list of clients (lines starting with - client_id: …), got %s", describe(n))
	case len(n.Content) == 0:
		d.errf(n, "oauth.clients", "the list is empty; register a client or remove the oauth section")
	default:
		seen := map[string]int{}
		for i, raw := range n.Content {
			key := fmt.Sprintf("oauth.clients[%d]", i)
			item := d.deref(raw)
			if item == nil {
				d.errf(raw, key, "list item is empty; remove it")
				continue
			}
			cf := d.mapping(item, item, key, "oauth.clients[]")
			if cf == nil {
				continue
			}
			cl, ok := d.oauthClient(c, cf, key)
			if !ok {
				continue
			}
			if line, dup := seen[cl.ClientID]; dup {
				d.errf(cf.get(d, "client_id"), key+".client_id", "client_id %s is already registered (line %d); client ids must be unique", quote(cl.ClientID), line)
				continue
			}
			seen[cl.ClientID] = cl.Pos.Line
			o.Clients = append(o.Clients, cl)
		}
	}
	if len(d.problems) == start {
		c.OAuth = o
	}
}

func (d *decoder) oauthClient(c *Config, f *fields, key string) (OAuthClient, bool) {
	start := len(d.problems)
	cl := OAuthClient{Pos: Pos{File: d.file, Line: f.node.Line, Column: f.node.Column}, Key: key}
	if n := f.get(d, "client_id"); n == nil {
		d.missing(f, "client_id", "name the client as it sends client_id, e.g. client_id: ios-app")
	} else if s, ok := d.nonEmpty(n, key+".client_id"); ok {
		if len(s) > 128 || !isToken(s) {
			d.errf(n, key+".client_id", "%s is not a usable client_id; use up to 128 letters, digits and - . _ ~ (no spaces, quotes or separators)", quote(s))
		} else {
			cl.ClientID = s
		}
	}
	kindNode := f.get(d, "kind")
	if kindNode == nil {
		d.missing(f, "kind", "say kind: native (a first-party app with its own DPoP-bound session)")
	} else if k, ok := d.enum(kindNode, key+".kind", "native", "agent"); ok {
		if k == "agent" && c.Agents == nil {
			d.errf(kindNode, key+".kind", "an agent client gets agent grants: add an agents section (with delegable_routes) or use kind: native")
		}
		cl.Kind = k
	}
	if n := f.get(d, "redirect_uris"); n == nil {
		d.missing(f, "redirect_uris", "list the exact redirect URIs, e.g. redirect_uris: [com.example.app:/oauth/callback]")
	} else if items, _ := d.strItems(n, key+".redirect_uris", "[com.example.app:/oauth/callback]"); len(items) > 0 {
		for _, it := range items {
			switch {
			case slices.Contains(cl.RedirectURIs, it.val):
				d.errf(it.node, it.key, "%s is listed twice; remove one", quote(it.val))
			case cl.Kind != "":
				if err := oauthserver.CheckRedirectURI(oauthserver.Kind(cl.Kind), it.val); err != nil {
					d.errf(it.node, it.key, "%s: %s", quote(it.val), err.Error())
					continue
				}
				fallthrough
			default:
				cl.RedirectURIs = append(cl.RedirectURIs, it.val)
			}
		}
	} else if n.Kind == yaml.SequenceNode {
		d.errf(n, key+".redirect_uris", "the list is empty; a client needs at least one redirect URI")
	}
	if n := f.get(d, "routes"); n != nil {
		items, _ := d.strItems(n, key+".routes", "[profile, billing]")
		for _, it := range items {
			switch {
			case slices.Contains(cl.Routes, it.val):
				d.errf(it.node, it.key, "%s is listed twice; remove one", quote(it.val))
			case !slices.ContainsFunc(c.Routes, func(r Route) bool { return r.Name == it.val }):
				d.errf(it.node, it.key, "%s is not a configured route; name one from routes", quote(it.val))
			case cl.Kind == "agent" && c.Agents != nil && !slices.Contains(c.Agents.DelegableRoutes, it.val):
				d.errf(it.node, it.key, "%s is not in agents.delegable_routes, so it could never be granted to an agent; add it there or remove it", quote(it.val))
			default:
				cl.Routes = append(cl.Routes, it.val)
			}
		}
		if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
			d.errf(n, key+".routes", "the list is empty, so the client could reach nothing; remove the key to allow every route")
		}
	}
	if cl.Kind == "agent" && f.get(d, "routes") == nil {
		d.missing(f, "routes", "list the most its users may grant it, e.g. routes: [profile] (each one of agents.delegable_routes)")
	}
	cl.DPoP = "required"
	if cl.Kind == "agent" {
		cl.DPoP = "optional"
	}
	if n := f.get(d, "dpop"); n != nil {
		if v, ok := d.enum(n, key+".dpop", "required", "optional"); ok {
			switch {
			case cl.Kind == "native" && v != "required":
				d.errf(n, key+".dpop", "native clients always use DPoP (their handle is bound to the app's key); remove dpop or set it to required")
			case cl.Kind == "agent" && v == "required":
				d.errf(n, key+".dpop", "not supported yet: agent tokens are not DPoP-bound in this version of Gatehouse; remove dpop (optional is the default)")
			}
		}
	}
	return cl, len(d.problems) == start
}

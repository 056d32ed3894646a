package config

import (
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults of the agents section, as documented in docs/configuration.md.
const (
	DefaultAgentMaxTTL           = 15 * time.Minute
	DefaultAgentDefaultTTL       = 5 * time.Minute
	DefaultAgentTokensPerSession = 10
	// MaxAgentTokensPerSession keeps a typo from becoming an unbounded number
	// of grants per session (each is a store record).
	MaxAgentTokensPerSession = 1000
	// MaxAgentTTL bounds max_ttl: an agent token is meant to live minutes,
	// and it dies with its session anyway.
	MaxAgentTTL = 24 * time.Hour
)

// agentsWired says whether the request path honours agent tokens. Until it
// does, a valid agents section is refused with "not supported yet" (never
// accepted and ignored); the section is still decoded and checked in full.
const agentsWired = true

// Agents configures delegation to agents (non-human callers acting for a
// signed-in user with a gha_ token). Config.Agents is nil when the section is
// absent: then no agent token can be issued or used.
type Agents struct {
	// Pos is where the section starts.
	Pos Pos
	// MaxTTL caps every grant's lifetime (default 15m).
	MaxTTL time.Duration
	// DefaultTTL is a grant's lifetime when the request names none (default
	// 5m, at most MaxTTL).
	DefaultTTL time.Duration
	// DelegableRoutes are the routes (and composites) a user may hand to an
	// agent, at most. Each names a configured route or composite.
	DelegableRoutes []string
	// MaxTokensPerSession caps live grants per session (default 10).
	MaxTokensPerSession int
	// RateLimit, when set, limits each agent token's requests.
	RateLimit *AgentRateLimit
}

// AgentRateLimit is a token bucket per agent token: Requests per Per, Burst
// at once (0 means Requests).
type AgentRateLimit struct {
	Requests int
	Per      time.Duration
	Burst    int
}

// agentLimitCaps mirror internal/ratelimit's caps (config does not import it).
const (
	agentMaxRequests = 1_000_000
	agentMinPer      = time.Second
	agentMaxPer      = 24 * time.Hour
)

func (d *decoder) agents(c *Config, top *fields) {
	if !top.has("agents") {
		return
	}
	f := d.section(top, "agents", "agents", "agents", "")
	if f == nil {
		d.errf(top.keyNode("agents"), "agents", "the section is empty; set at least delegable_routes (the routes a user may hand to an agent), or remove it")
		return
	}
	start := len(d.problems)
	a := &Agents{
		Pos:        Pos{File: d.file, Line: f.pos.Line, Column: f.pos.Column},
		MaxTTL:     DefaultAgentMaxTTL,
		DefaultTTL: DefaultAgentDefaultTTL, MaxTokensPerSession: DefaultAgentTokensPerSession,
	}
	maxNode := f.get(d, "max_ttl")
	if v, ok := d.positive(maxNode, "agents.max_ttl"); ok {
		if v > MaxAgentTTL {
			d.errf(maxNode, "agents.max_ttl", "%s is longer than %s; agent tokens are meant to live minutes", quote(maxNode.Value), MaxAgentTTL)
		} else {
			a.MaxTTL = v
		}
	}
	defNode := f.get(d, "default_ttl")
	if v, ok := d.positive(defNode, "agents.default_ttl"); ok {
		a.DefaultTTL = v
		if v > a.MaxTTL {
			d.errf(defNode, "agents.default_ttl", "is longer than agents.max_ttl (%s), so it could never take effect; make it shorter", a.MaxTTL)
		}
	} else if defNode == nil && a.DefaultTTL > a.MaxTTL {
		a.DefaultTTL = a.MaxTTL
	}
	if sess := c.Session.AbsoluteTimeout; sess > 0 && a.MaxTTL > sess {
		d.warnf(maxNode, "agents.max_ttl", "is longer than session.absolute_timeout (%s); grants are capped at their session's remaining lifetime anyway", sess)
	}

	dn := f.get(d, "delegable_routes")
	if dn == nil {
		d.missing(f, "delegable_routes", "list the routes a user may hand to an agent, e.g. delegable_routes: [profile]")
	} else if items, _ := d.strItems(dn, "agents.delegable_routes", "[profile, billing]"); len(items) > 0 {
		known := map[string]*Route{}
		for i := range c.Routes {
			known[c.Routes[i].Name] = &c.Routes[i]
		}
		for _, it := range items {
			r, ok := known[it.val]
			switch {
			case slices.Contains(a.DelegableRoutes, it.val):
				d.errf(it.node, it.key, "%s is listed twice; remove one", quote(it.val))
			case !ok && !slices.Contains(c.compositeNames(), it.val):
				d.errf(it.node, it.key, "%s is not a configured route or composite; name one from routes (or composites)", quote(it.val))
			case ok && r.Anonymous:
				d.errf(it.node, it.key, "route %s is anonymous: it needs no session, so there is nothing to delegate; remove it", quote(it.val))
			default:
				a.DelegableRoutes = append(a.DelegableRoutes, it.val)
			}
		}
	} else if dn.Kind == yaml.SequenceNode {
		d.errf(dn, "agents.delegable_routes", "the list is empty, so nothing could be delegated; name at least one route or remove the agents section")
	}

	if n := f.get(d, "max_tokens_per_session"); n != nil {
		if v, ok := d.integer(n, "agents.max_tokens_per_session"); ok {
			if v < 1 || v > MaxAgentTokensPerSession {
				d.errf(n, "agents.max_tokens_per_session", "must be between 1 and %d", MaxAgentTokensPerSession)
			} else {
				a.MaxTokensPerSession = v
			}
		}
	}
	if rf := d.section(f, "rate_limit", "agents.rate_limit", "agents.rate_limit", ""); rf != nil {
		a.RateLimit = d.agentRateLimit(rf)
	}
	if len(d.problems) == start {
		c.Agents = a
	}
}

func (d *decoder) agentRateLimit(f *fields) *AgentRateLimit {
	l := &AgentRateLimit{}
	ok := true
	if n := f.get(d, "requests"); n == nil {
		d.missing(f, "requests", "say how many requests per window, e.g. rate_limit: { requests: 60, per: 1m }")
		ok = false
	} else if v, good := d.integer(n, "agents.rate_limit.requests"); !good {
		ok = false
	} else if v < 1 || v > agentMaxRequests {
		d.errf(n, "agents.rate_limit.requests", "must be between 1 and %d", agentMaxRequests)
		ok = false
	} else {
		l.Requests = v
	}
	if n := f.get(d, "per"); n == nil {
		d.missing(f, "per", "say the window, e.g. per: 1m")
		ok = false
	} else if v, good := d.positive(n, "agents.rate_limit.per"); !good {
		ok = false
	} else if v < agentMinPer || v > agentMaxPer || v%time.Second != 0 {
		d.errf(n, "agents.rate_limit.per", "must be whole seconds between %s and %s (the RateLimit headers carry seconds)", agentMinPer, agentMaxPer)
		ok = false
	} else {
		l.Per = v
	}
	if n := f.get(d, "burst"); n != nil {
		if v, good := d.integer(n, "agents.rate_limit.burst"); !good {
			ok = false
		} else if v < 0 || v > agentMaxRequests {
			d.errf(n, "agents.rate_limit.burst", "must be between 0 (= requests) and %d", agentMaxRequests)
			ok = false
		} else {
			l.Burst = v
		}
	}
	if !ok {
		return nil
	}
	return l
}

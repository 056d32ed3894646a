package oidc

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// PAR push limits. Every anonymous GET /bff/login makes Gatehouse push an
// authorization request to the IdP (a client-authenticated POST that the IdP
// stores): unbounded, one script could make Gatehouse flood the IdP with
// pushes, or use up the IdP's quota for this client. Pushes are limited per
// client address (one client cannot use up the shared budget) and overall.
const (
	defaultPARPerClient      = rate.Limit(10.0 / 60) // 10 a minute, per client address
	defaultPARPerClientBurst = 10
	defaultPARGlobal         = rate.Limit(50) // per second, all clients together
	defaultPARGlobalBurst    = 100
	// parClientTableSize bounds the per-client table; when full it starts
	// afresh (the global limit still holds meanwhile).
	parClientTableSize = 10000
)

// PARLimits bounds pushed authorization requests (zero values: defaults).
type PARLimits struct {
	PerClient      rate.Limit
	PerClientBurst int
	Global         rate.Limit
	GlobalBurst    int
}

type parLimiter struct {
	lim    PARLimits
	global *rate.Limiter
	now    func() time.Time
	client func(*http.Request) string

	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

func newPARLimiter(l PARLimits, now func() time.Time, client func(*http.Request) string) *parLimiter {
	if client == nil {
		client = peerAddr
	}
	if l.PerClient <= 0 {
		l.PerClient = defaultPARPerClient
	}
	if l.PerClientBurst <= 0 {
		l.PerClientBurst = defaultPARPerClientBurst
	}
	if l.Global <= 0 {
		l.Global = defaultPARGlobal
	}
	if l.GlobalBurst <= 0 {
		l.GlobalBurst = defaultPARGlobalBurst
	}
	return &parLimiter{lim: l, global: rate.NewLimiter(l.Global, l.GlobalBurst), now: now, client: client, clients: map[string]*rate.Limiter{}}
}

func peerAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// allow reports whether r's client may push one more authorization
// request: 0 when it may, else the status to answer (429: this client,
// 503: everyone is over the overall budget).
func (p *parLimiter) allow(r *http.Request) int {
	key := p.client(r)
	now := p.now()
	p.mu.Lock()
	l, ok := p.clients[key]
	if !ok {
		if len(p.clients) >= parClientTableSize {
			clear(p.clients)
		}
		l = rate.NewLimiter(p.lim.PerClient, p.lim.PerClientBurst)
		p.clients[key] = l
	}
	allowed := l.AllowN(now, 1)
	p.mu.Unlock()
	if !allowed {
		return http.StatusTooManyRequests
	}
	if !p.global.AllowN(now, 1) {
		return http.StatusServiceUnavailable
	}
	return 0
}

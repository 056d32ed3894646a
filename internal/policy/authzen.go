package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

const errCachedDenial = constError("PDP decision false (cached)")

// PDP defaults.
const (
	DefaultPDPTimeout   = 200 * time.Millisecond
	DefaultPDPCacheSize = 10_000
	maxPDPResponse      = 64 << 10
)

// defaultSubjectClaims are sent as subject properties when
// PDPConfig.SubjectClaims is nil. Never modified.
var defaultSubjectClaims = [...]string{"email", "email_verified", "groups", "roles"}

// PDPConfig configures the external Policy Decision Point client.
type PDPConfig struct {
	// URL is the AuthZEN Access Evaluation endpoint, usually ending in
	// /access/v1/evaluation. It must be https when a Token is set, except on
	// a loopback host.
	URL string
	// Token, when set, is sent as `Authorization: Bearer <token>`; it is read
	// on every call, so a rotated file-backed secret takes effect at once.
	Token *secret.Value
	// Timeout bounds one evaluation call (DefaultPDPTimeout when zero).
	Timeout time.Duration
	// CacheTTL > 0 caches decisions (allow and deny, never errors) for that
	// long, keyed by everything sent except the time. Zero (default) disables it.
	CacheTTL time.Duration
	// CacheSize bounds the cache (DefaultPDPCacheSize when zero).
	CacheSize int
	// SubjectClaims names the user claims sent as subject.properties; when
	// nil: email, email_verified, groups, roles. An empty non-nil slice sends none.
	SubjectClaims []string
	// HTTPClient is the client to use (a copy of http.DefaultClient's shape
	// when nil). Redirects are never followed: the token must not travel on.
	HTTPClient *http.Client
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// PDP asks an external Policy Decision Point through the OpenID AuthZEN
// Authorization API 1.0 Access Evaluation endpoint. It fails closed: every
// answer other than a well-formed {"decision": true} denies, with a reason
// that tells a policy denial apart from an unavailable or broken PDP. It is
// safe for concurrent use.
type PDP struct {
	url     string
	token   *secret.Value
	timeout time.Duration
	claims  []string
	client  *http.Client
	now     func() time.Time
	cache   *decisionCache
	keyBufs sync.Pool
}

// NewPDP validates cfg and builds the client.
func NewPDP(cfg PDPConfig) (*PDP, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("policy.pdp.url must be an absolute http(s) URL of the AuthZEN evaluation endpoint, e.g. https://pdp.internal/access/v1/evaluation")
	}
	if u.User != nil {
		return nil, errors.New("policy.pdp.url must not contain credentials; use policy.pdp.token")
	}
	if cfg.Token != nil && u.Scheme != "https" && !isLoopback(u.Hostname()) {
		return nil, errors.New("policy.pdp.url must use https when policy.pdp.token is set (plain http is allowed only to a loopback host)")
	}
	if cfg.Timeout < 0 || cfg.CacheTTL < 0 || cfg.CacheSize < 0 {
		return nil, errors.New("policy.pdp timeout, cache_ttl and cache_size must not be negative")
	}
	p := &PDP{
		url:     u.String(),
		token:   cfg.Token,
		timeout: cfg.Timeout,
		claims:  cfg.SubjectClaims,
		now:     cfg.Now,
	}
	if p.timeout == 0 {
		p.timeout = DefaultPDPTimeout
	}
	if p.claims == nil {
		p.claims = defaultSubjectClaims[:]
	}
	if p.now == nil {
		p.now = time.Now
	}
	c := http.Client{}
	if cfg.HTTPClient != nil {
		c = *cfg.HTTPClient
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	p.client = &c
	if cfg.CacheTTL > 0 {
		size := cfg.CacheSize
		if size == 0 {
			size = DefaultPDPCacheSize
		}
		p.cache = newDecisionCache(cfg.CacheTTL, size)
	}
	p.keyBufs.New = func() any { b := make([]byte, 0, 512); return &b }
	return p, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// AuthZEN Access Evaluation request (Authorization API 1.0 §6.1): a
// subject, an action, a resource and an optional context.
type azEntity struct {
	Type       string         `json:"type"`
	ID         string         `json:"id"`
	Properties map[string]any `json:"properties,omitempty"`
}

type azAction struct {
	Name string `json:"name"`
}

type azContext struct {
	Client   string `json:"client"`
	RemoteIP string `json:"remote_ip"`
	Time     string `json:"time"`
}

type azRequest struct {
	Subject  azEntity  `json:"subject"`
	Action   azAction  `json:"action"`
	Resource azEntity  `json:"resource"`
	Context  azContext `json:"context"`
}

type azAgent struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Routes  []string `json:"routes"`
	Methods []string `json:"methods"`
	Expires string   `json:"expires"`
}

// subjectOf maps the caller to an AuthZEN subject: the user (by `sub`),
// with the configured claims and, for an agent, the agent and its grant as
// properties; a request without a `sub` is {"type":"anonymous","id":"anonymous"}.
func (p *PDP) subjectOf(in *Input) azEntity {
	sub, _ := in.User["sub"].(string)
	if sub == "" {
		return azEntity{Type: "anonymous", ID: "anonymous"}
	}
	s := azEntity{Type: "user", ID: sub}
	for _, c := range p.claims {
		if v, ok := in.User[c]; ok {
			if s.Properties == nil {
				s.Properties = make(map[string]any, len(p.claims)+1)
			}
			s.Properties[c] = v
		}
	}
	if a := in.Agent; a != nil {
		if s.Properties == nil {
			s.Properties = make(map[string]any, 1)
		}
		s.Properties["agent"] = azAgent{ID: a.ID, Name: a.Name, Routes: a.Routes, Methods: a.Methods,
			Expires: a.Expires.UTC().Format(time.RFC3339)}
	}
	return s
}

// Decide asks the PDP whether in may proceed. requestID is sent as
// X-Request-ID so PDP and Gatehouse logs correlate.
func (p *PDP) Decide(ctx context.Context, in *Input, requestID string) Decision {
	var key [sha256.Size]byte
	if p.cache != nil {
		key = p.cacheKey(in)
		if allow, ok := p.cache.get(key, p.now()); ok {
			if allow {
				return allowDecision
			}
			return deny(ReasonPDPDenied, errCachedDenial)
		}
	}
	d := p.call(ctx, in, requestID)
	if p.cache != nil && (d.Allow || d.Reason == ReasonPDPDenied) {
		p.cache.put(key, d.Allow, p.now())
	}
	return d
}

func (p *PDP) call(ctx context.Context, in *Input, requestID string) Decision {
	body, err := json.Marshal(azRequest{
		Subject:  p.subjectOf(in),
		Action:   azAction{Name: in.Request.Method},
		Resource: azEntity{Type: "route", ID: in.Route, Properties: map[string]any{"path": in.Request.Path}},
		Context:  azContext{Client: in.Client, RemoteIP: in.Request.RemoteIP, Time: p.now().UTC().Format(time.RFC3339)},
	})
	if err != nil { // only a claim value JSON cannot hold; never the case for decoded claims
		return deny(ReasonPDPUnreachable, fmt.Errorf("encode PDP request: %w", err))
	}
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return deny(ReasonPDPUnreachable, fmt.Errorf("build PDP request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if requestID != "" {
		req.Header.Set("X-Request-ID", requestID)
	}
	if tok := p.token.Get(); !tok.IsZero() {
		req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return p.transportError(ctx, cctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxPDPResponse+1))
	if err != nil {
		return p.transportError(ctx, cctx, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return deny(ReasonPDPStatus, fmt.Errorf("PDP answered HTTP %d", resp.StatusCode))
	}
	if len(data) > maxPDPResponse {
		return deny(ReasonPDPBadResponse, fmt.Errorf("PDP response exceeds %d bytes", maxPDPResponse))
	}
	return parseDecision(data)
}

// parseDecision reads an Access Evaluation response (§6.2). Keys match
// exactly (no case folding), and only the JSON literal true allows.
func parseDecision(data []byte) Decision {
	var resp map[string]json.RawMessage
	if err := json.Unmarshal(data, &resp); err != nil || resp == nil {
		return deny(ReasonPDPBadResponse, errors.New("PDP response is not a JSON object"))
	}
	raw, ok := resp["decision"]
	if !ok {
		return deny(ReasonPDPNoDecision, errors.New(`PDP response has no "decision"`))
	}
	switch string(raw) {
	case "true":
		return allowDecision
	case "false":
		return deny(ReasonPDPDenied, errors.New("PDP decision false"))
	}
	return deny(ReasonPDPNoDecision, errors.New(`PDP "decision" is not a boolean`))
}

// transportError tells a timeout from an unreachable PDP. The error text
// names the URL (configuration, never a secret) and the network failure.
func (p *PDP) transportError(parent, call context.Context, err error) Decision {
	var ne net.Error
	switch {
	case parent.Err() == context.Canceled:
		return deny(ReasonCanceled, fmt.Errorf("call PDP: request cancelled: %w", err))
	case call.Err() == context.DeadlineExceeded || (errors.As(err, &ne) && ne.Timeout()):
		return deny(ReasonPDPTimeout, fmt.Errorf("call PDP: no answer within %s: %w", p.timeout, err))
	}
	return deny(ReasonPDPUnreachable, fmt.Errorf("call PDP: %w", err))
}

// cacheKey hashes every input of the request body except the time. Claims
// of the common JSON shapes are encoded without reflection; anything else
// falls back to encoding/json.
func (p *PDP) cacheKey(in *Input) [sha256.Size]byte {
	bp := p.keyBufs.Get().(*[]byte)
	b := (*bp)[:0]
	sub, _ := in.User["sub"].(string)
	b = appendStr(b, sub)
	for _, c := range p.claims {
		v, ok := in.User[c]
		b = appendStr(b, c)
		if !ok {
			b = append(b, 'x')
			continue
		}
		b = appendAny(b, v)
	}
	if a := in.Agent; a != nil {
		b = append(b, 'A')
		b = appendStr(b, a.ID)
		b = appendStr(b, a.Name)
		b = appendStrs(b, a.Routes)
		b = appendStrs(b, a.Methods)
		b = binary.BigEndian.AppendUint64(b, uint64(a.Expires.Unix()))
	}
	b = appendStr(b, in.Request.Method)
	b = appendStr(b, in.Route)
	b = appendStr(b, in.Request.Path)
	b = appendStr(b, in.Client)
	b = appendStr(b, in.Request.RemoteIP)
	key := sha256.Sum256(b)
	*bp = b
	p.keyBufs.Put(bp)
	return key
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrs(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendStr(b, s)
	}
	return b
}

// appendAny writes a type-tagged, length-prefixed encoding of a claim value.
func appendAny(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, 'n')
	case string:
		return appendStr(append(b, 's'), x)
	case bool:
		if x {
			return append(b, 't')
		}
		return append(b, 'f')
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 'd'), math.Float64bits(x))
	case json.Number:
		return appendStr(append(b, 'N'), string(x))
	case int64:
		return strconv.AppendInt(append(b, 'i'), x, 10)
	case []string:
		return appendStrs(append(b, 'S'), x)
	case []any:
		b = binary.AppendUvarint(append(b, 'l'), uint64(len(x)))
		for _, e := range x {
			b = appendAny(b, e)
		}
		return b
	}
	j, err := json.Marshal(v) // maps and rarer shapes; json sorts map keys
	if err != nil {
		j = []byte(fmt.Sprintf("%T", v))
	}
	return appendStr(append(b, 'j'), string(j))
}

// decisionCache remembers PDP decisions for a short TTL.
type decisionCache struct {
	ttl time.Duration
	max int

	mu sync.RWMutex
	m  map[[sha256.Size]byte]cacheEntry
}

type cacheEntry struct {
	allow   bool
	expires time.Time
}

func newDecisionCache(ttl time.Duration, max int) *decisionCache {
	return &decisionCache{ttl: ttl, max: max, m: make(map[[sha256.Size]byte]cacheEntry)}
}

func (c *decisionCache) get(k [sha256.Size]byte, now time.Time) (allow, ok bool) {
	c.mu.RLock()
	e, found := c.m[k]
	c.mu.RUnlock()
	if !found || !now.Before(e.expires) {
		return false, false
	}
	return e.allow, true
}

func (c *decisionCache) put(k [sha256.Size]byte, allow bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for key, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, key)
			}
		}
		// Still full of live entries: drop an arbitrary half rather than grow.
		for key := range c.m {
			if len(c.m) < c.max/2+1 {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = cacheEntry{allow: allow, expires: now.Add(c.ttl)}
}

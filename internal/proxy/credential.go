package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"golang.org/x/sync/singleflight"
)

// credError is a credential failure with the error code the client sees.
type credError struct {
	code string
	msg  string
	err  error
}

func (e *credError) Error() string { return e.code + ": " + e.err.Error() }
func (e *credError) Unwrap() error { return e.err }

// credential returns the value of the route's credential for this request:
// the bearer token (for token kinds) or the header value. ok is false for
// CredentialNone.
func (p *Proxy) credential(ctx context.Context, rt *route, id *Identity) (secret.Secret, error) {
	switch rt.cred.Kind {
	case CredentialUserToken:
		tok, err := p.opts.UserTokens.AccessToken(ctx, id)
		if err != nil {
			return secret.Secret{}, &credError{"user_token_unavailable", "the user's access token could not be obtained", err}
		}
		return nonEmpty(tok, "user_token_unavailable")
	case CredentialTokenExchange:
		tok, err := p.exchanges.get(ctx, p, rt, id)
		if err != nil {
			return secret.Secret{}, err
		}
		return nonEmpty(tok, "token_exchange_failed")
	case CredentialClientCredentials:
		tok, err := rt.cred.Source.Token(ctx)
		if err != nil {
			return secret.Secret{}, &credError{"client_credentials_failed", "Gatehouse could not obtain its client-credentials token", err}
		}
		return nonEmpty(tok, "client_credentials_failed")
	case CredentialHeader:
		return nonEmpty(rt.cred.HeaderValue.Get(), "header_credential_missing")
	}
	return secret.Secret{}, nil
}

func nonEmpty(s secret.Secret, code string) (secret.Secret, error) {
	if s.IsZero() {
		return s, &credError{code, "the route's credential is empty", errors.New("empty credential")}
	}
	return s, nil
}

// exchangeCache keeps exchanged tokens per session and route until shortly
// before they expire, and makes concurrent requests of one session share one
// exchange.
type exchangeCache struct {
	skew time.Duration
	now  func() time.Time

	mu        sync.Mutex
	entries   map[exchangeKey]exchanged
	lastSweep time.Time
	group     singleflight.Group
}

// exchangeKey: an agent's exchanged token (which names it as actor) is
// never shared with the user's own or another agent's.
type exchangeKey struct{ session, route, agent string }

type exchanged struct {
	token  secret.Secret
	expiry time.Time // at most the subject token's expiry, less the skew
	// subject is the session's access token it was exchanged from.
	subject secret.Secret
}

func newExchangeCache(skew time.Duration, now func() time.Time) *exchangeCache {
	return &exchangeCache{skew: skew, now: now, entries: make(map[exchangeKey]exchanged)}
}

func (c *exchangeCache) get(ctx context.Context, p *Proxy, rt *route, id *Identity) (secret.Secret, error) {
	if id == nil || id.SessionID == "" {
		return secret.Secret{}, &credError{"token_exchange_failed", "token exchange needs a session", errors.New("identity has no session id")}
	}
	// Re-checked against the session on every use: the session's current
	// access token (no I/O unless it needs a refresh; ErrNoSession once the
	// session has ended) must still be the one the cached token was
	// exchanged from. A refreshed or ended session never gets a token
	// delegated from what it no longer holds.
	subject, err := p.opts.UserTokens.AccessToken(ctx, id)
	if err != nil {
		if errors.Is(err, ErrNoSession) {
			c.forget(id.SessionID)
			return secret.Secret{}, err
		}
		return secret.Secret{}, &credError{"token_exchange_failed", "the user's access token could not be obtained for token exchange", err}
	}
	key := exchangeKey{session: id.SessionID, route: rt.name}
	if id.Agent != nil {
		key.agent = id.Agent.ID
	}
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && c.now().Before(e.expiry) && e.subject.Equal(subject) {
		return e.token, nil
	}
	// The shared exchange outlives a caller that gives up, so the others
	// still get its result; the Exchanger bounds it with its own timeout.
	sfKey := id.SessionID + "\x00" + rt.name + "\x00" + key.agent
	ch := c.group.DoChan(sfKey, func() (any, error) {
		return c.exchange(context.WithoutCancel(ctx), p, rt, id, key, subject)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return secret.Secret{}, res.Err
		}
		return res.Val.(secret.Secret), nil
	case <-ctx.Done():
		return secret.Secret{}, &credError{"token_exchange_failed", "the request ended during token exchange", ctx.Err()}
	}
}

func (c *exchangeCache) exchange(ctx context.Context, p *Proxy, rt *route, id *Identity, key exchangeKey, subject secret.Secret) (secret.Secret, error) {
	var tok secret.Secret
	var expiry time.Time
	var err error
	if id.Agent != nil {
		// The agent is named as the RFC 8693 actor; an exchanger that cannot
		// name it must not hand the agent a token that hides it.
		ax, ok := p.opts.Exchanger.(ActorExchanger)
		if !ok {
			return secret.Secret{}, &credError{"token_exchange_failed", fmt.Sprintf("token exchange for route %s cannot name the agent as actor", rt.name), errors.New("the Exchanger does not implement ActorExchanger")}
		}
		tok, expiry, err = ax.ExchangeAs(ctx, subject, id.Agent, rt.cred.Audience, rt.cred.Scope, rt.cred.Resource)
		// Never outlive the grant.
		if err == nil && (expiry.IsZero() || expiry.After(id.Agent.Expires)) {
			expiry = id.Agent.Expires
		}
	} else if se, ok := p.opts.Exchanger.(SessionExchanger); ok {
		// Exchanges the session's own current token and caps the expiry at
		// that token's (oidc.Tokens.ExchangeForSession).
		tok, expiry, err = se.ExchangeForSession(ctx, id, rt.cred.Audience, rt.cred.Scope, rt.cred.Resource)
	} else {
		tok, expiry, err = p.opts.Exchanger.Exchange(ctx, subject, rt.cred.Audience, rt.cred.Scope, rt.cred.Resource)
	}
	if err != nil {
		if errors.Is(err, ErrNoSession) {
			return secret.Secret{}, err
		}
		return secret.Secret{}, &credError{"token_exchange_failed", fmt.Sprintf("token exchange for route %s failed", rt.name), err}
	}
	if tok.IsZero() {
		return tok, &credError{"token_exchange_failed", fmt.Sprintf("token exchange for route %s returned no token", rt.name), errors.New("empty token")}
	}
	// A delegated token never outlives what it was delegated from: the
	// cache entry ends with the subject token's lifetime too, when known.
	if s := id.Session; s != nil && !s.AccessTokenExpiry.IsZero() && s.AccessToken.Equal(subject) &&
		(expiry.IsZero() || expiry.After(s.AccessTokenExpiry)) {
		expiry = s.AccessTokenExpiry
	}
	// A token without a known expiry, or one about to expire, is used once
	// and not cached: a cached token must never outlive its grant.
	if until := expiry.Add(-c.skew); !expiry.IsZero() && c.now().Before(until) {
		c.mu.Lock()
		c.entries[key] = exchanged{token: tok, expiry: until, subject: subject}
		c.sweepLocked()
		c.mu.Unlock()
	}
	return tok, nil
}

// sweepLocked drops expired entries at most once a minute, so sessions that
// never come back do not pin memory.
func (c *exchangeCache) sweepLocked() {
	now := c.now()
	if now.Sub(c.lastSweep) < time.Minute {
		return
	}
	c.lastSweep = now
	for k, e := range c.entries {
		if !now.Before(e.expiry) {
			delete(c.entries, k)
		}
	}
}

// forget drops every cached token of a session.
func (c *exchangeCache) forget(session string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if k.session == session {
			delete(c.entries, k)
		}
	}
}

// drop forgets one session's token for one route.
func (c *exchangeCache) drop(session, route string) {
	c.mu.Lock()
	for k := range c.entries {
		if k.session == session && k.route == route {
			delete(c.entries, k)
		}
	}
	c.mu.Unlock()
}

// holds reports whether any token of a session is cached.
func (c *exchangeCache) holds(session string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if k.session == session {
			return true
		}
	}
	return false
}

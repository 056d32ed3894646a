package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

var (
	// ErrSessionEnded means the IdP refused the session's refresh token
	// (invalid_grant) or the session has no usable token any more; the
	// session has been deleted. The proxy answers 401.
	ErrSessionEnded = errors.New("the session has ended at the identity provider: sign in again")

	// ErrIdPUnavailable means the IdP could not be reached or answered with a
	// server error. The proxy answers 502 (or 503).
	ErrIdPUnavailable = errors.New("the identity provider is unavailable")

	// ErrExchangeDenied means the IdP refused a token exchange or client
	// credentials request (a 4xx other than a server fault), usually a
	// configuration problem (audience, scope, client permissions). The proxy
	// answers 502 and logs it.
	ErrExchangeDenied = errors.New("the identity provider refused the token request")
)

// errNoRefreshToken: a forced refresh is impossible without a refresh token.
var errNoRefreshToken = errors.New("the session has no refresh token to replace a rejected access token")

// refreshLockTTL bounds how long one instance may hold a session's refresh
// lock; it is longer than any IdP round trip we allow.
const refreshLockTTL = 30 * time.Second

// Tokens hands the proxy the credentials its routes name: the user's access
// token (refreshed when near expiry), exchanged tokens (RFC 8693) and client
// credentials tokens. Safe for concurrent use.
type Tokens struct {
	h       *Handler
	refresh singleflight.Group

	ccMu    sync.Mutex
	ccCache map[string]ccEntry
	ccGroup singleflight.Group
}

type ccEntry struct {
	token  secret.Secret
	expiry time.Time
}

// AccessToken returns the session's access token, refreshing it first when it
// expires within Options.RefreshBeforeExpiry. At most one refresh per session
// runs at a time in this process (singleflight) and across instances (a
// store lock, then a re-read: another instance may already have refreshed).
// Errors: ErrSessionEnded (401), ErrIdPUnavailable (502/503),
// session.ErrUnavailable (503), session.ErrNotFound (401).
func (t *Tokens) AccessToken(ctx context.Context, h session.Handle, s *session.Session) (secret.Secret, error) {
	if !t.needsRefresh(s) {
		return s.AccessToken, nil
	}
	// The refresh runs detached from this caller's cancellation: other
	// requests wait on the same flight, and abandoning a rotated refresh
	// token half-way would end the session.
	ch := t.refresh.DoChan(s.ID, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshLockTTL)
		defer cancel()
		return t.refreshSession(rctx, h, s.ID, secret.Secret{})
	})
	return awaitToken(ctx, ch, "token refresh")
}

// RefreshRejected refreshes the session's tokens because an upstream
// refused rejected, its access token (401), even though the token has not
// expired yet. It refreshes at most once for one rejected token: concurrent
// callers share the flight (singleflight here, the store lock across
// instances), and a caller arriving after the refresh gets the new token
// without another one. Errors as for AccessToken; a session without a
// refresh token is not ended (the upstream, not the IdP, refused the token).
func (t *Tokens) RefreshRejected(ctx context.Context, h session.Handle, s *session.Session, rejected secret.Secret) (secret.Secret, error) {
	ch := t.refresh.DoChan(s.ID, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshLockTTL)
		defer cancel()
		return t.refreshSession(rctx, h, s.ID, rejected)
	})
	tok, err := awaitToken(ctx, ch, "token refresh")
	if err == nil && tok.Equal(rejected) {
		// The flight joined was a plain refresh that kept the token: force one.
		ch = t.refresh.DoChan(s.ID, func() (any, error) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshLockTTL)
			defer cancel()
			return t.refreshSession(rctx, h, s.ID, rejected)
		})
		tok, err = awaitToken(ctx, ch, "token refresh")
	}
	return tok, err
}

func (t *Tokens) needsRefresh(s *session.Session) bool {
	if s.AccessTokenExpiry.IsZero() {
		return false // the IdP gave no lifetime; use the token until it is refused
	}
	return !t.h.opts.Clock().Before(s.AccessTokenExpiry.Add(-t.h.opts.RefreshBeforeExpiry))
}

// refreshSession refreshes the session's tokens when they are near expiry
// or, when rejected is set, when the stored access token is still rejected.
func (t *Tokens) refreshSession(ctx context.Context, h session.Handle, id string, rejected secret.Secret) (secret.Secret, error) {
	o := &t.h.opts
	release, err := o.Sessions.Lock(ctx, "refresh:"+id, refreshLockTTL)
	if err != nil {
		return secret.Secret{}, fmt.Errorf("lock session for token refresh: %w", err)
	}
	defer release()
	// Read the store, not the cache: another instance may have refreshed
	// (and rotated the refresh token) while we waited for the lock, and its
	// invalidation message may not have reached this instance yet.
	cur, err := o.Sessions.LoadFresh(ctx, h)
	if err != nil {
		return secret.Secret{}, err
	}
	forced := !rejected.IsZero()
	if forced && !cur.AccessToken.Equal(rejected) {
		return cur.AccessToken, nil // refreshed meanwhile, here or elsewhere
	}
	if !forced && !t.needsRefresh(cur) {
		return cur.AccessToken, nil // refreshed meanwhile, here or elsewhere
	}
	if forced && cur.RefreshToken.IsZero() {
		return secret.Secret{}, errNoRefreshToken
	}
	if cur.RefreshToken.IsZero() {
		if o.Clock().Before(cur.AccessTokenExpiry) {
			return cur.AccessToken, nil // still valid, nothing to refresh with
		}
		t.endSession(ctx, cur, "no_refresh_token")
		return secret.Secret{}, ErrSessionEnded
	}
	tok, err := t.refreshGrant(ctx, cur.RefreshToken)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			// Before ending the session, make sure the refresh token we
			// used is still the stored one: if another instance rotated it
			// and our read was stale, its new tokens are valid.
			if again, lerr := o.Sessions.LoadFresh(ctx, h); lerr == nil && !again.RefreshToken.Equal(cur.RefreshToken) {
				return again.AccessToken, nil
			}
			t.endSession(ctx, cur, "invalid_grant")
			return secret.Secret{}, ErrSessionEnded
		}
		t.h.log.WarnContext(ctx, "token refresh failed", "session", cur.ID, "error", describeOAuthError(err))
		_ = t.h.audit(ctx, nil, audit.Record{Event: audit.EventRefreshFailed, Outcome: audit.OutcomeFailure, Sub: cur.Subject, Session: cur.ID, Reason: "idp_unavailable"})
		return secret.Secret{}, ErrIdPUnavailable
	}
	now := o.Clock()
	cur.AccessToken = secret.New(tok.AccessToken)
	cur.AccessTokenExpiry = tokenExpiry(tok, now)
	cur.TokenType = tok.Type()
	if tok.RefreshToken != "" {
		cur.RefreshToken = secret.New(tok.RefreshToken)
	}
	if sc, ok := tok.Extra("scope").(string); ok && sc != "" {
		cur.Scope = sc
	}
	var newIDClaims map[string]any
	if rawID, ok := tok.Extra("id_token").(string); ok && rawID != "" {
		// OIDC Core 12.2: a refreshed ID token must be valid and be about the same user.
		idt, err := t.h.verifier.Verify(t.h.idpContext(ctx), rawID)
		if err == nil && idt.Subject == cur.Subject {
			newIDClaims = map[string]any{}
			err = idt.Claims(&newIDClaims)
		}
		if err != nil || idt.Subject != cur.Subject {
			t.h.log.WarnContext(ctx, "refreshed ID token rejected", "session", cur.ID)
			t.endSession(ctx, cur, "refreshed_id_token_invalid")
			return secret.Secret{}, ErrSessionEnded
		}
	}
	// Policies never read claims older than the last refresh.
	if err := t.h.refreshClaims(ctx, cur, newIDClaims, tok); err != nil {
		t.h.log.WarnContext(ctx, "userinfo after refresh names another user", "session", cur.ID)
		t.endSession(ctx, cur, "userinfo_subject_mismatch")
		return secret.Secret{}, ErrSessionEnded
	}
	if raw, ok := tok.Extra("id_token").(string); ok && raw != "" {
		cur.IDToken = secret.New(raw)
	}
	if err := o.Sessions.Update(ctx, h, cur); err != nil {
		return secret.Secret{}, fmt.Errorf("store refreshed tokens: %w", err)
	}
	_ = t.h.audit(ctx, nil, audit.Record{Event: audit.EventTokenRefresh, Outcome: audit.OutcomeSuccess, Sub: cur.Subject, Session: cur.ID})
	return cur.AccessToken, nil
}

// refreshGrant runs the refresh_token grant. With private_key_jwt it goes
// through the client credentials config, which (unlike oauth2.Config's
// TokenSource) takes extra parameters: the client assertion.
func (t *Tokens) refreshGrant(ctx context.Context, rt secret.Secret) (*oauth2.Token, error) {
	if t.h.opts.ClientAuth != AuthPrivateKeyJWT {
		return t.h.oauthConfig().TokenSource(t.h.idpContext(ctx), &oauth2.Token{RefreshToken: rt.Reveal()}).Token()
	}
	cfg, err := t.ccConfig(nil, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt.Reveal()}})
	if err != nil {
		return nil, err
	}
	return cfg.Token(t.h.idpContext(ctx))
}

func (t *Tokens) endSession(ctx context.Context, s *session.Session, reason string) {
	if err := t.h.opts.Sessions.End(ctx, s.ID, session.EndRefreshFailed); err != nil {
		t.h.log.ErrorContext(ctx, "delete session after failed refresh", "session", s.ID, "error", err)
	}
	_ = t.h.audit(ctx, nil, audit.Record{Event: audit.EventRefreshFailed, Outcome: audit.OutcomeFailure, Sub: s.Subject, Session: s.ID, Reason: reason})
}

// Exchange trades subjectToken for an access token for another audience
// (RFC 8693 token exchange), authenticating as the client. It returns the
// new token and its expiry (zero when the IdP gave none). The caller must
// not cache the result beyond the subject token's own expiry.
func (t *Tokens) Exchange(ctx context.Context, subjectToken secret.Secret, audience, scope, resource string) (secret.Secret, time.Time, error) {
	return t.ExchangeWithActor(ctx, subjectToken, "", "", audience, scope, resource)
}

// ExchangeWithActor is Exchange naming an actor (RFC 8693 actor_token and
// actor_token_type): the party acting for the subject, which the IdP writes
// into the new token's act claim. Empty actorToken means none.
func (t *Tokens) ExchangeWithActor(ctx context.Context, subjectToken secret.Secret, actorToken, actorTokenType, audience, scope, resource string) (secret.Secret, time.Time, error) {
	params := url.Values{
		// x/oauth2's client credentials flow allows overriding grant_type:
		// it gives us its client authentication and error parsing.
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":        {subjectToken.Reveal()},
		"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
		"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
	}
	if audience != "" {
		params.Set("audience", audience)
	}
	if actorToken != "" {
		params.Set("actor_token", actorToken)
		params.Set("actor_token_type", actorTokenType)
	}
	if resource != "" {
		params.Set("resource", resource)
	}
	var scopes []string
	if scope != "" {
		scopes = strings.Fields(scope)
	}
	cfg, err := t.ccConfig(scopes, params)
	if err != nil {
		return secret.Secret{}, time.Time{}, fmt.Errorf("token exchange: %w", ErrIdPUnavailable)
	}
	tok, err := cfg.Token(t.h.idpContext(ctx))
	if err != nil {
		err = t.classify(ctx, "token exchange", err)
		_ = t.h.audit(ctx, nil, audit.Record{Event: audit.EventTokenExchange, Outcome: audit.OutcomeFailure, Upstream: audience})
		return secret.Secret{}, time.Time{}, err
	}
	if it, _ := tok.Extra("issued_token_type").(string); it != "" && it != "urn:ietf:params:oauth:token-type:access_token" {
		t.h.log.WarnContext(ctx, "token exchange returned an unexpected token type", "issued_token_type", truncate(it, 80))
		return secret.Secret{}, time.Time{}, ErrExchangeDenied
	}
	_ = t.h.audit(ctx, nil, audit.Record{Event: audit.EventTokenExchange, Outcome: audit.OutcomeSuccess, Upstream: audience})
	return secret.New(tok.AccessToken), ccExpiry(tok, t.h.opts.Clock()), nil
}

// ExchangeForSession exchanges the session's current access token (refreshed
// first when near expiry, as AccessToken does) and caps the result's expiry
// at the subject token's: a delegated token never outlives what it was
// delegated from.
func (t *Tokens) ExchangeForSession(ctx context.Context, h session.Handle, s *session.Session, audience, scope, resource string) (secret.Secret, time.Time, error) {
	subject, err := t.AccessToken(ctx, h, s)
	if err != nil {
		return secret.Secret{}, time.Time{}, err
	}
	subjectExpiry := s.AccessTokenExpiry
	if cur, err := t.h.opts.Sessions.Load(ctx, h, false); err == nil && cur.AccessToken.Equal(subject) {
		subjectExpiry = cur.AccessTokenExpiry // the refreshed token's expiry
	}
	tok, exp, err := t.Exchange(ctx, subject, audience, scope, resource)
	if err != nil {
		return secret.Secret{}, time.Time{}, err
	}
	if !subjectExpiry.IsZero() && (exp.IsZero() || exp.After(subjectExpiry)) {
		exp = subjectExpiry
	}
	return tok, exp, nil
}

// ClientCredentials returns an access token for Gatehouse itself (OAuth 2.0
// client credentials) with the given scopes and optional audience, using the
// current client secret. Tokens are cached per (scopes, audience) and shared
// by all callers until RefreshBeforeExpiry before they expire; concurrent
// misses share one request.
func (t *Tokens) ClientCredentials(ctx context.Context, scopes []string, audience string) (secret.Secret, error) {
	sc := append([]string(nil), scopes...)
	sort.Strings(sc)
	key := strings.Join(sc, " ") + "\x00" + audience
	now := t.h.opts.Clock()
	t.ccMu.Lock()
	e, ok := t.ccCache[key]
	t.ccMu.Unlock()
	if ok && now.Before(e.expiry.Add(-t.h.opts.RefreshBeforeExpiry)) {
		return e.token, nil
	}
	ch := t.ccGroup.DoChan(key, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshLockTTL)
		defer cancel()
		var params url.Values
		if audience != "" {
			params = url.Values{"audience": {audience}}
		}
		cfg, err := t.ccConfig(sc, params)
		if err != nil {
			return nil, fmt.Errorf("client credentials: %w", ErrIdPUnavailable)
		}
		tok, err := cfg.Token(t.h.idpContext(rctx))
		if err != nil {
			return nil, t.classify(rctx, "client credentials", err)
		}
		e := ccEntry{token: secret.New(tok.AccessToken), expiry: ccExpiry(tok, t.h.opts.Clock())}
		if !e.expiry.IsZero() {
			t.ccMu.Lock()
			if t.ccCache == nil {
				t.ccCache = map[string]ccEntry{}
			}
			t.ccCache[key] = e
			t.ccMu.Unlock()
		}
		return e.token, nil
	})
	return awaitToken(ctx, ch, "client credentials token")
}

// ccConfig is built per use: the current client secret, or a fresh client
// assertion, authenticates the request (rotation takes effect).
func (t *Tokens) ccConfig(scopes []string, params url.Values) (*clientcredentials.Config, error) {
	ap, err := t.h.assertionParams()
	if err != nil {
		t.h.log.Error("client authentication", "error", err)
		return nil, err
	}
	if ap != nil {
		params = cloneValues(params)
		for k, v := range ap {
			params[k] = v
		}
	}
	return &clientcredentials.Config{
		ClientID:       t.h.opts.ClientID,
		ClientSecret:   t.h.clientSecret(),
		TokenURL:       t.h.endpoint.TokenURL,
		Scopes:         scopes,
		EndpointParams: params,
		AuthStyle:      t.h.endpoint.AuthStyle,
	}, nil
}

// classify maps an IdP token-endpoint error to ErrExchangeDenied (the IdP
// said no) or ErrIdPUnavailable, logging only a summary.
func (t *Tokens) classify(ctx context.Context, what string, err error) error {
	t.h.log.WarnContext(ctx, what+" failed", "error", describeOAuthError(err))
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
		return fmt.Errorf("%s: %w", what, ErrExchangeDenied)
	}
	return fmt.Errorf("%s: %w", what, ErrIdPUnavailable)
}

// ccExpiry reads expires_in with our clock (clientcredentials drops ExpiresIn).
func ccExpiry(tok *oauth2.Token, now time.Time) time.Time {
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		if v > 0 {
			return now.Add(time.Duration(v) * time.Second)
		}
	case string:
		if d, err := time.ParseDuration(v + "s"); err == nil && d > 0 {
			return now.Add(d)
		}
	}
	return tok.Expiry
}

// awaitToken waits for a shared (singleflight) token request, giving up when
// this caller's ctx ends; the request itself goes on for the others.
func awaitToken(ctx context.Context, ch <-chan singleflight.Result, what string) (secret.Secret, error) {
	select {
	case res := <-ch:
		if res.Err != nil {
			return secret.Secret{}, res.Err
		}
		return res.Val.(secret.Secret), nil
	case <-ctx.Done():
		return secret.Secret{}, fmt.Errorf("wait for %s: %w", what, ctx.Err())
	}
}

package idp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// LogoutTokenType is the JWT typ header of back-channel logout tokens.
const LogoutTokenType = "logout+jwt"

// LogoutTokenClaims describes a logout token for LogoutToken. Zero fields get valid defaults,
// so a test sets only what it wants to break.
type LogoutTokenClaims struct {
	Issuer    string    // default: the OP's issuer
	Audience  []string  // default: the first registered client's ID
	Subject   string    // optional (but one of Subject/SessionID is required by the spec)
	SessionID string    // sid
	IssuedAt  time.Time // default: now
	Expiry    time.Time // default: IssuedAt + 2m
	JTI       string    // default: random; reuse one to build a replay
	// Events defaults to {BackChannelLogoutEvent: {}}; OmitEvents drops the claim entirely.
	Events     map[string]any
	OmitEvents bool
	// Nonce, when set, is included: logout tokens must NOT carry a nonce.
	Nonce string
	// Type is the typ header (default LogoutTokenType); OmitType drops the header.
	Type     string
	OmitType bool
	// SignWithForeignKey signs with a key that is not in the OP's JWKS (same kid and alg), so
	// the signature cannot verify.
	SignWithForeignKey bool
	// Extra claims are applied last; a nil value deletes a claim (e.g. "iat": nil).
	Extra map[string]any
}

// LogoutToken mints a back-channel logout token signed with the OP's key (or a foreign one).
func (p *Provider) LogoutToken(c LogoutTokenClaims) (string, error) {
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	exp := c.Expiry
	if exp.IsZero() {
		exp = iat.Add(2 * time.Minute)
	}
	claims := map[string]any{
		"iss": c.Issuer,
		"iat": iat.Unix(),
		"exp": exp.Unix(),
		"jti": c.JTI,
	}
	if c.Issuer == "" {
		claims["iss"] = p.issuer
	}
	if c.JTI == "" {
		claims["jti"] = randomID()
	}
	aud := c.Audience
	if aud == nil {
		aud = []string{p.opts.Clients[0].ID}
	}
	if len(aud) == 1 {
		claims["aud"] = aud[0]
	} else {
		claims["aud"] = aud
	}
	if c.Subject != "" {
		claims["sub"] = c.Subject
	}
	if c.SessionID != "" {
		claims["sid"] = c.SessionID
	}
	if !c.OmitEvents {
		ev := c.Events
		if ev == nil {
			ev = map[string]any{BackChannelLogoutEvent: map[string]any{}}
		}
		claims["events"] = ev
	}
	if c.Nonce != "" {
		claims["nonce"] = c.Nonce
	}
	for k, v := range c.Extra {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	key := p.store.key
	if c.SignWithForeignKey {
		fk, err := p.foreignSigningKey()
		if err != nil {
			return "", err
		}
		key = fk
	}
	opts := &jose.SignerOptions{}
	if !c.OmitType {
		typ := c.Type
		if typ == "" {
			typ = LogoutTokenType
		}
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: p.store.keyID}}, opts)
	if err != nil {
		return "", fmt.Errorf("idp: logout token signer: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("idp: encode logout token claims: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("idp: sign logout token: %w", err)
	}
	return obj.CompactSerialize()
}

func (p *Provider) foreignSigningKey() (*rsa.PrivateKey, error) {
	p.foreignOnce.Do(func() {
		p.foreignKey, p.foreignErr = rsa.GenerateKey(rand.Reader, 2048)
	})
	if p.foreignErr != nil {
		return nil, fmt.Errorf("idp: generate foreign key: %w", p.foreignErr)
	}
	return p.foreignKey, nil
}

// EndSession ends every OP session of sub (as if the user signed out at the OP), revokes their
// tokens and sends back-channel logout tokens. It returns the ended session IDs (sid values)
// and any delivery failures.
func (p *Provider) EndSession(ctx context.Context, sub string) ([]string, error) {
	ended, err := p.store.endSessions(ctx, func(o *opSession) bool { return o.Subject == sub })
	ids := make([]string, 0, len(ended))
	for _, e := range ended {
		ids = append(ids, e.ID)
	}
	return ids, err
}

// SessionIDs returns the sid of every open OP session of sub.
func (p *Provider) SessionIDs(sub string) []string {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	var ids []string
	for _, s := range p.store.sessions {
		if s.Subject == sub {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// backChannelLogout POSTs one logout token per ended session to its client's
// BackChannelLogoutURI. Synchronous, so the end_session response (and EndSession) return only
// after the clients were told.
func (p *Provider) backChannelLogout(ctx context.Context, ended []endedSession) error {
	var errs []error
	for _, e := range ended {
		c, ok := p.store.clients[e.ClientID]
		if !ok || c.BackChannelLogoutURI == "" {
			continue
		}
		tok, err := p.LogoutToken(LogoutTokenClaims{Audience: []string{c.ID}, Subject: e.Subject, SessionID: e.ID})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := p.postLogoutToken(ctx, c.BackChannelLogoutURI, tok); err != nil {
			p.logger.Warn("back-channel logout delivery failed", "client_id", c.ID, "err", err)
			errs = append(errs, fmt.Errorf("back-channel logout to client %s: %w", c.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (p *Provider) postLogoutToken(ctx context.Context, uri, token string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	body := url.Values{"logout_token": {token}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.bcClient.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// errUserinfoSubject: userinfo describes another user than the ID token.
var errUserinfoSubject = errors.New("userinfo describes a different user than the ID token")

// mergeUserinfo adds the userinfo claims (read with tok) to claims; the ID
// token's claims win, since they are signed. It is a no-op when the IdP has
// no userinfo endpoint. The error never holds the IdP's answer.
func (h *Handler) mergeUserinfo(ctx context.Context, claims map[string]any, sub string, tok *oauth2.Token) error {
	if h.provider.UserInfoEndpoint() == "" {
		return nil
	}
	ui, err := h.provider.UserInfo(h.idpContext(ctx), oauth2.StaticTokenSource(tok))
	if err != nil {
		return errors.New("userinfo request failed") // the error may hold the IdP's body
	}
	if ui.Subject != sub {
		return errUserinfoSubject
	}
	extra := map[string]any{}
	if err := ui.Claims(&extra); err == nil {
		for k, v := range extra {
			if _, ok := claims[k]; !ok {
				claims[k] = v
			}
		}
	}
	return nil
}

// applyClaims stores claims (minus the token-binding ones) in s and the
// session fields derived from them.
func applyClaims(s *session.Session, claims map[string]any) {
	for _, k := range []string{"nonce", "at_hash", "c_hash"} {
		delete(claims, k)
	}
	s.Claims = claims
	if sid, _ := claims["sid"].(string); sid != "" {
		s.IdPSessionID = sid
	}
	s.ACR, _ = claims["acr"].(string)
	if at, ok := claims["auth_time"].(float64); ok {
		s.AuthTime = time.Unix(int64(at), 0)
	}
	s.AMR = s.AMR[:0]
	if amr, ok := claims["amr"].([]any); ok {
		for _, v := range amr {
			if str, ok := v.(string); ok {
				s.AMR = append(s.AMR, str)
			}
		}
	}
}

// storedIDTokenClaims reads the claims of an ID token that was verified when
// it was stored (so its signature is not checked again here).
func storedIDTokenClaims(raw string) (map[string]any, error) {
	jws, err := jose.ParseSigned(raw, supportedAlgs)
	if err != nil {
		return nil, errors.New("stored ID token is malformed")
	}
	claims := map[string]any{}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil {
		return nil, errors.New("stored ID token claims are not a JSON object")
	}
	return claims, nil
}

// refreshClaims recomputes the session's claims after a token refresh, so
// that policies never read claims older than the last refresh: from the new
// ID token when the IdP sent one (else the stored one) plus fresh userinfo
// read with the new access token. When userinfo fails, only the ID token's
// claims are kept (fail closed: a policy reading a userinfo claim denies
// rather than reading a stale value). A userinfo answer about another
// subject is an error: the caller ends the session.
func (h *Handler) refreshClaims(ctx context.Context, cur *session.Session, newIDClaims map[string]any, tok *oauth2.Token) error {
	base := newIDClaims
	if base == nil {
		if cur.IDToken.IsZero() {
			base = maps.Clone(cur.Claims)
		} else if c, err := storedIDTokenClaims(cur.IDToken.Reveal()); err == nil {
			base = c
		} else {
			base = maps.Clone(cur.Claims)
		}
	}
	if base == nil {
		base = map[string]any{}
	}
	claims := maps.Clone(base)
	if err := h.mergeUserinfo(ctx, claims, cur.Subject, tok); err != nil {
		if errors.Is(err, errUserinfoSubject) {
			return err
		}
		h.log.WarnContext(ctx, "userinfo after token refresh failed: keeping only the ID token's claims", "session", cur.ID)
		claims = maps.Clone(base)
	}
	applyClaims(cur, claims)
	return nil
}

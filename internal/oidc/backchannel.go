package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

const (
	backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"
	// logoutTokenLeeway absorbs clock skew between Gatehouse and the IdP.
	logoutTokenLeeway = 2 * time.Minute
	// maxLogoutTokenAge refuses logout tokens issued long ago even if their
	// exp is far away, so that the jti replay window stays bounded.
	maxLogoutTokenAge = 10 * time.Minute
)

// errLogoutToken is returned for every invalid logout token; the reason goes
// to the log, never to the response.
type errLogoutToken struct{ reason string }

func (e *errLogoutToken) Error() string { return "invalid logout token: " + e.reason }

func badLogoutToken(reason string) error { return &errLogoutToken{reason: reason} }

// logoutClaims is what remains of a valid logout token.
type logoutClaims struct {
	Subject, SessionID, JTI string
	replayTTL               time.Duration
}

// Backchannel handles POST /bff/backchannel (OIDC Back-Channel Logout 1.0):
// it validates the logout token fully and ends the sessions it names.
func (h *Handler) Backchannel(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		apierror.Write(w, http.StatusBadRequest, "invalid_request", "send logout_token as application/x-www-form-urlencoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		apierror.Write(w, http.StatusBadRequest, "invalid_request", "the request body is not a valid form")
		return
	}
	raw := r.PostForm["logout_token"]
	if len(raw) != 1 || raw[0] == "" {
		apierror.Write(w, http.StatusBadRequest, "invalid_request", "logout_token is required exactly once")
		return
	}
	lc, err := h.verifyLogoutToken(ctx, raw[0])
	if err != nil {
		h.log.WarnContext(ctx, "back-channel logout token rejected", "error", err)
		apierror.Write(w, http.StatusBadRequest, "invalid_request", "the logout token is invalid")
		return
	}
	first, err := h.opts.Sessions.Once(ctx, "logout-jti:"+hashKey(h.opts.Issuer+"\x00"+lc.JTI), lc.replayTTL)
	if err != nil {
		h.log.ErrorContext(ctx, "record logout token id", "error", err)
		apierror.Write(w, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable; retry later")
		return
	}
	if !first {
		h.log.WarnContext(ctx, "back-channel logout token replayed")
		apierror.Write(w, http.StatusBadRequest, "invalid_request", "the logout token was already used")
		return
	}
	var ended []string
	if lc.SessionID != "" {
		ended, err = h.opts.Sessions.EndByIdPSession(ctx, lc.SessionID, session.EndBackchannel)
	} else {
		ended, err = h.opts.Sessions.EndBySubject(ctx, lc.Subject, session.EndBackchannel)
	}
	if err != nil {
		h.log.ErrorContext(ctx, "end sessions for back-channel logout", "error", err)
		apierror.Write(w, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable; retry later")
		return
	}
	_ = h.audit(ctx, r, audit.Record{Event: audit.EventBackchannelLogout, Outcome: audit.OutcomeSuccess,
		Sub: lc.Subject, Reason: fmt.Sprintf("sessions_ended=%d", len(ended)), Sessions: ended})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// verifyLogoutToken checks everything Back-Channel Logout 1.0 section 2.6
// asks for. go-oidc checks signature, iss, aud, events presence, no nonce,
// jti, exp presence and sub-or-sid; we add typ, iat, exp/iat sanity with our
// clock, and that the event value is a JSON object.
func (h *Handler) verifyLogoutToken(ctx context.Context, raw string) (*logoutClaims, error) {
	if err := checkLogoutTyp(raw); err != nil {
		return nil, err
	}
	lt, err := h.logoutVerifier.VerifyLogout(h.idpContext(ctx), raw)
	if err != nil {
		return nil, badLogoutToken(describeVerifyError(err))
	}
	var extra struct {
		IAT    *json.Number               `json:"iat"`
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := lt.Claims(&extra); err != nil {
		return nil, badLogoutToken("claims are not a JSON object")
	}
	if extra.IAT == nil {
		return nil, badLogoutToken("iat missing")
	}
	ev := bytes.TrimSpace(extra.Events[backchannelEvent])
	if len(ev) == 0 || ev[0] != '{' {
		return nil, badLogoutToken("events lacks the back-channel logout event object")
	}
	now := h.opts.Clock()
	switch {
	case lt.IssuedAt.After(now.Add(logoutTokenLeeway)):
		return nil, badLogoutToken("iat in the future")
	case lt.IssuedAt.Before(now.Add(-maxLogoutTokenAge)):
		return nil, badLogoutToken("iat too old")
	case lt.Expiry.Before(now.Add(-logoutTokenLeeway)):
		return nil, badLogoutToken("expired")
	case lt.Expiry.Before(lt.IssuedAt):
		return nil, badLogoutToken("exp before iat")
	}
	// Remember the jti for as long as the token could still be accepted.
	until := lt.Expiry.Add(logoutTokenLeeway)
	if alt := lt.IssuedAt.Add(maxLogoutTokenAge + logoutTokenLeeway); alt.Before(until) {
		until = alt
	}
	ttl := until.Sub(now)
	if ttl < time.Minute {
		ttl = time.Minute
	}
	return &logoutClaims{Subject: lt.Subject, SessionID: lt.SessionID, JTI: lt.TokenID, replayTTL: ttl}, nil
}

// checkLogoutTyp enforces the explicit typing of logout tokens: when a typ
// header is present it must be logout+jwt (RFC 8725 section 3.11), so that
// an ID token or access token cannot be replayed as a logout token.
func checkLogoutTyp(raw string) error {
	jws, err := jose.ParseSigned(raw, supportedAlgs)
	if err != nil {
		return badLogoutToken("malformed JWS")
	}
	if len(jws.Signatures) != 1 {
		return badLogoutToken("want exactly one signature")
	}
	typ, present := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]
	if !present {
		return nil
	}
	s, ok := typ.(string)
	if !ok {
		return badLogoutToken("typ is not a string")
	}
	s = strings.ToLower(s)
	if s != "logout+jwt" && s != "application/logout+jwt" {
		return badLogoutToken(fmt.Sprintf("typ %q is not logout+jwt", truncate(s, 32)))
	}
	return nil
}

var supportedAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA,
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

package oidc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// Login starts the authorization code flow (GET /bff/login?returnUrl=/path).
func (h *Handler) Login(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ret, ok := h.returnURL(w, r, q)
	if !ok {
		return
	}
	prompt := q.Get("prompt")
	if prompt != "" && !slices.Contains(h.meta.PromptValues, prompt) {
		h.fail(w, r, http.StatusBadRequest, "unsupported_prompt", "the IdP does not list this prompt value in prompt_values_supported")
		return
	}
	h.startLogin(w, r, ret, prompt)
}

// startLogin sends the browser to the IdP's authorization endpoint (or PAR)
// with a fresh login state that returns to ret. prompt is sent when not "".
func (h *Handler) startLogin(w http.ResponseWriter, r *http.Request, ret, prompt string) {
	opts := make([]oauth2.AuthCodeOption, 0, 4)
	if prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", prompt))
	}
	ls := h.newLoginState(ret)
	// Bind the browser's current session (if any) to this login, so the
	// callback ends it even when SameSite hides the session cookie on the
	// IdP's cross-site redirect back. Only a live session, read with its
	// full handle, is recorded: the login state is sealed, so the callback
	// can trust the id.
	if old, err := h.sessionFromCookie(r.Context(), r, false); err == nil {
		ls.Previous = old.ID
	}
	h.redirectToIdP(w, r, ls, opts)
}

func (h *Handler) newLoginState(ret string) loginState {
	return loginState{
		State:     randomString(32),
		Nonce:     randomString(32),
		Verifier:  oauth2.GenerateVerifier(),
		ReturnURL: ret,
		Created:   h.opts.Clock().Unix(),
	}
}

// StartHandoff starts a login that ends at Options.Handoff. keep receives
// the login's state before the browser is redirected to the IdP, so that
// the caller can keep its pending request server-side, keyed by it (the
// IdP's redirect back is a cross-site navigation: nothing may depend on a
// SameSite=Strict cookie). A keep error answers 503. Without browser, the
// session goes to FinishLogin and the browser's own session stays as it is;
// with browser, the login is the browser's own (its session and cookie, as
// at /bff/login) and FinishBrowserLogin answers instead of a redirect.
func (h *Handler) StartHandoff(w http.ResponseWriter, r *http.Request, browser bool, keep func(ctx context.Context, state string) error) {
	if h.opts.Handoff == nil {
		h.fail(w, r, http.StatusNotFound, "not_found", "this Gatehouse has no OAuth front door")
		return
	}
	// Each call writes a pending request to the store before anyone signed
	// in: the same per-client and overall budget as PAR pushes bounds it.
	if status := h.parLimit.allow(r); status != 0 {
		w.Header().Set("Retry-After", "10")
		h.fail(w, r, status, "too_many_logins", "too many sign-ins were started; wait a moment and try again")
		return
	}
	ls := h.newLoginState("/")
	ls.Handoff, ls.Browser = true, browser
	if browser {
		if old, err := h.sessionFromCookie(r.Context(), r, false); err == nil {
			ls.Previous = old.ID
		}
	}
	if err := keep(r.Context(), ls.State); err != nil {
		h.log.ErrorContext(r.Context(), "keep pending authorization", "error", err)
		h.fail(w, r, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable; try again later")
		return
	}
	h.redirectToIdP(w, r, ls, nil)
}

// redirectToIdP sends the browser to the IdP's authorization endpoint (via
// PAR when used), with the login state in its cookie.
func (h *Handler) redirectToIdP(w http.ResponseWriter, r *http.Request, ls loginState, opts []oauth2.AuthCodeOption) {
	opts = append(opts, oidc.Nonce(ls.Nonce), oauth2.S256ChallengeOption(ls.Verifier))
	target := h.oauthConfig().AuthCodeURL(ls.State, opts...)
	if h.usePAR {
		if status := h.parLimit.allow(r); status != 0 {
			w.Header().Set("Retry-After", "10")
			h.fail(w, r, status, "too_many_logins", "too many sign-ins were started; wait a moment and try again")
			return
		}
		var err error
		if target, err = h.pushAuthorizationRequest(h.idpContext(r.Context()), target); err != nil {
			h.log.WarnContext(r.Context(), "pushed authorization request failed", "error", err)
			h.fail(w, r, http.StatusBadGateway, "idp_unavailable", "the identity provider did not accept the login request; try again later")
			return
		}
	}
	h.setLoginCookie(w, h.sealLoginState(ls))
	w.Header().Set("Cache-Control", "no-store")
	redirect(w, target)
}

// Callback completes the code flow (GET /bff/callback). Every failure
// answers 4xx/5xx without a session or session cookie, and clears the
// login-state cookie; no request value is echoed.
func (h *Handler) Callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	h.clearLoginCookie(w) // one-time, whatever happens next
	q := r.URL.Query()
	c, err := r.Cookie(h.loginCookie)
	if err != nil {
		h.loginFailed(w, r, http.StatusBadRequest, "login_state_missing", "no login in progress (or it expired): start again at /bff/login")
		return
	}
	ls, err := h.openLoginState(c.Value, h.opts.Clock())
	if err != nil {
		h.loginFailed(w, r, http.StatusBadRequest, "login_state_invalid", "the login state is invalid or expired: start again at /bff/login")
		return
	}
	if len(q["state"]) != 1 || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(ls.State)) != 1 {
		h.loginFailed(w, r, http.StatusBadRequest, "state_mismatch", "the callback does not belong to this browser's login: start again at /bff/login")
		return
	}
	// RFC 9207: when the IdP says it sends iss, it must be there and match;
	// when it is present anyway, it must match. Checked before any token
	// request so that a mix-up attacker never receives the code.
	if iss, present := q["iss"]; (h.meta.ISSParameter && !present) || (present && (len(iss) != 1 || iss[0] != h.opts.Issuer)) {
		h.loginFailed(w, r, http.StatusBadRequest, "issuer_mismatch", "the authorization response did not come from the configured identity provider")
		return
	}
	if q.Get("error") != "" {
		if ls.Handoff && h.opts.Handoff != nil {
			// The app waits at its redirect URI: the refusal goes there
			// (RFC 6749 §4.1.2.1), not to a page in the system browser.
			code := safeErrorCode(q.Get("error"))
			_ = h.audit(ctx, r, audit.Record{Event: audit.EventLoginFailed, Outcome: audit.OutcomeFailure, Reason: "login_denied:" + code, Status: http.StatusFound})
			if h.opts.Handoff.FailLogin(w, r, ls.State, code) {
				return
			}
		}
		if ls.ReturnURL == silentCallbackPath {
			// A silent login the IdP could not complete (login_required…)
			// is an answer, not a failure: the iframe reports it to the SPA.
			_ = h.audit(ctx, r, audit.Record{Event: audit.EventLoginFailed, Outcome: audit.OutcomeFailure, Reason: "silent_login:" + safeErrorCode(q.Get("error")), Status: http.StatusFound})
			redirect(w, silentCallbackPath)
			return
		}
		h.loginFailed(w, r, http.StatusBadRequest, "login_denied", "the identity provider did not complete the login",
			safeErrorCode(q.Get("error")))
		return
	}
	code := q.Get("code")
	if code == "" || len(q["code"]) != 1 {
		h.loginFailed(w, r, http.StatusBadRequest, "code_missing", "the authorization response carries no code")
		return
	}

	idpCtx := h.idpContext(ctx)
	authOpts, err := h.authCodeOptions()
	if err != nil {
		h.log.ErrorContext(ctx, "client authentication", "error", err)
		h.loginFailed(w, r, http.StatusServiceUnavailable, "client_auth_unavailable", "Gatehouse cannot authenticate to the identity provider; see its log")
		return
	}
	tok, err := h.oauthConfig().Exchange(idpCtx, code, append(authOpts, oauth2.VerifierOption(ls.Verifier))...)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			h.loginFailed(w, r, http.StatusBadRequest, "code_rejected", "the identity provider rejected the authorization code: start again at /bff/login",
				safeErrorCode(re.ErrorCode))
			return
		}
		h.log.WarnContext(ctx, "code exchange failed", "error", describeOAuthError(err))
		h.loginFailed(w, r, http.StatusBadGateway, "idp_unavailable", "the identity provider could not be reached; try again later")
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		h.loginFailed(w, r, http.StatusBadGateway, "id_token_missing", "the identity provider returned no ID token")
		return
	}
	idt, err := h.verifier.Verify(idpCtx, rawID)
	if err != nil {
		h.log.WarnContext(ctx, "ID token rejected", "error", describeVerifyError(err))
		h.loginFailed(w, r, http.StatusBadRequest, "id_token_invalid", "the ID token failed validation")
		return
	}
	// OIDC Core 3.1.3.7: with several audiences, azp must name us; when
	// present it must name us anyway.
	var azp struct {
		AZP string `json:"azp"`
	}
	_ = idt.Claims(&azp)
	if (len(idt.Audience) > 1 || azp.AZP != "") && azp.AZP != h.opts.ClientID {
		h.loginFailed(w, r, http.StatusBadRequest, "id_token_invalid", "the ID token was issued to another client")
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(ls.Nonce)) != 1 {
		h.loginFailed(w, r, http.StatusBadRequest, "nonce_mismatch", "the ID token does not belong to this login")
		return
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			h.loginFailed(w, r, http.StatusBadRequest, "at_hash_mismatch", "the access token does not match the ID token")
			return
		}
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		h.loginFailed(w, r, http.StatusBadRequest, "id_token_invalid", "the ID token claims cannot be read")
		return
	}
	if err := h.mergeUserinfo(ctx, claims, idt.Subject, tok); err != nil {
		if errors.Is(err, errUserinfoSubject) {
			h.loginFailed(w, r, http.StatusBadRequest, "userinfo_subject_mismatch", "userinfo describes a different user than the ID token")
			return
		}
		h.log.WarnContext(ctx, "userinfo request failed")
		h.loginFailed(w, r, http.StatusBadGateway, "idp_unavailable", "the identity provider's userinfo endpoint failed; try again later")
		return
	}

	now := h.opts.Clock()
	s := &session.Session{
		Subject:           idt.Subject,
		AccessToken:       secret.New(tok.AccessToken),
		RefreshToken:      secret.New(tok.RefreshToken),
		IDToken:           secret.New(rawID),
		AccessTokenExpiry: tokenExpiry(tok, now),
		TokenType:         tok.Type(),
		Created:           now,
		LastSeen:          now,
	}
	applyClaims(s, claims)
	s.Scope, _ = tok.Extra("scope").(string)

	// The state is marked used only now, after the IdP accepted the code
	// (which it issues once and binds to our PKCE verifier): a flood of
	// forged or replayed callbacks writes nothing to the store.
	first, err := h.opts.Sessions.Once(ctx, "login-state:"+hashKey(ls.State), h.opts.LoginStateTTL+time.Minute)
	if err != nil {
		h.log.ErrorContext(ctx, "record login state use", "error", err)
		h.loginFailed(w, r, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable; try again later")
		return
	}
	if !first {
		h.loginFailed(w, r, http.StatusBadRequest, "state_replayed", "this login response was already used: start again at /bff/login")
		return
	}
	if ls.Handoff && !ls.Browser {
		if h.opts.Handoff == nil {
			h.loginFailed(w, r, http.StatusBadRequest, "login_state_invalid", "this login cannot be completed here: start again")
			return
		}
		// A native app's session: the browser's own session (if any) stays
		// as it is, and no cookie is set. Audited here, like every login.
		if err := h.audit(ctx, r, audit.Record{Event: audit.EventLogin, Outcome: audit.OutcomeSuccess, Sub: s.Subject, Reason: "oauth_front_door"}); err != nil {
			h.fail(w, r, http.StatusServiceUnavailable, "audit_unavailable", "the sign-in could not be recorded; try again later")
			return
		}
		h.opts.Handoff.FinishLogin(w, r, ls.State, s)
		return
	}
	// A session that existed before this login is ended: the new one gets a
	// fresh handle (no fixation) and the old one must not stay valid. It is
	// found by the cookie when the browser sent it, and by the id bound at
	// /bff/login when SameSite kept it from this cross-site redirect.
	h.endPrevious(ctx, r, ls.Previous)
	hnd, err := h.opts.Sessions.Create(ctx, s)
	if err != nil {
		h.log.ErrorContext(ctx, "create session", "error", err)
		h.loginFailed(w, r, http.StatusServiceUnavailable, "session_store_unavailable", "the session could not be stored; try again later")
		return
	}
	if err := h.audit(ctx, r, audit.Record{Event: audit.EventLogin, Outcome: audit.OutcomeSuccess, Sub: s.Subject, Session: hnd.ID()}); err != nil {
		// A login that cannot be audited does not happen.
		if derr := h.opts.Sessions.End(ctx, hnd.ID(), session.EndDeleted); derr != nil {
			h.log.ErrorContext(ctx, "remove unaudited session", "error", derr)
		}
		h.fail(w, r, http.StatusServiceUnavailable, "audit_unavailable", "the sign-in could not be recorded; try again later")
		return
	}
	h.setSessionCookie(w, hnd.Cookie().Reveal(), s.AbsoluteExpiry)
	w.Header().Set("Cache-Control", "no-store")
	if ls.Handoff && h.opts.Handoff != nil {
		h.opts.Handoff.FinishBrowserLogin(w, r, ls.State, hnd, s)
		return
	}
	redirect(w, ls.ReturnURL)
}

// endPrevious ends the browser's earlier sessions at a new sign-in: the one
// its cookie names (when sent) and the one bound to the login state.
func (h *Handler) endPrevious(ctx context.Context, r *http.Request, bound string) {
	ids := make([]string, 0, 2)
	if old, err := h.sessionFromCookie(ctx, r, false); err == nil {
		ids = append(ids, old.ID)
	}
	if bound != "" && !slices.Contains(ids, bound) {
		ids = append(ids, bound)
	}
	for _, id := range ids {
		if err := h.opts.Sessions.End(ctx, id, session.EndReplaced); err != nil {
			h.log.WarnContext(ctx, "end previous session at login", "error", err)
			continue
		}
		_ = h.audit(ctx, r, audit.Record{Event: audit.EventLogout, Outcome: audit.OutcomeSuccess, Session: id, Reason: "replaced_by_login"})
	}
}

// Logout ends the session (GET /bff/logout?sid=<public id>&returnUrl=/path).
// The sid makes a cross-site link unable to log the user out: without a sid
// that matches the session the browser's cookie names, logout changes
// nothing — no session is ended and no cookie is touched — and answers 4xx.
// (A Strict cookie is not sent on a cross-site link: answering that request
// with a cookie-clearing Set-Cookie would log the user out all the same.)
func (h *Handler) Logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	ret, ok := h.returnURL(w, r, q)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	sids := q["sid"]
	if len(sids) != 1 || sids[0] == "" {
		h.fail(w, r, http.StatusBadRequest, "sid_required", "logout needs the session's sid once (see logout_url in /bff/user)")
		return
	}
	s, err := h.sessionFromCookie(ctx, r, false)
	switch {
	case errors.Is(err, session.ErrUnavailable):
		h.fail(w, r, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable; try again later")
		return
	case err != nil:
		// No live session to match the sid against: nothing is ended and,
		// because the sid cannot be checked, nothing else changes either.
		h.fail(w, r, http.StatusBadRequest, "not_signed_in", "no session to end: this browser is not signed in")
		return
	}
	if subtle.ConstantTimeCompare([]byte(sids[0]), []byte(s.ID)) != 1 {
		h.fail(w, r, http.StatusForbidden, "sid_mismatch", "the sid does not belong to the current session")
		return
	}
	if err := h.opts.Sessions.End(ctx, s.ID, session.EndLogout); err != nil {
		h.log.ErrorContext(ctx, "delete session at logout", "error", err)
		h.fail(w, r, http.StatusServiceUnavailable, "session_store_unavailable", "the session could not be ended; try again later")
		return
	}
	h.clearSessionCookie(w)
	if !s.RefreshToken.IsZero() {
		if err := h.revoke(h.idpContext(ctx), s.RefreshToken.Reveal(), "refresh_token"); err != nil {
			// The session is gone either way; an unrevoked refresh token
			// stays unusable without our client secret.
			h.log.WarnContext(ctx, "revoke refresh token at logout", "error", err)
		}
	}
	_ = h.audit(ctx, r, audit.Record{Event: audit.EventLogout, Outcome: audit.OutcomeSuccess, Sub: s.Subject, Session: s.ID})
	if h.meta.EndSessionEndpoint != "" {
		u, err := url.Parse(h.meta.EndSessionEndpoint)
		if err == nil {
			v := u.Query()
			// The one documented place a token reaches the browser: the
			// session is already deleted, and the IdP needs the hint.
			if !s.IDToken.IsZero() {
				v.Set("id_token_hint", s.IDToken.Reveal())
			}
			v.Set("client_id", h.opts.ClientID)
			v.Set("post_logout_redirect_uri", h.opts.PostLogoutRedirectURL)
			u.RawQuery = v.Encode()
			redirect(w, u.String())
			return
		}
	}
	redirect(w, ret)
}

// sessionFromCookie loads the session named by the request's session cookie.
func (h *Handler) sessionFromCookie(ctx context.Context, r *http.Request, slide bool) (*session.Session, error) {
	hnd, err := h.handleFromCookie(r)
	if err != nil {
		return nil, err
	}
	s, err := h.opts.Sessions.Load(ctx, hnd, slide)
	if err == nil && s.Native != nil {
		// A native app's handle is usable only with its DPoP key, never as
		// a cookie.
		return nil, session.ErrNotFound
	}
	return s, err
}

func (h *Handler) handleFromCookie(r *http.Request) (session.Handle, error) {
	c, err := r.Cookie(h.opts.CookieName)
	if err != nil {
		return session.Handle{}, session.ErrNotFound
	}
	return session.ParseHandle(c.Value)
}

// sessionError answers a failed session load: 503 when the store is down,
// otherwise 401 and the stale cookie is cleared.
func (h *Handler) sessionError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, session.ErrUnavailable) {
		apierror.Write(w, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable; try again later")
		return
	}
	if !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrInvalidHandle) {
		h.log.ErrorContext(r.Context(), "load session", "error", err)
		apierror.Write(w, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable; try again later")
		return
	}
	if _, cerr := r.Cookie(h.opts.CookieName); cerr == nil {
		h.clearSessionCookie(w)
	}
	apierror.Write(w, http.StatusUnauthorized, "not_signed_in", "no valid session: sign in at /bff/login")
}

// loginFailed audits and answers a failed login. idpError, when given, is
// the IdP's (filtered) error code, appended to the reason.
func (h *Handler) loginFailed(w http.ResponseWriter, r *http.Request, status int, code, msg string, idpError ...string) {
	reason := code
	if len(idpError) > 0 && idpError[0] != "" {
		reason += ":" + idpError[0]
	}
	_ = h.audit(r.Context(), r, audit.Record{Event: audit.EventLoginFailed, Outcome: audit.OutcomeFailure, Reason: reason, Status: status})
	h.fail(w, r, status, code, msg)
}

// fail writes a JSON error for API clients and a small HTML page for
// browser navigations. msg is always a constant written by us.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if h.wantsJSON(r) {
		apierror.Write(w, status, code, msg)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'none'")
	w.WriteHeader(status)
	_, _ = w.Write([]byte("<!doctype html><meta charset=utf-8><title>Sign-in problem</title><h1>" +
		html.EscapeString(http.StatusText(status)) + "</h1><p>" + html.EscapeString(msg) +
		"</p><p><a href=\"/\">Back to the application</a></p>\n"))
}

// redirect answers 302 with only a Location header: unlike http.Redirect it
// writes no HTML body repeating the URL (which, at logout, holds the ID token
// hint).
func redirect(w http.ResponseWriter, target string) {
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusFound)
}

func (h *Handler) wantsJSON(r *http.Request) bool {
	if r.Header.Get(h.opts.CSRFHeader) != "" {
		return true
	}
	if r.Header.Get("Sec-Fetch-Mode") == "navigate" {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "application/json") || !strings.Contains(r.Header.Get("Accept"), "text/html")
}

func secondsUntil(t, now time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	d := t.Sub(now)
	if d < 0 {
		return 0
	}
	return int64(d / time.Second)
}

// tokenExpiry computes the access token's expiry from expires_in with our
// clock (x/oauth2 uses the wall clock), falling back to its Expiry.
func tokenExpiry(tok *oauth2.Token, now time.Time) time.Time {
	if tok.ExpiresIn > 0 {
		return now.Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	if v, ok := tok.Extra("expires_in").(float64); ok && v > 0 {
		return now.Add(time.Duration(v) * time.Second)
	}
	return tok.Expiry
}

// hashKey turns a secret-ish value (state, jti) into a store key that does
// not reveal it.
func hashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// describeOAuthError summarises an x/oauth2 error without the IdP's
// description or body (which may echo request values).
func describeOAuthError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		return (&idpError{Endpoint: "token", Status: status, Code: safeErrorCode(re.ErrorCode)}).Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return redactURLError(ue).Error()
	}
	return "token request failed"
}

// describeVerifyError names the class of a go-oidc verification failure.
func describeVerifyError(err error) string {
	var exp *oidc.TokenExpiredError
	if errors.As(err, &exp) {
		return "token expired"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "signature"):
		return "bad signature"
	case strings.Contains(msg, "audience"):
		return "wrong audience"
	case strings.Contains(msg, "issued by a different provider"):
		return "wrong issuer"
	case strings.Contains(msg, "malformed"):
		return "malformed token"
	}
	return "invalid token"
}

// returnURL reads the optional returnUrl parameter (default "/"). It answers
// 400 itself and reports false when the value is repeated or not a local path.
func (h *Handler) returnURL(w http.ResponseWriter, r *http.Request, q url.Values) (string, bool) {
	vs, ok := q["returnUrl"]
	if !ok {
		return h.opts.PathPrefix + "/", true
	}
	if len(vs) != 1 {
		h.fail(w, r, http.StatusBadRequest, "invalid_return_url", "give returnUrl once")
		return "", false
	}
	ret, err := ValidateReturnURL(vs[0])
	if p := h.opts.PathPrefix; err == nil && p != "" && ret != p && !strings.HasPrefix(ret, p+"/") && !strings.HasPrefix(ret, p+"?") {
		// A path-bound frontend's login never ends on another frontend's pages.
		err = ErrInvalidReturnURL
	}
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "invalid_return_url", ErrInvalidReturnURL.Error())
		return "", false
	}
	return ret, true
}

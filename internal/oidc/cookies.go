package oidc

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// loginStateAAD binds sealed login state to its purpose: a value sealed for
// another cookie or record under the same keys does not open here.
var loginStateAAD = []byte("gatehouse login-state v1")

// loginState is what the login-state cookie carries between /bff/login and
// /bff/callback, sealed with the cookie key ring.
type loginState struct {
	State     string `json:"s"`
	Nonce     string `json:"n"`
	Verifier  string `json:"v"`
	ReturnURL string `json:"r"`
	Created   int64  `json:"c"` // unix seconds
	// Handoff: the login was started for Options.Handoff (the OAuth front
	// door); its session goes there, not into the browser's cookie.
	Handoff bool `json:"h,omitempty"`
	// Browser: a Handoff login that is the browser's own sign-in (an agent
	// client's consent needs the user's browser session).
	Browser bool `json:"b,omitempty"`
	// Previous is the public id of the session the browser had when the
	// login started; the callback ends it.
	Previous string `json:"p,omitempty"`
}

// errLoginState covers every unusable login-state cookie: missing, tampered,
// sealed with an unknown key, malformed or expired.
var errLoginState = errors.New("login state missing, expired or invalid")

func (h *Handler) sealLoginState(ls loginState) string {
	pt, _ := json.Marshal(ls) // cannot fail: strings and an int
	return base64.RawURLEncoding.EncodeToString(h.opts.CookieKeys.Seal(pt, loginStateAAD))
}

func (h *Handler) openLoginState(v string, now time.Time) (loginState, error) {
	if v == "" || len(v) > 4096 {
		return loginState{}, errLoginState
	}
	ct, err := base64.RawURLEncoding.Strict().DecodeString(v)
	if err != nil {
		return loginState{}, errLoginState
	}
	pt, err := h.opts.CookieKeys.Open(ct, loginStateAAD)
	if err != nil {
		return loginState{}, errLoginState
	}
	var ls loginState
	if err := json.Unmarshal(pt, &ls); err != nil || ls.State == "" || ls.Nonce == "" || ls.Verifier == "" {
		return loginState{}, errLoginState
	}
	created := time.Unix(ls.Created, 0)
	if now.Before(created.Add(-time.Minute)) || now.After(created.Add(h.opts.LoginStateTTL)) {
		return loginState{}, errLoginState
	}
	if _, err := ValidateReturnURL(ls.ReturnURL); err != nil {
		return loginState{}, errLoginState
	}
	return ls, nil
}

func (h *Handler) setLoginCookie(w http.ResponseWriter, value string) {
	http.SetCookie(w, &http.Cookie{
		Name:     h.loginCookie,
		Value:    value,
		Path:     h.cookiePath(),
		MaxAge:   int(h.opts.LoginStateTTL / time.Second),
		HttpOnly: true,
		Secure:   h.secureCookies,
		// Lax: the callback is a top-level cross-site navigation from the IdP.
		SameSite: http.SameSiteLaxMode,
	})
}

func (h *Handler) clearLoginCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: h.loginCookie, Value: "", Path: h.cookiePath(), MaxAge: -1,
		HttpOnly: true, Secure: h.secureCookies, SameSite: http.SameSiteLaxMode})
}

// setSessionCookie sets the session cookie; it lives until the session's
// absolute expiry (the server enforces idle expiry).
func (h *Handler) setSessionCookie(w http.ResponseWriter, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     h.opts.CookieName,
		Value:    value,
		Path:     h.cookiePath(),
		Expires:  expires,
		HttpOnly: true,
		Secure:   h.secureCookies,
		SameSite: h.opts.CookieSameSite,
	})
}

func (h *Handler) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: h.opts.CookieName, Value: "", Path: h.cookiePath(), MaxAge: -1,
		HttpOnly: true, Secure: h.secureCookies, SameSite: h.opts.CookieSameSite})
}

// cookiePath is the Path of Gatehouse's cookies: a path-bound frontend's
// prefix, else "/".
func (h *Handler) cookiePath() string {
	if h.opts.PathPrefix != "" {
		return h.opts.PathPrefix
	}
	return "/"
}

// randomString returns n random bytes, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on supported platforms (Go 1.24+ panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

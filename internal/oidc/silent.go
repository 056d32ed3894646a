package oidc

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// silentCallbackPath is where a silent login ends, Duende BFF's name for it.
const silentCallbackPath = "/bff/silent-login-callback"

// SilentLogin starts a login with prompt=none (GET /bff/silent-login), as
// Duende BFF does: the SPA loads it in a hidden iframe, the IdP answers at
// once (a code when its own session still stands, login_required otherwise),
// and the flow ends at /bff/silent-login-callback, which tells the parent
// page the outcome with postMessage. The SPA never navigates away.
func (h *Handler) SilentLogin(w http.ResponseWriter, r *http.Request) {
	if !h.promptNoneSupported() {
		h.fail(w, r, http.StatusBadRequest, "unsupported_prompt", "the IdP does not list prompt=none in prompt_values_supported: silent login is not possible with it")
		return
	}
	h.startLogin(w, r, silentCallbackPath, "none")
}

// promptNoneSupported: an IdP that does not publish prompt_values_supported
// (it is optional) is assumed to implement prompt=none, which OIDC Core
// requires of every OP.
func (h *Handler) promptNoneSupported() bool {
	if len(h.meta.PromptValues) == 0 {
		return true
	}
	for _, p := range h.meta.PromptValues {
		if p == "none" {
			return true
		}
	}
	return false
}

// SilentLoginCallback answers GET /bff/silent-login-callback with a page that
// posts {source: "bff-silent-login", isLoggedIn} to its parent, addressed to
// Gatehouse's own origin only (another origin framing it learns nothing, and
// frame-ancestors 'self' keeps it from being framed cross-origin at all).
// isLoggedIn says whether a valid session stands now.
func (h *Handler) SilentLoginCallback(w http.ResponseWriter, r *http.Request) {
	_, err := h.sessionFromCookie(r.Context(), r, false)
	if err != nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrInvalidHandle) {
		// The store is down: say "not signed in" rather than nothing, so the
		// SPA does not wait; the log says why.
		h.log.WarnContext(r.Context(), "silent login: load session", "error", err)
	}
	nonce := randomString(16)
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	// The page exists to be framed by the SPA: same origin only.
	hd.Set("X-Frame-Options", "SAMEORIGIN")
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; frame-ancestors 'self'; base-uri 'none'")
	_, _ = w.Write([]byte("<!doctype html><meta charset=utf-8><title>Silent login</title><script nonce=\"" + nonce + "\">" +
		"window.parent.postMessage({source:'bff-silent-login',isLoggedIn:" + strconv.FormatBool(err == nil) + "}," +
		strconv.Quote(h.opts.PublicURL) + ");</script>\n"))
}

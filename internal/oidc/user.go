package oidc

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// Claim types Gatehouse adds to /bff/user besides the user's own claims.
// The bff: names and meanings are Duende BFF's, so SPAs written for it read
// them unchanged; gatehouse: names are Gatehouse's additions.
const (
	ClaimLogoutURL        = "bff:logout_url"
	ClaimSessionExpiresIn = "bff:session_expires_in"
	// ClaimAbsoluteExpiresIn is the time left until the absolute timeout,
	// however active the user is (bff:session_expires_in also counts the
	// idle timeout, and is the one to act on).
	ClaimAbsoluteExpiresIn = "gatehouse:session_absolute_expires_in"
)

// UserClaim is one entry of the /bff/user answer: Duende's ClaimRecord.
type UserClaim struct {
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// User answers GET /bff/user in Duende BFF's shape: a JSON array of
// {"type", "value"} — the user's claims (a multi-valued claim as one entry
// per value, sorted by type so the answer is stable), then bff:logout_url and
// bff:session_expires_in. Never a token. 401 when nobody is signed in;
// ?slide=false reads the session without extending its idle timeout.
//
// bff:session_state is not sent: Gatehouse does not use the OIDC Session
// Management iframe, so it has no session_state to report.
func (h *Handler) User(w http.ResponseWriter, r *http.Request) {
	slide := r.URL.Query().Get("slide") != "false"
	s, err := h.sessionFromCookie(r.Context(), r, slide)
	if err != nil {
		h.sessionError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_ = json.NewEncoder(w).Encode(userClaims(s, h.opts.Clock(), h.opts.PathPrefix))
}

// userClaims builds the /bff/user array for s at now; prefix is a
// path-bound frontend's prefix (for bff:logout_url), "" otherwise.
func userClaims(s *session.Session, now time.Time, prefix string) []UserClaim {
	keys := make([]string, 0, len(s.Claims))
	for k := range s.Claims {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]UserClaim, 0, len(keys)+3)
	for _, k := range keys {
		if vs, ok := s.Claims[k].([]any); ok {
			for _, v := range vs {
				out = append(out, UserClaim{Type: k, Value: v})
			}
			continue
		}
		out = append(out, UserClaim{Type: k, Value: s.Claims[k]})
	}
	expires := s.AbsoluteExpiry
	if !s.IdleExpiry.IsZero() && (expires.IsZero() || s.IdleExpiry.Before(expires)) {
		expires = s.IdleExpiry
	}
	return append(out,
		UserClaim{Type: ClaimLogoutURL, Value: prefix + "/bff/logout?sid=" + url.QueryEscape(s.ID)}, // prefix: a path-bound frontend's
		UserClaim{Type: ClaimSessionExpiresIn, Value: secondsUntil(expires, now)},
		UserClaim{Type: ClaimAbsoluteExpiresIn, Value: secondsUntil(s.AbsoluteExpiry, now)},
	)
}

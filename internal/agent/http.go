package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// BrowserSession resolves the signed-in browser session of a /bff/agents
// request: the session cookie and the CSRF check (X-CSRF header, Origin,
// Sec-Fetch-Site), exactly as on API routes. When the request does not
// pass, it has written the refusal (401, 403, 503) and returns ok false.
type BrowserSession func(w http.ResponseWriter, r *http.Request) (h session.Handle, s *session.Session, ok bool)

// TokensPath is where the token endpoints live.
const TokensPath = "/bff/agents/tokens"

// Register adds POST and GET /bff/agents/tokens and DELETE
// /bff/agents/tokens/{id} to mux. Every one needs a browser session (cookie
// and CSRF header); an agent token never opens them.
func (b *Broker) Register(mux *http.ServeMux, browser BrowserSession, allowed PolicyFunc) {
	h := &handlers{b: b, browser: browser, allowed: allowed}
	mux.Handle("POST "+TokensPath, h.guard(h.issue))
	mux.Handle("GET "+TokensPath, h.guard(h.list))
	mux.Handle("DELETE "+TokensPath+"/{id}", h.guard(h.revoke))
}

type handlers struct {
	b       *Broker
	browser BrowserSession
	allowed PolicyFunc
}

// IsAgentAuthorization reports whether an Authorization header value
// presents an agent token (scheme Bearer, case-insensitive, then gha_).
func IsAgentAuthorization(v string) bool {
	scheme, rest, ok := strings.Cut(v, " ")
	return ok && strings.EqualFold(scheme, "Bearer") && strings.HasPrefix(strings.TrimLeft(rest, " "), TokenPrefix)
}

func (h *handlers) guard(next func(http.ResponseWriter, *http.Request, session.Handle, *session.Session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An agent can never mint, list or revoke tokens, even next to a
		// cookie it might have obtained.
		for _, v := range r.Header.Values("Authorization") {
			if IsAgentAuthorization(v) {
				apierror.Write(w, http.StatusForbidden, "agent_forbidden", "agent tokens cannot be used on /bff/* endpoints")
				return
			}
		}
		hd, s, ok := h.browser(w, r)
		if !ok {
			return
		}
		next(w, r, hd, s)
	})
}

type grantJSON struct {
	ID      string         `json:"id"`
	Token   string         `json:"token,omitempty"`
	Name    string         `json:"name"`
	Routes  []string       `json:"routes"`
	Methods []string       `json:"methods"`
	Scope   []RouteMethods `json:"scope"`
	Created *time.Time     `json:"created_at,omitempty"`
	Expires time.Time      `json:"expires_at"`
}

func toJSON(g *Grant) grantJSON {
	c := g.Created.UTC()
	return grantJSON{ID: g.ID, Name: g.Name, Routes: g.Routes(), Methods: g.Methods(), Scope: g.Scope,
		Created: &c, Expires: g.Expires.UTC()}
}

func (h *handlers) issue(w http.ResponseWriter, r *http.Request, hd session.Handle, s *session.Session) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	if err != nil {
		apierror.Write(w, http.StatusRequestEntityTooLarge, "body_too_large", "the request body is larger than 8 KiB")
		return
	}
	req, err := ParseRequest(body)
	if err != nil {
		var bad *BadRequestError
		if errors.As(err, &bad) {
			apierror.Write(w, http.StatusBadRequest, "invalid_request", bad.Msg)
			return
		}
		apierror.Write(w, http.StatusBadRequest, "invalid_request", "the request body could not be read")
		return
	}
	iss, err := h.b.Issue(r.Context(), hd, s, req, h.allowed)
	switch {
	case errors.Is(err, ErrNothingDelegable):
		apierror.Write(w, http.StatusForbidden, "nothing_delegable",
			"none of the routes and methods asked for may be delegated to an agent by this session (see agents.delegable_routes and the routes' policies)")
		return
	case errors.Is(err, ErrTooMany):
		apierror.Write(w, http.StatusConflict, "agent_token_limit",
			"this session holds the most agent tokens it may (agents.max_tokens_per_session); revoke one first")
		return
	case err != nil:
		h.fail(r.Context(), w, "issue agent token", err)
		return
	}
	out := toJSON(&iss.Grant)
	out.Created = nil
	out.Token = iss.Token.Value().Reveal() // shown once; only a hash of its id is kept
	writeJSON(w, http.StatusCreated, out)
}

func (h *handlers) list(w http.ResponseWriter, r *http.Request, _ session.Handle, s *session.Session) {
	gs, err := h.b.List(r.Context(), s.ID)
	if err != nil {
		h.fail(r.Context(), w, "list agent tokens", err)
		return
	}
	out := make([]grantJSON, 0, len(gs))
	for i := range gs {
		out = append(out, toJSON(&gs[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
}

func (h *handlers) revoke(w http.ResponseWriter, r *http.Request, _ session.Handle, s *session.Session) {
	err := h.b.Revoke(r.Context(), s.ID, r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotFound):
		apierror.Write(w, http.StatusNotFound, "agent_token_not_found", "this session has no live agent token with that id")
		return
	case err != nil:
		h.fail(r.Context(), w, "revoke agent token", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revoked": 1})
}

func (h *handlers) fail(ctx context.Context, w http.ResponseWriter, op string, err error) {
	h.b.log.ErrorContext(ctx, op, "error", err)
	if errors.Is(err, ErrUnavailable) {
		apierror.Write(w, http.StatusServiceUnavailable, "agents_unavailable", "agent tokens are unavailable right now (store, policy or audit log); retry shortly")
		return
	}
	apierror.Write(w, http.StatusInternalServerError, "internal_error", op+" failed; see the Gatehouse log")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Package admin serves the operator API on the admin listener: listing and
// revoking server-side sessions, behind a bearer token.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/agent"
	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// Sessions is what the admin API needs of the session manager.
type Sessions interface {
	List(ctx context.Context, sub string) ([]session.Info, error)
	// Revoke ends one session and reports whether it existed.
	Revoke(ctx context.Context, id string) (bool, error)
	DeleteBySubject(ctx context.Context, sub string) (int, error)
}

// Agents is what the admin API needs of the agent broker (nil when the
// agents section is not configured).
type Agents interface {
	ListBySubject(ctx context.Context, sub string) ([]agent.Grant, error)
	RevokeByID(ctx context.Context, id string) (agent.Grant, error)
}

// Auditor records revocations.
type Auditor interface {
	Log(ctx context.Context, rec audit.Record) error
}

// Options configures the admin API.
type Options struct {
	// Token is the bearer token; read on every request so that rotating the
	// file it comes from takes effect without a restart. Nil disables /admin/*.
	Token    *secret.Value
	Sessions Sessions
	// Agents serves /admin/agents; nil leaves those paths 404.
	Agents Agents
	Audit  Auditor
	Client string
	// Clients are the process's frontends (their config client names);
	// list and revoke take ?client= to act on one of them only. Empty means
	// just Client.
	Clients []string
	Logger  *slog.Logger
	// ListenAddr is the admin listener's configured host:port. Requests
	// whose Host names anything but it, an IP address or localhost are
	// refused (DNS rebinding, see CheckHost).
	ListenAddr string
}

// Register adds the admin routes to mux.
func Register(mux *http.ServeMux, o Options) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{o: o, host: hostChecker(o.ListenAddr)}
	mux.Handle("GET /admin/sessions", a.auth(a.list))
	mux.Handle("DELETE /admin/sessions/{id}", a.auth(a.revokeOne))
	mux.Handle("POST /admin/sessions/revoke", a.auth(a.revokeSubject))
	if o.Agents != nil {
		mux.Handle("GET /admin/agents", a.auth(a.listAgents))
		mux.Handle("DELETE /admin/agents/{id}", a.auth(a.revokeAgent))
	}
	// Profiles of the running process for performance work, behind the
	// admin token like everything under /admin/ (they show code paths and
	// sizes, not request data; a CPU profile costs a few per cent while it
	// runs). The handlers are mounted explicitly: nothing serves
	// http.DefaultServeMux, where importing net/http/pprof also puts them.
	pp := http.NewServeMux()
	pp.HandleFunc("/debug/pprof/", pprof.Index)
	pp.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	pp.HandleFunc("/debug/pprof/profile", pprof.Profile)
	pp.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	pp.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("GET /admin/debug/pprof/", a.auth(http.StripPrefix("/admin", pp).ServeHTTP))
	mux.Handle("/admin/", a.auth(func(w http.ResponseWriter, r *http.Request) {
		apierror.Write(w, http.StatusNotFound, "not_found", "no such admin endpoint: see docs/admin.md")
	}))
}

type api struct {
	o    Options
	host func(string) bool
}

// CheckHost refuses (421) requests to the admin listener whose Host header
// is not the configured listen host, an IP literal or localhost. A web page
// on an attacker's domain that re-binds its DNS name to 127.0.0.1 sends its
// own name as Host; IP literals and localhost cannot be re-bound that way.
// Browsers cannot send the admin bearer token for such a page, but the
// health and metrics endpoints need no token, and the check costs nothing.
func CheckHost(next http.Handler, listenAddr string) http.Handler {
	ok := hostChecker(listenAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok(r.Host) {
			apierror.Write(w, http.StatusMisdirectedRequest, "wrong_host", "the admin listener answers only to its configured address, an IP address or localhost")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostChecker returns the Host test of CheckHost for listenAddr.
func hostChecker(listenAddr string) func(string) bool {
	configured, _, err := net.SplitHostPort(listenAddr)
	if err != nil {
		configured = listenAddr
	}
	configured = normHost(configured)
	return func(hostHeader string) bool {
		h, _, err := net.SplitHostPort(hostHeader)
		if err != nil {
			h = hostHeader // no port
		}
		h = normHost(h)
		switch {
		case h == "":
			return false
		case h == "localhost" || strings.HasSuffix(h, ".localhost"):
			return true // RFC 6761: always loopback, never resolved by DNS
		case configured != "" && h == configured:
			return true
		}
		_, err = netip.ParseAddr(h)
		return err == nil
	}
}

func normHost(h string) string {
	h = strings.TrimPrefix(strings.TrimSuffix(h, "]"), "[")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func (a *api) auth(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.host(r.Host) {
			apierror.Write(w, http.StatusMisdirectedRequest, "wrong_host", "the admin listener answers only to its configured address, an IP address or localhost")
			return
		}
		want := a.o.Token.Get()
		if want.IsZero() {
			apierror.Write(w, http.StatusForbidden, "admin_disabled", "the admin API is disabled: set admin.token in the configuration")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Compare digests so the comparison takes the same time whatever the
		// lengths (ConstantTimeCompare returns early on a length mismatch).
		gh, wh := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want.Reveal()))
		if !ok || subtle.ConstantTimeCompare(gh[:], wh[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse-admin"`)
			apierror.Write(w, http.StatusUnauthorized, "admin_unauthorized", "send the admin token as Authorization: Bearer <admin.token>")
			return
		}
		next(w, r)
	})
}

type sessionJSON struct {
	ID             string    `json:"id"`
	Subject        string    `json:"sub"`
	IdPSessionID   string    `json:"idp_sid,omitempty"`
	Client         string    `json:"client"`
	Created        time.Time `json:"created_at"`
	LastSeen       time.Time `json:"last_seen_at"`
	IdleExpiry     time.Time `json:"idle_expires_at"`
	AbsoluteExpiry time.Time `json:"expires_at"`
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		apierror.Write(w, http.StatusBadRequest, "sub_required", "name the user: /admin/sessions?sub=<subject>")
		return
	}
	client, ok := a.client(w, r)
	if !ok {
		return
	}
	infos, err := a.sessionsOf(r.Context(), sub, client)
	if err != nil {
		a.storeError(w, "list sessions", err)
		return
	}
	out := make([]sessionJSON, 0, len(infos))
	for _, in := range infos {
		out = append(out, sessionJSON{in.ID, in.Subject, in.IdPSessionID, in.Frontend, in.Created.UTC(), in.LastSeen.UTC(), in.IdleExpiry.UTC(), in.AbsoluteExpiry.UTC()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (a *api) revokeOne(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	existed, err := a.o.Sessions.Revoke(r.Context(), id)
	if errors.Is(err, session.ErrNotFound) {
		existed, err = false, nil
	}
	if err != nil {
		a.storeError(w, "revoke session", err)
		return
	}
	if !existed {
		// Nothing was revoked, so nothing is recorded as revoked.
		apierror.Write(w, http.StatusNotFound, "session_not_found", "no live session has that id")
		return
	}
	a.audit(r, "", id, 1)
	writeJSON(w, http.StatusOK, map[string]any{"revoked": 1})
}

func (a *api) revokeSubject(w http.ResponseWriter, r *http.Request) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		apierror.Write(w, http.StatusBadRequest, "sub_required", "name the user: POST /admin/sessions/revoke?sub=<subject>")
		return
	}
	client, ok := a.client(w, r)
	if !ok {
		return
	}
	var n int
	var err error
	if client == "" {
		n, err = a.o.Sessions.DeleteBySubject(r.Context(), sub)
	} else {
		// One frontend's sessions only: end them one by one.
		var infos []session.Info
		if infos, err = a.sessionsOf(r.Context(), sub, client); err == nil {
			for _, in := range infos {
				var existed bool
				if existed, err = a.o.Sessions.Revoke(r.Context(), in.ID); err != nil {
					break
				}
				if existed {
					n++
				}
			}
		}
	}
	if err != nil {
		a.storeError(w, "revoke sessions", err)
		return
	}
	a.auditClient(r, sub, "", n, client)
	writeJSON(w, http.StatusOK, map[string]any{"revoked": n})
}

// client reads the optional ?client= filter; it answers 400 itself for a
// frontend the process does not have.
func (a *api) client(w http.ResponseWriter, r *http.Request) (string, bool) {
	c := r.URL.Query().Get("client")
	if c == "" {
		return "", true
	}
	known := a.o.Clients
	if len(known) == 0 {
		known = []string{a.o.Client}
	}
	for _, k := range known {
		if k == c {
			return c, true
		}
	}
	apierror.Write(w, http.StatusBadRequest, "unknown_client", "no frontend has that client name; the frontends are: "+strings.Join(known, ", "))
	return "", false
}

// sessionsOf lists sub's sessions, only client's when client is set.
func (a *api) sessionsOf(ctx context.Context, sub, client string) ([]session.Info, error) {
	infos, err := a.o.Sessions.List(ctx, sub)
	if err != nil || client == "" {
		return infos, err
	}
	out := infos[:0]
	for _, in := range infos {
		if in.Frontend == client {
			out = append(out, in)
		}
	}
	return out, nil
}

func (a *api) audit(r *http.Request, sub, id string, n int) {
	a.auditClient(r, sub, id, n, "")
}

func (a *api) auditClient(r *http.Request, sub, id string, n int, client string) {
	if client == "" && len(a.o.Clients) <= 1 {
		client = a.o.Client
	}
	if a.o.Audit == nil {
		return
	}
	reason := "admin_revoke"
	if sub != "" {
		reason = "admin_revoke_subject"
	}
	if err := a.o.Audit.Log(r.Context(), audit.Record{
		Event: audit.EventSessionRevoked, Outcome: audit.OutcomeSuccess, Reason: reason,
		Sub: sub, Session: id, Actor: []string{"admin"}, Client: client,
		Method: r.Method, Path: r.URL.Path, Status: http.StatusOK,
	}); err != nil {
		a.o.Logger.Error("audit admin revocation", "err", err, "revoked", n)
	}
}

func (a *api) storeError(w http.ResponseWriter, op string, err error) {
	a.o.Logger.Error(op, "err", err)
	if errors.Is(err, session.ErrUnavailable) {
		apierror.Write(w, http.StatusServiceUnavailable, "store_unavailable", "the session store cannot be reached; retry when /readyz reports it")
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

type agentJSON struct {
	ID        string               `json:"id"`
	Name      string               `json:"name"`
	Subject   string               `json:"sub"`
	SessionID string               `json:"session_id"`
	Routes    []string             `json:"routes"`
	Methods   []string             `json:"methods"`
	Scope     []agent.RouteMethods `json:"scope"`
	Created   time.Time            `json:"created_at"`
	Expires   time.Time            `json:"expires_at"`
}

// listAgents lists a user's live agent grants (never a token value: the
// broker keeps none).
func (a *api) listAgents(w http.ResponseWriter, r *http.Request) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		apierror.Write(w, http.StatusBadRequest, "sub_required", "name the user: /admin/agents?sub=<subject>")
		return
	}
	gs, err := a.o.Agents.ListBySubject(r.Context(), sub)
	if err != nil {
		a.agentError(w, "list agent grants", err)
		return
	}
	out := make([]agentJSON, 0, len(gs))
	for i := range gs {
		g := &gs[i]
		out = append(out, agentJSON{g.ID, g.Name, g.Subject, g.SessionID, g.Routes(), g.Methods(), g.Scope, g.Created.UTC(), g.Expires.UTC()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": out})
}

// revokeAgent ends one grant; the broker audits it with the admin as actor.
func (a *api) revokeAgent(w http.ResponseWriter, r *http.Request) {
	if _, err := a.o.Agents.RevokeByID(r.Context(), r.PathValue("id")); err != nil {
		if errors.Is(err, agent.ErrNotFound) {
			apierror.Write(w, http.StatusNotFound, "agent_token_not_found", "no live agent token has that id")
			return
		}
		a.agentError(w, "revoke agent grant", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revoked": 1})
}

func (a *api) agentError(w http.ResponseWriter, op string, err error) {
	a.o.Logger.Error(op, "err", err)
	if errors.Is(err, agent.ErrUnavailable) {
		apierror.Write(w, http.StatusServiceUnavailable, "store_unavailable", "the session store cannot be reached; retry when /readyz reports it")
		return
	}
	apierror.Write(w, http.StatusInternalServerError, "internal_error", op+" failed; see the Gatehouse log")
}

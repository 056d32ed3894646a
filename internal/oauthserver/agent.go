package oauthserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// AgentPrefix starts agent tokens (internal/agent); the revocation
// endpoint tells them from native handles by it.
const AgentPrefix = "gha_"

// ConsentPath receives the consent form of an agent client.
const ConsentPath = "/bff/oauth/consent"

// consentTTL bounds the time a consent page stays answerable.
const consentTTL = 10 * time.Minute

// RouteScope is one route an agent would be granted and its methods.
type RouteScope struct {
	Route   string
	Methods []string
}

// AgentToken is a freshly granted agent token; Value goes to the client once.
type AgentToken struct {
	Value   secret.Secret
	GrantID string
	// SessionID is the delegating browser session's public id.
	SessionID string
	Expires   time.Time
	Routes    []string
}

// ErrNothingGranted is returned by AgentGrants.Grant when none of the
// routes can be delegated (the user's own policy, the delegable routes).
var ErrNothingGranted = errors.New("oauthserver: nothing could be delegated")

// AgentGrants issues and revokes agent grants on a user's browser session
// (internal/agent's Broker, adapted by the gateway).
type AgentGrants interface {
	// Offer is what a grant of routes would hold for session s: each
	// delegable route with its methods, and the lifetime.
	Offer(s *session.Session, routes []string) ([]RouteScope, time.Duration)
	// Grant delegates routes of the browser session to the client.
	Grant(ctx context.Context, h session.Handle, s *session.Session, clientID string, routes []string) (AgentToken, error)
	// RevokeID ends a grant of a session (a reused code's).
	RevokeID(ctx context.Context, sessionID, grantID string) error
	// RevokeToken ends the grant behind token if it was issued to
	// clientID; found reports whether such a grant existed.
	RevokeToken(ctx context.Context, token, clientID string) (found bool, err error)
}

// BrowserSession returns the user's browser session the request's cookie
// names (never a native session): session.ErrNotFound when there is none,
// session.ErrUnavailable when the store cannot be asked.
type BrowserSession func(r *http.Request) (session.Handle, *session.Session, error)

// consent is an agent authorization waiting for the user's decision, kept
// under a hash of its id; CSRF is the form's token.
type consent struct {
	Pending   pending `json:"pending"`
	SessionID string  `json:"session_id"`
	CSRF      string  `json:"csrf"`
}

func consentKey(id string) string { return "oauth-consent:" + hashString(id) }

func randomString() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

var consentPage = template.Must(template.New("consent").Funcs(template.FuncMap{"join": strings.Join}).Parse(`<!doctype html>
<html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Allow {{.Client}}?</title>
<main>
<h1>Allow <code>{{.Client}}</code> to act for you?</h1>
<p>Signed in as <strong>{{.User}}</strong>. If you approve, <code>{{.Client}}</code> may call these APIs as you:</p>
<ul>{{range .Scope}}<li><strong>{{.Route}}</strong>: {{join .Methods ", "}}</li>{{end}}</ul>
<p>For {{.Lifetime}} at most, and never after you sign out.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="consent" value="{{.ID}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</main>
`))

// authorizeAgent answers an agent client's authorization request: the
// consent page for the user's browser session, after an IdP login when
// there is none.
func (s *Server) authorizeAgent(w http.ResponseWriter, r *http.Request, p pending) {
	fail := func(code, desc string) {
		s.authError(w, r, &AuthError{Code: code, Description: desc, Redirect: true, RedirectURI: p.RedirectURI, State: p.State})
	}
	if s.o.Agents == nil || s.o.BrowserSession == nil {
		fail(ErrUnauthorizedClient, "agent clients are not served by this Gatehouse")
		return
	}
	h, sess, err := s.o.BrowserSession(r)
	switch {
	case errors.Is(err, session.ErrUnavailable):
		fail(ErrTemporarilyUnavailable, "the session store is unavailable; try again later")
		return
	case err != nil:
		body, merr := json.Marshal(p)
		if merr != nil {
			fail(ErrServerError, "the request could not be kept")
			return
		}
		s.o.Login.StartHandoff(w, r, true, func(ctx context.Context, state string) error {
			ok, err := s.o.Sessions.Put(ctx, pendingKey(state), string(body), PendingTTL)
			if err == nil && !ok {
				err = errors.New("pending authorization key collided")
			}
			return err
		})
		return
	}
	s.showConsent(w, r, p, h, sess)
}

// FinishBrowserLogin implements oidc.Handoff: the user signed in (the
// browser's session and cookie are set) for a pending agent authorization.
func (s *Server) FinishBrowserLogin(w http.ResponseWriter, r *http.Request, state string, h session.Handle, sess *session.Session) {
	raw, found, err := s.o.Sessions.Take(r.Context(), pendingKey(state))
	var p pending
	switch {
	case err != nil:
		oauthPage(w, http.StatusServiceUnavailable, "The session store is unavailable; try again later.")
		return
	case !found || json.Unmarshal([]byte(raw), &p) != nil:
		oauthPage(w, http.StatusBadRequest, "The authorization request expired or was already answered: start again from the application.")
		return
	}
	if c, ok := s.o.Registry.Lookup(p.ClientID); !ok || c.Kind != KindAgent || !c.RedirectAllowed(p.RedirectURI) {
		oauthPage(w, http.StatusBadRequest, "The client or its redirect URI is no longer registered.")
		return
	}
	s.showConsent(w, r, p, h, sess)
}

func (s *Server) showConsent(w http.ResponseWriter, r *http.Request, p pending, _ session.Handle, sess *session.Session) {
	fail := func(code, desc string) {
		s.authError(w, r, &AuthError{Code: code, Description: desc, Redirect: true, RedirectURI: p.RedirectURI, State: p.State})
	}
	scope, ttl := s.o.Agents.Offer(sess, p.Scopes)
	if len(scope) == 0 {
		fail(ErrAccessDenied, "none of the requested routes can be delegated")
		return
	}
	id, csrf := randomString(), randomString()
	body, err := json.Marshal(consent{Pending: p, SessionID: sess.ID, CSRF: csrf})
	if err == nil {
		var ok bool
		ok, err = s.o.Sessions.Put(r.Context(), consentKey(id), string(body), consentTTL)
		if err == nil && !ok {
			err = errors.New("consent id collided")
		}
	}
	if err != nil {
		s.o.Logger.ErrorContext(r.Context(), "keep consent", "error", err)
		fail(ErrTemporarilyUnavailable, "the session store is unavailable; try again later")
		return
	}
	user, _ := sess.Claims["email"].(string)
	if user == "" {
		user, _ = sess.Claims["name"].(string)
	}
	if user == "" {
		user = sess.Subject
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The page must not be framed (clickjacking the Approve button), cached
	// or scripted.
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	noStore(h)
	w.WriteHeader(http.StatusOK)
	_ = consentPage.Execute(w, map[string]any{"Client": p.ClientID, "User": user, "Scope": scope,
		"Lifetime": ttl.Round(time.Second).String(), "Action": ConsentPath, "ID": id, "CSRF": csrf})
}

// consentDecision answers POST /bff/oauth/consent.
func (s *Server) consentDecision(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if o := r.Header.Get("Origin"); (o != "" && o != s.origin) || r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		oauthPage(w, http.StatusForbidden, "The decision did not come from this site's consent page.")
		return
	}
	form, terr := readForm(w, r)
	if terr != nil {
		oauthPage(w, http.StatusBadRequest, "The decision is not a valid form.")
		return
	}
	for _, v := range form {
		if len(v) > 1 {
			oauthPage(w, http.StatusBadRequest, "A field is given more than once.")
			return
		}
	}
	raw, found, err := s.o.Sessions.Take(ctx, consentKey(form.Get("consent")))
	var c consent
	switch {
	case err != nil:
		oauthPage(w, http.StatusServiceUnavailable, "The session store is unavailable; try again later.")
		return
	case !found || json.Unmarshal([]byte(raw), &c) != nil:
		oauthPage(w, http.StatusBadRequest, "This consent expired or was already answered: start again from the application.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(form.Get("csrf")), []byte(c.CSRF)) != 1 {
		oauthPage(w, http.StatusForbidden, "The consent form's token is missing or wrong: start again from the application.")
		return
	}
	h, sess, err := s.o.BrowserSession(r)
	if err != nil || sess.ID != c.SessionID {
		oauthPage(w, http.StatusForbidden, "The consent belongs to another sign-in: start again from the application.")
		return
	}
	p := c.Pending
	fail := func(code, desc string) {
		s.authError(w, r, &AuthError{Code: code, Description: desc, Redirect: true, RedirectURI: p.RedirectURI, State: p.State})
	}
	cl, ok := s.o.Registry.Lookup(p.ClientID)
	if !ok || cl.Kind != KindAgent || !cl.RedirectAllowed(p.RedirectURI) {
		oauthPage(w, http.StatusBadRequest, "The client or its redirect URI is no longer registered.")
		return
	}
	switch form.Get("decision") {
	case "deny":
		_ = s.o.Auditor.Log(ctx, audit.Record{Event: audit.EventOAuthCodeIssued, Outcome: audit.OutcomeFailure, Reason: "consent_denied",
			Sub: sess.Subject, Session: sess.ID, Actor: []string{"client:" + cl.ID}, Client: s.o.Client, Method: r.Method, Path: r.URL.Path})
		fail(ErrAccessDenied, "the user denied the request")
		return
	case "approve":
	default:
		oauthPage(w, http.StatusBadRequest, "Choose approve or deny.")
		return
	}
	tok, err := s.o.Agents.Grant(ctx, h, sess, cl.ID, p.Scopes)
	switch {
	case errors.Is(err, ErrNothingGranted):
		fail(ErrAccessDenied, "none of the requested routes can be delegated")
		return
	case err != nil:
		s.o.Logger.ErrorContext(ctx, "agent grant", "error", err)
		fail(ErrTemporarilyUnavailable, "the grant could not be made; try again later")
		return
	}
	code, id, key, err := NewCode()
	var sealed []byte
	if err == nil {
		g := &CodeGrant{ClientID: cl.ID, RedirectURI: p.RedirectURI, CodeChallenge: p.CodeChallenge, DPoPJKT: p.DPoPJKT,
			Scopes: tok.Routes, Resource: p.Resource, Expires: s.o.Now().Add(CodeTTL), Subject: tok.Value.Reveal(),
			GrantID: tok.GrantID, GrantSession: tok.SessionID, TokenExpires: tok.Expires}
		sealed, err = g.Seal(id, key)
	}
	if err == nil {
		var ok bool
		ok, err = s.o.Sessions.Put(ctx, "oauth-code:"+id, base64.RawURLEncoding.EncodeToString(sealed), CodeTTL+time.Minute)
		if err == nil && !ok {
			err = errors.New("code id collided")
		}
	}
	if err == nil {
		err = s.o.Auditor.Log(ctx, audit.Record{Event: audit.EventOAuthCodeIssued, Outcome: audit.OutcomeSuccess, Reason: "consent_approved",
			Sub: sess.Subject, Session: sess.ID, Actor: []string{"client:" + cl.ID, "agent:" + tok.GrantID}, Client: s.o.Client,
			Route: strings.Join(tok.Routes, ","), Method: r.Method, Path: r.URL.Path})
	}
	if err != nil {
		s.o.Logger.ErrorContext(ctx, "issue authorization code", "error", err)
		_ = s.o.Agents.RevokeID(ctx, tok.SessionID, tok.GrantID)
		fail(ErrTemporarilyUnavailable, "the authorization could not be completed; try again later")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", SuccessURL(p.RedirectURI, code, p.State, s.issuer))
	w.WriteHeader(http.StatusFound)
}

// agentToken answers a redeemed agent code: the agent token, Bearer (agent
// tokens are not DPoP-bound).
func (s *Server) agentToken(w http.ResponseWriter, r *http.Request, c *Client, g *CodeGrant, codeID string) {
	ctx := r.Context()
	if _, err := s.o.Sessions.Put(ctx, "oauth-redeemed:"+codeID, "agent:"+g.GrantSession+"/"+g.GrantID, redeemedTTL); err != nil {
		_ = s.o.Agents.RevokeID(ctx, g.GrantSession, g.GrantID)
		s.tokenError(w, r, &TokenError{Status: http.StatusServiceUnavailable, Code: ErrTemporarilyUnavailable, Description: "the session store is unavailable; try again later"}, c.ID, "")
		return
	}
	if err := s.o.Auditor.Log(ctx, audit.Record{Event: audit.EventOAuthToken, Outcome: audit.OutcomeSuccess,
		Session: g.GrantSession, Actor: []string{"client:" + c.ID, "agent:" + g.GrantID}, Client: s.o.Client, Method: r.Method, Path: r.URL.Path, Status: http.StatusOK}); err != nil {
		_ = s.o.Agents.RevokeID(ctx, g.GrantSession, g.GrantID)
		s.tokenError(w, r, &TokenError{Status: http.StatusServiceUnavailable, Code: ErrTemporarilyUnavailable, Description: "the token could not be recorded; try again later"}, "", "")
		return
	}
	noStore(w.Header())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(TokenResponse{AccessToken: g.Subject, TokenType: "Bearer",
		ExpiresIn: max(int64(g.TokenExpires.Sub(s.o.Now())/time.Second), 1), Scope: strings.Join(g.Scopes, " ")})
}

// oauthPage is a small page of our own for errors the user sees in the
// browser (never echoing request values).
func oauthPage(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	noStore(h)
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<!doctype html><meta charset=utf-8><title>Authorization problem</title><h1>%s</h1><p>%s</p>",
		htmlEscape(http.StatusText(status)), htmlEscape(msg))
}

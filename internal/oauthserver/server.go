package oauthserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/dpop"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// NativePrefix starts every native handle (access token) Gatehouse issues,
// so secret scanners recognise a leaked one.
const NativePrefix = "ghn_"

// PendingTTL bounds the time between GET /bff/oauth/authorize and the IdP's
// callback (the login state's lifetime).
const PendingTTL = 10 * time.Minute

// redeemedTTL is how long a redeemed code is remembered, so that a second
// redemption can revoke what the first produced (RFC 6749 §4.1.2).
const redeemedTTL = 10 * time.Minute

// maxFormBytes bounds token and revocation request bodies.
const maxFormBytes = 16 << 10

// Sessions is the part of session.Manager the front door uses.
type Sessions interface {
	Create(ctx context.Context, s *session.Session) (session.Handle, error)
	Load(ctx context.Context, h session.Handle, slide bool) (*session.Session, error)
	Update(ctx context.Context, h session.Handle, s *session.Session) error
	Delete(ctx context.Context, id string) error
	Put(ctx context.Context, key, value string, ttl time.Duration) (bool, error)
	Take(ctx context.Context, key string) (string, bool, error)
}

// Login starts an IdP login whose session comes back to FinishLogin
// (oidc.Handler.StartHandoff).
type Login interface {
	StartHandoff(w http.ResponseWriter, r *http.Request, browser bool, keep func(ctx context.Context, state string) error)
}

// Auditor takes the front door's audit records (*audit.Logger).
type Auditor interface {
	Log(ctx context.Context, rec audit.Record) error
}

// Options configure a Server.
type Options struct {
	// PublicURL is the frontend's public_url: the issuer and the protected
	// resource (no trailing slash added or kept).
	PublicURL *url.URL
	Registry  *Registry
	// Routes are the route names a client may be granted (scopes).
	Routes   []string
	Sessions Sessions
	Login    Login
	DPoP     *dpop.Verifier
	Auditor  Auditor
	// Agents and BrowserSession serve agent clients (consent, agent
	// grants); nil when there are none.
	Agents         AgentGrants
	BrowserSession BrowserSession
	// Client names the frontend in audit records.
	Client string
	Now    func() time.Time
	Logger *slog.Logger
}

// Server is Gatehouse's OAuth 2.1 authorization server for native apps:
// metadata, authorize, token and revocation endpoints, and the check of
// DPoP-bound handles on API requests (Identify).
type Server struct {
	o        Options
	issuer   string // public_url as a URL parser writes it, no trailing slash
	origin   string // scheme://host[:port]
	pub      url.URL
	tokenURL *url.URL
	asMeta   []byte
	prMeta   []byte
	prURL    string
}

// New builds the server; every option but Logger and Now is required.
func New(o Options) (*Server, error) {
	if o.PublicURL == nil || o.Registry == nil || o.Sessions == nil || o.Login == nil || o.DPoP == nil || o.Auditor == nil {
		return nil, errors.New("oauthserver: public URL, registry, sessions, login, DPoP verifier and auditor are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	pub := *o.PublicURL
	pub.Path = strings.TrimSuffix(pub.Path, "/")
	pub.RawPath = ""
	s := &Server{o: o, issuer: pub.String(), origin: pub.Scheme + "://" + pub.Host, pub: pub}
	s.tokenURL, _ = url.Parse(s.issuer + TokenPath)
	var err error
	if s.asMeta, err = json.Marshal(NewASMetadata(s.issuer, o.Routes)); err != nil {
		return nil, fmt.Errorf("encode authorization server metadata: %w", err)
	}
	pr := NewPRMetadata(s.issuer, o.Routes)
	// Native handles are always bound; agent tokens are Bearer tokens.
	pr.DPoPBoundAccessTokensRequired = !o.Registry.HasKind(KindAgent)
	if s.prMeta, err = json.Marshal(pr); err != nil {
		return nil, fmt.Errorf("encode protected resource metadata: %w", err)
	}
	s.prURL = MetadataURL(s.origin, pub.Path, PRMetadataPath)
	return s, nil
}

// Issuer is the metadata's issuer, byte for byte as redirects carry it.
func (s *Server) Issuer() string { return s.issuer }

// ResourceMetadataURL is the RFC 9728 document's URL (for resource_metadata
// in WWW-Authenticate).
func (s *Server) ResourceMetadataURL() string { return s.prURL }

// Register adds the endpoints to mux. The RFC 8414 and RFC 9728 documents
// live at the well-known paths, with a path-bound issuer's path inserted
// after them (RFC 8414 §3.1).
func (s *Server) Register(mux *http.ServeMux) {
	path := strings.TrimPrefix(s.issuer, s.origin)
	mux.HandleFunc("GET "+ASMetadataPath+path, s.document(s.asMeta))
	mux.HandleFunc("GET "+PRMetadataPath+path, s.document(s.prMeta))
	mux.HandleFunc("GET "+AuthorizePath, s.authorize)
	mux.HandleFunc("POST "+TokenPath, s.token)
	mux.HandleFunc("POST "+RevokePath, s.revoke)
	if s.o.Agents != nil {
		mux.HandleFunc("POST "+ConsentPath, s.consentDecision)
	}
}

func (s *Server) document(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Access-Control-Allow-Origin", "*") // public metadata; browser-based clients read it
		_, _ = w.Write(body)
	}
}

// pending is an authorization request waiting for the IdP login to finish,
// kept in the session store under a hash of the login state.
type pending struct {
	ClientID      string   `json:"client_id"`
	RedirectURI   string   `json:"redirect_uri"`
	State         string   `json:"state,omitempty"`
	CodeChallenge string   `json:"code_challenge"`
	Scopes        []string `json:"scopes"`
	DPoPJKT       string   `json:"dpop_jkt,omitempty"`
	Resource      string   `json:"resource,omitempty"`
}

func pendingKey(state string) string { return "oauth-pending:" + hashString(state) }

// hashString keys store entries by a hash of a secret value, so a store
// dump yields no usable state, code or consent id.
func hashString(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorize answers GET /bff/oauth/authorize. A native client always gets
// a session of its own: the IdP login runs (the IdP's own single sign-on
// makes it quick when the user is signed in there), and FinishLogin issues
// the code.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ar, aerr := ParseAuthorize(r.URL.Query(), s.o.Registry, s.issuer)
	if aerr != nil {
		s.authError(w, r, aerr)
		return
	}
	p := pending{ClientID: ar.Client.ID, RedirectURI: ar.RedirectURI, State: ar.State, CodeChallenge: ar.CodeChallenge,
		Scopes: s.grantable(ar.Client, ar.Scopes), DPoPJKT: ar.DPoPJKT, Resource: ar.Resource}
	if ar.Client.Kind == KindAgent {
		s.authorizeAgent(w, r, p)
		return
	}
	body, err := json.Marshal(p)
	if err != nil {
		s.authError(w, r, &AuthError{Code: ErrServerError, Description: "the request could not be kept", Redirect: true, RedirectURI: ar.RedirectURI, State: ar.State})
		return
	}
	s.o.Login.StartHandoff(w, r, false, func(ctx context.Context, state string) error {
		ok, err := s.o.Sessions.Put(ctx, pendingKey(state), string(body), PendingTTL)
		if err == nil && !ok {
			err = errors.New("pending authorization key collided")
		}
		return err
	})
}

// grantable narrows the requested scopes to the routes the client may
// reach; a request naming none of them (e.g. only "openid") gets all of them.
func (s *Server) grantable(c *Client, requested []string) []string {
	allowed := c.Routes
	if len(allowed) == 0 {
		allowed = s.o.Routes
	}
	out := Narrow(requested, allowed)
	if len(out) == 0 {
		out = Narrow(nil, allowed)
	}
	return out
}

// authError answers an authorization request error: at the redirect URI
// when it is trusted (with iss, RFC 9207), otherwise as a page of our own.
func (s *Server) authError(w http.ResponseWriter, r *http.Request, e *AuthError) {
	if e.Redirect {
		w.Header().Set("Location", e.RedirectURL(s.issuer))
		w.WriteHeader(http.StatusFound)
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("<!doctype html><meta charset=utf-8><title>Authorization problem</title><h1>Bad request</h1><p>" +
			htmlEscape(e.Description) + "</p>"))
		return
	}
	oauthJSON(w, http.StatusBadRequest, e.Code, e.Description)
}

// FinishLogin implements oidc.Handoff: the IdP login for a pending
// authorization is done; sess becomes the app's session and the code goes
// to the app's redirect URI.
func (s *Server) FinishLogin(w http.ResponseWriter, r *http.Request, state string, sess *session.Session) {
	ctx := r.Context()
	w.Header().Set("Cache-Control", "no-store")
	raw, found, err := s.o.Sessions.Take(ctx, pendingKey(state))
	if err != nil {
		apierror.Write(w, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable; try again later")
		return
	}
	var p pending
	if !found || json.Unmarshal([]byte(raw), &p) != nil {
		apierror.Write(w, http.StatusBadRequest, "authorization_expired", "the app's authorization request expired or was already answered: start again from the app")
		return
	}
	c, ok := s.o.Registry.Lookup(p.ClientID)
	if !ok || c.Kind != KindNative || !c.RedirectAllowed(p.RedirectURI) { // the configuration changed meanwhile
		apierror.Write(w, http.StatusBadRequest, "invalid_request", "the client or its redirect URI is no longer registered")
		return
	}
	fail := func(code, desc string) {
		s.authError(w, r, &AuthError{Code: code, Description: desc, Redirect: true, RedirectURI: p.RedirectURI, State: p.State})
	}
	sess.Native = &session.Native{ClientID: c.ID, Scopes: p.Scopes}
	h, err := s.o.Sessions.Create(ctx, sess)
	if err != nil {
		s.o.Logger.ErrorContext(ctx, "create native session", "error", err)
		fail(ErrTemporarilyUnavailable, "the session store is unavailable; try again later")
		return
	}
	code, id, key, err := NewCode()
	var sealed []byte
	if err == nil {
		g := &CodeGrant{ClientID: c.ID, RedirectURI: p.RedirectURI, CodeChallenge: p.CodeChallenge, DPoPJKT: p.DPoPJKT,
			Scopes: p.Scopes, Resource: p.Resource, Expires: s.o.Now().Add(CodeTTL), Subject: h.Cookie().Reveal()}
		sealed, err = g.Seal(id, key)
	}
	if err == nil {
		var ok bool
		// Kept a minute past its expiry, so that a late redemption still
		// finds it and ends its session (Check refuses it as expired).
		ok, err = s.o.Sessions.Put(ctx, "oauth-code:"+id, base64.RawURLEncoding.EncodeToString(sealed), CodeTTL+time.Minute)
		if err == nil && !ok {
			err = errors.New("code id collided")
		}
	}
	if err == nil {
		err = s.o.Auditor.Log(ctx, audit.Record{Event: audit.EventOAuthCodeIssued, Outcome: audit.OutcomeSuccess, Sub: sess.Subject,
			Session: h.ID(), Actor: []string{"client:" + c.ID}, Client: s.o.Client, Method: r.Method, Path: r.URL.Path})
	}
	if err != nil {
		s.o.Logger.ErrorContext(ctx, "issue authorization code", "error", err)
		_ = s.o.Sessions.Delete(ctx, h.ID())
		fail(ErrTemporarilyUnavailable, "the authorization could not be completed; try again later")
		return
	}
	w.Header().Set("Location", SuccessURL(p.RedirectURI, code, p.State, s.issuer))
	w.WriteHeader(http.StatusFound)
}

// FailLogin implements oidc.Handoff: the IdP refused the login; the app
// hears it at its redirect URI, access_denied when the user said no (or the
// IdP's login_required and the like), server_error otherwise.
func (s *Server) FailLogin(w http.ResponseWriter, r *http.Request, state, idpError string) bool {
	raw, found, err := s.o.Sessions.Take(r.Context(), pendingKey(state))
	var p pending
	if err != nil || !found || json.Unmarshal([]byte(raw), &p) != nil {
		return false
	}
	if c, ok := s.o.Registry.Lookup(p.ClientID); !ok || !c.RedirectAllowed(p.RedirectURI) {
		return false
	}
	code := ErrServerError
	switch idpError {
	case ErrAccessDenied, "login_required", "consent_required", "interaction_required", "account_selection_required":
		code = ErrAccessDenied
	case ErrTemporarilyUnavailable:
		code = ErrTemporarilyUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	s.authError(w, r, &AuthError{Code: code, Description: "the identity provider did not complete the sign-in", Redirect: true,
		RedirectURI: p.RedirectURI, State: p.State})
	return true
}

// token answers POST /bff/oauth/token (authorization_code only).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, terr := readForm(w, r)
	if terr != nil {
		s.tokenError(w, r, terr, "", "")
		return
	}
	tr, terr := ParseTokenRequest(form)
	if terr != nil {
		s.tokenError(w, r, terr, "", "")
		return
	}
	c, ok := s.o.Registry.Lookup(tr.ClientID)
	if !ok {
		s.tokenError(w, r, tokenErr(ErrInvalidClient, "client_id is not registered with this Gatehouse"), "", "")
		return
	}
	jkt := ""
	if len(r.Header.Values("Dpop")) > 0 {
		proof, err := s.o.DPoP.Verify(ctx, r.Header, dpop.Check{Method: http.MethodPost, URL: s.tokenURL})
		if err != nil {
			var de *dpop.Error
			if errors.As(err, &de) {
				s.tokenError(w, r, tokenErr(ErrInvalidDPoPProof, de.Description), c.ID, "")
			} else {
				s.o.Logger.ErrorContext(ctx, "DPoP replay check", "error", err)
				s.tokenError(w, r, &TokenError{Status: http.StatusServiceUnavailable, Code: ErrTemporarilyUnavailable, Description: "the session store is unavailable; try again later"}, c.ID, "")
			}
			return
		}
		jkt = proof.JKT
	}
	id, key, err := CodeID(tr.Code)
	if err != nil {
		s.tokenError(w, r, tokenErr(ErrInvalidGrant, "the code is not valid"), c.ID, "")
		return
	}
	raw, found, err := s.o.Sessions.Take(ctx, "oauth-code:"+id)
	if err != nil {
		s.tokenError(w, r, &TokenError{Status: http.StatusServiceUnavailable, Code: ErrTemporarilyUnavailable, Description: "the session store is unavailable; try again later"}, c.ID, "")
		return
	}
	if !found {
		s.reused(ctx, r, id)
		s.tokenError(w, r, tokenErr(ErrInvalidGrant, "the code is unknown, expired or already used"), c.ID, "")
		return
	}
	sealed, err := base64.RawURLEncoding.DecodeString(raw)
	var g *CodeGrant
	if err == nil {
		g, err = OpenGrant(sealed, id, key)
	}
	if err != nil {
		s.tokenError(w, r, tokenErr(ErrInvalidGrant, "the code is not valid"), c.ID, "")
		return
	}
	if c.Kind == KindAgent {
		if terr := g.Check(tr, c, jkt, s.issuer, s.o.Now()); terr != nil || s.o.Agents == nil || g.GrantID == "" {
			if s.o.Agents != nil && g.GrantID != "" {
				_ = s.o.Agents.RevokeID(ctx, g.GrantSession, g.GrantID) // the code is spent: its grant must not outlive it
			}
			if terr == nil {
				terr = tokenErr(ErrInvalidGrant, "the code is not valid")
			}
			s.tokenError(w, r, terr, c.ID, "")
			return
		}
		s.agentToken(w, r, c, g, id)
		return
	}
	h, herr := session.ParseHandle(g.Subject)
	if terr := g.Check(tr, c, jkt, s.issuer, s.o.Now()); terr != nil || herr != nil {
		// The code is spent either way: its session must not outlive it.
		if herr == nil {
			_ = s.o.Sessions.Delete(ctx, h.ID())
		}
		if terr == nil {
			terr = tokenErr(ErrInvalidGrant, "the code is not valid")
		}
		s.tokenError(w, r, terr, c.ID, "")
		return
	}
	if _, err := s.o.Sessions.Put(ctx, "oauth-redeemed:"+id, h.ID(), redeemedTTL); err != nil {
		s.tokenError(w, r, &TokenError{Status: http.StatusServiceUnavailable, Code: ErrTemporarilyUnavailable, Description: "the session store is unavailable; try again later"}, c.ID, "")
		_ = s.o.Sessions.Delete(ctx, h.ID())
		return
	}
	sess, err := s.o.Sessions.Load(ctx, h, false)
	if err == nil {
		sess.Native = &session.Native{ClientID: c.ID, Scopes: g.Scopes, JKT: jkt}
		err = s.o.Sessions.Update(ctx, h, sess)
	}
	if err != nil {
		status, code, desc := http.StatusBadRequest, ErrInvalidGrant, "the session behind the code has ended: start the authorization again"
		if errors.Is(err, session.ErrUnavailable) {
			status, code, desc = http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "the session store is unavailable; try again later"
		}
		s.tokenError(w, r, &TokenError{Status: status, Code: code, Description: desc}, c.ID, h.ID())
		return
	}
	if err := s.o.Auditor.Log(ctx, audit.Record{Event: audit.EventOAuthToken, Outcome: audit.OutcomeSuccess, Sub: sess.Subject,
		Session: h.ID(), Actor: []string{"client:" + c.ID}, Client: s.o.Client, Method: r.Method, Path: r.URL.Path, Status: http.StatusOK}); err != nil {
		_ = s.o.Sessions.Delete(ctx, h.ID())
		s.tokenError(w, r, &TokenError{Status: http.StatusServiceUnavailable, Code: ErrTemporarilyUnavailable, Description: "the token could not be recorded; try again later"}, "", "")
		return
	}
	typ := "DPoP"
	if jkt == "" { // only agent clients may go without DPoP; none are served yet
		typ = "Bearer"
	}
	expires := int64(sess.IdleExpiry.Sub(s.o.Now()) / time.Second)
	noStore(w.Header())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(TokenResponse{AccessToken: NativePrefix + h.Cookie().Reveal(), TokenType: typ,
		ExpiresIn: max(expires, 1), Scope: strings.Join(g.Scopes, " ")})
}

// reused ends the session a code produced when the code comes back.
func (s *Server) reused(ctx context.Context, r *http.Request, id string) {
	sid, found, err := s.o.Sessions.Take(ctx, "oauth-redeemed:"+id)
	if err != nil || !found {
		return
	}
	if ref, ok := strings.CutPrefix(sid, "agent:"); ok {
		sessionID, grant, _ := strings.Cut(ref, "/")
		if s.o.Agents == nil {
			return
		}
		if err := s.o.Agents.RevokeID(ctx, sessionID, grant); err != nil {
			s.o.Logger.ErrorContext(ctx, "revoke the grant of a reused code", "error", err)
			return
		}
		_ = s.o.Auditor.Log(ctx, audit.Record{Event: audit.EventOAuthTokenRevoked, Outcome: audit.OutcomeSuccess, Reason: "code_reused",
			Actor: []string{"agent:" + grant}, Client: s.o.Client, Method: r.Method, Path: r.URL.Path})
		return
	}
	if err := s.o.Sessions.Delete(ctx, sid); err != nil {
		s.o.Logger.ErrorContext(ctx, "revoke the session of a reused code", "error", err)
		return
	}
	_ = s.o.Auditor.Log(ctx, audit.Record{Event: audit.EventOAuthTokenRevoked, Outcome: audit.OutcomeSuccess, Reason: "code_reused",
		Session: sid, Client: s.o.Client, Method: r.Method, Path: r.URL.Path})
}

func (s *Server) tokenError(w http.ResponseWriter, r *http.Request, e *TokenError, clientID, sessionID string) {
	rec := audit.Record{Event: audit.EventOAuthToken, Outcome: audit.OutcomeFailure, Reason: e.Code, Session: sessionID,
		Client: s.o.Client, Method: r.Method, Path: r.URL.Path, Status: e.Status}
	if clientID != "" {
		rec.Actor = []string{"client:" + clientID}
	}
	_ = s.o.Auditor.Log(r.Context(), rec)
	if e.Code == ErrInvalidDPoPProof {
		w.Header().Set("WWW-Authenticate", dpop.Challenge(e.Code, e.Description))
	}
	oauthJSON(w, e.Status, e.Code, e.Description)
}

// revoke answers POST /bff/oauth/revoke (RFC 7009): a native handle's
// session ends. Unknown tokens are answered 200, as §2.2 says.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, terr := readForm(w, r)
	if terr != nil {
		oauthJSON(w, terr.Status, terr.Code, terr.Description)
		return
	}
	for k, v := range form {
		if len(v) > 1 {
			oauthJSON(w, http.StatusBadRequest, ErrInvalidRequest, "parameter "+safeName(k)+" is given more than once")
			return
		}
	}
	if form.Get("client_secret") != "" || form.Get("client_assertion") != "" {
		oauthJSON(w, http.StatusUnauthorized, ErrInvalidClient, "clients of this server are public: send client_id only, no secret")
		return
	}
	c, ok := s.o.Registry.Lookup(form.Get("client_id"))
	if !ok {
		oauthJSON(w, http.StatusUnauthorized, ErrInvalidClient, "client_id is missing or not registered with this Gatehouse")
		return
	}
	tok := form.Get("token")
	if tok == "" {
		oauthJSON(w, http.StatusBadRequest, ErrInvalidRequest, "token is missing")
		return
	}
	noStore(w.Header())
	if strings.HasPrefix(tok, AgentPrefix) {
		if s.o.Agents != nil {
			if _, err := s.o.Agents.RevokeToken(ctx, tok, c.ID); err != nil {
				oauthJSON(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "the grant store is unavailable; try again later")
				return
			}
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	h, err := ParseNativeHandle(tok)
	if err != nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	sess, err := s.o.Sessions.Load(ctx, h, false)
	switch {
	case errors.Is(err, session.ErrUnavailable):
		oauthJSON(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "the session store is unavailable; try again later")
		return
	case err != nil || sess.Native == nil:
		w.WriteHeader(http.StatusOK)
		return
	case sess.Native.ClientID != c.ID:
		oauthJSON(w, http.StatusBadRequest, ErrUnauthorizedClient, "the token was issued to another client")
		return
	}
	if err := s.o.Sessions.Delete(ctx, h.ID()); err != nil {
		oauthJSON(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "the session store is unavailable; try again later")
		return
	}
	_ = s.o.Auditor.Log(ctx, audit.Record{Event: audit.EventOAuthTokenRevoked, Outcome: audit.OutcomeSuccess, Reason: "revoked_by_client",
		Sub: sess.Subject, Session: h.ID(), Actor: []string{"client:" + c.ID}, Client: s.o.Client, Method: r.Method, Path: r.URL.Path})
	w.WriteHeader(http.StatusOK)
}

// ParseNativeHandle reads a native access token (ghn_<session handle>).
func ParseNativeHandle(tok string) (session.Handle, error) {
	rest, ok := strings.CutPrefix(tok, NativePrefix)
	if !ok {
		return session.Handle{}, session.ErrInvalidHandle
	}
	return session.ParseHandle(rest)
}

// readForm reads an application/x-www-form-urlencoded body (never the
// query: parameters must not travel in URLs that logs keep).
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *TokenError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, tokenErr(ErrInvalidRequest, "send the parameters as application/x-www-form-urlencoded")
	}
	if r.URL.RawQuery != "" {
		return nil, tokenErr(ErrInvalidRequest, "send the parameters in the body, not the query")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, tokenErr(ErrInvalidRequest, "the body is not a valid form or is too large")
	}
	return r.PostForm, nil
}

func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// oauthJSON writes an RFC 6749 §5.2 error body.
func oauthJSON(w http.ResponseWriter, status int, code, desc string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	noStore(h)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{code, desc})
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

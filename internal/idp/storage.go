package idp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// authRequestTTL bounds how long a pending login (and its code) stays usable.
const authRequestTTL = 10 * time.Minute

var (
	_ op.Storage                            = (*storage)(nil)
	_ op.ClientCredentialsStorage           = (*storage)(nil)
	_ op.TokenExchangeStorage               = (*storage)(nil)
	_ op.TokenExchangeTokensVerifierStorage = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest          = (*storage)(nil)
	_ op.CanTerminateSessionFromRequest     = (*storage)(nil)
)

// endedSession is handed to the back-channel notifier after the lock is released.
type endedSession struct {
	ID       string
	Subject  string
	ClientID string
}

// storage is the in-memory op.Storage, adapted from zitadel's example/server/storage: it adds
// OP sessions (the sid claim), token-exchange limits and back-channel logout.
type storage struct {
	mu sync.Mutex

	accessTTL, refreshTTL, idTokenTTL time.Duration
	claimsInIDToken                   bool

	clients      map[string]*client
	usersByID    map[string]User
	usersByName  map[string]User
	authRequests map[string]*authRequest
	codes        map[string]string // code -> auth request id
	tokens       map[string]*accessToken
	refresh      map[string]*refreshToken // by token value
	sessions     map[string]*opSession

	keyID string
	key   *rsa.PrivateKey

	onEnded func(context.Context, []endedSession) error
}

type opSession struct {
	ID       string
	Subject  string
	ClientID string
	AuthTime time.Time
}

type accessToken struct {
	ID             string
	ClientID       string
	Subject        string
	SessionID      string
	RefreshTokenID string
	Audience       []string
	Scopes         []string
	Expiration     time.Time
}

type refreshToken struct {
	Token         string
	ClientID      string
	Subject       string
	SessionID     string
	AuthTime      time.Time
	AMR           []string
	Audience      []string
	Scopes        []string
	Expiration    time.Time
	AccessTokenID string
}

func newStorage(opts Options, onEnded func(context.Context, []endedSession) error) (*storage, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("idp: generate signing key: %w", err)
	}
	s := &storage{
		accessTTL:       opts.AccessTokenTTL,
		refreshTTL:      opts.RefreshTokenTTL,
		idTokenTTL:      opts.IDTokenTTL,
		claimsInIDToken: opts.ClaimsInIDToken,
		clients:         map[string]*client{},
		usersByID:       map[string]User{},
		usersByName:     map[string]User{},
		authRequests:    map[string]*authRequest{},
		codes:           map[string]string{},
		tokens:          map[string]*accessToken{},
		refresh:         map[string]*refreshToken{},
		sessions:        map[string]*opSession{},
		keyID:           "dev-op-" + randomID()[:12],
		key:             key,
		onEnded:         onEnded,
	}
	for _, c := range opts.Clients {
		s.clients[c.ID] = &client{Client: c, issuer: opts.Issuer, idTokenTTL: opts.IDTokenTTL, claimsInIDToken: opts.ClaimsInIDToken}
	}
	for _, u := range opts.Users {
		s.usersByID[u.ID] = u
		s.usersByName[u.Username] = u
	}
	return s, nil
}

func randomID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// --- login ---------------------------------------------------------------------------------

// pendingAuthRequest reports whether id names a login that still waits for credentials.
func (s *storage) pendingAuthRequest(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.authRequests[id]
	return ok && !ar.done && time.Since(ar.CreatedAt) < authRequestTTL
}

var errBadCredentials = errors.New("unknown username or wrong password")

// checkLogin verifies the credentials and, on success, opens an OP session for the request.
func (s *storage) checkLogin(authRequestID, username, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.authRequests[authRequestID]
	if !ok || ar.done || time.Since(ar.CreatedAt) >= authRequestTTL {
		return errors.New("this login request is unknown or expired; start the sign-in again from the application")
	}
	u, ok := s.usersByName[username]
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) != 1 {
		return errBadCredentials
	}
	sess := &opSession{ID: randomID(), Subject: u.ID, ClientID: ar.ClientID, AuthTime: time.Now()}
	s.sessions[sess.ID] = sess
	ar.UserID = u.ID
	ar.SessionID = sess.ID
	ar.authTime = sess.AuthTime
	ar.done = true
	return nil
}

// --- auth requests and codes -------------------------------------------------------------------

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		// No SSO session at this OP: every sign-in needs the login page.
		return nil, oidc.ErrLoginRequired()
	}
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required")
	}
	ar := &authRequest{
		ID:            randomID(),
		CreatedAt:     time.Now(),
		ClientID:      req.ClientID,
		RedirectURI:   req.RedirectURI,
		State:         req.State,
		Nonce:         req.Nonce,
		Scopes:        req.Scopes,
		ResponseType:  req.ResponseType,
		ResponseMode:  req.ResponseMode,
		CodeChallenge: &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod},
		UserID:        userID,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gcLocked()
	s.authRequests[ar.ID] = ar
	return ar, nil
}

// gcLocked drops stale pending logins and expired tokens so long-running demos stay small.
func (s *storage) gcLocked() {
	now := time.Now()
	for id, ar := range s.authRequests {
		if now.Sub(ar.CreatedAt) > authRequestTTL {
			delete(s.authRequests, id)
		}
	}
	for code, id := range s.codes {
		if _, ok := s.authRequests[id]; !ok {
			delete(s.codes, code)
		}
	}
	for id, t := range s.tokens {
		if now.After(t.Expiration) {
			delete(s.tokens, id)
		}
	}
	for v, rt := range s.refresh {
		if now.After(rt.Expiration) {
			delete(s.refresh, v)
		}
	}
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.authRequests[id]
	if !ok || time.Since(ar.CreatedAt) >= authRequestTTL {
		return nil, errors.New("auth request not found or expired")
	}
	return ar, nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid, used or expired")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// --- tokens --------------------------------------------------------------------------------

func (s *storage) newAccessTokenLocked(clientID, subject, sid, refreshID string, aud, scopes []string, exp time.Time) *accessToken {
	t := &accessToken{
		ID: randomID(), ClientID: clientID, Subject: subject, SessionID: sid, RefreshTokenID: refreshID,
		Audience: aud, Scopes: scopes, Expiration: exp,
	}
	s.tokens[t.ID] = t
	return t
}

// sessionAliveLocked reports whether sid is still an open OP session; tokens of ended
// sessions must not be minted (a code redeemed after logout, for example).
func (s *storage) sessionAliveLocked(sid string) bool {
	if sid == "" {
		return true
	}
	_, ok := s.sessions[sid]
	return ok
}

func (s *storage) CreateAccessToken(_ context.Context, request op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	exp := now.Add(s.accessTTL)
	switch req := request.(type) {
	case *authRequest:
		if !s.sessionAliveLocked(req.SessionID) {
			return "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("the session has ended")
		}
		t := s.newAccessTokenLocked(req.ClientID, req.UserID, req.SessionID, "", req.GetAudience(), req.Scopes, exp)
		return t.ID, t.Expiration, nil
	case op.TokenExchangeRequest:
		subj, ok := s.tokens[req.GetExchangeSubjectTokenIDOrToken()]
		if !ok || now.After(subj.Expiration) {
			return "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("subject_token is revoked or expired")
		}
		// A delegated token never outlives what it was delegated from.
		if subj.Expiration.Before(exp) {
			exp = subj.Expiration
		}
		t := s.newAccessTokenLocked(req.GetClientID(), req.GetSubject(), subj.SessionID, "", req.GetAudience(), req.GetScopes(), exp)
		return t.ID, t.Expiration, nil
	case *clientCredentialsRequest:
		t := s.newAccessTokenLocked(req.clientID, req.clientID, "", "", []string{req.clientID}, req.scopes, exp)
		return t.ID, t.Expiration, nil
	default:
		return "", time.Time{}, oidc.ErrServerError().WithDescription("unexpected token request type %T", request)
	}
}

func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, request op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if current == "" {
		ar, ok := request.(*authRequest)
		if !ok {
			return "", "", time.Time{}, oidc.ErrInvalidRequest().WithDescription("refresh tokens are issued only by the authorization_code grant")
		}
		if !s.sessionAliveLocked(ar.SessionID) {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("the session has ended")
		}
		rtValue := randomID()
		at := s.newAccessTokenLocked(ar.ClientID, ar.UserID, ar.SessionID, rtValue, ar.GetAudience(), ar.Scopes, now.Add(s.accessTTL))
		s.refresh[rtValue] = &refreshToken{
			Token: rtValue, ClientID: ar.ClientID, Subject: ar.UserID, SessionID: ar.SessionID,
			AuthTime: ar.authTime, AMR: ar.GetAMR(), Audience: ar.GetAudience(), Scopes: ar.Scopes,
			Expiration: now.Add(s.refreshTTL), AccessTokenID: at.ID,
		}
		return at.ID, rtValue, at.Expiration, nil
	}
	// Rotation: the presented refresh token is consumed; a second use (or a concurrent one) fails.
	old, ok := s.refresh[current]
	if !ok || now.After(old.Expiration) || !s.sessionAliveLocked(old.SessionID) {
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is invalid, expired or already used")
	}
	delete(s.refresh, current)
	delete(s.tokens, old.AccessTokenID)
	scopes := old.Scopes
	if rr, ok := request.(*refreshRequest); ok {
		scopes = rr.scopes
	}
	rtValue := randomID()
	at := s.newAccessTokenLocked(old.ClientID, old.Subject, old.SessionID, rtValue, old.Audience, scopes, now.Add(s.accessTTL))
	nt := *old
	nt.Token = rtValue
	nt.Scopes = scopes
	nt.Expiration = now.Add(s.refreshTTL)
	nt.AccessTokenID = at.ID
	s.refresh[rtValue] = &nt
	return at.ID, rtValue, at.Expiration, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, value string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[value]
	if !ok || time.Now().After(rt.Expiration) {
		return nil, oidc.ErrInvalidGrant().WithDescription("refresh token is invalid, expired or already used")
	}
	cp := *rt
	return &refreshRequest{rt: &cp, scopes: rt.Scopes}, nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, value string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[value]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.Subject, rt.Token, nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrID, _ string, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.tokens[tokenOrID]; ok {
		if at.ClientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.tokens, at.ID)
		return nil
	}
	rt, ok := s.refresh[tokenOrID]
	if !ok {
		return nil // RFC 7009: unknown tokens are already "revoked"
	}
	if rt.ClientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
	}
	delete(s.refresh, rt.Token)
	delete(s.tokens, rt.AccessTokenID)
	return nil
}

// --- sessions ------------------------------------------------------------------------------

// endSessions ends every OP session match accepts, deletes their tokens, and then (outside
// the lock) notifies the clients' back-channel logout URIs.
func (s *storage) endSessions(ctx context.Context, match func(*opSession) bool) ([]endedSession, error) {
	s.mu.Lock()
	var ended []endedSession
	for id, sess := range s.sessions {
		if !match(sess) {
			continue
		}
		delete(s.sessions, id)
		ended = append(ended, endedSession{ID: sess.ID, Subject: sess.Subject, ClientID: sess.ClientID})
		for tid, t := range s.tokens {
			if t.SessionID == id {
				delete(s.tokens, tid)
			}
		}
		for v, rt := range s.refresh {
			if rt.SessionID == id {
				delete(s.refresh, v)
			}
		}
	}
	s.mu.Unlock()
	if len(ended) == 0 || s.onEnded == nil {
		return ended, nil
	}
	return ended, s.onEnded(ctx, ended)
}

func (s *storage) TerminateSession(ctx context.Context, userID, clientID string) error {
	_, err := s.endSessions(ctx, func(o *opSession) bool { return o.Subject == userID && o.ClientID == clientID })
	return err
}

func (s *storage) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	if req.UserID == "" {
		return req.RedirectURI, nil // no id_token_hint: nobody to sign out
	}
	sid := ""
	if req.IDTokenHintClaims != nil {
		sid = req.IDTokenHintClaims.SessionID
		if sid == "" {
			if v, ok := req.IDTokenHintClaims.Claims["sid"].(string); ok {
				sid = v
			}
		}
	}
	match := func(o *opSession) bool { return o.Subject == req.UserID }
	if sid != "" {
		match = func(o *opSession) bool { return o.ID == sid && o.Subject == req.UserID }
	}
	// The sessions are ended whatever happens to the notifications; a failed back-channel
	// delivery is logged by the notifier and must not turn the user's logout into an error page.
	_, _ = s.endSessions(ctx, match)
	return req.RedirectURI, nil
}

// --- keys ----------------------------------------------------------------------------------

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k *publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *publicKey) Use() string                        { return "sig" }
func (k *publicKey) Key() any                           { return &k.key.PublicKey }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return &signingKey{id: s.keyID, key: s.key}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{&publicKey{signingKey{id: s.keyID, key: s.key}}}, nil
}

// --- clients -------------------------------------------------------------------------------

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id] // immutable after New
	if !ok {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	return c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.Secret == "" || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return oidc.ErrInvalidClient().WithDescription("client authentication failed")
	}
	return nil
}

func (s *storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	return s.clients[id], nil
}

func (s *storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	if _, ok := s.clients[id]; !ok {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	return &clientCredentialsRequest{clientID: id, scopes: scopes}, nil
}

// --- claims --------------------------------------------------------------------------------

func (s *storage) setUserinfoLocked(ui *oidc.UserInfo, userID string, scopes []string) error {
	u, ok := s.usersByID[userID]
	if !ok {
		return fmt.Errorf("user %q not found", userID)
	}
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeOpenID:
			ui.Subject = u.ID
		case oidc.ScopeEmail:
			ui.Email = u.Email
			ui.EmailVerified = oidc.Bool(u.EmailVerified)
		case oidc.ScopeProfile:
			ui.PreferredUsername = u.Username
			ui.Name = u.Name
			ui.GivenName = u.GivenName
			ui.FamilyName = u.FamilyName
		}
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil // SetUserinfoFromRequest does the work
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.setUserinfoLocked(ui, req.GetSubject(), scopes); err != nil {
		return err
	}
	var sid string
	switch r := req.(type) {
	case *authRequest:
		sid = r.SessionID
	case *refreshRequest:
		sid = r.rt.SessionID
	}
	if sid != "" {
		ui.AppendClaims("sid", sid)
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, tokenID, _, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tokenID]
	if !ok || time.Now().After(t.Expiration) {
		return errors.New("token is invalid, revoked or expired")
	}
	return s.setUserinfoLocked(ui, t.Subject, t.Scopes)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, _, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tokenID]
	if !ok || time.Now().After(t.Expiration) {
		return errors.New("token is invalid, revoked or expired")
	}
	if t.ClientID != clientID && !slices.Contains(t.Audience, clientID) {
		return errors.New("token is not valid for this client")
	}
	if _, isUser := s.usersByID[t.Subject]; isUser {
		ui := new(oidc.UserInfo)
		if err := s.setUserinfoLocked(ui, t.Subject, t.Scopes); err != nil {
			return err
		}
		resp.SetUserInfo(ui)
	}
	resp.Subject = t.Subject
	resp.Scope = t.Scopes
	resp.ClientID = t.ClientID
	resp.Audience = t.Audience
	resp.Expiration = oidc.FromTime(t.Expiration)
	resp.TokenType = oidc.BearerToken
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID serves the registered public keys of private_key_jwt clients.
func (s *storage) GetKeyByIDAndClientID(_ context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	c, ok := s.clients[clientID] // immutable after New
	if !ok {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	for i := range c.Keys {
		if c.Keys[i].KeyID == keyID {
			k := c.Keys[i]
			return &k, nil
		}
	}
	return nil, oidc.ErrInvalidClient().WithDescription("no registered key with this kid")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT bearer grant is not supported by the development OP")
}

func (s *storage) Health(context.Context) error { return nil }

// --- token exchange (RFC 8693) ---------------------------------------------------------------

func (s *storage) ValidateTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) error {
	if req.GetRequestedTokenType() == "" {
		req.SetRequestedTokenType(oidc.AccessTokenType)
	}
	if req.GetRequestedTokenType() != oidc.AccessTokenType {
		return oidc.ErrInvalidRequest().WithDescription("the development OP issues only requested_token_type=%s", oidc.AccessTokenType)
	}
	if req.GetExchangeSubjectTokenType() != oidc.AccessTokenType {
		return oidc.ErrInvalidRequest().WithDescription("the development OP accepts only subject_token_type=%s", oidc.AccessTokenType)
	}
	if len(req.GetAudience()) == 0 {
		return oidc.ErrInvalidTarget().WithDescription("audience is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	subj, ok := s.tokens[req.GetExchangeSubjectTokenIDOrToken()]
	if !ok || now.After(subj.Expiration) {
		return oidc.ErrInvalidGrant().WithDescription("subject_token is revoked or expired")
	}
	// A delegated token never carries more scope than the subject token.
	scopes := req.GetScopes()
	if len(scopes) == 0 {
		scopes = subj.Scopes
	}
	for _, sc := range scopes {
		if !slices.Contains(subj.Scopes, sc) {
			return oidc.ErrInvalidScope().WithDescription("scope %q exceeds the subject token's scopes", sc)
		}
	}
	req.SetCurrentScopes(slices.Clone(scopes))
	if req.GetExchangeActor() != "" {
		switch req.GetExchangeActorTokenType() {
		case oidc.JWTTokenType:
			return nil // an unsigned actor assertion, checked by VerifyExchangeActorToken
		case oidc.AccessTokenType:
		default:
			return oidc.ErrInvalidRequest().WithDescription("the development OP accepts only actor_token_type=%s or %s", oidc.AccessTokenType, oidc.JWTTokenType)
		}
		act, ok := s.tokens[req.GetExchangeActorTokenIDOrToken()]
		if !ok || now.After(act.Expiration) {
			return oidc.ErrInvalidGrant().WithDescription("actor_token is revoked or expired")
		}
	}
	return nil
}

// VerifyExchangeSubjectToken implements op.TokenExchangeTokensVerifierStorage:
// subject tokens must be access tokens this OP issued, so nothing else is.
func (s *storage) VerifyExchangeSubjectToken(context.Context, string, oidc.TokenType) (string, string, map[string]any, error) {
	return "", "", nil, errors.New("the development OP exchanges only its own access tokens")
}

// VerifyExchangeActorToken implements op.TokenExchangeTokensVerifierStorage
// for actor_token_type=urn:ietf:params:oauth:token-type:jwt: an unsigned JWT
// (alg "none") naming the actor in sub, not expired. The token request is
// client-authenticated, so the OP trusts the assertion as far as it trusts the
// client — this is how Gatehouse names an agent acting for the user (the act
// claim of the exchanged token). A production IdP needs an equivalent rule
// (or a signed assertion); see docs/agents.md.
func (s *storage) VerifyExchangeActorToken(_ context.Context, token string, tokenType oidc.TokenType) (string, string, map[string]any, error) {
	if tokenType != oidc.JWTTokenType {
		return "", "", nil, errors.New("actor token is not a JWT")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[2] != "" {
		return "", "", nil, errors.New("actor JWT must be unsigned (header.claims.)")
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	var claims map[string]any
	for i, dst := range []any{&hdr, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return "", "", nil, errors.New("actor JWT is not base64url")
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return "", "", nil, errors.New("actor JWT is not JSON")
		}
	}
	sub, _ := claims["sub"].(string)
	exp, _ := claims["exp"].(float64)
	if hdr.Alg != "none" || sub == "" || time.Unix(int64(exp), 0).Before(time.Now()) {
		return "", "", nil, errors.New("actor JWT needs alg none, a sub and a future exp")
	}
	return token, sub, claims, nil
}

func (s *storage) CreateTokenExchangeRequest(context.Context, op.TokenExchangeRequest) error {
	return nil
}

func exchangeClaims(req op.TokenExchangeRequest) map[string]any {
	if req.GetExchangeActor() == "" {
		return nil
	}
	return map[string]any{"act": map[string]any{"sub": req.GetExchangeActor()}}
}

func (s *storage) GetPrivateClaimsFromTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) (map[string]any, error) {
	return exchangeClaims(req), nil
}

func (s *storage) SetUserinfoFromTokenExchangeRequest(_ context.Context, ui *oidc.UserInfo, req op.TokenExchangeRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.setUserinfoLocked(ui, req.GetSubject(), req.GetScopes()); err != nil {
		return err
	}
	for k, v := range exchangeClaims(req) {
		ui.AppendClaims(k, v)
	}
	return nil
}

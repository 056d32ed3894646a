package oauthserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/url"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/dpop"
)

// Error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 8707 and RFC 9449.
const (
	ErrInvalidRequest          = "invalid_request"
	ErrUnauthorizedClient      = "unauthorized_client"
	ErrAccessDenied            = "access_denied"
	ErrUnsupportedResponseType = "unsupported_response_type"
	ErrServerError             = "server_error"
	ErrTemporarilyUnavailable  = "temporarily_unavailable"
	ErrInvalidTarget           = "invalid_target"
	ErrInvalidClient           = "invalid_client"
	ErrInvalidGrant            = "invalid_grant"
	ErrUnsupportedGrantType    = "unsupported_grant_type"
	ErrInvalidDPoPProof        = dpop.CodeInvalidProof
)

const maxStateBytes = 1024

// AuthorizeRequest is a validated authorization request.
type AuthorizeRequest struct {
	Client        *Client
	RedirectURI   string
	State         string
	CodeChallenge string   // S256 only
	Scopes        []string // as requested; Narrow them against what the client may have
	DPoPJKT       string   // RFC 9449 §10, optional
	Resource      string   // RFC 8707, optional; equal to the protected resource when given
}

// AuthError is a refused authorization request. When Redirect is false the
// redirect URI could not be trusted: answer the user agent directly (400),
// never redirect (RFC 6749 §4.1.2.1).
type AuthError struct {
	Code        string
	Description string
	Redirect    bool
	RedirectURI string
	State       string
}

func (e *AuthError) Error() string { return e.Code + ": " + e.Description }

// ParseAuthorize validates q against the registry. resource is the RFC 9728
// resource identifier a `resource` parameter must equal.
func ParseAuthorize(q url.Values, reg *Registry, resource string) (*AuthorizeRequest, *AuthError) {
	direct := func(desc string) *AuthError { return &AuthError{Code: ErrInvalidRequest, Description: desc} }
	// RFC 6749 §3.1: parameters must not be repeated. Checked first, so a
	// second client_id or redirect_uri can never be the one another layer reads.
	for k, v := range q {
		if len(v) > 1 {
			return nil, direct("parameter " + safeName(k) + " is given more than once")
		}
	}
	clientID := q.Get("client_id")
	if clientID == "" {
		return nil, direct("client_id is missing")
	}
	c, ok := reg.Lookup(clientID)
	if !ok {
		return nil, direct("client_id is not registered with this Gatehouse")
	}
	redirect := q.Get("redirect_uri")
	if redirect == "" {
		return nil, direct("redirect_uri is missing: send the registered redirect URI")
	}
	if !c.RedirectAllowed(redirect) {
		return nil, direct("redirect_uri is not registered for this client")
	}
	state := q.Get("state")
	if len(state) > maxStateBytes {
		return nil, direct("state is longer than 1024 bytes")
	}
	// From here on the redirect URI is trusted: errors go back to the client.
	fail := func(code, desc string) *AuthError {
		return &AuthError{Code: code, Description: desc, Redirect: true, RedirectURI: redirect, State: state}
	}
	if rt := q.Get("response_type"); rt != "code" {
		return nil, fail(ErrUnsupportedResponseType, "response_type must be code")
	}
	ch := q.Get("code_challenge")
	if ch == "" {
		return nil, fail(ErrInvalidRequest, "PKCE is required: send code_challenge and code_challenge_method=S256")
	}
	if m := q.Get("code_challenge_method"); m != "S256" {
		return nil, fail(ErrInvalidRequest, "code_challenge_method must be S256 (plain is not accepted)")
	}
	if !validChallenge(ch) {
		return nil, fail(ErrInvalidRequest, "code_challenge must be the 43-character base64url SHA-256 of the code verifier")
	}
	jkt := q.Get("dpop_jkt")
	if jkt != "" && !dpop.ValidJKT(jkt) {
		return nil, fail(ErrInvalidRequest, "dpop_jkt must be the base64url SHA-256 JWK thumbprint of the DPoP key")
	}
	res := q.Get("resource")
	if res != "" && res != resource {
		return nil, fail(ErrInvalidTarget, "resource must be "+resource)
	}
	return &AuthorizeRequest{Client: c, RedirectURI: redirect, State: state, CodeChallenge: ch,
		Scopes: strings.Fields(q.Get("scope")), DPoPJKT: jkt, Resource: res}, nil
}

// safeName keeps a parameter name printable in an error description.
func safeName(k string) string {
	if len(k) > 40 || strings.ContainsFunc(k, func(r rune) bool { return r < 0x21 || r > 0x7e || r == '"' || r == '\\' }) {
		return "(a parameter)"
	}
	return k
}

func validChallenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// ValidVerifier reports whether v has RFC 7636 §4.1's form: 43 to 128
// unreserved characters.
func ValidVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// VerifyS256 checks a PKCE verifier against its S256 challenge in constant time.
func VerifyS256(verifier, challenge string) bool {
	if !ValidVerifier(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

// RedirectURL is the redirect back to the client for this error, carrying
// error, error_description, state and iss (RFC 9207: every redirect, errors
// included). It is "" when the error must not be redirected.
func (e *AuthError) RedirectURL(issuer string) string {
	if !e.Redirect {
		return ""
	}
	v := url.Values{"error": {e.Code}, "iss": {issuer}}
	if e.Description != "" {
		v.Set("error_description", e.Description)
	}
	if e.State != "" {
		v.Set("state", e.State)
	}
	return appendQuery(e.RedirectURI, v)
}

// SuccessURL is the redirect back to the client with its code.
func SuccessURL(redirectURI, code, state, issuer string) string {
	v := url.Values{"code": {code}, "iss": {issuer}}
	if state != "" {
		v.Set("state", state)
	}
	return appendQuery(redirectURI, v)
}

// appendQuery adds v to a registered redirect URI, keeping its own query
// (RFC 6749 §3.1.2: it must be retained).
func appendQuery(redirectURI string, v url.Values) string {
	sep := "?"
	if strings.Contains(redirectURI, "?") {
		sep = "&"
	}
	return redirectURI + sep + v.Encode()
}

package oauthserver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// CodeTTL is how long an authorization code may be redeemed.
const CodeTTL = 60 * time.Second

// TokenRequest is a parsed authorization_code token request.
type TokenRequest struct {
	ClientID, Code, RedirectURI, CodeVerifier, Resource string
}

// TokenError is a refused token request (RFC 6749 §5.2): answered as JSON
// {"error","error_description"} with Status.
type TokenError struct {
	Status      int
	Code        string
	Description string
}

func (e *TokenError) Error() string { return e.Code + ": " + e.Description }

func tokenErr(code, desc string) *TokenError {
	status := 400
	if code == ErrInvalidClient {
		status = 401
	}
	return &TokenError{Status: status, Code: code, Description: desc}
}

// ParseTokenRequest validates a token request's form.
func ParseTokenRequest(form url.Values) (*TokenRequest, *TokenError) {
	for k, v := range form {
		if len(v) > 1 {
			return nil, tokenErr(ErrInvalidRequest, "parameter "+safeName(k)+" is given more than once")
		}
	}
	if gt := form.Get("grant_type"); gt != "authorization_code" {
		return nil, tokenErr(ErrUnsupportedGrantType, "grant_type must be authorization_code")
	}
	if form.Get("client_secret") != "" || form.Get("client_assertion") != "" {
		return nil, tokenErr(ErrInvalidClient, "clients of this server are public: send client_id only, no secret")
	}
	tr := &TokenRequest{ClientID: form.Get("client_id"), Code: form.Get("code"), RedirectURI: form.Get("redirect_uri"),
		CodeVerifier: form.Get("code_verifier"), Resource: form.Get("resource")}
	switch {
	case tr.ClientID == "":
		return nil, tokenErr(ErrInvalidClient, "client_id is missing")
	case tr.Code == "":
		return nil, tokenErr(ErrInvalidRequest, "code is missing")
	case tr.RedirectURI == "":
		return nil, tokenErr(ErrInvalidRequest, "redirect_uri is missing")
	case tr.CodeVerifier == "":
		return nil, tokenErr(ErrInvalidRequest, "code_verifier is missing")
	}
	return tr, nil
}

// CodeGrant is what an authorization code stands for until redeemed. It is
// stored sealed under a key derived from the code (see NewCode), so a dump
// of the store cannot redeem anything.
type CodeGrant struct {
	ClientID      string    `json:"client_id"`
	RedirectURI   string    `json:"redirect_uri"`
	CodeChallenge string    `json:"code_challenge"`
	DPoPJKT       string    `json:"dpop_jkt,omitempty"`
	Scopes        []string  `json:"scopes"`
	Resource      string    `json:"resource,omitempty"`
	Expires       time.Time `json:"expires"`
	// Subject is what the code grants: for a native client the new session's
	// handle, for an agent client the agent token. Sealed with the rest.
	Subject string `json:"subject"`
	// GrantID and TokenExpires describe an agent client's grant (Subject is
	// then its agent token).
	GrantID      string    `json:"grant_id,omitempty"`
	GrantSession string    `json:"grant_session,omitempty"`
	TokenExpires time.Time `json:"token_expires,omitempty"`
}

// Check verifies a token request against the grant: client, exact redirect
// URI, PKCE verifier, expiry, the DPoP key (jkt is the proof's thumbprint, ""
// when no proof was sent) and the client's DPoP mode.
func (g *CodeGrant) Check(tr *TokenRequest, c *Client, jkt string, resource string, now time.Time) *TokenError {
	switch {
	case c == nil || tr.ClientID != g.ClientID || c.ID != g.ClientID:
		return tokenErr(ErrInvalidGrant, "the code was issued to another client")
	case !now.Before(g.Expires):
		return tokenErr(ErrInvalidGrant, "the code has expired: start the authorization again")
	case tr.RedirectURI != g.RedirectURI:
		return tokenErr(ErrInvalidGrant, "redirect_uri differs from the authorization request's")
	case !VerifyS256(tr.CodeVerifier, g.CodeChallenge):
		return tokenErr(ErrInvalidGrant, "code_verifier does not match the code_challenge")
	case tr.Resource != "" && tr.Resource != resource:
		return tokenErr(ErrInvalidTarget, "resource must be "+resource)
	}
	if g.DPoPJKT != "" && jkt == "" {
		return tokenErr(ErrInvalidDPoPProof, "the code is bound to a DPoP key: send a DPoP proof made with it")
	}
	if g.DPoPJKT != "" && subtle.ConstantTimeCompare([]byte(g.DPoPJKT), []byte(jkt)) != 1 {
		return tokenErr(ErrInvalidGrant, "the DPoP proof is made with another key than the code is bound to")
	}
	if c.DPoP == DPoPRequired && jkt == "" {
		return tokenErr(ErrInvalidDPoPProof, "this client must send a DPoP proof with its token request")
	}
	return nil
}

const (
	codeBytes   = 32
	codeIDLabel = "gatehouse oauth code id\x00"
	codeKeyLbl  = "gatehouse oauth code key\x00"
)

// ErrBadCode is any code that is not one this server issued in canonical
// form, or whose sealed grant does not open with it.
var ErrBadCode = errors.New("oauthserver: invalid authorization code")

// NewCode returns a fresh code (256 random bits, base64url), the id to store
// its grant under, and the key to seal it with. The store never sees the
// code itself.
func NewCode() (code, id string, key [32]byte, err error) {
	var raw [codeBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", key, fmt.Errorf("generate authorization code: %w", err)
	}
	code = base64.RawURLEncoding.EncodeToString(raw[:])
	id, key = deriveCode(raw[:])
	return code, id, key, nil
}

// CodeID returns the storage id and sealing key of a presented code.
func CodeID(code string) (id string, key [32]byte, err error) {
	if len(code) != 43 {
		return "", key, ErrBadCode
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(code)
	if err != nil || len(raw) != codeBytes {
		return "", key, ErrBadCode
	}
	id, key = deriveCode(raw)
	return id, key, nil
}

func deriveCode(raw []byte) (string, [32]byte) {
	idSum := sha256.Sum256(append([]byte(codeIDLabel), raw...))
	key := sha256.Sum256(append([]byte(codeKeyLbl), raw...))
	return base64.RawURLEncoding.EncodeToString(idSum[:]), key
}

// Seal encrypts g under key, bound to id.
func (g *CodeGrant) Seal(id string, key [32]byte) ([]byte, error) {
	plain, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("encode code grant: %w", err)
	}
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal code grant: %w", err)
	}
	return aead.Seal(nonce, nonce, plain, []byte(id)), nil
}

// OpenGrant decrypts a sealed grant; ErrBadCode when it does not open.
func OpenGrant(sealed []byte, id string, key [32]byte) (*CodeGrant, error) {
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrBadCode
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(id))
	if err != nil {
		return nil, ErrBadCode
	}
	var g CodeGrant
	if err := json.Unmarshal(plain, &g); err != nil {
		return nil, ErrBadCode
	}
	return &g, nil
}

func gcm(key [32]byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("code grant cipher: %w", err)
	}
	return cipher.NewGCM(b)
}

// TokenResponse is the token endpoint's answer (no refresh token: a native
// handle lives as long as its session, an agent token as long as its grant).
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"` // "DPoP" when bound, else "Bearer"
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

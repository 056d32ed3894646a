package oidc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// AuthPrivateKeyJWT authenticates Gatehouse with a JWT signed by its private
// key (RFC 7523 section 2.2, OIDC Core section 9): no shared secret.
const AuthPrivateKeyJWT = "private_key_jwt"

const (
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// clientAssertionTTL is short: an assertion is made per request.
	clientAssertionTTL = time.Minute
)

// clientSigner holds the parsed private key of the PEM it came from; it is
// rebuilt when the secret reference's value changes (rotation).
type clientSigner struct {
	mu     sync.Mutex
	digest [32]byte
	signer jose.Signer
}

// ParsePrivateKey reads a PEM private key (PKCS #8, PKCS #1 RSA or SEC 1 EC)
// and returns it with the JWS algorithm Gatehouse signs with and its JWK
// thumbprint (RFC 7638, the default kid). The error never holds key material.
func ParsePrivateKey(pemText string) (crypto.Signer, jose.SignatureAlgorithm, string, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, "", "", errors.New("the private key is not PEM (want -----BEGIN PRIVATE KEY-----)")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, "", "", fmt.Errorf("PEM block %q is not a private key", truncate(block.Type, 40))
	}
	if err != nil {
		return nil, "", "", errors.New("the private key's PEM block does not parse")
	}
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, "", "", errors.New("the RSA private key is shorter than 2048 bits")
		}
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		case elliptic.P521():
			alg = jose.ES512
		default:
			return nil, "", "", errors.New("the EC private key's curve is not P-256, P-384 or P-521")
		}
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	default:
		return nil, "", "", errors.New("the private key is not RSA, EC or Ed25519")
	}
	signer := key.(crypto.Signer)
	tp, err := (&jose.JSONWebKey{Key: signer.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, "", "", fmt.Errorf("JWK thumbprint of the private key: %w", err)
	}
	return signer, alg, base64URL(tp), nil
}

// signer returns the JWS signer for the current private key value.
func (h *Handler) assertionSigner() (jose.Signer, error) {
	pemText := h.opts.PrivateKey.Get().Reveal()
	d := sha256.Sum256([]byte(pemText))
	cs := h.clientSigner
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.signer != nil && cs.digest == d {
		return cs.signer, nil
	}
	key, alg, kid, err := ParsePrivateKey(pemText)
	if err != nil {
		return nil, fmt.Errorf("identity private key: %w", err)
	}
	if h.opts.PrivateKeyID != "" {
		kid = h.opts.PrivateKeyID
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		return nil, fmt.Errorf("identity private key: %w", err)
	}
	cs.signer, cs.digest = s, d
	return s, nil
}

// clientAssertion makes a fresh client authentication JWT: iss and sub are
// the client id, aud the issuer identifier (the value RFC 7523bis asks for,
// which every endpoint of the IdP accepts), a short exp and a unique jti.
func (h *Handler) clientAssertion() (string, error) {
	s, err := h.assertionSigner()
	if err != nil {
		return "", err
	}
	now := h.opts.Clock()
	claims, _ := json.Marshal(map[string]any{ // cannot fail: strings and ints
		"iss": h.opts.ClientID,
		"sub": h.opts.ClientID,
		"aud": h.opts.Issuer,
		"iat": now.Unix(),
		"exp": now.Add(clientAssertionTTL).Unix(),
		"jti": randomString(24),
	})
	jws, err := s.Sign(claims)
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return jws.CompactSerialize()
}

// assertionParams are the form parameters that authenticate Gatehouse with
// private_key_jwt; nil for the secret methods.
func (h *Handler) assertionParams() (url.Values, error) {
	if h.opts.ClientAuth != AuthPrivateKeyJWT {
		return nil, nil
	}
	a, err := h.clientAssertion()
	if err != nil {
		return nil, err
	}
	return url.Values{"client_assertion_type": {clientAssertionType}, "client_assertion": {a}}, nil
}

// authCodeOptions are the assertion parameters as x/oauth2 options.
func (h *Handler) authCodeOptions() ([]oauth2.AuthCodeOption, error) {
	p, err := h.assertionParams()
	if err != nil || p == nil {
		return nil, err
	}
	return []oauth2.AuthCodeOption{
		oauth2.SetAuthURLParam("client_assertion_type", p.Get("client_assertion_type")),
		oauth2.SetAuthURLParam("client_assertion", p.Get("client_assertion")),
	}, nil
}

func base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

package oauthserver

import (
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/dpop"
)

// Endpoint paths below a frontend's public_url.
const (
	AuthorizePath = "/bff/oauth/authorize"
	TokenPath     = "/bff/oauth/token"
	RevokePath    = "/bff/oauth/revoke"
	// ASMetadataPath and PRMetadataPath are the RFC 8414 and RFC 9728
	// well-known locations (at the host's root; a path-bound issuer's
	// path is appended, RFC 8414 §3.1).
	ASMetadataPath = "/.well-known/oauth-authorization-server"
	PRMetadataPath = "/.well-known/oauth-protected-resource"
)

// ASMetadata is the RFC 8414 authorization server metadata document.
type ASMetadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	DPoPSigningAlgValuesSupported              []string `json:"dpop_signing_alg_values_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	ScopesSupported                            []string `json:"scopes_supported"`
}

// NewASMetadata builds the document for a frontend whose public_url is
// issuer (no trailing slash). scopes are the route and composite names
// clients may ask for.
func NewASMetadata(issuer string, scopes []string) ASMetadata {
	issuer = strings.TrimSuffix(issuer, "/")
	return ASMetadata{
		Issuer:                                     issuer,
		AuthorizationEndpoint:                      issuer + AuthorizePath,
		TokenEndpoint:                              issuer + TokenPath,
		RevocationEndpoint:                         issuer + RevokePath,
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{"authorization_code"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		TokenEndpointAuthMethodsSupported:          []string{"none"},
		RevocationEndpointAuthMethodsSupported:     []string{"none"},
		DPoPSigningAlgValuesSupported:              dpop.Algorithms(),
		AuthorizationResponseIssParameterSupported: true,
		ScopesSupported:                            append([]string(nil), scopes...),
	}
}

// PRMetadata is the RFC 9728 protected resource metadata document: the APIs
// behind Gatehouse are one resource whose authorization server is Gatehouse.
type PRMetadata struct {
	Resource                      string   `json:"resource"`
	AuthorizationServers          []string `json:"authorization_servers"`
	BearerMethodsSupported        []string `json:"bearer_methods_supported"`
	ScopesSupported               []string `json:"scopes_supported"`
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported"`
	DPoPBoundAccessTokensRequired bool     `json:"dpop_bound_access_tokens_required"`
	ResourceName                  string   `json:"resource_name,omitempty"`
}

// NewPRMetadata builds the document; resource is the public_url.
func NewPRMetadata(resource string, scopes []string) PRMetadata {
	resource = strings.TrimSuffix(resource, "/")
	return PRMetadata{
		Resource:                      resource,
		AuthorizationServers:          []string{resource},
		BearerMethodsSupported:        []string{"header"},
		ScopesSupported:               append([]string(nil), scopes...),
		DPoPSigningAlgValuesSupported: dpop.Algorithms(),
	}
}

// MetadataURL is where a path-bound issuer's RFC 8414 document lives:
// the well-known path inserted between host and path (RFC 8414 §3.1).
func MetadataURL(origin, issuerPath, wellKnown string) string {
	issuerPath = strings.TrimSuffix(issuerPath, "/")
	return strings.TrimSuffix(origin, "/") + wellKnown + issuerPath
}

// BearerChallenge is the WWW-Authenticate value for a request without
// credentials (RFC 9728 §5.1): the Bearer challenge first, as strict clients
// (the MCP SDK) read the first; the DPoP challenge follows it.
func BearerChallenge(resourceMetadataURL, scope string) string {
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata="`)
	b.WriteString(resourceMetadataURL)
	b.WriteByte('"')
	if scope != "" {
		b.WriteString(`, scope="`)
		b.WriteString(scope)
		b.WriteByte('"')
	}
	return b.String()
}

package audit

// Events of the OAuth front door (native apps).
const (
	// EventOAuthCodeIssued: a native app's session was made and its
	// authorization code sent to the app's redirect URI.
	EventOAuthCodeIssued Event = "oauth_code_issued"
	// EventOAuthToken: a token request (success: a handle was issued;
	// failure: refused, with the OAuth error as reason).
	EventOAuthToken Event = "oauth_token"
	// EventOAuthTokenRevoked: a handle was revoked (RFC 7009, or a second
	// redemption of its code).
	EventOAuthTokenRevoked Event = "oauth_token_revoked"
)

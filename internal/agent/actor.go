package agent

import (
	"encoding/base64"
	"encoding/json"
	"time"
)

// ActorTokenType is the actor_token_type Gatehouse sends on token exchanges
// made for an agent (RFC 8693 §3: a JWT).
const ActorTokenType = "urn:ietf:params:oauth:token-type:jwt"

// ActorSubject is the sub of the actor token, and so of the act claim the IdP
// writes into the exchanged token: "agent:" and the grant id.
func ActorSubject(grantID string) string { return "agent:" + grantID }

// ActorToken returns the RFC 8693 actor_token naming the agent: an unsigned
// JWT (alg "none") with iss (Gatehouse's public URL), sub (ActorSubject),
// agent_name, iat and exp (the grant's expiry). It carries no secret — the
// grant id is public and the agent's token never leaves Gatehouse — and is
// sent only to the IdP, over the client-authenticated token request, so the
// IdP trusts it exactly as far as it trusts Gatehouse's client credentials.
// It is not a credential: nothing accepts it on its own.
func ActorToken(grantID, name string, expires time.Time, issuer string, now time.Time) string {
	claims, _ := json.Marshal(struct {
		Iss  string `json:"iss"`
		Sub  string `json:"sub"`
		Name string `json:"agent_name"`
		Iat  int64  `json:"iat"`
		Exp  int64  `json:"exp"`
	}{issuer, ActorSubject(grantID), name, now.Unix(), expires.Unix()}) // cannot fail: strings and ints
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(claims) + "."
}

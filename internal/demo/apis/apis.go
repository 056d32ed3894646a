// Package apis holds the three small downstream APIs of `gatehouse demo` and its audit-tail
// handler: each answers with plausible data plus an echo of which credential it received,
// so the demo page can show what Gatehouse attached. DEMO ONLY: never run these in production.
package apis

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
)

// Person is what the profile API knows about a subject (the sub claim). Access tokens carry no
// profile claims at most IdPs, so the API looks people up here, as a real profile service would.
type Person struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Credential describes the credential a request carried, never its value.
type Credential struct {
	// Kind is "bearer_jwt", "bearer_opaque", "api_key" or "none".
	Kind string `json:"kind"`
	// Looks is a human reading of Kind and claims, e.g. "the signed-in user's access token".
	Looks string `json:"looks_like"`
	// Claims is a subset of the JWT's claims (bearer_jwt only).
	Claims *Claims `json:"claims,omitempty"`
	// Verified is always false: this is an echo for the demo page, not an API that trusts tokens.
	Verified bool `json:"signature_verified"`
	// APIKey is the masked API key (api_key only): never the whole value.
	APIKey string `json:"api_key,omitempty"`
	// APIKeyFingerprint is the first 8 hex digits of the key's SHA-256 (api_key only).
	APIKeyFingerprint string `json:"api_key_sha256_prefix,omitempty"`
	// Note explains the echo.
	Note string `json:"note,omitempty"`
}

// Claims is the part of a JWT the demo page shows.
type Claims struct {
	Issuer   string   `json:"iss,omitempty"`
	Subject  string   `json:"sub,omitempty"`
	Audience []string `json:"aud,omitempty"`
	Scope    string   `json:"scope,omitempty"`
	ClientID string   `json:"client_id,omitempty"`
	Act      any      `json:"act,omitempty"`
	Expiry   int64    `json:"exp,omitempty"`
}

// Echo is the part of every demo API answer that tells what reached the API.
type Echo struct {
	API        string     `json:"api"`
	Method     string     `json:"method"`
	Path       string     `json:"path"`
	Credential Credential `json:"credential"`
	// CookieReceived reports whether any Cookie header reached the API (Gatehouse drops it).
	CookieReceived bool `json:"cookie_received"`
}

// APIKeyHeader is the header the demo's API-key route sets.
const APIKeyHeader = "X-Api-Key"

const unverifiedNote = "decoded WITHOUT verifying the signature: a demo echo for display, not how an API may treat tokens"

// Inspect describes the credential r carries. It never returns a token or key value.
func Inspect(r *http.Request) Credential {
	if key := r.Header.Get(APIKeyHeader); key != "" {
		sum := sha256.Sum256([]byte(key))
		return Credential{
			Kind:              "api_key",
			Looks:             "a static API key (header " + APIKeyHeader + ") that Gatehouse added",
			APIKey:            MaskKey(key),
			APIKeyFingerprint: hex.EncodeToString(sum[:4]),
			Note:              "the key is masked; the browser never sees it",
		}
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return Credential{Kind: "none", Looks: "no credential"}
	}
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return Credential{Kind: "other", Looks: "an Authorization header that is not a bearer token"}
	}
	c, ok := decodeJWT(tok)
	if !ok {
		return Credential{Kind: "bearer_opaque", Looks: "an opaque bearer token"}
	}
	return Credential{Kind: "bearer_jwt", Looks: looks(c), Claims: c, Note: unverifiedNote}
}

// MaskKey hides an API key: at most its last 4 characters stay visible, and only when the key
// is long enough (16+) that they reveal little.
func MaskKey(key string) string {
	if len(key) < 16 {
		return strings.Repeat("•", 8)
	}
	return strings.Repeat("•", 8) + key[len(key)-4:]
}

// looks reads a token's claims the way the demo explains them.
func looks(c *Claims) string {
	switch {
	case c.Act != nil:
		return "a delegated token (RFC 8693 token exchange) acting for the user"
	case c.Subject != "" && c.Subject == c.ClientID:
		return "Gatehouse's own token (client credentials): no user in it"
	case len(c.Audience) > 0 && c.ClientID != "" && !contains(c.Audience, c.ClientID):
		return "an exchanged token (RFC 8693) for audience " + strings.Join(c.Audience, " ")
	default:
		return "the signed-in user's access token"
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// decodeJWT reads a JWS compact token's payload without verifying it (see unverifiedNote).
func decodeJWT(tok string) (*Claims, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	var raw struct {
		Iss      string          `json:"iss"`
		Sub      string          `json:"sub"`
		Aud      json.RawMessage `json:"aud"`
		Scope    json.RawMessage `json:"scope"`
		ClientID string          `json:"client_id"`
		Act      any             `json:"act"`
		Exp      json.Number     `json:"exp"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, false
	}
	c := &Claims{Issuer: raw.Iss, Subject: raw.Sub, ClientID: raw.ClientID, Act: raw.Act}
	c.Audience = stringOrList(raw.Aud)
	c.Scope = strings.Join(stringOrList(raw.Scope), " ")
	if n, err := raw.Exp.Int64(); err == nil {
		c.Expiry = n
	}
	return c, true
}

// stringOrList decodes a JSON string or list of strings (aud and scope come in both shapes).
func stringOrList(m json.RawMessage) []string {
	if len(m) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(m, &one) == nil {
		if one == "" {
			return nil
		}
		return []string{one}
	}
	var many []string
	if json.Unmarshal(m, &many) == nil {
		return many
	}
	return nil
}

func echo(api string, r *http.Request) Echo {
	return Echo{API: api, Method: r.Method, Path: r.URL.Path, Credential: Inspect(r), CookieReceived: r.Header.Get("Cookie") != ""}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ProfileResponse is the profile API's answer.
type ProfileResponse struct {
	Echo
	Subject string `json:"sub"`
	Name    string `json:"name"`
	Email   string `json:"email"`
}

// Profile answers with the caller's profile, looked up by the bearer token's sub in people.
func Profile(people map[string]Person) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := echo("profile", r)
		resp := ProfileResponse{Echo: e}
		if e.Credential.Claims != nil {
			resp.Subject = e.Credential.Claims.Subject
			if p, ok := people[resp.Subject]; ok {
				resp.Name, resp.Email = p.Name, p.Email
			}
		}
		if resp.Subject == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "no_user", "message": "the profile API needs a user's token", "echo": e})
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// Notification is one item of the notifications API.
type Notification struct {
	ID     int    `json:"id"`
	Title  string `json:"title"`
	Unread bool   `json:"unread"`
}

// NotificationsResponse is the notifications API's answer.
type NotificationsResponse struct {
	Echo
	Unread int            `json:"unread"`
	Items  []Notification `json:"items"`
}

// Notifications answers with a fixed list of notifications.
func Notifications() http.Handler {
	items := []Notification{
		{ID: 3, Title: "Your invoice for November is ready", Unread: true},
		{ID: 2, Title: "New sign-in from Chromium on Linux", Unread: true},
		{ID: 1, Title: "Welcome to the Gatehouse demo", Unread: false},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		for _, it := range items {
			if it.Unread {
				n++
			}
		}
		writeJSON(w, http.StatusOK, NotificationsResponse{Echo: echo("notifications", r), Unread: n, Items: items})
	})
}

// EntitlementsResponse is the billing/entitlements API's answer.
type EntitlementsResponse struct {
	Echo
	Plan     string   `json:"plan"`
	Seats    int      `json:"seats"`
	Features []string `json:"features"`
}

// Entitlements answers with the caller's plan tier and features (a fixed plan per subject).
func Entitlements() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := echo("billing", r)
		plan, feats := "free", []string{"1 project", "community support"}
		if c := e.Credential.Claims; c != nil && c.Subject != "" {
			// Any stable choice will do; it only makes the two demo users differ.
			if sum := sha256.Sum256([]byte(c.Subject)); sum[0]%2 == 0 {
				plan, feats = "pro", []string{"unlimited projects", "audit export", "SSO", "priority support"}
			} else {
				plan, feats = "team", []string{"10 projects", "audit export", "email support"}
			}
		}
		sort.Strings(feats)
		writeJSON(w, http.StatusOK, EntitlementsResponse{Echo: e, Plan: plan, Seats: 5, Features: feats})
	})
}

// WeatherResponse is the API-key weather API's answer.
type WeatherResponse struct {
	Echo
	City        string  `json:"city"`
	TempC       float64 `json:"temp_c"`
	Description string  `json:"description"`
}

// Weather answers with a fixed forecast; it is the demo's API-key (header credential) API.
func Weather() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := echo("weather", r)
		if e.Credential.Kind != "api_key" {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "api_key_required", "message": "the weather API needs an API key", "echo": e})
			return
		}
		writeJSON(w, http.StatusOK, WeatherResponse{Echo: e, City: "Edinburgh", TempC: 7.5, Description: "drizzle, then sunny spells"})
	})
}

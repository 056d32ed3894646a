// Package agent is Gatehouse's agent credentials broker: it lets a signed-in
// user delegate a few routes and methods, for minutes, to an agent (an AI
// agent, a script, a partner integration) that calls them with
// Authorization: Bearer gha_… and never receives the user's tokens.
//
// # Token and storage
//
// A token is "gha_" and 64 characters of base64url: a 128-bit random id and a
// 256-bit key. The grant is stored under ID = a hash of the id, as a
// session.Record in a store namespace of its own (see Options.Store) whose
// Subject is the delegating session's id, so that the store's subject index
// lists and deletes a session's grants on every backend (memory, bolt,
// redis). The record carries the grant's description (name, routes, methods,
// times) in the clear, for listing, and the delegating session's handle
// sealed with AES-256-GCM under the token's key; the additional data binds
// the ciphertext to the id, the session id and the description. A dump of
// the store therefore yields no token and no session, and an edited
// description no longer opens.
//
// # Rules
//
// A grant is the request narrowed (Narrow): routes asked for ∩
// agents.delegable_routes ∩ methods each route serves ∩ what the user's own
// policy allows now, with agent set; TTL = the request's (or default_ttl),
// capped at max_ttl and at the session's remaining absolute lifetime.
// Narrowing never fails a request for asking too much; only an empty result
// does.
//
// # Lifetime
//
// Every agent request loads the delegating session (Authenticate), so a grant
// dies with its session on every instance, within the session's revocation
// bound, whatever ended it. The session-end hook (SessionEnded) then deletes
// the dead session's grants and audits their end.
//
// # Cache
//
// Opened grants are cached per instance (cache.go) with the session cache's
// consistency: only grants that opened, keyed by id and checked against a
// hash of the token's key (never the key itself); dropped at once by a
// revocation here, by the grant store's pub/sub or the session's end
// elsewhere, and read again after the session cache's TTL at the latest.
// Expiry and session are checked on every request, cached or not.
package agent

// Package session keeps signed-in users' sessions server-side: encrypted
// records in a store (memory, bolt or redis), an opaque handle in the cookie,
// idle and absolute timeouts, revocation and a small cache for the hot path.
//
// # Handle and record
//
// The cookie holds a Handle: 16 random bytes (the id) and a 32-byte
// per-session key, 64 characters of unpadded base64url. The store keys the
// record by ID() = base64url(SHA-256("gatehouse session id" || id))[:27] and
// keeps tokens and claims sealed with AES-256-GCM under the per-session key;
// the additional data binds the ciphertext to the record's id, subject and
// IdP session id. Subject, IdP session id and the four times sit beside the
// ciphertext for listing, revocation and expiry. A copy of the store
// therefore yields no token and no usable session, and a record whose index
// fields were rewritten no longer decrypts.
//
// # Timeouts
//
// Idle and absolute expiry are checked by the Manager on every Load with its
// clock. A slide is written to the store only when the stored LastSeen is at
// least SlideWriteInterval old (default IdleTimeout/10): a session idles out
// no later than IdleTimeout after its last request and, when the in-memory
// LastSeen is lost (cache expiry, another instance), no earlier than
// IdleTimeout - SlideWriteInterval. Nothing extends a session past
// AbsoluteTimeout, and lowering either timeout applies to existing sessions.
//
// # Revocation bound
//
// Delete, DeleteBySubject and DeleteByIdPSession take effect at once on the
// instance that calls them. Other instances sharing a redis store drop the
// session from their caches when the pub/sub invalidation arrives (a few
// milliseconds); should a message be lost, the subscription notices and
// empties the cache, and in any case no cached copy is served longer than
// CacheTTL (default 5s). Bolt and memory stores serve a single instance.
//
// # Store outage
//
// A background check pings the store every HealthInterval (250ms) with a
// HealthTimeout (250ms). After a failed ping every Load, Create and Update
// returns ErrUnavailable at once, cached or not, because the cache can no
// longer learn of revocations; the first successful ping restores service
// with an empty cache. With redis, a request that reaches the store while it
// is down fails within about 100ms (two dial attempts).
package session

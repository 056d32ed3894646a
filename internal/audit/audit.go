// Package audit writes Gatehouse's tamper-evident audit log: one hash-chained JSON line per
// access decision and per security event, and verifies such logs.
//
// # Format
//
// The log is JSON Lines: one record per line, each line ending in "\n". A record is a JSON object
// whose members always appear in this fixed order, written by a hand-rolled encoder (no reflection):
//
//	time, seq, event, outcome, reason, sub, session, actor, client, route, method, path,
//	status, upstream, remote_ip, request_id, trace_id, detail, correlation_id, prev, hash
//
// time (RFC 3339, UTC, exactly three fractional digits, e.g. "2026-11-28T16:01:02.345Z"), seq,
// event, prev and hash are always present; every other member is omitted when empty (status when
// 0, actor when it has no element). Strings are escaped as JSON requires: '"', '\\' and every
// control character are escaped (\n, \r, \t as such, the rest as \u00XX), U+2028 and U+2029 are
// escaped, and each byte that is not valid UTF-8 is replaced by U+FFFD. So no value can end a
// line or add a member: a record is always exactly one line. There is no insignificant white space.
//
// This encoding is canonical: a line is valid only if re-encoding its decoded record yields the
// very same bytes, which is what [Verify] checks.
//
// # Chain
//
// seq starts at 1 and increases by exactly one per record. prev is the hash of the record before
// (64 "0" characters, [Genesis], for the first record of a chain) and
//
//	hash = lowercase hex( SHA-256( prev || line-without-hash ) )
//
// where line-without-hash is the record's canonical encoding with the `,"hash":"…"` member left
// out (it still contains prev), i.e. the bytes up to and including the `"prev":"…"` member
// followed by "}". Editing, inserting, deleting or reordering a line breaks the chain at that line.
//
// The chain spans restarts and rotations: on start the Logger reads the last line of the current
// file (or, when that file is missing or empty, of the newest rotated file), checks it and continues
// with seq+1 and its hash. A rotated file is renamed to path.<UTC time>[-n] and the first record of
// the new file has prev = the last hash of the rotated one. [Files] lists a rotated set in chain order.
//
// A hash chain without a key shows that a log was altered only relative to a trusted head: whoever
// can rewrite the whole file from some line on, or cut its last lines, can produce a chain that
// verifies. [Logger.Head] exposes the latest seq and hash, and the Logger writes the head to its
// slog logger at every rotation and at Close, so that it can be anchored elsewhere (a different log
// pipeline, a ticket) and compared with [Result].Head of a verification.
//
// # What never goes into a record
//
// A Record has no field for a token, a refresh token, a client secret, an API key or a session
// handle, and callers must put none into any field: Session is Gatehouse's public session id (or a
// hash of the handle), never the cookie handle; agent tokens are named by their id, never by
// their value. Path is the cleaned request path without the query string.
package audit

import (
	"errors"
	"fmt"
	"time"
)

// Event names what a record is about.
type Event string

// Events Gatehouse records.
const (
	EventLogin             Event = "login"
	EventLoginFailed       Event = "login_failed"
	EventLogout            Event = "logout"
	EventSessionExpired    Event = "session_expired"
	EventSessionRevoked    Event = "session_revoked"
	EventBackchannelLogout Event = "backchannel_logout"
	EventTokenRefresh      Event = "token_refresh"
	EventRefreshFailed     Event = "refresh_failed"
	EventTokenExchange     Event = "token_exchange"
	EventAccess            Event = "access"
	EventForward           Event = "forward"
	EventAuditRepaired     Event = "audit_repaired"
	EventAgentTokenIssued  Event = "agent_token_issued"
	EventAgentTokenUsed    Event = "agent_token_used"
	EventAgentTokenRevoked Event = "agent_token_revoked"
	EventSecretRotated     Event = "secret_rotated"
	EventConfigLoaded      Event = "config_loaded"
)

// Outcome is the result of the decision or event a record describes.
type Outcome string

// Outcomes. An access decision is allow, deny or error; other events use success or failure.
const (
	OutcomeAllow   Outcome = "allow"
	OutcomeDeny    Outcome = "deny"
	OutcomeError   Outcome = "error"
	OutcomeSuccess Outcome = "success"
	OutcomeFailure Outcome = "failure"
)

// Record is one audit record as a caller fills it. seq, prev and hash are assigned by the Logger.
// No field may carry a token, secret or session handle (see the package documentation).
// A committed Record's Actor slice must not be modified afterwards.
type Record struct {
	// Time of the decision; when zero, the Logger uses the time of Commit or Log.
	Time    time.Time
	Event   Event
	Outcome Outcome
	// Reason is a short machine-readable why (e.g. "csrf_missing", "policy"), never a raw request value.
	Reason string
	// Sub is the user's subject.
	Sub string
	// Session is the public session id or a hash of the handle — never the cookie handle itself.
	Session string
	// Sessions lists the public ids of the sessions an event ended when it
	// ended several (back-channel logout).
	Sessions []string
	// Actor is the delegation chain, outermost first (e.g. the agent id acting for Sub).
	Actor    []string
	Client   string
	Route    string
	Method   string
	Path     string
	Status   int
	Upstream string
	RemoteIP string
	// RequestID and TraceID correlate the record with logs and traces.
	RequestID string
	TraceID   string
	// Detail is free text for records that need more than Reason (the repair marker); never a
	// request value.
	Detail string
	// CorrelationID ties a composite's record to its calls' records (the
	// composite's request id); omitted when empty.
	CorrelationID string
}

// Head identifies the end of a chain: the seq and hash of its last record.
// The zero Head (and a Head whose Hash is Genesis) is the start of a new chain.
type Head struct {
	Seq  uint64
	Hash string
}

// Genesis is the prev of the first record of a chain.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// ErrUnavailable means the audit log cannot take a record now (buffer full, sink failing, or
// closed). A request must then be answered 503 and not forwarded.
var ErrUnavailable = errors.New("audit log unavailable")

// ErrRecordsLost means Close could not write (or sync) every record it was given: the sink
// kept failing until the close timeout. gatehouse serve then exits with code 3.
var ErrRecordsLost = errors.New("audit records lost")

// BrokenError names the first line of a log that does not verify.
type BrokenError struct {
	File   string
	Line   int
	Reason string
}

// Error returns "file:line: reason".
func (e *BrokenError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

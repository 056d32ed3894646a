// Package proxy is Gatehouse's API gateway stage: it cleans and matches the
// request path, runs every request through one pipeline (route, CSRF,
// session, policy, credential, audit) and forwards allowed requests with
// strict header hygiene.
//
// The stages are values (Route, CSRF, Identify, Custom, Authorize,
// AttachCredential, Audit, Forward); a frontend's order is written once, in
// internal/gateway/stages.go (Options.Stages; DefaultStages otherwise):
// clean path -> route (and method, upgrade, declared body size) -> CSRF ->
// identify -> [limit] -> authorize -> credential -> audit reserve -> forward
// -> audit commit. Call runs the post-identify half for Go callers. Every
// refusal is a *pipeline.Refusal, written, audited and counted by
// refuse/account only. The route comes first because it
// says whether a session is needed (anonymous) and whether the Origin check
// replaces the CSRF header (WebSocket); CSRF comes before identify so a forged
// request costs no session-store read. Nothing downstream is contacted before
// every check has passed.
//
// Answers Gatehouse gives itself, always as JSON via apierror:
//
//	400 bad_path                    path cannot be cleaned unambiguously
//	400 ambiguous_credentials       a session cookie and a non-cookie credential together
//	401 unauthenticated             no valid session (Authenticator: ErrNoSession)
//	401 session_expired             UserTokens refused to refresh (ErrNoSession)
//	401 csrf_*                      CSRF header, Origin or Sec-Fetch-Site check failed (Duende's status)
//	403 upgrade_not_allowed         protocol upgrade on a non-WebSocket route
//	403 policy_denied               the route's Authorizer said no
//	403 upstream_forbidden          upstream 403 carrying a WWW-Authenticate challenge
//	404 no_route                    no route matches the cleaned path
//	405 method_not_allowed          with an Allow header
//	413 body_too_large              request body over the route's limit
//	408 body_timeout                the client stopped sending its body (server.body_read_timeout)
//	502 user_token_unavailable | token_exchange_failed | client_credentials_failed
//	502 upstream_unavailable        upstream unreachable or failed
//	401 upstream_unauthorized       upstream 401 on a user_token/token_exchange route:
//	                                the user's token was refused; the SPA signs in again
//	502 upstream_unauthorized       upstream 401 on a route with Gatehouse's own credential
//	                                (client_credentials, header, none): a gateway fault
//	503 session_unavailable | policy_unavailable | audit_unavailable
//	504 upstream_timeout            no response headers within the route timeout
package proxy

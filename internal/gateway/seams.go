package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/oidc"
	"github.com/gatehouse-dev/gatehouse/internal/policy"
	"github.com/gatehouse-dev/gatehouse/internal/proxy"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
)

// This file adapts the packages to the proxy's consumer-side seams. Each
// adapter is a thin translation; the behaviour lives in the packages.

// userTokens hands the proxy the user's access token, refreshed on demand.
type userTokens struct{ idp *lazyIdP }

func (u *userTokens) AccessToken(ctx context.Context, id *proxy.Identity) (secret.Secret, error) {
	if id.Session == nil {
		return secret.Secret{}, errors.New("identity carries no session")
	}
	t, err := u.idp.tokens()
	if err != nil {
		return secret.Secret{}, err
	}
	tok, err := t.AccessToken(ctx, id.Handle, id.Session)
	if errors.Is(err, oidc.ErrSessionEnded) {
		return secret.Secret{}, fmt.Errorf("%w: %w", proxy.ErrNoSession, err)
	}
	return tok, err
}

// RefreshRejected refreshes the session's tokens after an upstream refused
// rejected (once per session and rejected token, across goroutines).
func (u *userTokens) RefreshRejected(ctx context.Context, id *proxy.Identity, rejected secret.Secret) (secret.Secret, error) {
	if id.Session == nil {
		return secret.Secret{}, errors.New("identity carries no session")
	}
	t, err := u.idp.tokens()
	if err != nil {
		return secret.Secret{}, err
	}
	tok, err := t.RefreshRejected(ctx, id.Handle, id.Session, rejected)
	if errors.Is(err, oidc.ErrSessionEnded) {
		return secret.Secret{}, fmt.Errorf("%w: %w", proxy.ErrNoSession, err)
	}
	return tok, err
}

// exchanger performs RFC 8693 exchanges through the OIDC client.
type exchanger struct {
	idp    *lazyIdP
	issuer string           // public_url's origin: the iss of agents' actor tokens
	now    func() time.Time // the actor tokens' iat
}

func (e *exchanger) Exchange(ctx context.Context, subjectToken secret.Secret, audience, scope, resource string) (secret.Secret, time.Time, error) {
	t, err := e.idp.tokens()
	if err != nil {
		return secret.Secret{}, time.Time{}, err
	}
	return t.Exchange(ctx, subjectToken, audience, scope, resource)
}

// ExchangeForSession exchanges the session's current access token and caps
// the result's expiry at that token's (issue 10 item 11).
func (e *exchanger) ExchangeForSession(ctx context.Context, id *proxy.Identity, audience, scope, resource string) (secret.Secret, time.Time, error) {
	if id.Session == nil {
		return secret.Secret{}, time.Time{}, errors.New("identity carries no session")
	}
	t, err := e.idp.tokens()
	if err != nil {
		return secret.Secret{}, time.Time{}, err
	}
	tok, exp, err := t.ExchangeForSession(ctx, id.Handle, id.Session, audience, scope, resource)
	if errors.Is(err, oidc.ErrSessionEnded) {
		return secret.Secret{}, time.Time{}, fmt.Errorf("%w: %w", proxy.ErrNoSession, err)
	}
	return tok, exp, err
}

// clientCredentials returns a route's client-credentials token source.
func clientCredentials(idp *lazyIdP, scope, audience string) proxy.TokenSource {
	scopes := strings.Fields(scope)
	return proxy.TokenSourceFunc(func(ctx context.Context) (secret.Secret, error) {
		t, err := idp.tokens()
		if err != nil {
			return secret.Secret{}, err
		}
		return t.ClientCredentials(ctx, scopes, audience)
	})
}

// routeAuthorizer adapts a route's policy.Authorizer (CEL + PDP) to the proxy.
type routeAuthorizer struct {
	client string
	authz  *policy.Authorizer
	log    *slog.Logger
	now    func() time.Time
}

// errPolicyUnavailable makes the proxy answer 503 (a PDP that cannot be
// asked) rather than 403 (a policy that says no).
type errPolicyUnavailable struct{ reason string }

func (e errPolicyUnavailable) Error() string { return "policy decision unavailable: " + e.reason }

func (a *routeAuthorizer) Authorize(ctx context.Context, in *proxy.AuthzInput) (bool, error) {
	pin := policy.Input{
		Route:  in.Route,
		Client: a.client,
		Request: policy.RequestInfo{
			Method: in.Method, Path: in.Path, RawQuery: in.RawQuery, Header: in.Header,
		},
	}
	if in.ClientIPText != "" {
		pin.Request.RemoteIP = in.ClientIPText
	} else if in.ClientIP.IsValid() {
		pin.Request.RemoteIP = in.ClientIP.String()
	}
	if in.Identity != nil {
		pin.User = in.Identity.Claims
		if s := in.Identity.Session; s != nil {
			pin.Session = &policy.SessionInfo{SID: s.ID, AuthTime: s.AuthTime, Created: s.Created, ACR: s.ACR, AMR: s.AMR, Age: a.now().Sub(s.Created)}
		}
		if ag := in.Identity.Agent; ag != nil {
			pin.Agent = &policy.AgentInfo{ID: ag.ID, Name: ag.Name, Routes: ag.Routes, Methods: ag.Methods, Expires: ag.Expires}
		}
	}
	d := a.authz.Decide(ctx, &pin, in.RequestID)
	in.Reason = d.Reason
	if d.Allow {
		return true, nil
	}
	if d.Err != nil {
		// The policy package keeps request and claim values out of Err.
		a.log.DebugContext(ctx, "policy denied", "route", in.Route, "reason", d.Reason, "detail", d.Err.Error(), "request_id", in.RequestID)
	}
	if d.Status == http.StatusServiceUnavailable {
		return false, errPolicyUnavailable{d.Reason}
	}
	return false, nil
}

// auditor adapts the audit logger to the proxy and counts requests in the
// metrics (so one place sees every decision).
type auditor struct {
	log     *audit.Logger
	client  string
	metrics *telemetry.Metrics
	now     func() time.Time
}

// record is ev's audit record; observe counts it in the request metrics (once per request).
func (a *auditor) record(ctx context.Context, ev *proxy.AuditEvent, observe bool) audit.Record {
	outcome := audit.OutcomeAllow
	switch {
	case ev.Decision != "allow":
		outcome = audit.OutcomeDeny
	case ev.Status >= 500:
		outcome = audit.OutcomeError
	}
	rec := audit.Record{
		Time: ev.Time, Event: audit.EventAccess, Outcome: outcome, Reason: ev.Code,
		Sub: ev.Subject, Session: ev.SessionID, Actor: ev.Actor, Client: a.client, Route: ev.Route,
		Method: ev.Method, Path: ev.Path, Status: ev.Status, Upstream: ev.Upstream,
		RequestID: ev.RequestID, TraceID: telemetry.TraceID(ctx), CorrelationID: ev.CorrelationID,
	}
	if ev.ClientIPText == "" && ev.ClientIP.IsValid() {
		ev.ClientIPText = ev.ClientIP.String() // the completion record reuses it
	}
	rec.RemoteIP = ev.ClientIPText
	// A policy refusal records the policy's own reason (cel_denied, cel_error,
	// pdp_timeout, …) rather than the generic answer code, so the log tells a
	// rule that said no from a PDP that could not be asked.
	if ev.Reason != "" && (rec.Reason == "" || ev.Code == "policy_denied" || ev.Code == "policy_unavailable") {
		rec.Reason = ev.Reason
	}
	if ev.AuditReason != "" {
		rec.Reason = ev.AuditReason
	}
	if !observe {
		return rec
	}
	a.metrics.ObserveRequest(ev.Route, string(outcome), ev.Status, a.now().Sub(ev.Time))
	return rec
}

// reservation is the auditor itself under the proxy.Reservation interface:
// converting the pointer costs no allocation per request.
type reservation auditor

// Reserve writes the request's decision record (event "forward") before the upstream is
// contacted — with audit.durability sync it returns once the record is fsynced — and holds no
// audit capacity while the request is in flight: the outcome goes into a separate completion
// record (the usual "access" record) written by Commit, correlated by request id. So neither a
// crash nor thousands of slow requests can leave a forwarded request unrecorded or starve
// everyone else of audit capacity. (Carry this onto the new pipeline as is: decision before
// forwarding, completion after.)
func (a *auditor) Reserve(ctx context.Context, ev *proxy.AuditEvent) (proxy.Reservation, error) {
	rec := a.record(ctx, ev, false)
	rec.Event, rec.Status, rec.Reason = audit.EventForward, 0, ""
	if err := a.log.Decision(ctx, rec); err != nil {
		return nil, err
	}
	return (*reservation)(a), nil
}

func (r *reservation) Commit(ctx context.Context, ev *proxy.AuditEvent) {
	a := (*auditor)(r)
	a.log.Completion(ctx, a.record(ctx, ev, true))
}

func (a *auditor) Record(ctx context.Context, ev *proxy.AuditEvent) error {
	return a.log.Log(ctx, a.record(ctx, ev, true))
}

// eventAuditor passes the OIDC client's security events to the audit log
// and counts them in the metrics. It is a sink only: session ends reach the
// per-session caches through session.Manager.OnEnd.
type eventAuditor struct {
	log     *audit.Logger
	client  string
	metrics *telemetry.Metrics
}

func (e *eventAuditor) Log(ctx context.Context, rec audit.Record) error {
	if rec.Client == "" {
		rec.Client = e.client
	}
	e.metrics.Event(string(rec.Event), string(rec.Outcome))
	return e.log.Log(ctx, rec)
}

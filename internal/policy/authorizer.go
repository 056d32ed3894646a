package policy

import (
	"context"
	"net/http"
)

// Decision reasons. Allowed requests carry ReasonAllowed; every other reason
// is a denial.
const (
	ReasonAllowed = "allowed"
	// Policy denials: 403.
	ReasonCELDenied = "cel_denied" // the route's expression yielded false
	ReasonCELError  = "cel_error"  // the expression failed (missing claim, null session, cost limit, …)
	ReasonPDPDenied = "pdp_denied" // the PDP answered {"decision": false}
	// PDP unavailable or broken: 503 (the request may succeed later).
	ReasonPDPTimeout     = "pdp_timeout"      // no answer within the timeout
	ReasonPDPUnreachable = "pdp_unreachable"  // connection failed
	ReasonPDPStatus      = "pdp_status"       // non-2xx answer
	ReasonPDPBadResponse = "pdp_bad_response" // body not a JSON object (or too large)
	ReasonPDPNoDecision  = "pdp_no_decision"  // "decision" missing or not a boolean
	ReasonCanceled       = "canceled"         // the request's ctx ended during evaluation or the PDP call
)

// Decision is the outcome of authorizing one request. Status is the HTTP
// status to answer a denial with: 403 for a policy denial (cel_denied,
// cel_error, pdp_denied), 503 when the PDP is unavailable or broken
// (pdp_timeout, pdp_unreachable, pdp_status, pdp_bad_response,
// pdp_no_decision, canceled); 200 when allowed. Err explains a denial for
// the operator's log (nil for cel_denied); it never holds a secret, a token
// or a request or claim value.
type Decision struct {
	Allow  bool
	Reason string
	Status int
	Err    error
}

var allowDecision = Decision{Allow: true, Reason: ReasonAllowed, Status: http.StatusOK}

func deny(reason string, err error) Decision {
	status := http.StatusServiceUnavailable
	switch reason {
	case ReasonCELDenied, ReasonCELError, ReasonPDPDenied:
		status = http.StatusForbidden
	}
	return Decision{Reason: reason, Status: status, Err: err}
}

// Authorizer is one route's authorization stage, built once at start-up:
// the route's compiled expression (nil when the route has no `allow:`) and
// the PDP (nil when none is configured). It is safe for concurrent use.
type Authorizer struct {
	prog *Program
	pdp  *PDP
}

// NewAuthorizer builds a route's authorizer; either argument may be nil.
func NewAuthorizer(prog *Program, pdp *PDP) *Authorizer {
	return &Authorizer{prog: prog, pdp: pdp}
}

// Decide runs the expression, then (only if it allowed) the PDP; deny wins
// and any error denies. With neither configured it allows: the pipeline has
// already required a valid session, except on anonymous routes where
// allowing everyone is the documented default.
func (a *Authorizer) Decide(ctx context.Context, in *Input, requestID string) Decision {
	if a.prog != nil {
		ok, err := a.prog.Eval(ctx, in)
		if err != nil {
			if ctx.Err() != nil { // the request ended or timed out, not the policy's fault
				return deny(ReasonCanceled, err)
			}
			return deny(ReasonCELError, err)
		}
		if !ok {
			return deny(ReasonCELDenied, nil)
		}
	}
	if a.pdp != nil {
		return a.pdp.Decide(ctx, in, requestID)
	}
	return allowDecision
}

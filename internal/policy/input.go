package policy

import (
	"net/http"
	"sync"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
)

// Input is what a policy decides on. The pipeline fills it once per request
// from values it already holds; nothing here is converted until an
// expression (or the PDP request) reads it.
type Input struct {
	// User is the ID token claims merged with the userinfo claims; nil or
	// empty on anonymous routes. Values are as decoded from JSON (string,
	// bool, float64, []any, map[string]any).
	User map[string]any
	// Session is nil on anonymous routes (policies see `session == null`).
	Session *SessionInfo
	// Request describes the request as it will be forwarded.
	Request RequestInfo
	// Route is the matched route's name.
	Route string
	// Client is the frontend's name (the BFF's OIDC client).
	Client string
	// Agent is set when the caller is an agent acting on a user's behalf.
	Agent *AgentInfo
}

// RequestInfo is the request part of Input.
type RequestInfo struct {
	Method string
	// Path is the cleaned path the route matched (and that is forwarded).
	Path string
	// RawQuery is the query without '?'. Policies see each parameter's
	// value; reading a parameter the query repeats (in any letter case) is
	// an evaluation error, so the request is denied: an upstream might act
	// on the other copy.
	RawQuery string
	// Header is the client's request header. Policies see lower-cased
	// names; reading by name a header sent in more than one field line is
	// an evaluation error (deny), and names containing "_" are invisible,
	// as the proxy never forwards them.
	Header http.Header
	// RemoteIP is the client address after trusted-proxy resolution.
	RemoteIP string
}

// SessionInfo is the session part of Input.
type SessionInfo struct {
	SID      string // Gatehouse's public session id
	AuthTime time.Time
	Created  time.Time
	ACR      string
	AMR      []string
	Age      time.Duration
}

// AgentInfo describes an agent's grant; set only for agent-token requests.
type AgentInfo struct {
	ID      string
	Name    string
	Routes  []string
	Methods []string
	Expires time.Time
}

// activation resolves the policy variables lazily straight from an Input,
// so an expression that reads only `user` costs no header conversion. It is
// pooled per Program: it never outlives one Eval.
type activation struct {
	in    *Input
	req   requestVal
	sess  sessionVal
	agent agentVal
}

func newActivationPool(ts *objTypes) *sync.Pool {
	return &sync.Pool{New: func() any {
		a := &activation{}
		a.req.t = ts.request
		a.req.hm = headerMapVal{r: &a.req, mapType: ts.strMap}
		a.req.qm = queryMapVal{r: &a.req, mapType: ts.strMap}
		a.sess.t = ts.session
		a.agent.t = ts.agent
		a.agent.grant.t = ts.grant
		return a
	}}
}

func (a *activation) reset(in *Input) {
	a.in = in
	a.req.r = &in.Request
	a.req.headers, a.req.query, a.req.queryErr, a.req.parsedQ, a.req.repeated = nil, nil, nil, false, nil
	a.sess.s = in.Session
	a.agent.a = in.Agent
	a.agent.grant.a = in.Agent
}

func (a *activation) clear() {
	a.in = nil
	a.req.r = nil
	a.req.headers, a.req.query, a.req.queryErr, a.req.repeated = nil, nil, nil, nil
	a.sess.s = nil
	a.agent.a, a.agent.grant.a = nil, nil
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "user":
		return a.in.User, true // a nil map reads as an empty one
	case "session":
		if a.in.Session == nil {
			return types.NullValue, true
		}
		return &a.sess, true
	case "request":
		return &a.req, true
	case "route":
		return types.String(a.in.Route), true
	case "client":
		return types.String(a.in.Client), true
	case "agent":
		if a.in.Agent == nil {
			return types.NullValue, true
		}
		return &a.agent, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

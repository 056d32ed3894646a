package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Request is what a user asks to delegate (the body of POST /bff/agents/tokens).
type Request struct {
	Name    string
	Routes  []string
	Methods []string      // default [GET]
	TTL     time.Duration // 0: the default TTL
}

// Bounds are everything a grant must stay inside.
type Bounds struct {
	// Delegable maps each route (or composite) a user may delegate to the
	// methods it serves.
	Delegable map[string][]string
	// MaxTTL caps the grant's lifetime; DefaultTTL applies when the request
	// names none.
	MaxTTL, DefaultTTL time.Duration
	// SessionLeft is the delegating session's remaining absolute lifetime.
	SessionLeft time.Duration
	// Allowed reports whether the user's own policy allows method on route
	// now, for this agent. An error (a PDP that cannot be asked) fails the
	// whole request: a grant is never decided on a guess.
	Allowed func(route, method string) (bool, error)
}

// ErrNothingDelegable means the intersection of the request and the bounds is
// empty: no route and method the user asked for may be delegated.
var ErrNothingDelegable = errors.New("nothing asked for can be delegated")

// BadRequestError is a request that cannot be understood; its message says
// what to fix and never echoes a value.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

func badRequest(format string, args ...any) error {
	return &BadRequestError{Msg: fmt.Sprintf(format, args...)}
}

var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// Narrow computes the grant for req within b: every (route, method) granted
// was asked for, is delegable, is served by the route and is allowed by the
// user's policy now; the TTL is at most what was asked for (or the default),
// MaxTTL and the session's remaining lifetime. Unknown, undelegable or
// refused parts are dropped, never an error: the grant is narrower instead.
func Narrow(req Request, b Bounds) (scope []RouteMethods, ttl time.Duration, err error) {
	methods := req.Methods
	if len(methods) == 0 {
		methods = []string{"GET"}
	}
	ttl = req.TTL
	if ttl <= 0 {
		ttl = b.DefaultTTL
	}
	ttl = min(ttl, b.MaxTTL, b.SessionLeft)
	if ttl <= 0 {
		return nil, 0, ErrNothingDelegable
	}
	routes := slices.Clone(req.Routes)
	slices.Sort(routes)
	routes = slices.Compact(routes)
	for _, r := range routes {
		served, ok := b.Delegable[r]
		if !ok {
			continue
		}
		var granted []string
		for _, m := range knownMethods { // sorted output, duplicates gone
			if !slices.Contains(methods, m) || !serves(served, m) {
				continue
			}
			allow, err := b.Allowed(r, m)
			if err != nil {
				return nil, 0, err
			}
			if allow {
				granted = append(granted, m)
			}
		}
		if len(granted) > 0 {
			slices.Sort(granted)
			scope = append(scope, RouteMethods{Route: r, Methods: granted})
		}
	}
	if len(scope) == 0 {
		return nil, 0, ErrNothingDelegable
	}
	return scope, ttl, nil
}

func serves(methods []string, m string) bool {
	return slices.Contains(methods, m) || (m == "HEAD" && slices.Contains(methods, "GET"))
}

// Name limits: the name appears in lists, audit records and the policy
// variable agent.name.
const maxNameLen = 64

func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ' ') {
			return false
		}
	}
	return true
}

// MaxRequestBody bounds the body of POST /bff/agents/tokens.
const MaxRequestBody = 8 << 10

type requestJSON struct {
	Name    string          `json:"name"`
	Routes  []string        `json:"routes"`
	Methods []string        `json:"methods"`
	TTL     json.RawMessage `json:"ttl"`
}

// ParseRequest decodes a token request body: {"name", "routes", "methods",
// "ttl"} where ttl is a duration ("5m") or a whole number of seconds.
// Methods are case-insensitive. Unknown fields are an error.
func ParseRequest(body []byte) (Request, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var j requestJSON
	if err := dec.Decode(&j); err != nil {
		return Request{}, badRequest("the body must be a JSON object {\"name\", \"routes\", \"methods\", \"ttl\"} with no other fields")
	}
	if dec.More() {
		return Request{}, badRequest("the body must be one JSON object")
	}
	if !validName(j.Name) {
		return Request{}, badRequest("name is required: 1 to %d letters, digits, spaces, - _ or . (it names the agent in lists and the audit log)", maxNameLen)
	}
	if len(j.Routes) == 0 || len(j.Routes) > 64 {
		return Request{}, badRequest("routes must list 1 to 64 route names")
	}
	req := Request{Name: j.Name, Routes: j.Routes}
	if len(j.Methods) > len(knownMethods) {
		return Request{}, badRequest("methods must list at most %d methods", len(knownMethods))
	}
	for _, m := range j.Methods {
		up := strings.ToUpper(m)
		if !slices.Contains(knownMethods, up) {
			return Request{}, badRequest("methods may contain only %s", strings.Join(knownMethods, ", "))
		}
		req.Methods = append(req.Methods, up)
	}
	ttl, err := parseTTL(j.TTL)
	if err != nil {
		return Request{}, err
	}
	req.TTL = ttl
	return req, nil
}

// parseTTL reads "5m" or 300 (seconds); absent or null is 0 (the default).
func parseTTL(raw json.RawMessage) (time.Duration, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	const fix = `ttl must be a duration such as "5m" or a whole number of seconds such as 300, more than zero`
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, badRequest(fix)
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, badRequest(fix)
		}
		return d, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, badRequest(fix)
	}
	secs, err := n.Int64()
	if err != nil || secs <= 0 || secs > math.MaxInt64/int64(time.Second) {
		return 0, badRequest(fix)
	}
	return time.Duration(secs) * time.Second, nil
}

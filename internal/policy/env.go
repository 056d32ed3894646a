// Package policy decides whether a request may reach its route: the route's
// CEL expression, then an optional external OpenID AuthZEN PDP; deny wins and
// every error denies.
package policy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
)

// Cost bounds. CEL's cost unit is roughly one cheap operation (a field
// read, a comparison); string operations cost about one unit per ten
// characters; one unit takes roughly 50–150 ns. Typical policies estimate
// at 3–1,500 units.
const (
	// MaxEstimatedCost rejects, at load, an expression whose worst case —
	// with strings of up to 1,024 characters and lists or maps of up to 64
	// entries — exceeds it. Nested loops over claims or headers exceed it.
	MaxEstimatedCost = 10_000
	// RuntimeCostLimit stops (and denies) an evaluation once it has spent
	// this much, whatever the actual sizes: about a millisecond of CPU.
	RuntimeCostLimit = 10_000

	estimateStringSize     = 1024
	estimateCollectionSize = 64
	maxExpressionSize      = 16 << 10 // code points
	interruptCheckEvery    = 64       // comprehension iterations between ctx checks
)

// Env is the CEL environment policies are compiled in. It declares:
//
//	user     map(string, dyn)   ID token claims merged with userinfo claims; empty on anonymous routes
//	session  gatehouse.Session  {sid string, auth_time timestamp, acr string, amr list(string),
//	                             created timestamp, age duration}; null on anonymous routes
//	request  gatehouse.Request  {method string, path string, query map(string,string) (first value),
//	                             headers map(string,string) (lower-case names, values joined ", "),
//	                             remote_ip string}
//	route    string             the route's name
//	client   string             the frontend's name
//	agent    gatehouse.Agent    null, or {id string, name string, routes list(string) (= grant.routes),
//	                             grant {routes list(string), methods list(string), expires timestamp}}
//
// Because session, request and agent are typed objects, a misspelt field or
// a comparison of mismatched types is a compile error. Reading a field of a
// null session or agent is an evaluation error (deny); guard with
// `session != null`. The ext.Strings library (lowerAscii, split, …) is
// available, and numbers compare across int/uint/double (claims decoded from
// JSON are doubles).
//
// A route without an `allow:` expression has no Program: the caller admits
// any valid session (and, on anonymous routes, anyone).
//
// An Env is safe for concurrent use.
type Env struct {
	env   *cel.Env
	types *objTypes
}

// NewEnv builds the policy environment.
func NewEnv() (*Env, error) {
	ts := newObjTypes()
	env, err := cel.NewEnv(
		cel.Types(ts.request, ts.session, ts.agent, ts.grant),
		cel.Variable("user", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("session", cel.ObjectType(sessionTypeName)),
		cel.Variable("request", cel.ObjectType(requestTypeName)),
		cel.Variable("route", cel.StringType),
		cel.Variable("client", cel.StringType),
		cel.Variable("agent", cel.ObjectType(agentTypeName)),
		ext.Strings(),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		cel.ParserExpressionSizeLimit(maxExpressionSize),
	)
	if err != nil {
		return nil, fmt.Errorf("build policy environment: %w", err)
	}
	return &Env{env: env, types: ts}, nil
}

// CompileError is a policy expression that cannot be used. Line and Column
// are 1-based positions within the expression text, so the config layer can
// add the expression's own position in the file.
type CompileError struct {
	Line, Column int
	Message      string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("policy %d:%d: %s", e.Line, e.Column, e.Message)
}

// Program is a compiled, type-checked policy. It is safe for concurrent use.
type Program struct {
	prg  cel.Program
	ast  *cel.Ast
	pool *sync.Pool
	// loops: only comprehensions run long enough for cancellation to
	// matter; loop-free programs skip ContextEval's per-call context setup.
	loops bool
}

// Compile parses and type-checks expr, which must yield a bool (a dyn
// result such as `user.admin` is accepted and checked when evaluated), and
// rejects expressions whose estimated worst-case cost exceeds
// MaxEstimatedCost. Errors are *CompileError.
func (e *Env) Compile(expr string) (*Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, &CompileError{Line: 1, Column: 1, Message: "expression is empty; omit `allow:` to admit any valid session"}
	}
	ast, iss := e.env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, compileErrorFromIssues(iss)
	}
	if structs := celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.StructKind)); len(structs) > 0 {
		loc := ast.NativeRep().SourceInfo().GetStartLocation(structs[0].ID())
		return nil, &CompileError{Line: max(loc.Line(), 1), Column: loc.Column() + 1,
			Message: "policies read the request context; constructing gatehouse.* objects is not supported"}
	}
	out := ast.OutputType()
	if out.IsExactType(types.DynType) {
		// A bare claim (user.admin) might be a bool at run time or might
		// not; a policy says what it means.
		return nil, &CompileError{Line: 1, Column: 1,
			Message: "expression yields dyn (a claim's value, whose type is known only per request); a policy must yield bool: compare it explicitly, e.g. user.admin == true"}
	}
	if !out.IsExactType(types.BoolType) {
		return nil, &CompileError{Line: 1, Column: 1,
			Message: fmt.Sprintf("expression yields %s; a policy must yield bool (e.g. compare with ==)", out)}
	}
	est, err := e.env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		return nil, &CompileError{Line: 1, Column: 1, Message: "estimate cost: " + err.Error()}
	}
	if est.Max > MaxEstimatedCost {
		return nil, &CompileError{Line: 1, Column: 1, Message: fmt.Sprintf(
			"expression is too expensive: worst-case cost %d exceeds %d (avoid nested loops over claims, headers or lists)",
			est.Max, MaxEstimatedCost)}
	}
	prg, err := e.env.Program(ast,
		cel.CostLimit(RuntimeCostLimit),
		cel.InterruptCheckFrequency(interruptCheckEvery),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		// Optimisation folds constants, so e.g. an invalid regex literal surfaces here.
		return nil, &CompileError{Line: 1, Column: 1, Message: err.Error()}
	}
	loops := len(celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.ComprehensionKind))) > 0
	return &Program{prg: prg, ast: ast, pool: newActivationPool(e.types), loops: loops}, nil
}

func compileErrorFromIssues(iss *cel.Issues) *CompileError {
	errs := iss.Errors()
	if len(errs) == 0 {
		return &CompileError{Line: 1, Column: 1, Message: iss.Err().Error()}
	}
	first := errs[0]
	ce := &CompileError{Line: first.Location.Line(), Column: first.Location.Column() + 1, Message: first.Message + suggestion(first.Message)}
	if ce.Line < 1 {
		ce.Line, ce.Column = 1, 1
	}
	if len(errs) > 1 {
		ce.Message += fmt.Sprintf(" (and %d more error(s))", len(errs)-1)
	}
	return ce
}

// policyVars and objectFields feed suggestions for misspelt names.
var (
	policyVars   = []string{"user", "session", "request", "route", "client", "agent"}
	objectFields = map[string][]string{
		sessionTypeName: {"sid", "auth_time", "acr", "amr", "created", "age"},
		requestTypeName: {"method", "path", "query", "headers", "remote_ip"},
		agentTypeName:   {"id", "name", "grant"},
		grantTypeName:   {"routes", "methods", "expires"},
	}
)

// suggestion turns a CEL checker message into a hint: the nearest variable
// or field for a misspelt one, the usual fix for a type mismatch.
func suggestion(msg string) string {
	quoted := func(prefix string) string {
		_, rest, ok := strings.Cut(msg, prefix)
		if !ok {
			return ""
		}
		name, _, _ := strings.Cut(rest, "'")
		return name
	}
	switch {
	case strings.Contains(msg, "did you mean"):
		return "" // CEL suggested already
	case strings.HasPrefix(msg, "undeclared reference to '"):
		if best := nearest(quoted("undeclared reference to '"), policyVars); best != "" {
			return fmt.Sprintf(" — did you mean '%s'?", best)
		}
		return " — the variables are " + strings.Join(policyVars, ", ") + " (see docs/policy.md)"
	case strings.HasPrefix(msg, "undefined field '"):
		name := quoted("undefined field '")
		for _, typ := range []string{sessionTypeName, requestTypeName, agentTypeName, grantTypeName} {
			fields := objectFields[typ]
			if best := nearest(name, fields); best != "" {
				return fmt.Sprintf(" — did you mean '%s'? (%s has %s)", best, typ, strings.Join(fields, ", "))
			}
		}
		return " — see docs/policy.md for each object's fields"
	case strings.HasPrefix(msg, "found no matching overload for '_==_'"), strings.HasPrefix(msg, "found no matching overload for '_!=_'"):
		return " — both sides must have the same type: quote strings (\"1\"), compare numbers with numbers"
	case strings.HasPrefix(msg, "found no matching overload"):
		return " — the operands' types do not fit this operator or function (see docs/policy.md, Functions)"
	}
	return ""
}

// nearest is the candidate within edit distance 2 of s, or "".
func nearest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sizeEstimator bounds the sizes of values whose size the checker cannot know.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if n.Type() != nil && n.Type().IsExactType(types.StringType) {
		return &cost.SizeEstimate{Min: 0, Max: estimateStringSize}
	}
	return &cost.SizeEstimate{Min: 0, Max: estimateCollectionSize}
}

func (sizeEstimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// Eval evaluates the policy. Any failure — a missing claim or key, a null
// session or agent, the cost limit, a cancelled ctx, a non-bool result — is
// an error, and the caller must deny. Error messages carry the position in
// the expression but never a request or claim value.
func (p *Program) Eval(ctx context.Context, in *Input) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("policy evaluation cancelled: %w", context.Cause(ctx))
	}
	act := p.pool.Get().(*activation)
	act.reset(in)
	var out ref.Val
	var err error
	if p.loops {
		out, _, err = p.prg.ContextEval(ctx, act)
	} else {
		out, _, err = p.prg.Eval(act)
	}
	act.clear()
	p.pool.Put(act)
	if err != nil {
		return false, p.evalError(ctx, err)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("policy yielded %s, not bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// safePrefixes are CEL error prefixes that may be followed by values (keys,
// operands) coming from the request; only the prefix is kept.
var safePrefixes = [...]string{
	"no such key", "no such attribute", "no such field", "no such overload",
	"index out of range", "division by zero", "modulus by zero",
	"integer overflow", "unsigned integer overflow", "duration overflow",
	"timestamp overflow", "type conversion error", "invalid UTF-8",
}

func (p *Program) evalError(ctx context.Context, err error) error {
	var cancelled interpreter.EvalCancelledError
	if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded {
		return fmt.Errorf("policy exceeded its runtime cost limit (%d)", RuntimeCostLimit)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("policy evaluation cancelled: %w", context.Cause(ctx))
	}
	msg := "evaluation error"
	var nullErr nullObjectError
	var ce constError
	switch {
	case errors.As(err, &nullErr):
		msg = nullErr.Error()
	case errors.As(err, &ce):
		msg = ce.Error()
	default:
		s := err.Error()
		for _, pfx := range safePrefixes {
			if strings.HasPrefix(s, pfx) {
				msg = pfx
				break
			}
		}
	}
	var celErr *types.Err
	if errors.As(err, &celErr) && celErr.NodeID() != 0 {
		id := celErr.NodeID()
		if msg == "no such key" || msg == "no such field" {
			// The name is safe to show when the expression itself spells it.
			if name := constantKeyAt(p.ast.NativeRep(), id); name != "" {
				msg += " " + strconv.Quote(name)
			}
		}
		loc := p.ast.NativeRep().SourceInfo().GetStartLocation(id)
		if loc.Line() > 0 {
			return fmt.Errorf("policy %d:%d: %s", loc.Line(), loc.Column()+1, msg)
		}
	}
	return errors.New("policy: " + msg)
}

// constantKeyAt returns the field of `x.field` or the literal key of
// `x["key"]` at node id, or "" when the key is computed at run time.
func constantKeyAt(a *celast.AST, id int64) string {
	var name string
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.ID() != id {
			return
		}
		switch e.Kind() {
		case celast.SelectKind:
			name = e.AsSelect().FieldName()
		case celast.CallKind:
			c := e.AsCall()
			if c.FunctionName() == operators.Index && len(c.Args()) == 2 && c.Args()[1].Kind() == celast.LiteralKind {
				if s, ok := c.Args()[1].AsLiteral().(types.String); ok {
					name = string(s)
				}
			}
		}
	}))
	return name
}

package compose

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
)

const (
	// shapeCostLimit stops a shape evaluation that runs away (about 10 ms of
	// CPU); shapes copy fields, so this is generous.
	shapeCostLimit     = 100_000
	maxShapeSize       = 16 << 10 // code points
	shapeInterruptFreq = 64
	maxJSONDepth       = 64
)

// shape is a compiled shape expression.
type shape struct {
	prg   cel.Program
	calls []string // call names declared as top-level variables
}

// shapeError is a shape that does not compile; line and col are 1-based
// within the expression.
type shapeError struct {
	line, col int
	msg       string
}

func (e *shapeError) Error() string {
	return fmt.Sprintf("shape %d:%d: %s", e.line, e.col, e.msg)
}

// compileShape compiles expr in an environment declaring
//
//	calls  map(string, dyn)     each call's JSON result, null when an optional call failed
//	user   map(string, dyn)     the caller's claims
//	param  map(string, string)  the composite path's parameters
//	query  map(string, string)  the composite request's query (parameters given once)
//	<call> dyn                  each call's result by its own name, as calls.<call>
//
// The result must be a JSON object; types that have no JSON form
// (timestamps, durations, bytes, types) are rejected here when the checker
// knows them and when evaluated otherwise.
func compileShape(c *Composite, expr string) (*shape, error) {
	opts := []cel.EnvOption{
		cel.Variable("calls", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("user", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("param", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("query", cel.MapType(cel.StringType, cel.StringType)),
		ext.Strings(),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(maxShapeSize),
	}
	sh := &shape{}
	for _, k := range c.calls {
		opts = append(opts, cel.Variable(k.name, cel.DynType))
		sh.calls = append(sh.calls, k.name)
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("build shape environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		errs := iss.Errors()
		if len(errs) == 0 {
			return nil, &shapeError{1, 1, iss.Err().Error()}
		}
		e := &shapeError{errs[0].Location.Line(), errs[0].Location.Column() + 1, errs[0].Message}
		if e.line < 1 {
			e.line, e.col = 1, 1
		}
		if len(errs) > 1 {
			e.msg += fmt.Sprintf(" (and %d more error(s))", len(errs)-1)
		}
		return nil, e
	}
	out := ast.OutputType()
	if k := out.Kind(); k != types.MapKind && k != types.DynKind && k != types.AnyKind {
		return nil, &shapeError{1, 1, fmt.Sprintf("shape yields %s; it must yield a JSON object such as {\"name\": profile.name}", out)}
	}
	if msg := jsonable(out); msg != "" {
		return nil, &shapeError{1, 1, msg}
	}
	sh.prg, err = env.Program(ast, cel.CostLimit(shapeCostLimit), cel.InterruptCheckFrequency(shapeInterruptFreq),
		cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, &shapeError{1, 1, err.Error()}
	}
	return sh, nil
}

// jsonable explains why values of type t have no JSON form, or returns "".
func jsonable(t *types.Type) string {
	switch t.Kind() {
	case types.DynKind, types.AnyKind, types.BoolKind, types.DoubleKind, types.IntKind, types.UintKind,
		types.StringKind, types.NullTypeKind, types.TypeParamKind:
		return ""
	case types.ListKind:
		return jsonable(t.Parameters()[0])
	case types.MapKind:
		if k := t.Parameters()[0].Kind(); k != types.StringKind && k != types.DynKind && k != types.AnyKind {
			return fmt.Sprintf("shape builds a map with %s keys; JSON object keys are strings", t.Parameters()[0])
		}
		return jsonable(t.Parameters()[1])
	}
	return fmt.Sprintf("shape yields a %s value, which has no JSON form (convert it with string() or int())", t)
}

// shapeAct is the activation of one evaluation; it avoids building a map of
// variables per request.
type shapeAct struct {
	sh      *shape
	calls   map[string]any
	user    map[string]any
	param   map[string]string
	query   map[string]string
	results []any
}

func (a *shapeAct) ResolveName(name string) (any, bool) {
	switch name {
	case "calls":
		return a.calls, true
	case "user":
		return a.user, true
	case "param":
		return a.param, true
	case "query":
		return a.query, true
	}
	if i := slices.Index(a.sh.calls, name); i >= 0 {
		return a.results[i], true
	}
	return nil, false
}

func (a *shapeAct) Parent() interpreter.Activation { return nil }

// eval runs the shape and appends the JSON object to buf, with an "errors"
// member when errs is non-empty.
func (sh *shape) eval(ctx context.Context, act *shapeAct, buf []byte, errs []byte) ([]byte, error) {
	out, _, err := sh.prg.ContextEval(ctx, act)
	if err != nil {
		var cancelled interpreter.EvalCancelledError
		if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded {
			return buf, fmt.Errorf("shape exceeded its runtime cost limit (%d)", shapeCostLimit)
		}
		return buf, errors.New("shape evaluation failed: " + safeCELMessage(err))
	}
	m, ok := out.(traits.Mapper)
	if !ok {
		return buf, fmt.Errorf("shape yielded %s, not a JSON object", out.Type().TypeName())
	}
	if m.Contains(types.String("errors")) == types.True {
		return buf, errors.New(`shape yielded an "errors" member; that name is reserved for the failures of optional calls`)
	}
	n := len(buf)
	buf, err = appendVal(buf, m, 0)
	if err != nil {
		return buf, err
	}
	if len(errs) > 0 {
		buf = appendErrorsMember(buf, n, errs)
	}
	return buf, nil
}

// appendErrorsMember inserts `"errors":[...]` before the closing brace of the
// object that starts at buf[start].
func appendErrorsMember(buf []byte, start int, errs []byte) []byte {
	buf = buf[:len(buf)-1] // drop "}"
	if len(buf) > start+1 {
		buf = append(buf, ',')
	}
	buf = append(buf, `"errors":`...)
	buf = append(buf, errs...)
	return append(buf, '}')
}

// safeCELMessage keeps only the kind of a CEL evaluation error: its text may
// quote keys or values coming from upstream results or the request.
func safeCELMessage(err error) string {
	s := err.Error()
	for _, pfx := range [...]string{"no such key", "no such attribute", "no such field", "no such overload",
		"index out of range", "division by zero", "modulus by zero", "integer overflow", "type conversion error"} {
		if strings.HasPrefix(s, pfx) {
			return pfx + " (guard optional calls with `x == null ? ... : ...` and missing fields with has())"
		}
	}
	return "evaluation error"
}

// appendVal writes a CEL value as JSON. Map keys are written in sorted order
// so an answer is deterministic. Written by hand rather than through
// ConvertToNative + encoding/json, which would go through reflection.
func appendVal(buf []byte, v ref.Val, depth int) ([]byte, error) {
	if depth > maxJSONDepth {
		return buf, fmt.Errorf("shape result is nested deeper than %d levels", maxJSONDepth)
	}
	switch x := v.(type) {
	case types.Null:
		return append(buf, "null"...), nil
	case types.Bool:
		return strconv.AppendBool(buf, bool(x)), nil
	case types.Int:
		return strconv.AppendInt(buf, int64(x), 10), nil
	case types.Uint:
		return strconv.AppendUint(buf, uint64(x), 10), nil
	case types.Double:
		return appendFloat(buf, float64(x))
	case types.String:
		return appendString(buf, string(x)), nil
	case traits.Mapper:
		keys := make([]string, 0, 8)
		for it := x.Iterator(); it.HasNext() == types.True; {
			k, ok := it.Next().(types.String)
			if !ok {
				return buf, errors.New("shape result has a map with a non-string key; JSON object keys are strings")
			}
			keys = append(keys, string(k))
		}
		slices.Sort(keys)
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, k)
			buf = append(buf, ':')
			var err error
			if buf, err = appendVal(buf, x.Get(types.String(k)), depth+1); err != nil {
				return buf, err
			}
		}
		return append(buf, '}'), nil
	case traits.Lister:
		buf = append(buf, '[')
		first := true
		for it := x.Iterator(); it.HasNext() == types.True; {
			if !first {
				buf = append(buf, ',')
			}
			first = false
			var err error
			if buf, err = appendVal(buf, it.Next(), depth+1); err != nil {
				return buf, err
			}
		}
		return append(buf, ']'), nil
	case *types.Err:
		return buf, errors.New("shape evaluation failed: " + safeCELMessage(x))
	}
	return buf, fmt.Errorf("shape result contains a %s value, which has no JSON form (convert it with string() or int())", v.Type().TypeName())
}

// appendNative writes a JSON result as decoded by decodeJSON (map[string]any,
// []any, string, int64, float64, bool, nil), keys sorted.
func appendNative(buf []byte, v any, depth int) ([]byte, error) {
	if depth > maxJSONDepth {
		return buf, fmt.Errorf("result is nested deeper than %d levels", maxJSONDepth)
	}
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...), nil
	case bool:
		return strconv.AppendBool(buf, x), nil
	case int64:
		return strconv.AppendInt(buf, x, 10), nil
	case float64:
		return appendFloat(buf, x)
	case string:
		return appendString(buf, x), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, k)
			buf = append(buf, ':')
			var err error
			if buf, err = appendNative(buf, x[k], depth+1); err != nil {
				return buf, err
			}
		}
		return append(buf, '}'), nil
	case []any:
		buf = append(buf, '[')
		for i, e := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendNative(buf, e, depth+1); err != nil {
				return buf, err
			}
		}
		return append(buf, ']'), nil
	}
	return buf, fmt.Errorf("result contains a %T value, which has no JSON form", v)
}

func appendFloat(buf []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return buf, errors.New("shape result contains NaN or an infinity, which JSON cannot carry")
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.AppendFloat(buf, f, 'f', -1, 64), nil
	}
	return strconv.AppendFloat(buf, f, 'g', -1, 64), nil
}

// lowerHex is encoding/json's spelling of \u escapes.
const lowerHex = "0123456789abcdef"

// appendString writes s as a JSON string, escaping as encoding/json does
// (including <, >, & and U+2028/9, so the answer is safe to embed), and
// replacing invalid UTF-8 with U+FFFD.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			switch r {
			case '\u2028':
				buf = append(buf, `\u2028`...)
			case '\u2029':
				buf = append(buf, `\u2029`...)
			default:
				buf = append(buf, `\ufffd`...)
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Doer runs one call through a named route for the composite's caller: the
// route's policy, credential, forwarding and audit, exactly as a direct
// request to path would get. path is a cleaned path (proxy.CleanPath's
// output form: decoded, starting with the route's path); query holds one
// value per name. The caller and the correlation id are fixed by whoever
// builds the Doer for one composite request.
//
// A Doer refusing a call before or instead of reaching the upstream returns
// a *Refused (errors.As); any other error means the upstream could not be
// reached. The caller of Do closes the response body.
type Doer interface {
	Do(ctx context.Context, route, method, path string, query url.Values) (*http.Response, error)
}

// DoerFunc adapts a function to Doer.
type DoerFunc func(ctx context.Context, route, method, path string, query url.Values) (*http.Response, error)

// Do calls f.
func (f DoerFunc) Do(ctx context.Context, route, method, path string, query url.Values) (*http.Response, error) {
	return f(ctx, route, method, path, query)
}

// Refused is the error a Doer returns when the pipeline refused the call
// (its policy, a limit, the session): Status 403 means the route's policy
// denied it; Code is the pipeline's stable refusal code.
type Refused struct {
	Status int
	Code   string
}

// Error says the pipeline refused the call; it carries no request value.
func (r *Refused) Error() string {
	return fmt.Sprintf("call refused by the route pipeline: %d %s", r.Status, r.Code)
}

// Code is a call's outcome, stable for clients (under "errors") and audit.
type Code string

// Call outcomes.
const (
	CodeOK             Code = ""
	CodeTimeout        Code = "timeout"           // the call's timeout or the composite's deadline passed
	CodeDenied         Code = "denied"            // the route's policy refused the call (Refused.Status 403)
	CodeRefused        Code = "refused"           // the pipeline refused it otherwise (Refused with another status)
	CodeUpstreamStatus Code = "upstream_status"   // the upstream answered a non-2xx status
	CodeNotJSON        Code = "not_json"          // not a JSON content type, or not one valid JSON document
	CodeTooLarge       Code = "too_large"         // the body exceeded the call's max_body
	CodeUnavailable    Code = "unavailable"       // the upstream could not be reached
	CodeDependency     Code = "dependency_failed" // a call it depends on failed, so it did not run
	CodeCancelled      Code = "cancelled"         // the client went away, or a required call failed first
	CodeBadInput       Code = "bad_input"         // a template value from the caller (claim, parameter, query) is missing or unusable
	CodeBadResult      Code = "bad_result_value"  // a template value from a dependency's result is missing or unusable
)

// Cancellation causes, so an ended context says why.
var (
	errCallTimeout      = errors.New("call timeout")
	errCompositeTimeout = errors.New("composite deadline")
	errAborted          = errors.New("a required call failed")
)

// fetched is the outcome of one Do: the parsed result or a failure code.
type fetched struct {
	result  any
	code    Code
	status  int    // the upstream's status, 0 when none
	refusal string // Refused.Code
	refStat int    // Refused.Status
}

// fetch runs one call and reads its JSON answer.
func fetch(ctx context.Context, d Doer, k *call, path string, q url.Values) fetched {
	resp, err := d.Do(ctx, k.route, k.method, path, q)
	if err != nil {
		var ref *Refused
		if errors.As(err, &ref) {
			if ref.Status == http.StatusForbidden {
				return fetched{code: CodeDenied, refusal: ref.Code, refStat: ref.Status}
			}
			return fetched{code: CodeRefused, refusal: ref.Code, refStat: ref.Status}
		}
		return fetched{code: ctxCode(ctx, CodeUnavailable)}
	}
	defer resp.Body.Close()
	f := fetched{status: resp.StatusCode}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		f.code = CodeUpstreamStatus
		return f
	}
	if !isJSONType(resp.Header.Get("Content-Type")) {
		f.code = CodeNotJSON
		return f
	}
	if resp.ContentLength > k.maxBody {
		f.code = CodeTooLarge
		return f
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, k.maxBody+1))
	switch {
	case err != nil:
		f.code = ctxCode(ctx, CodeUnavailable)
		return f
	case int64(len(body)) > k.maxBody:
		f.code = CodeTooLarge
		return f
	}
	v, err := decodeJSON(body)
	if err != nil {
		f.code = CodeNotJSON
		return f
	}
	f.result = v
	return f
}

// ctxCode classifies a failure that may be due to ctx ending.
func ctxCode(ctx context.Context, otherwise Code) Code {
	if ctx.Err() == nil {
		return otherwise
	}
	switch context.Cause(ctx) {
	case errCallTimeout, errCompositeTimeout:
		return CodeTimeout
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return CodeTimeout
	}
	return CodeCancelled
}

// isJSONType reports whether a Content-Type is application/json or
// application/<x>+json, parameters ignored. (mime.ParseMediaType would
// allocate a parameter map per call for the same answer.)
func isJSONType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	const app = "application/"
	if len(mt) <= len(app) || !strings.EqualFold(mt[:len(app)], app) {
		return false
	}
	sub := mt[len(app):]
	if strings.ContainsAny(sub, " \t/\"") {
		return false
	}
	return strings.EqualFold(sub, "json") || len(sub) > 5 && strings.EqualFold(sub[len(sub)-5:], "+json")
}

// decodeJSON parses exactly one JSON document. Numbers become int64 when they
// are integers that fit, float64 otherwise, so that ids and counts keep their
// exact value in templates and come out of the shape as integers.
func decodeJSON(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON document")
	}
	return normalize(v), nil
}

func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}

// flights makes identical in-flight GET calls of one caller once. Unlike
// x/sync/singleflight, a flight runs on a context of its own that ends only
// when every waiter has gone: one waiter's client leaving (or its shorter
// timeout) must not fail the call for the others, and the call must not go
// on once nobody waits for it.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	refs   int
	cancel context.CancelFunc
	done   chan struct{}
	res    fetched
	leader string // correlation id of the composite request that made the call
}

func newFlights() *flights { return &flights{m: map[string]*flight{}} }

// do returns fn's outcome for key, running fn at most once among concurrent
// callers; shared reports whether another request made the call.
func (g *flights) do(ctx context.Context, key, corr string, fn func(context.Context) fetched) (res fetched, sharedFrom string, shared bool) {
	g.mu.Lock()
	f, ok := g.m[key]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{cancel: cancel, done: make(chan struct{}), leader: corr}
		g.m[key] = f
		go func() {
			f.res = fn(fctx)
			g.mu.Lock()
			if g.m[key] == f {
				delete(g.m, key)
			}
			g.mu.Unlock()
			cancel()
			close(f.done)
		}()
	}
	f.refs++
	g.mu.Unlock()
	select {
	case <-f.done:
		g.leave(key, f)
		return f.res, f.leader, ok
	case <-ctx.Done():
		g.leave(key, f)
		return fetched{code: ctxCode(ctx, CodeCancelled)}, f.leader, ok
	}
}

func (g *flights) leave(key string, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.refs--
	if f.refs == 0 {
		if g.m[key] == f {
			delete(g.m, key) // late arrivals start a fresh call
		}
		f.cancel()
	}
}

// flightKey identifies a GET call for de-duplication: caller, route, URL,
// and the body limit (calls of two composites may differ in it).
func flightKey(caller, route string, maxBody int64, path string, q url.Values) string {
	var b strings.Builder
	b.Grow(len(caller) + len(route) + len(path) + 24 + 16*len(q))
	b.WriteString(caller)
	b.WriteByte(0)
	b.WriteString(route)
	b.WriteByte(0)
	var n [20]byte
	b.Write(strconv.AppendInt(n[:0], maxBody, 10))
	b.WriteByte(0)
	b.WriteString(path)
	if len(q) > 0 {
		b.WriteByte('?')
		b.WriteString(q.Encode())
	}
	return b.String()
}

// completion is one call finishing (or being settled without running).
type completion struct {
	idx int
	f   fetched
	out CallOutcome
}

// execCall expands a call's templates and runs it; the outcome is sent on done.
func (c *Composite) execCall(ctx context.Context, in *Input, k *call, path string, q url.Values, done chan<- completion) {
	start := time.Now()
	cctx, cancel := context.WithTimeoutCause(ctx, k.timeout, errCallTimeout)
	defer cancel()
	var f fetched
	out := CallOutcome{Name: k.name, Route: k.route, Method: k.method, Path: path, Optional: k.optional, Started: true}
	if in.CallerKey != "" && k.method == http.MethodGet {
		var shared bool
		var from string
		f, from, shared = c.set.flights.do(cctx, flightKey(in.CallerKey, k.route, k.maxBody, path, q), in.CorrelationID,
			func(fctx context.Context) fetched { return fetch(fctx, in.Doer, k, path, q) })
		if shared {
			out.SharedFrom = from
		}
	} else {
		f = fetch(cctx, in.Doer, k, path, q)
	}
	out.Duration = time.Since(start)
	done <- completion{idx: k.idx, f: f, out: out}
}

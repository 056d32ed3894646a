package compose

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testRoutes is the route table the tests compile against.
var testRoutes = []RouteInfo{
	{Name: "profile", Path: "/api/profile/", Methods: []string{"GET"}},
	{Name: "notifications", Path: "/api/notifications/"},
	{Name: "billing", Path: "/api/billing/", Methods: []string{"GET", "POST"}},
	{Name: "weather", Path: "/api/weather/"},
	{Name: "me", Path: "/api/me"},
}

// seen is one request as an upstream received it.
type seen struct {
	Method, Path, EscapedPath, Host string
	Query                           url.Values
}

// upstream is a test-owned downstream API.
type upstream struct {
	srv     *httptest.Server
	handler http.HandlerFunc
	mu      sync.Mutex
	reqs    []seen
	hits    atomic.Int32
}

func newUpstream(t testing.TB, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{handler: h}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{Method: r.Method, Path: r.URL.Path, EscapedPath: r.URL.EscapedPath(), Host: r.Host, Query: r.URL.Query()})
		u.mu.Unlock()
		u.handler(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) seen() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

// jsonAnswer answers v as JSON.
func jsonAnswer(v any) http.HandlerFunc {
	b, _ := json.Marshal(v)
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}
}

// pipe is a double of the route pipeline for our own seam: it refuses the
// routes in deny (as the route's policy would) and otherwise forwards with
// plain HTTP to the route's test upstream, keeping the path.
type pipe struct {
	routes map[string]*upstream
	deny   map[string]bool
	refuse map[string]*Refused
}

func (p *pipe) Do(ctx context.Context, route, method, path string, query url.Values) (*http.Response, error) {
	if p.deny[route] {
		return nil, &Refused{Status: http.StatusForbidden, Code: "policy_denied"}
	}
	if r := p.refuse[route]; r != nil {
		return nil, r
	}
	u := p.routes[route]
	target := u.srv.URL + (&url.URL{Path: path}).EscapedPath()
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	return u.srv.Client().Do(req)
}

func mustCompile(t testing.TB, specs ...Spec) *Set {
	t.Helper()
	set, err := Compile(specs, testRoutes)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return set
}

// serve runs one composite request and returns the recorder and report.
func serve(t testing.TB, ctx context.Context, set *Set, target string, in *Input) (*httptest.ResponseRecorder, *Report) {
	t.Helper()
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	c, params := set.Match(r.URL.Path)
	if c == nil {
		t.Fatalf("no composite matches %s", r.URL.Path)
	}
	in.Params = params
	w := httptest.NewRecorder()
	rep := c.Serve(w, r, in)
	return w, rep
}

// decodeBody decodes a JSON answer.
func decodeBody(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %q", err, w.Body.String())
	}
	return m
}

// seq hands out increasing numbers: the tests record the order of events,
// never their wall-clock times.
type seq struct{ n atomic.Int64 }

func (s *seq) next() int64 { return s.n.Add(1) }

// waitFor fails the test when ch is not closed or sent on within a generous
// bound; it guards against hangs, it is not a timing assertion.
func waitFor(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

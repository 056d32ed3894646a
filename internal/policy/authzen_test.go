package policy

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

const pdpToken = "pdp-token-Zq8vX2" // must never show up in a Decision

// pdpServer is a test-owned AuthZEN PDP that records what it was sent.
type pdpServer struct {
	*httptest.Server
	calls atomic.Int64

	mu      sync.Mutex
	body    []byte
	headers http.Header
	method  string
	path    string
}

func newPDPServer(t *testing.T, answer http.HandlerFunc) *pdpServer {
	t.Helper()
	s := &pdpServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.body, s.headers, s.method, s.path = body, r.Header.Clone(), r.Method, r.URL.Path
		s.mu.Unlock()
		s.calls.Add(1)
		answer(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func answerJSON(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// newTestPDP builds a PDP client with its own transport, closed at cleanup
// so no keep-alive goroutine outlives the test.
func newTestPDP(t testing.TB, cfg PDPConfig) *PDP {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	cfg.HTTPClient = &http.Client{Transport: tr}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	p, err := NewPDP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPDPRequestIsAuthZENAccessEvaluation(t *testing.T) {
	srv := newPDPServer(t, answerJSON(200, `{"decision": true}`))
	pdp := newTestPDP(t, PDPConfig{URL: srv.URL + "/access/v1/evaluation", Token: secret.Static(pdpToken)})

	d := pdp.Decide(context.Background(), withAgent(userInput()), "req-42")
	if !d.Allow || d.Reason != ReasonAllowed || d.Status != http.StatusOK {
		t.Fatalf("decision = %+v", d)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.method != http.MethodPost || srv.path != "/access/v1/evaluation" {
		t.Fatalf("request = %s %s", srv.method, srv.path)
	}
	for name, want := range map[string]string{
		"Content-Type":  "application/json",
		"Authorization": "Bearer " + pdpToken,
		"X-Request-Id":  "req-42",
	} {
		if got := srv.headers.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	var got map[string]any
	if err := json.Unmarshal(srv.body, &got); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	want := map[string]any{
		"subject": map[string]any{
			"type": "user",
			"id":   "user-1",
			"properties": map[string]any{
				"email":          "ada@example.com",
				"email_verified": true,
				"groups":         []any{"staff", "billing-admins"},
				"agent": map[string]any{
					"id": "agt-1", "name": "report-bot", "routes": []any{"profile"}, "methods": []any{"GET"},
					"expires": "2026-11-28T12:05:00Z",
				},
			},
		},
		"action":   map[string]any{"name": "GET"},
		"resource": map[string]any{"type": "route", "id": "profile", "properties": map[string]any{"path": "/api/profile/me"}},
		"context":  map[string]any{"client": "web", "remote_ip": "10.1.2.3", "time": "2026-11-28T12:00:00Z"},
	}
	if !reflect.DeepEqual(got, want) {
		gotJSON, _ := json.MarshalIndent(got, "", " ")
		t.Fatalf("request body:\n%s", gotJSON)
	}
}

func TestPDPWithoutTokenSendsNoAuthorization(t *testing.T) {
	srv := newPDPServer(t, answerJSON(200, `{"decision":true}`))
	pdp := newTestPDP(t, PDPConfig{URL: srv.URL})
	in := &Input{Request: userInput().Request, Route: "catalog", Client: "web"} // anonymous route
	if d := pdp.Decide(context.Background(), in, ""); !d.Allow {
		t.Fatalf("decision = %+v", d)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if h := srv.headers.Get("Authorization"); h != "" {
		t.Fatalf("Authorization = %q, want none", h)
	}
	if h := srv.headers.Values("X-Request-Id"); len(h) != 0 {
		t.Fatalf("X-Request-ID = %q, want none for an empty id", h)
	}
	var body struct {
		Subject map[string]any `json:"subject"`
	}
	_ = json.Unmarshal(srv.body, &body)
	if !reflect.DeepEqual(body.Subject, map[string]any{"type": "anonymous", "id": "anonymous"}) {
		t.Fatalf("anonymous subject = %v", body.Subject)
	}
}

// Every PDP answer other than {"decision": true} denies, with a reason that
// tells a policy denial (403) from a broken or unavailable PDP (503).
func TestPDPFailsClosed(t *testing.T) {
	tests := []struct {
		name   string
		answer http.HandlerFunc
		reason string
		status int
	}{
		{"decision false", answerJSON(200, `{"decision": false}`), ReasonPDPDenied, 403},
		{"decision false with context", answerJSON(200, `{"decision": false, "context": {"reason_user": {"en": "no"}}}`), ReasonPDPDenied, 403},
		{"server error", answerJSON(500, `{"decision": true}`), ReasonPDPStatus, 503},
		{"unauthorized PEP", answerJSON(401, `{"decision": true}`), ReasonPDPStatus, 503},
		{"redirect is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, ReasonPDPStatus, 503},
		{"malformed JSON", answerJSON(200, `{"decision": tru`), ReasonPDPBadResponse, 503},
		{"HTML error page", answerJSON(200, `<html>oops</html>`), ReasonPDPBadResponse, 503},
		{"JSON array", answerJSON(200, `[true]`), ReasonPDPBadResponse, 503},
		{"JSON literal true", answerJSON(200, `true`), ReasonPDPBadResponse, 503},
		{"JSON null", answerJSON(200, `null`), ReasonPDPBadResponse, 503},
		{"empty body", answerJSON(200, ``), ReasonPDPBadResponse, 503},
		{"oversized body", answerJSON(200, `{"decision": true, "pad": "`+strings.Repeat("x", maxPDPResponse)+`"}`), ReasonPDPBadResponse, 503},
		{"no decision", answerJSON(200, `{}`), ReasonPDPNoDecision, 503},
		{"decision as string", answerJSON(200, `{"decision": "true"}`), ReasonPDPNoDecision, 503},
		{"decision as number", answerJSON(200, `{"decision": 1}`), ReasonPDPNoDecision, 503},
		{"decision null", answerJSON(200, `{"decision": null}`), ReasonPDPNoDecision, 503},
		{"decision key in other case", answerJSON(200, `{"Decision": true}`), ReasonPDPNoDecision, 503},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // answers only after the PEP gave up
		}, ReasonPDPTimeout, 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newPDPServer(t, tc.answer)
			// Only the timeout case needs a short deadline; the others get
			// room, so a loaded machine cannot turn them into timeouts.
			timeout := 5 * time.Second
			if tc.reason == ReasonPDPTimeout {
				timeout = 50 * time.Millisecond
			}
			pdp := newTestPDP(t, PDPConfig{URL: srv.URL, Token: secret.Static(pdpToken), Timeout: timeout})
			d := pdp.Decide(context.Background(), userInput(), "req-1")
			assertDenied(t, d, tc.reason, tc.status)
			if n := srv.calls.Load(); n != 1 {
				t.Fatalf("PDP asked %d times, want 1 (no retries, no redirects followed)", n)
			}
		})
	}
}

func TestPDPUnreachableDenies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more: connection refused
	pdp := newTestPDP(t, PDPConfig{URL: "http://" + addr + "/access/v1/evaluation", Token: secret.Static(pdpToken)})
	assertDenied(t, pdp.Decide(context.Background(), userInput(), "r"), ReasonPDPUnreachable, 503)
}

func TestPDPClientGoneDenies(t *testing.T) {
	asked := make(chan struct{})
	srv := newPDPServer(t, func(w http.ResponseWriter, r *http.Request) {
		close(asked)
		<-r.Context().Done()
	})
	pdp := newTestPDP(t, PDPConfig{URL: srv.URL, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-asked
		cancel()
	}()
	assertDenied(t, pdp.Decide(ctx, userInput(), "r"), ReasonCanceled, 503)
}

func assertDenied(t *testing.T, d Decision, reason string, status int) {
	t.Helper()
	if d.Allow || d.Reason != reason || d.Status != status {
		t.Fatalf("decision = {Allow:%v Reason:%s Status:%d Err:%v}, want deny %s/%d", d.Allow, d.Reason, d.Status, d.Err, reason, status)
	}
	if d.Err == nil {
		t.Fatalf("denial %s has no Err for the log", reason)
	}
	if strings.Contains(d.Err.Error(), pdpToken) {
		t.Fatalf("PDP token leaked into the error: %v", d.Err)
	}
}

func TestPDPConfigRejectsUnsafeURLs(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  PDPConfig
	}{
		{"not a URL", PDPConfig{URL: "pdp.internal/evaluation"}},
		{"other scheme", PDPConfig{URL: "ftp://pdp.internal/evaluation"}},
		{"credentials in URL", PDPConfig{URL: "https://user:pw@pdp.internal/evaluation"}},
		{"token over plain http", PDPConfig{URL: "http://pdp.internal/evaluation", Token: secret.Static(pdpToken)}},
		{"negative timeout", PDPConfig{URL: "https://pdp.internal/evaluation", Timeout: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPDP(tc.cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), pdpToken) || strings.Contains(err.Error(), "pw@") {
				t.Fatalf("error leaks a secret: %v", err)
			}
		})
	}
	if _, err := NewPDP(PDPConfig{URL: "http://127.0.0.1:8181/access/v1/evaluation", Token: secret.Static(pdpToken)}); err != nil {
		t.Fatalf("token over loopback http rejected: %v", err)
	}
}

func TestPDPCache(t *testing.T) {
	var decision atomic.Value
	decision.Store(`{"decision": true}`)
	var status atomic.Int64
	status.Store(200)
	srv := newPDPServer(t, func(w http.ResponseWriter, r *http.Request) {
		answerJSON(int(status.Load()), decision.Load().(string))(w, r)
	})
	now := testNow
	clock := func() time.Time { return now }
	ctx := context.Background()

	t.Run("off by default", func(t *testing.T) {
		pdp := newTestPDP(t, PDPConfig{URL: srv.URL, Now: clock})
		before := srv.calls.Load()
		pdp.Decide(ctx, userInput(), "a")
		pdp.Decide(ctx, userInput(), "b")
		if n := srv.calls.Load() - before; n != 2 {
			t.Fatalf("PDP calls = %d, want 2", n)
		}
	})

	t.Run("on: same subject, action, resource served from cache until TTL", func(t *testing.T) {
		pdp := newTestPDP(t, PDPConfig{URL: srv.URL, Now: clock, CacheTTL: 10 * time.Second})
		before := srv.calls.Load()
		for range 3 {
			if d := pdp.Decide(ctx, userInput(), "a"); !d.Allow {
				t.Fatalf("decision = %+v", d)
			}
		}
		if n := srv.calls.Load() - before; n != 1 {
			t.Fatalf("PDP calls = %d, want 1", n)
		}
		other := userInput()
		other.Request.Path = "/api/profile/other"
		pdp.Decide(ctx, other, "b") // different resource
		post := userInput()
		post.Request.Method = http.MethodPost
		pdp.Decide(ctx, post, "c") // different action
		someoneElse := userInput()
		someoneElse.User["sub"] = "user-2"
		pdp.Decide(ctx, someoneElse, "d") // different subject
		demoted := userInput()
		demoted.User["groups"] = []any{"staff"}
		pdp.Decide(ctx, demoted, "e") // different claims sent
		if n := srv.calls.Load() - before; n != 5 {
			t.Fatalf("PDP calls = %d, want 5 (each variation asks)", n)
		}
		now = now.Add(11 * time.Second)
		pdp.Decide(ctx, userInput(), "f")
		if n := srv.calls.Load() - before; n != 6 {
			t.Fatalf("PDP calls after TTL = %d, want 6", n)
		}
	})

	t.Run("denials are cached, errors never", func(t *testing.T) {
		pdp := newTestPDP(t, PDPConfig{URL: srv.URL, Now: clock, CacheTTL: time.Minute})
		in := userInput()
		in.Route = "billing"
		before := srv.calls.Load()

		status.Store(500)
		assertDenied(t, pdp.Decide(ctx, in, "a"), ReasonPDPStatus, 503)
		status.Store(200)
		decision.Store(`{"decision": tru`)
		assertDenied(t, pdp.Decide(ctx, in, "b"), ReasonPDPBadResponse, 503)
		decision.Store(`{"decision": false}`)
		assertDenied(t, pdp.Decide(ctx, in, "c"), ReasonPDPDenied, 403)
		decision.Store(`{"decision": true}`)
		assertDenied(t, pdp.Decide(ctx, in, "d"), ReasonPDPDenied, 403) // cached denial
		if n := srv.calls.Load() - before; n != 3 {
			t.Fatalf("PDP calls = %d, want 3 (errors retried, denial cached)", n)
		}
	})
}

func TestAuthorizerDenyWins(t *testing.T) {
	env := newTestEnv(t)
	srv := newPDPServer(t, answerJSON(200, `{"decision": false}`))
	pdp := newTestPDP(t, PDPConfig{URL: srv.URL})
	ctx := context.Background()

	before := srv.calls.Load()
	d := NewAuthorizer(mustCompile(t, env, `user.email_verified == false`), pdp).Decide(ctx, userInput(), "r")
	if d.Reason != ReasonCELDenied || srv.calls.Load() != before {
		t.Fatalf("CEL denial: decision %+v, PDP asked %d times", d, srv.calls.Load()-before)
	}
	d = NewAuthorizer(mustCompile(t, env, `user.nope == 1`), pdp).Decide(ctx, userInput(), "r")
	if d.Reason != ReasonCELError || srv.calls.Load() != before {
		t.Fatalf("CEL error: decision %+v, PDP asked %d times", d, srv.calls.Load()-before)
	}
	d = NewAuthorizer(mustCompile(t, env, `user.email_verified == true`), pdp).Decide(ctx, userInput(), "r")
	if d.Allow || d.Reason != ReasonPDPDenied || d.Status != http.StatusForbidden || srv.calls.Load() != before+1 {
		t.Fatalf("CEL allow + PDP deny: decision %+v", d)
	}
	d = NewAuthorizer(nil, pdp).Decide(ctx, userInput(), "r")
	if d.Allow || d.Reason != ReasonPDPDenied {
		t.Fatalf("PDP only: decision %+v", d)
	}
}

func FuzzParseDecision(f *testing.F) {
	for _, s := range []string{`{"decision":true}`, `{"decision":false}`, `{"decision":"true"}`, `{}`, `[]`, `true`,
		`{"decision":true,"decision":false}`, `{"decision" : true }`, `{"decision":1}`, "\xff", `{"Decision":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := parseDecision(data)
		if !d.Allow {
			if d.Reason == ReasonAllowed || (d.Status != 403 && d.Status != 503) {
				t.Fatalf("inconsistent denial %+v", d)
			}
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil || string(m["decision"]) != "true" {
			t.Fatalf("allowed %q", data)
		}
	})
}

func BenchmarkDecideWithPDPCacheHit(b *testing.B) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, `{"decision":true}`)
	}))
	defer srv.Close()
	env := newTestEnv(b)
	pdp := newTestPDP(b, PDPConfig{URL: srv.URL, Token: secret.Static(pdpToken), CacheTTL: time.Hour})
	a := NewAuthorizer(mustCompile(b, env, `user.email_verified == true`), pdp)
	in := withAgent(userInput())
	ctx := context.Background()
	if d := a.Decide(ctx, in, "warm"); !d.Allow {
		b.Fatal(d)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := a.Decide(ctx, in, "r"); !d.Allow {
			b.Fatal(d)
		}
	}
	if calls.Load() != 1 {
		b.Fatalf("PDP calls = %d, want 1", calls.Load())
	}
}

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// polPDP is a test-owned AuthZEN PDP: it records every evaluation request
// and answers with the current mode's handler.
type polPDP struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []polPDPRequest
	answer atomic.Pointer[http.HandlerFunc]
}

type polPDPRequest struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

func newPolPDP(t *testing.T) *polPDP {
	t.Helper()
	p := &polPDP{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.reqs = append(p.reqs, polPDPRequest{r.Method, r.URL.Path, r.Header.Clone(), body})
		p.mu.Unlock()
		(*p.answer.Load())(w, r)
	}))
	t.Cleanup(p.Close)
	p.set(polPDPJSON(200, `{"decision":true}`))
	return p
}

func (p *polPDP) set(h http.HandlerFunc) { p.answer.Store(&h) }

func (p *polPDP) requests() []polPDPRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]polPDPRequest(nil), p.reqs...)
}

func (p *polPDP) reset() {
	p.mu.Lock()
	p.reqs = nil
	p.mu.Unlock()
}

func polPDPJSON(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

const polPDPToken = "pdp-bearer-token-3b9f1c0e7a5d"

// startPolPDPGateway starts Gatehouse with an external PDP (bearer token by
// file reference) in front of one user_token route and one route whose CEL
// expression refuses GET.
func startPolPDPGateway(t *testing.T, pdp *polPDP, up *recorder) *gwEnv {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pdp-token"), []byte(polPDPToken), 0o600); err != nil {
		t.Fatal(err)
	}
	return startGW(t, gwOptions{Dir: dir, Config: `
session:
  store: memory
policy:
  pdp:
    url: "` + pdp.URL + `/access/v1/evaluation"
    token: ${file:pdp-token}
    timeout: 300ms
routes:
  - name: pdp
    path: /api/pdp/
    upstream: "` + up.URL + `/"
    methods: [GET, POST]
    credential: user_token
  - name: celfirst
    path: /api/celfirst/
    upstream: "` + up.URL + `/"
    methods: [GET, POST]
    credential: user_token
    allow: 'request.method == "POST"'
`})
}

// TestPolicyAuthZENRequestShapeThroughGateway: the PDP receives exactly an
// AuthZEN 1.0 Access Evaluation request (POST JSON with subject, action,
// resource, context), the configured bearer token, and X-Request-ID equal to
// the X-Request-Id the client got back; {"decision":true} lets the request
// through with the user's token, and a CEL denial is final (the PDP is not
// even asked).
func TestPolicyAuthZENRequestShapeThroughGateway(t *testing.T) {
	pdp := newPolPDP(t)
	up := newRecorder(t, nil)
	e := startPolPDPGateway(t, pdp, up)
	alice := e.login("alice", "wonderland")

	resp, body := polAPI(t, e, alice, "GET", "/api/pdp/items/42?expand=1", nil)
	if resp.StatusCode != 200 || up.count() != 1 {
		t.Fatalf("allowed by PDP: %d %s (upstream saw %d)\n%s", resp.StatusCode, body, up.count(), polTail(e))
	}
	if got := up.last(t).Header.Get("Authorization"); !strings.HasPrefix(got, "Bearer ") || strings.Contains(got, polPDPToken) {
		t.Fatalf("upstream Authorization: %q", got)
	}
	reqs := pdp.requests()
	if len(reqs) != 1 {
		t.Fatalf("PDP asked %d times, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/access/v1/evaluation" {
		t.Errorf("PDP request %s %s", r.Method, r.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+polPDPToken {
		t.Errorf("PDP Authorization %q", got)
	}
	rid := resp.Header.Get("X-Request-Id")
	if rid == "" || r.Header.Get("X-Request-ID") != rid {
		t.Errorf("X-Request-ID at the PDP %q, client got %q", r.Header.Get("X-Request-ID"), rid)
	}
	if r.Header.Get("Cookie") != "" {
		t.Error("the browser's cookie reached the PDP")
	}

	var got map[string]any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("PDP body not JSON: %s", r.Body)
	}
	ctx, _ := got["context"].(map[string]any)
	ts, _ := ctx["time"].(string)
	when, err := time.Parse(time.RFC3339, ts)
	if err != nil || time.Since(when).Abs() > time.Minute {
		t.Errorf("context.time %q is not a current RFC 3339 time", ts)
	}
	delete(ctx, "time")
	want := map[string]any{
		"subject": map[string]any{"type": "user", "id": "user-alice",
			"properties": map[string]any{"email": "alice@example.com", "email_verified": true}},
		"action":   map[string]any{"name": "GET"},
		"resource": map[string]any{"type": "route", "id": "pdp", "properties": map[string]any{"path": "/api/pdp/items/42"}},
		"context":  map[string]any{"client": e.Cfg.Client, "remote_ip": "127.0.0.1"},
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("PDP request body:\n%s\nwant (time aside):\n%s", g, w)
	}

	// POST is its own action.
	pdp.reset()
	if resp, body := polAPI(t, e, alice, "POST", "/api/pdp/items", nil); resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	var post map[string]any
	_ = json.Unmarshal(pdp.requests()[0].Body, &post)
	if a := post["action"].(map[string]any)["name"]; a != "POST" {
		t.Errorf("action.name = %v for POST", a)
	}

	// CEL says no: 403, the PDP is not asked, nothing reaches the upstream.
	pdp.reset()
	up.reset()
	resp, body = polAPI(t, e, alice, "GET", "/api/celfirst/x", nil)
	if resp.StatusCode != 403 || up.count() != 0 || len(pdp.requests()) != 0 {
		t.Fatalf("CEL denial: %d %s, upstream %d, PDP %d", resp.StatusCode, body, up.count(), len(pdp.requests()))
	}
	// CEL allows, PDP says no: 403.
	pdp.set(polPDPJSON(200, `{"decision":false}`))
	resp, body = polAPI(t, e, alice, "POST", "/api/celfirst/x", nil)
	if resp.StatusCode != 403 || up.count() != 0 || len(pdp.requests()) != 1 {
		t.Fatalf("CEL allow + PDP deny: %d %s, upstream %d, PDP %d", resp.StatusCode, body, up.count(), len(pdp.requests()))
	}
}

// TestPolicyAuthZENFailsClosedThroughGateway: every PDP answer other than a
// well-formed {"decision": true} — false, 5xx, a redirect, malformed JSON, no
// decision, a non-boolean decision, an oversized body, no answer in time, no
// PDP at all — is refused (403 for a denial, 503 for a PDP that cannot be
// asked) with a JSON error, nothing reaches the upstream, and the audit
// record names the distinct reason.
func TestPolicyAuthZENFailsClosedThroughGateway(t *testing.T) {
	verifyNoLeaks(t)
	pdp := newPolPDP(t)
	up := newRecorder(t, nil)
	e := startPolPDPGateway(t, pdp, up)
	alice := e.login("alice", "wonderland")

	stall := func(w http.ResponseWriter, r *http.Request) {
		select { // answer only after the gateway gave up
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		polPDPJSON(200, `{"decision":true}`)(w, r)
	}
	huge := `{"pad":"` + strings.Repeat("x", 70<<10) + `","decision":true}`
	cases := []struct {
		name   string
		answer http.HandlerFunc
		status int
		code   string
		reason string
	}{
		{"decision false", polPDPJSON(200, `{"decision":false}`), 403, "policy_denied", "pdp_denied"},
		{"decision false with context", polPDPJSON(200, `{"decision":false,"context":{"reason":"no"}}`), 403, "policy_denied", "pdp_denied"},
		{"HTTP 500 saying true", polPDPJSON(500, `{"decision":true}`), 503, "policy_unavailable", "pdp_status"},
		{"HTTP 403", polPDPJSON(403, `{"decision":true}`), 503, "policy_unavailable", "pdp_status"},
		{"redirect to an allowing answer is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, pdp.URL+"/elsewhere", http.StatusTemporaryRedirect)
		}, 503, "policy_unavailable", "pdp_status"},
		{"malformed JSON", polPDPJSON(200, `{"decision":tru`), 503, "policy_unavailable", "pdp_bad_response"},
		{"JSON but not an object", polPDPJSON(200, `[{"decision":true}]`), 503, "policy_unavailable", "pdp_bad_response"},
		{"empty body", polPDPJSON(200, ``), 503, "policy_unavailable", "pdp_bad_response"},
		{"oversized body", polPDPJSON(200, huge), 503, "policy_unavailable", "pdp_bad_response"},
		{"no decision", polPDPJSON(200, `{"allowed":true}`), 503, "policy_unavailable", "pdp_no_decision"},
		{"decision key in another case", polPDPJSON(200, `{"Decision":true}`), 503, "policy_unavailable", "pdp_no_decision"},
		{"decision as a string", polPDPJSON(200, `{"decision":"true"}`), 503, "policy_unavailable", "pdp_no_decision"},
		{"decision as a number", polPDPJSON(200, `{"decision":1}`), 503, "policy_unavailable", "pdp_no_decision"},
		{"decision null", polPDPJSON(200, `{"decision":null}`), 503, "policy_unavailable", "pdp_no_decision"},
		{"timeout", stall, 503, "policy_unavailable", "pdp_timeout"},
	}
	check := func(t *testing.T, status int, code, reason string) {
		t.Helper()
		up.reset()
		resp, body := polAPI(t, e, alice, "GET", "/api/pdp/items/1", nil)
		if resp.StatusCode != status {
			t.Fatalf("status %d %s, want %d", resp.StatusCode, body, status)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("not JSON: %q", ct)
		}
		if m := mustJSON(t, body); m["error"] != code {
			t.Fatalf("error %v, want %s: %s", m["error"], code, body)
		}
		if n := up.count(); n != 0 {
			t.Fatalf("refused, yet the upstream saw %d request(s)", n)
		}
		rec := polAuditAccess(t, e, resp.Header.Get("X-Request-Id"))
		if rec["outcome"] != "deny" || rec["reason"] != reason || rec["status"] != float64(status) {
			t.Fatalf("audit record %v, want deny/%s/%d", rec, reason, status)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pdp.set(tc.answer)
			pdp.reset()
			start := time.Now()
			check(t, tc.status, tc.code, tc.reason)
			if len(pdp.requests()) != 1 {
				t.Fatalf("PDP asked %d times", len(pdp.requests()))
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %s: the PDP timeout (300ms) did not bound the call", d)
			}
		})
	}
	// The PDP works again: requests pass again by themselves (no caching of errors).
	pdp.set(polPDPJSON(200, `{"decision":true}`))
	if resp, body := polAPI(t, e, alice, "GET", "/api/pdp/items/1", nil); resp.StatusCode != 200 {
		t.Fatalf("after recovery: %d %s", resp.StatusCode, body)
	}
	t.Run("PDP down", func(t *testing.T) {
		pdp.Close()
		check(t, 503, "policy_unavailable", "pdp_unreachable")
	})
	e.Stop()
	if b, _ := os.ReadFile(e.Audit); strings.Contains(string(b), polPDPToken) {
		t.Fatal("the PDP token is in the audit log")
	}
	if strings.Contains(e.Logs.String(), polPDPToken) {
		t.Fatal("the PDP token is in the gateway's log")
	}
}

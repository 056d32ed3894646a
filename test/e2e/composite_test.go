package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
)

// compSpan is when one upstream saw one request start and end.
type compSpan struct {
	start, end time.Time
	cancelled  bool
}

// compTimeline records the spans each test-owned upstream served.
type compTimeline struct {
	mu    sync.Mutex
	spans map[string][]compSpan
}

// handler answers body after delay, recording the span; a request the
// gateway cancels is recorded as cancelled.
func (tl *compTimeline) handler(name, body string, delay time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := compSpan{start: time.Now()}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			s.cancelled = true
		}
		s.end = time.Now()
		tl.mu.Lock()
		tl.spans[name] = append(tl.spans[name], s)
		tl.mu.Unlock()
		if s.cancelled {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

func (tl *compTimeline) get(name string) []compSpan {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]compSpan(nil), tl.spans[name]...)
}

// compEnv is a gateway with three routes of three credential kinds, each
// to its own recording upstream, and composites over them.
type compEnv struct {
	*gwEnv
	ups    map[string]*recorder
	tl     *compTimeline
	apiKey string
}

const compHostileName = `../../admin%2f?x=1#frag@evil.example\`

func startCompositeGW(t *testing.T, delay time.Duration) *compEnv {
	t.Helper()
	tl := &compTimeline{spans: map[string][]compSpan{}}
	bodies := map[string]string{
		"profile":       `{"name":"Alice","account_id":"acc-7"}`,
		"notifications": `{"count":3}`,
		"billing":       `{"tier":"gold"}`,
		"denied":        `{"secret":"never-shown"}`,
	}
	ups := map[string]*recorder{}
	for n, b := range bodies {
		ups[n] = newRecorder(t, tl.handler(n, b, delay))
	}
	ln, base := sessListen(t)
	users := idp.DefaultUsers()
	// A user whose claim is hostile: it must stay one path segment.
	users = append(users, idp.User{ID: "user-mallory", Username: "mallory", Password: "mallory-pw", Email: "m@example.com",
		EmailVerified: true, Name: compHostileName, GivenName: "M", FamilyName: "M"})
	p := idp.MustStart(t, idp.Options{Users: users, Clients: []idp.Client{{ID: gwClientID, Secret: gwClientSecret,
		RedirectURIs: []string{base + "/bff/callback"}, PostLogoutRedirectURIs: []string{base + "/"}}}})
	dir := t.TempDir()
	const apiKey = "notifications-api-key-1"
	if err := os.WriteFile(filepath.Join(dir, "notif-key"), []byte(apiKey), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startGW(t, gwOptions{IdP: p, Listener: ln, Dir: dir, Config: `
session:
  store: memory
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + ups["profile"].URL + `/"
    credential: user_token
  - name: notifications
    path: /api/notifications/
    upstream: "` + ups["notifications"].URL + `/"
    credential:
      header: { name: X-Api-Key, value: "${file:notif-key}" }
  - name: billing
    path: /api/billing/
    upstream: "` + ups["billing"].URL + `/v1/"
    credential:
      token_exchange: { audience: billing-api }
  - name: denied
    path: /api/denied/
    upstream: "` + ups["denied"].URL + `/"
    credential: user_token
    allow: user.email == "nobody@example.com"
composites:
  - name: dashboard
    path: /api/dashboard
    calls:
      profile:       { route: profile, path: /me }
      notifications: { route: notifications, path: /unread, optional: true }
      plan:          { route: billing, path: "/accounts/{calls.profile.account_id}/plan", depends_on: [profile] }
    shape: |
      {"name": profile.name,
       "unread": notifications == null ? 0 : notifications.count,
       "plan": plan.tier}
  - name: parallel
    path: /api/parallel
    calls:
      profile:       { route: profile, path: /me }
      notifications: { route: notifications, path: /unread }
      plan:          { route: billing, path: /plan }
  - name: withdenied
    path: /api/withdenied
    calls:
      profile: { route: profile, path: /me }
      secret:  { route: denied, path: /s }
  - name: hostile
    path: /api/hostile/{id}
    calls:
      byname:  { route: profile, path: "/users/{user.name}", query: { q: "{query.q}" }, optional: true }
      byparam: { route: billing, path: "/items/{param.id}", optional: true }
      byquery: { route: notifications, path: "/q/{query.q}", optional: true }
`})
	return &compEnv{gwEnv: e, ups: ups, tl: tl, apiKey: apiKey}
}

// With three upstreams each answering after 50 ms, the composite's
// independent calls overlap and the dependent call starts after its input
// ended; the answer is shaped, JSON, no-store; one audit record per call plus
// one for the composite share a correlation id.
func TestCompositeCallsOverlapAndDependentWaits(t *testing.T) {
	const delay = 50 * time.Millisecond
	e := startCompositeGW(t, delay)
	b := e.login("alice", "wonderland")
	// Warm the exchanged-token cache: a first token exchange (an IdP round
	// trip) would delay the billing call's start, which is not what this
	// test measures.
	if code, body := e.api(b, "GET", "/api/billing/warm", nil); code != 200 {
		t.Fatalf("warm-up: %d %s", code, body)
	}
	e.tl.mu.Lock()
	e.tl.spans = map[string][]compSpan{}
	e.tl.mu.Unlock()

	req, _ := http.NewRequest("GET", e.URL+"/api/parallel", nil)
	req.Header.Set("X-CSRF", "1")
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("parallel: %d %s\nlogs:\n%s", resp.StatusCode, body, e.Logs.String())
	}
	if ct, cc := resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
		t.Errorf("Content-Type %q, Cache-Control %q; want application/json, no-store", ct, cc)
	}
	p, n, pl := e.tl.get("profile"), e.tl.get("notifications"), e.tl.get("billing")
	if len(p) != 1 || len(n) != 1 || len(pl) != 1 {
		t.Fatalf("spans: %d %d %d, want one each", len(p), len(n), len(pl))
	}
	spans := []compSpan{p[0], n[0], pl[0]}
	for i := range spans {
		for j := range spans {
			if i != j && !(spans[i].start.Before(spans[j].end) && spans[j].start.Before(spans[i].end)) {
				t.Errorf("calls %d and %d did not overlap: %v–%v vs %v–%v", i, j, spans[i].start, spans[i].end, spans[j].start, spans[j].end)
			}
		}
	}

	// The dependent call starts after the call it reads from ended.
	code, body := e.api(b, "GET", "/api/dashboard", nil)
	if code != 200 {
		t.Fatalf("dashboard: %d %s", code, body)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil || got["name"] != "Alice" || got["plan"] != "gold" || got["unread"] != float64(3) {
		t.Fatalf("dashboard answer %s", body)
	}
	p, pl = e.tl.get("profile"), e.tl.get("billing")
	if !pl[1].start.After(p[1].end) && !pl[1].start.Equal(p[1].end) {
		t.Errorf("plan started at %v, before profile ended at %v", pl[1].start, p[1].end)
	}
	if last := e.ups["billing"].last(t); last.Path != "/v1/accounts/acc-7/plan" {
		t.Errorf("plan upstream path %q", last.Path)
	}

	// Audit: the composite's record and its three calls' share one correlation id.
	// The composite's record is committed once its answer is written: wait for it.
	var byCorr map[string][]map[string]any
	var compRec map[string]any
	for deadline := time.Now().Add(3 * time.Second); compRec == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		byCorr = map[string][]map[string]any{}
		for _, l := range e.auditLines() {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) != nil {
				continue
			}
			if c, _ := m["correlation_id"].(string); c != "" {
				byCorr[c] = append(byCorr[c], m)
			}
			if m["route"] == "dashboard" {
				compRec = m
			}
		}
	}
	if compRec == nil {
		t.Fatal("no audit record for the composite")
	}
	group := byCorr[compRec["correlation_id"].(string)]
	routes := map[string]bool{}
	for _, m := range group {
		routes[m["route"].(string)] = true
	}
	for _, r := range []string{"dashboard", "profile", "notifications", "billing"} {
		if !routes[r] {
			t.Errorf("no audit record for %s under the composite's correlation id; got %v", r, routes)
		}
	}
}

// Each call's upstream receives only its own route's credential: the user's
// token, an exchanged token, an API key — each at its own upstream only.
func TestCompositeEachCallGetsOnlyItsRouteCredential(t *testing.T) {
	e := startCompositeGW(t, 0)
	b := e.login("alice", "wonderland")
	if code, body := e.api(b, "GET", "/api/parallel", nil); code != 200 {
		t.Fatalf("parallel: %d %s\nlogs:\n%s", code, body, e.Logs.String())
	}
	prof, notif, bill := e.ups["profile"].last(t), e.ups["notifications"].last(t), e.ups["billing"].last(t)
	userTok := bearerOf(t, prof.Header)
	exchanged := bearerOf(t, bill.Header)
	if userTok == "" || exchanged == "" || userTok == exchanged {
		t.Fatalf("user token and exchanged token must both be set and differ")
	}
	if aud := audiences(jwtClaims(t, exchanged)); len(aud) != 1 || aud[0] != "billing-api" {
		t.Errorf("exchanged token audience %v, want [billing-api]", aud)
	}
	if prof.Header.Get("X-Api-Key") != "" || bill.Header.Get("X-Api-Key") != "" {
		t.Error("the API key reached an upstream whose route does not name it")
	}
	if notif.Header.Get("X-Api-Key") != e.apiKey {
		t.Errorf("notifications upstream got X-Api-Key %q", notif.Header.Get("X-Api-Key"))
	}
	if notif.Header.Get("Authorization") != "" {
		t.Error("the header-credential upstream received an Authorization header")
	}
	for name, r := range map[string]recorded{"profile": prof, "notifications": notif, "billing": bill} {
		if r.Header.Get("Cookie") != "" {
			t.Errorf("%s upstream received the browser's cookie", name)
		}
	}
}

// A required call denied by its route's policy fails the composite with 403
// and nothing of the other calls' data; the denied upstream sees nothing.
func TestCompositePolicyDeniedRequiredCall(t *testing.T) {
	e := startCompositeGW(t, 0)
	b := e.login("alice", "wonderland")
	code, body := e.api(b, "GET", "/api/withdenied", nil)
	if code != http.StatusForbidden {
		t.Fatalf("withdenied: %d %s", code, body)
	}
	if strings.Contains(string(body), "Alice") || strings.Contains(string(body), "acc-7") || strings.Contains(string(body), "never-shown") {
		t.Errorf("the 403 reveals call data: %s", body)
	}
	if n := e.ups["denied"].count(); n != 0 {
		t.Errorf("the denied route's upstream received %d requests", n)
	}
}

// Route-level checks apply to composites as to direct requests: no session
// → 401, no CSRF header or a cross-site Origin → 401 csrf_*, wrong method
// → 405; no upstream is reached.
func TestCompositeRouteLevelChecks(t *testing.T) {
	e := startCompositeGW(t, 0)
	if r := e.raw("GET", "/api/parallel", "X-CSRF: 1"); r.Status != http.StatusUnauthorized {
		t.Errorf("anonymous: %d %s", r.Status, r.Body)
	}
	b := e.login("alice", "wonderland")
	cookie := e.cookieHeader(b)
	// CSRF refusals answer 401 as on routes (Duende BFF's semantics).
	if r := e.raw("GET", "/api/parallel", cookie); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), `"csrf_`) {
		t.Errorf("no CSRF header: %d %s", r.Status, r.Body)
	}
	if r := e.raw("GET", "/api/parallel", cookie, "X-CSRF: 1", "Origin: https://evil.example"); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), `"csrf_`) {
		t.Errorf("cross-site Origin: %d %s", r.Status, r.Body)
	}
	if r := e.raw("POST", "/api/parallel", cookie, "X-CSRF: 1", "Content-Length: 0"); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d %s", r.Status, r.Body)
	}
	if r := e.raw("GET", "/api/./x/../parallel", cookie, "X-CSRF: 1"); r.Status != http.StatusOK {
		t.Errorf("a path that cleans to the composite: %d %s", r.Status, r.Body)
	}
	for n, u := range e.ups {
		if want := 1; n == "denied" && u.count() != 0 || n != "denied" && u.count() != want {
			t.Errorf("%s upstream received %d requests; want %d (the one allowed composite request)", n, u.count(), want)
		}
	}
}

// Hostile claim, parameter and query values (../, %2f, ?, #, @host, \)
// never change the upstream path or host: a call either sends them as one
// escaped segment or query value under its route, or fails without
// reaching the upstream.
func TestCompositeHostileValuesStayInOneSegment(t *testing.T) {
	e := startCompositeGW(t, 0)
	b := e.login("mallory", "mallory-pw")
	hostile := []string{"../../admin", "..%2f..%2fadmin", "a%2fb", "x?admin=1", "x#frag", "@evil.example", `a\b`, "..", "%2e%2e", "a/b", "//evil.example/x"}
	for _, h := range hostile {
		_, _ = e.api(b, "GET", "/api/hostile/"+url.PathEscape(h)+"?q="+url.QueryEscape(h), nil)
		_, _ = e.api(b, "GET", "/api/hostile/"+h+"?q="+h, nil)
	}
	check := func(name, prefix string) {
		for _, r := range e.ups[name].requests() {
			p, err := url.PathUnescape(r.Path)
			if err != nil {
				t.Errorf("%s: upstream path %q does not decode", name, r.Path)
				continue
			}
			segs := strings.Split(strings.TrimPrefix(r.Path, prefix), "/")
			if !strings.HasPrefix(r.Path, prefix) || len(segs) != 1 || strings.Contains(p, "..") && segs[0] == ".." {
				t.Errorf("%s: upstream path %q left one segment under %s", name, r.Path, prefix)
			}
			if strings.Contains(r.Path, "admin") && !strings.Contains(r.Path, "%") && strings.Contains(r.Path, "/admin") {
				t.Errorf("%s: upstream path %q reaches /admin", name, r.Path)
			}
		}
	}
	check("profile", "/users/")
	check("billing", "/v1/items/")
	check("notifications", "/q/")
	for _, n := range []string{"profile", "billing", "notifications"} {
		for _, r := range e.ups[n].requests() {
			t.Logf("%s received %s ?%s", n, r.Path, r.Query)
		}
	}
	if e.ups["billing"].count() == 0 || e.ups["notifications"].count() == 0 {
		t.Fatalf("no hostile value was ever carried as a segment; logs:\n%s", e.Logs.String())
	}
	for _, r := range e.ups["profile"].requests() {
		q, _ := url.ParseQuery(r.Query)
		if len(q) > 1 {
			t.Errorf("query %q grew parameters", r.Query)
		}
	}
}

// The client going away cancels every in-flight upstream request.
func TestCompositeClientCancellationCancelsEveryCall(t *testing.T) {
	e := startCompositeGW(t, 10*time.Second)
	b := e.login("alice", "wonderland")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+"/api/parallel", nil)
	req.Header.Set("X-CSRF", "1")
	errc := make(chan error, 1)
	go func() {
		resp, err := b.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.ups["profile"].count()+e.ups["notifications"].count()+e.ups["billing"].count() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the calls never reached the upstreams")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-errc
	for _, n := range []string{"profile", "notifications", "billing"} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			s := e.tl.get(n)
			if len(s) == 1 && s[0].cancelled {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s upstream did not see its request cancelled: %+v", n, s)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// An agent may call a composite only when its grant names the composite
// and covers every required call's route and method; otherwise 403 and no
// upstream is reached. Real agent tokens (gha_), real OP.
func TestCompositeAgentGrantCoversEveryRequiredCall(t *testing.T) {
	u := newAgentUps(t)
	e := startGW(t, gwOptions{AccessTokenTTL: 2 * time.Hour, Config: `
session:
  store: memory
` + agentRoutes(u) + `
composites:
  - name: dash
    path: /api/dash
    calls:
      me:   { route: profile, path: /me }
      plan: { route: billing, path: /plan }
      news: { route: orders, path: /news, optional: true }
agents:
  max_ttl: 15m
  delegable_routes: [dash, profile, billing, orders]
`})
	b := e.login("alice", "wonderland")
	full, _ := e.mustMint(b, `{"name":"dash bot","routes":["dash","profile","billing"],"methods":["GET"],"ttl":"5m"}`)
	partial, _ := e.mustMint(b, `{"name":"half bot","routes":["dash","profile"],"methods":["GET"],"ttl":"5m"}`)
	before := u.total()
	e.wantAgent(partial, "GET", "/api/dash", http.StatusForbidden, "agent_not_granted")
	if u.total() != before {
		t.Fatalf("a refused agent composite reached %d upstream requests", u.total()-before)
	}
	body := e.wantAgent(full, "GET", "/api/dash", http.StatusOK, "")
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil || got["me"] == nil || got["plan"] == nil || got["news"] != nil {
		t.Fatalf("agent dashboard %s (news is outside the grant: null)", body)
	}
	if u.orders.count() != 0 {
		t.Error("the optional call outside the grant reached its upstream")
	}
	noAgentTokenIn(t, "profile upstream", u.profile.last(t).Header, full)
}

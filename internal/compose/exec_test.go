package compose

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// interval is a call's recorded start and end, as sequence numbers.
type interval struct{ start, end int64 }

func TestCallsWithoutDependenciesRunTogetherAndDependentsAfterTheirInputs(t *testing.T) {
	var order seq
	var mu sync.Mutex
	got := map[string]interval{}
	allStarted := make(chan struct{})
	var started sync.WaitGroup
	started.Add(3)
	go func() { started.Wait(); close(allStarted) }()
	// Each of the three independent upstreams answers after 50 ms; it also
	// waits (boundedly) for the other two to have started, so a sequential
	// executor shows up as non-overlapping intervals rather than as a hang.
	slow := func(name string, body any, barrier bool) http.HandlerFunc {
		answer := jsonAnswer(body)
		return func(w http.ResponseWriter, r *http.Request) {
			s := order.next()
			if barrier {
				started.Done()
				select {
				case <-allStarted:
				case <-time.After(3 * time.Second):
				}
			}
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			got[name] = interval{s, order.next()}
			mu.Unlock()
			answer(w, r)
		}
	}
	p := &pipe{routes: map[string]*upstream{
		"profile":       newUpstream(t, slow("profile", map[string]any{"name": "Ada", "account_id": "acct-7"}, true)),
		"notifications": newUpstream(t, slow("notifications", map[string]any{"count": 3}, true)),
		"weather":       newUpstream(t, slow("weather", map[string]any{"temp": 21.5}, true)),
		"billing":       newUpstream(t, slow("plan", map[string]any{"tier": "pro"}, false)),
	}}
	set := mustCompile(t, Spec{Name: "dashboard", Path: "/api/dashboard",
		Calls: []CallSpec{
			{Name: "profile", Route: "profile", Path: "/me"},
			{Name: "notifications", Route: "notifications", Path: "/unread", Optional: true},
			{Name: "weather", Route: "weather", Path: "/today"},
			{Name: "plan", Route: "billing", Path: "/accounts/{calls.profile.account_id}/plan", DependsOn: []string{"profile"}},
		},
		Shape: `{"name": profile.name, "unread": notifications == null ? 0 : notifications.count, "plan": plan.tier, "temp": calls.weather.temp}`,
	})
	w, rep := serve(t, context.Background(), set, "/api/dashboard", &Input{Doer: p})
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if want := `{"name":"Ada","plan":"pro","temp":21.5,"unread":3}`; w.Body.String() != want {
		t.Errorf("answer %s, want %s", w.Body, want)
	}
	if ct, cc := w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
		t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
	}
	indep := []string{"profile", "notifications", "weather"}
	var latestStart, earliestEnd int64 = 0, 1 << 62
	for _, n := range indep {
		latestStart = max(latestStart, got[n].start)
		earliestEnd = min(earliestEnd, got[n].end)
	}
	if latestStart > earliestEnd {
		t.Errorf("independent calls did not overlap: %v", got)
	}
	if got["plan"].start < got["profile"].end {
		t.Errorf("plan started (%d) before its input profile ended (%d)", got["plan"].start, got["profile"].end)
	}
	if s := p.routes["billing"].seen(); len(s) != 1 || s[0].Path != "/api/billing/accounts/acct-7/plan" {
		t.Errorf("billing saw %+v", s)
	}
	for _, o := range rep.Calls {
		if o.Code != CodeOK || !o.Started {
			t.Errorf("outcome %+v", o)
		}
	}
}

// TestFailures runs one required call "a" and one optional call "b" whose
// upstreams misbehave in turn.
func TestFailures(t *testing.T) {
	const secret = "SECRET-UPSTREAM-DETAIL"
	blockUntilGone := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	misbehaviours := []struct {
		name    string
		handler http.HandlerFunc
		deny    bool
		code    Code
		status  int    // the composite's answer when the call is required
		errCode string // its error code
	}{
		{"upstream 500", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(500)
			fmt.Fprintf(w, `{"detail":%q}`, secret)
		}, false, CodeUpstreamStatus, 502, "composite_call_failed"},
		{"upstream 404", func(w http.ResponseWriter, r *http.Request) { http.Error(w, secret, 404) }, false, CodeUpstreamStatus, 502, "composite_call_failed"},
		{"html answer", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<p>"+secret+"</p>")
		}, false, CodeNotJSON, 502, "composite_call_failed"},
		{"json content type, broken body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"a": "`+secret)
		}, false, CodeNotJSON, 502, "composite_call_failed"},
		{"two documents", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{} {"a": "`+secret+`"}`)
		}, false, CodeNotJSON, 502, "composite_call_failed"},
		{"oversized body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"a":%q}`, strings.Repeat(secret, 100))
		}, false, CodeTooLarge, 502, "composite_call_failed"},
		{"oversized body without length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"a":"`)
			w.(http.Flusher).Flush()
			fmt.Fprint(w, strings.Repeat(secret, 100)+`"}`)
		}, false, CodeTooLarge, 502, "composite_call_failed"},
		{"timeout", blockUntilGone, false, CodeTimeout, 502, "composite_call_failed"},
		{"policy denies", jsonAnswer(map[string]string{"a": secret}), true, CodeDenied, 403, "composite_call_denied"},
	}
	for _, m := range misbehaviours {
		for _, optional := range []bool{false, true} {
			name := m.name + "/required"
			if optional {
				name = m.name + "/optional"
			}
			t.Run(name, func(t *testing.T) {
				bad := newUpstream(t, m.handler)
				good := newUpstream(t, jsonAnswer(map[string]string{"mine": "OTHER-CALL-DATA"}))
				p := &pipe{routes: map[string]*upstream{"profile": bad, "weather": good}, deny: map[string]bool{"profile": m.deny}}
				// Only the timeout case runs on a short deadline: on a loaded
				// machine the others must not turn into timeouts.
				timeout := 5 * time.Second
				if m.code == CodeTimeout {
					timeout = 50 * time.Millisecond
				}
				set := mustCompile(t, Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{
					{Name: "bad", Route: "profile", Path: "/x", Optional: optional, Timeout: timeout, MaxBody: 512},
					{Name: "good", Route: "weather", Path: "/y"},
				}})
				w, rep := serve(t, context.Background(), set, "/api/c", &Input{Doer: p})
				body := w.Body.String()
				if strings.Contains(body, secret) {
					t.Errorf("the upstream's body leaked into the answer: %s", body)
				}
				if rep.Calls[0].Code != m.code {
					t.Errorf("call code %q, want %q", rep.Calls[0].Code, m.code)
				}
				if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
					t.Errorf("headers %v", w.Header())
				}
				if m.deny && bad.hits.Load() != 0 {
					t.Errorf("a denied call reached its upstream")
				}
				if !optional {
					if w.Code != m.status {
						t.Errorf("status %d, want %d: %s", w.Code, m.status, body)
					}
					if strings.Contains(body, "OTHER-CALL-DATA") {
						t.Errorf("a failed composite revealed another call's data: %s", body)
					}
					got := decodeBody(t, w)
					if got["error"] != m.errCode || got["call"] != "bad" || got["reason"] != string(m.code) {
						t.Errorf("answer %s", body)
					}
					if rep.FailedCall != "bad" || rep.Status != m.status {
						t.Errorf("report %+v", rep)
					}
					return
				}
				if w.Code != 200 {
					t.Fatalf("status %d: %s", w.Code, body)
				}
				want := `{"bad":null,"good":{"mine":"OTHER-CALL-DATA"},"errors":[{"call":"bad","code":"` + string(m.code) + `"}]}`
				if body != want {
					t.Errorf("answer %s\nwant   %s", body, want)
				}
			})
		}
	}
}

func TestCompositeDeadlineEndsEveryCall(t *testing.T) {
	gone := make(chan struct{}, 2)
	block := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done(); gone <- struct{}{} }
	p := &pipe{routes: map[string]*upstream{"profile": newUpstream(t, block), "weather": newUpstream(t, block)}}
	set := mustCompile(t, Spec{Name: "c", Path: "/api/c", Timeout: 50 * time.Millisecond, Calls: []CallSpec{
		{Name: "a", Route: "profile", Path: "/x"},
		{Name: "b", Route: "weather", Path: "/y", Optional: true},
	}})
	w, rep := serve(t, context.Background(), set, "/api/c", &Input{Doer: p})
	if w.Code != 502 || rep.Calls[0].Code != CodeTimeout {
		t.Errorf("status %d, outcomes %+v", w.Code, rep.Calls)
	}
	for range 2 {
		select {
		case <-gone:
		case <-time.After(10 * time.Second):
			t.Fatal("an upstream never saw its request cancelled")
		}
	}
}

func TestRequiredFailureCancelsTheOtherCalls(t *testing.T) {
	gone := make(chan struct{})
	started := make(chan struct{})
	p := &pipe{routes: map[string]*upstream{
		"profile": newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-r.Context().Done()
			close(gone)
		}),
		"weather": newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			<-started
			http.Error(w, "no", 500)
		}),
	}}
	set := mustCompile(t, Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{
		{Name: "slow", Route: "profile", Path: "/x"},
		{Name: "broken", Route: "weather", Path: "/y"},
	}})
	w, rep := serve(t, context.Background(), set, "/api/c", &Input{Doer: p})
	if w.Code != 502 || rep.FailedCall != "broken" || rep.Calls[0].Code != CodeCancelled {
		t.Errorf("status %d, report %+v", w.Code, rep)
	}
	waitFor(t, gone, "the slow call to be cancelled")
}

func TestClientGoingAwayCancelsEveryCall(t *testing.T) {
	var startedWG sync.WaitGroup
	startedWG.Add(3)
	cancelled := make(chan string, 3)
	block := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			startedWG.Done()
			<-r.Context().Done()
			cancelled <- name
		}
	}
	p := &pipe{routes: map[string]*upstream{
		"profile": newUpstream(t, block("profile")), "notifications": newUpstream(t, block("notifications")),
		"weather": newUpstream(t, block("weather")), "billing": newUpstream(t, jsonAnswer(map[string]any{})),
	}}
	set := mustCompile(t, Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{
		{Name: "a", Route: "profile", Path: "/x"},
		{Name: "b", Route: "notifications", Path: "/y", Optional: true},
		{Name: "c", Route: "weather", Path: "/z"},
		{Name: "d", Route: "billing", Path: "/w", DependsOn: []string{"a"}},
	}})
	ctx, cancel := context.WithCancel(context.Background())
	allStarted := make(chan struct{})
	go func() { startedWG.Wait(); close(allStarted) }()
	type result struct {
		w   *httptest.ResponseRecorder
		rep *Report
	}
	res := make(chan result, 1)
	go func() {
		w, rep := serve(t, ctx, set, "/api/c", &Input{Doer: p})
		res <- result{w, rep}
	}()
	waitFor(t, allStarted, "every call to start")
	cancel()
	var r result
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the client went away")
	}
	seenCancel := map[string]bool{}
	for range 3 {
		select {
		case n := <-cancelled:
			seenCancel[n] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("only %v saw their request cancelled", seenCancel)
		}
	}
	if r.rep.Status != 499 || r.w.Body.Len() != 0 {
		t.Errorf("report status %d, body %q", r.rep.Status, r.w.Body)
	}
	if p.routes["billing"].hits.Load() != 0 {
		t.Errorf("a dependent call ran after the client went away")
	}
	for _, o := range r.rep.Calls {
		if o.Code != CodeCancelled {
			t.Errorf("outcome %+v, want cancelled", o)
		}
	}
}

func TestOptionalFailureSkipsItsDependents(t *testing.T) {
	p := &pipe{routes: map[string]*upstream{
		"notifications": newUpstream(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "x", 500) }),
		"billing":       newUpstream(t, jsonAnswer(map[string]any{})),
		"profile":       newUpstream(t, jsonAnswer(map[string]any{"n": 1})),
	}}
	specs := func(required bool) Spec {
		return Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{
			{Name: "n", Route: "notifications", Path: "/x", Optional: true},
			{Name: "dep", Route: "billing", Path: "/{calls.n.id}", DependsOn: []string{"n"}, Optional: !required},
			{Name: "p", Route: "profile", Path: "/me"},
		}}
	}
	w, rep := serve(t, context.Background(), mustCompile(t, specs(false)), "/api/c", &Input{Doer: p})
	want := `{"n":null,"dep":null,"p":{"n":1},"errors":[{"call":"n","code":"upstream_status"},{"call":"dep","code":"dependency_failed"}]}`
	if w.Code != 200 || w.Body.String() != want {
		t.Errorf("%d %s", w.Code, w.Body)
	}
	if rep.Calls[1].Started {
		t.Errorf("the dependent call ran")
	}
	w, rep = serve(t, context.Background(), mustCompile(t, specs(true)), "/api/c", &Input{Doer: p})
	if w.Code != 502 || rep.FailedCall != "dep" || !strings.Contains(w.Body.String(), `"reason":"dependency_failed"`) {
		t.Errorf("%d %s", w.Code, w.Body)
	}
	if p.routes["billing"].hits.Load() != 0 {
		t.Errorf("a call ran without its input")
	}
}

func TestRefusalsOtherThanPolicyKeepTheirStatus(t *testing.T) {
	for _, tc := range []struct {
		refusal int
		want    int
	}{{401, 401}, {429, 429}, {503, 503}, {400, 502}} {
		p := &pipe{refuse: map[string]*Refused{"profile": {Status: tc.refusal, Code: "x"}}}
		set := mustCompile(t, Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{{Name: "a", Route: "profile", Path: "/x"}}})
		w, rep := serve(t, context.Background(), set, "/api/c", &Input{Doer: p})
		if w.Code != tc.want || rep.Calls[0].Code != CodeRefused || rep.Calls[0].RefusalStatus != tc.refusal {
			t.Errorf("refusal %d: status %d, outcome %+v", tc.refusal, w.Code, rep.Calls[0])
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	set := mustCompile(t, Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{{Name: "a", Route: "profile", Path: "/x"}}})
	c, _ := set.Match("/api/c")
	w := httptest.NewRecorder()
	rep := c.Serve(w, httptest.NewRequest(http.MethodPost, "/api/c", nil), &Input{Doer: &pipe{}})
	if w.Code != 405 || w.Header().Get("Allow") != "GET" || rep.Error != "method_not_allowed" {
		t.Errorf("%d %v %+v", w.Code, w.Header(), rep)
	}
}

func TestJSONContentTypes(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "Application/JSON": true,
		"application/problem+json": true, "application/vnd.api+json;v=1": true, " application/json ": true,
		"text/json": false, "text/html": false, "application/jsonx": false, "application/+json": false,
		"application/x/json": false, "": false, "application/": false, "json": false, "application/ json": false,
	} {
		if got := isJSONType(ct); got != want {
			t.Errorf("isJSONType(%q) = %v", ct, got)
		}
	}
}

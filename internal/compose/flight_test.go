package compose

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// refsOf is the number of requests waiting on the in-flight call for key.
func refsOf(set *Set, key string) int {
	set.flights.mu.Lock()
	defer set.flights.mu.Unlock()
	if f := set.flights.m[key]; f != nil {
		return f.refs
	}
	return 0
}

// waitRefs waits until n requests share key's flight (bounded, not timed).
func waitRefs(t *testing.T, set *Set, key string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); refsOf(set, key) != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never saw %d requests share the call (have %d)", n, refsOf(set, key))
		}
	}
}

type flightRun struct {
	w   *httptest.ResponseRecorder
	rep *Report
}

func TestIdenticalInFlightCallsOfOneCallerAreMadeOnce(t *testing.T) {
	release := make(chan struct{})
	cancelled := make(chan struct{}, 4)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			jsonAnswer(map[string]string{"name": "Ada"})(w, r)
		case <-r.Context().Done():
			cancelled <- struct{}{}
		}
	})
	p := &pipe{routes: map[string]*upstream{"profile": up}}
	spec := Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{{Name: "me", Route: "profile", Path: "/me"}}}
	key := flightKey("caller-1", "profile", DefaultMaxBody, "/api/profile/me", nil)

	start := func(set *Set, ctx context.Context, caller, corr string) chan flightRun {
		ch := make(chan flightRun, 1)
		go func() {
			w, rep := serve(t, ctx, set, "/api/c", &Input{Doer: p, CallerKey: caller, CorrelationID: corr})
			ch <- flightRun{w, rep}
		}()
		return ch
	}

	t.Run("two requests, one upstream call", func(t *testing.T) {
		up.hits.Store(0)
		set := mustCompile(t, spec)
		a := start(set, context.Background(), "caller-1", "corr-a")
		waitRefs(t, set, key, 1)
		b := start(set, context.Background(), "caller-1", "corr-b")
		waitRefs(t, set, key, 2)
		release <- struct{}{}
		ra, rb := <-a, <-b
		if ra.w.Code != 200 || rb.w.Code != 200 || ra.w.Body.String() != rb.w.Body.String() {
			t.Fatalf("answers %d %s / %d %s", ra.w.Code, ra.w.Body, rb.w.Code, rb.w.Body)
		}
		if n := up.hits.Load(); n != 1 {
			t.Errorf("upstream called %d times", n)
		}
		if ra.rep.Calls[0].SharedFrom != "" || rb.rep.Calls[0].SharedFrom != "corr-a" {
			t.Errorf("shared from %q / %q", ra.rep.Calls[0].SharedFrom, rb.rep.Calls[0].SharedFrom)
		}
	})

	t.Run("the first client leaving does not fail the second", func(t *testing.T) {
		up.hits.Store(0)
		set := mustCompile(t, spec)
		ctxA, cancelA := context.WithCancel(context.Background())
		a := start(set, ctxA, "caller-1", "corr-a")
		waitRefs(t, set, key, 1)
		b := start(set, context.Background(), "caller-1", "corr-b")
		waitRefs(t, set, key, 2)
		cancelA()
		if ra := <-a; ra.rep.Status != 499 {
			t.Errorf("leaving client: status %d", ra.rep.Status)
		}
		release <- struct{}{}
		if rb := <-b; rb.w.Code != 200 || rb.rep.Calls[0].Code != CodeOK {
			t.Errorf("remaining client: %d %s", rb.w.Code, rb.w.Body)
		}
		if n := up.hits.Load(); n != 1 {
			t.Errorf("upstream called %d times", n)
		}
	})

	t.Run("the call is cancelled once every client has left", func(t *testing.T) {
		set := mustCompile(t, spec)
		ctxA, cancelA := context.WithCancel(context.Background())
		ctxB, cancelB := context.WithCancel(context.Background())
		a := start(set, ctxA, "caller-1", "corr-a")
		waitRefs(t, set, key, 1)
		b := start(set, ctxB, "caller-1", "corr-b")
		waitRefs(t, set, key, 2)
		cancelA()
		<-a
		cancelB()
		<-b
		select {
		case <-cancelled:
		case <-time.After(10 * time.Second):
			t.Fatal("the upstream call went on after every client had left")
		}
	})

	t.Run("different callers never share", func(t *testing.T) {
		up.hits.Store(0)
		set := mustCompile(t, spec)
		a := start(set, context.Background(), "caller-1", "corr-a")
		waitRefs(t, set, key, 1)
		b := start(set, context.Background(), "caller-2", "corr-b")
		waitRefs(t, set, flightKey("caller-2", "profile", DefaultMaxBody, "/api/profile/me", nil), 1)
		release <- struct{}{}
		release <- struct{}{}
		ra, rb := <-a, <-b
		if n := up.hits.Load(); n != 2 || ra.rep.Calls[0].SharedFrom != "" || rb.rep.Calls[0].SharedFrom != "" {
			t.Errorf("upstream called %d times; shared %q %q", n, ra.rep.Calls[0].SharedFrom, rb.rep.Calls[0].SharedFrom)
		}
	})
}

func TestNonGETCallsAreNeverShared(t *testing.T) {
	up := newUpstream(t, jsonAnswer(map[string]string{}))
	p := &pipe{routes: map[string]*upstream{"billing": up}}
	set := mustCompile(t, Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{
		{Name: "a", Route: "billing", Method: "POST", Path: "/x"},
		{Name: "b", Route: "billing", Method: "POST", Path: "/x"},
	}})
	w, _ := serve(t, context.Background(), set, "/api/c", &Input{Doer: p, CallerKey: "k"})
	if w.Code != 200 || up.hits.Load() != 2 {
		t.Errorf("status %d, upstream called %d times", w.Code, up.hits.Load())
	}
	for _, s := range up.seen() {
		if s.Method != "POST" {
			t.Errorf("method %s", s.Method)
		}
	}
}

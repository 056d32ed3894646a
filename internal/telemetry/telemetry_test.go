package telemetry

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"", "info", "debug", "warn", "error", "DEBUG"} {
		if _, err := ParseLevel(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	if _, err := ParseLevel("verbose"); err == nil {
		t.Error("unknown level must fail")
	}
}

// Labels carry only route names, fixed outcomes and status codes.
func TestMetricsExposeBoundedLabels(t *testing.T) {
	m := NewMetrics()
	w := m.For("web")
	w.ObserveRequest("profile", "allow", 200, 3*time.Millisecond)
	w.ObserveRequest("", "deny", 404, time.Millisecond)
	w.UpstreamError("profile", "timeout")
	w.Event("login", "success")
	m.For("partners").ObserveRequest("profile", "allow", 200, time.Millisecond)
	m.Event("config_loaded", "success")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`gatehouse_requests_total{client="web",code="200",outcome="allow",route="profile"} 1`,
		`gatehouse_requests_total{client="partners",code="200",outcome="allow",route="profile"} 1`,
		`gatehouse_requests_total{client="web",code="404",outcome="deny",route="none"} 1`,
		`gatehouse_upstream_errors_total{client="web",kind="timeout",route="profile"} 1`,
		`gatehouse_security_events_total{client="web",event="login",outcome="success"} 1`,
		`gatehouse_security_events_total{client="",event="config_loaded",outcome="success"} 1`,
		`gatehouse_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// With an OTLP endpoint configured, upstream calls carry a W3C traceparent.
func TestTracingPropagatesTraceContext(t *testing.T) {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer collector.Close()
	tr, err := NewTracing(context.Background(), collector.URL, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	got := make(chan string, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Traceparent")
	}))
	defer upstream.Close()
	client := &http.Client{Transport: tr.Transport(http.DefaultTransport)}
	front := tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", upstream.URL, nil)
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}), "test", nil)
	front.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	tp := <-got
	if !strings.HasPrefix(tp, "00-") || len(tp) != 55 {
		t.Fatalf("traceparent %q", tp)
	}
	// Disabled tracing sends nothing.
	off, _ := NewTracing(context.Background(), "", "test")
	var buf bytes.Buffer
	client = &http.Client{Transport: off.Transport(http.DefaultTransport)}
	off.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", upstream.URL, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}), "t", nil).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", &buf))
	if tp := <-got; tp != "" {
		t.Fatalf("disabled tracing sent traceparent %q", tp)
	}
	if _, err := NewTracing(context.Background(), "not a url", "x"); err == nil {
		t.Fatal("bad endpoint must fail")
	}
}

// Counting a request runs on every request: it must not allocate for the
// usual status codes, and every code keeps its own label.
func TestObserveRequestDoesNotAllocate(t *testing.T) {
	m := NewMetrics()
	for _, code := range []int{200, 204, 304, 403, 502, 599} {
		m.ObserveRequest("profile", "allow", code, time.Millisecond)
		if got := statusLabel(code); got != strconv.Itoa(code) {
			t.Fatalf("statusLabel(%d) = %q", code, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { m.ObserveRequest("profile", "allow", 200, time.Millisecond) }); n != 0 {
		t.Fatalf("ObserveRequest allocates %.0f times per request", n)
	}
}

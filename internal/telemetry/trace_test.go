package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// Issue 10 item 12: a client's traceparent neither chooses the trace id
// (which audit records carry) nor passes on; a trusted proxy's does.
func TestClientTraceContextIsTrustedOnlyFromTrustedProxies(t *testing.T) {
	const clientTrace = "0af7651916cd43dd8448eb211c80319c"
	const tp = "00-" + clientTrace + "-b7ad6b7169203331-01"
	for _, enabled := range []bool{false, true} {
		endpoint := ""
		if enabled {
			endpoint = "http://127.0.0.1:1" // nothing listens: spans are dropped
		}
		tr, err := NewTracing(context.Background(), endpoint, "test")
		if err != nil {
			t.Fatal(err)
		}
		var gotTrace string
		var gotHeader http.Header
		h := tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gotTrace, gotHeader = TraceID(r.Context()), r.Header.Clone()
		}), "test", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
		send := func(peer string) {
			r := httptest.NewRequest("GET", "/api/x", nil)
			r.RemoteAddr = peer
			r.Header.Set("Traceparent", tp)
			r.Header.Set("Tracestate", "evil=1")
			r.Header.Set("Baggage", "user=admin")
			r.Header.Set("X-B3-Traceid", clientTrace)
			r.Header.Set("Uber-Trace-Id", clientTrace+":1:0:1")
			r.Header["traceparent"] = []string{tp}
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
		send("203.0.113.9:4000")
		if gotTrace == clientTrace {
			t.Errorf("enabled=%v: an untrusted client chose the trace id", enabled)
		}
		for k := range gotHeader {
			if isTraceHeader(k) {
				t.Errorf("enabled=%v: untrusted %s passed on", enabled, k)
			}
		}
		send("10.1.2.3:4000")
		if gotHeader.Get("Traceparent") != tp || gotHeader.Get("Baggage") != "user=admin" {
			t.Errorf("enabled=%v: trusted proxy's trace context dropped", enabled)
		}
		if enabled && gotTrace != clientTrace {
			t.Errorf("trusted proxy's trace id not continued: %q", gotTrace)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = tr.Shutdown(ctx) // the export fails: nothing listens
		cancel()
	}
}

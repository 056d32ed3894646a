package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing wraps handlers and transports with OpenTelemetry when an OTLP
// endpoint is configured, and is a no-op otherwise. The provider and
// propagator are passed explicitly rather than installed globally.
type Tracing struct {
	enabled    bool
	provider   trace.TracerProvider
	propagator propagation.TextMapPropagator
	shutdown   func(context.Context) error
}

// NewTracing sets up OTLP/HTTP export to endpoint (e.g. http://127.0.0.1:4318).
// An empty endpoint disables tracing: spans are not recorded and no trace
// headers are sent upstream.
func NewTracing(ctx context.Context, endpoint, version string) (*Tracing, error) {
	if endpoint == "" {
		return &Tracing{provider: noop.NewTracerProvider(), propagator: propagation.NewCompositeTextMapPropagator(), shutdown: func(context.Context) error { return nil }}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("telemetry.otlp_endpoint %q: want an http(s) URL such as http://127.0.0.1:4318", endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint)}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("create OTLP exporter: %w", err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName("gatehouse"), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{
		enabled:    true,
		provider:   tp,
		propagator: propagation.TraceContext{},
		shutdown:   tp.Shutdown,
	}, nil
}

// Handler wraps a server handler: extracts incoming W3C trace context and
// starts a server span per request. Trace context and baggage are taken
// only from peers in trusted (the trusted proxies): from anyone else they
// are removed before extraction, so a client can neither choose the trace
// id that audit records carry (correlating its requests with someone
// else's trace, or flooding one trace) nor pass baggage to upstreams.
func (t *Tracing) Handler(h http.Handler, operation string, trusted []netip.Prefix) http.Handler {
	if t.enabled {
		h = otelhttp.NewHandler(h, operation,
			otelhttp.WithTracerProvider(t.provider), otelhttp.WithPropagators(t.propagator))
	}
	return untrustedTraceStripper{next: h, trusted: trusted}
}

// untrustedTraceStripper drops client trace headers from untrusted peers.
type untrustedTraceStripper struct {
	next    http.Handler
	trusted []netip.Prefix
}

func (s untrustedTraceStripper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.fromTrusted(r) {
		// Every spelling: Go canonicalises names parsed from the wire, but
		// keeps non-token spellings (Trace_Parent) as sent.
		for k := range r.Header {
			if isTraceHeader(k) {
				delete(r.Header, k)
			}
		}
	}
	s.next.ServeHTTP(w, r)
}

func (s untrustedTraceStripper) fromTrusted(r *http.Request) bool {
	if len(s.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range s.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// isTraceHeader reports whether k names, in any case, traceparent,
// tracestate or baggage (W3C), or a B3 or Jaeger propagation header, which
// an upstream's own tracing library may read.
func isTraceHeader(k string) bool {
	switch len(k) {
	case len("traceparent"), len("tracestate"), len("baggage"), len("b3"), len("uber-trace-id"):
	default:
		if !(len(k) > len("x-b3-") && strings.EqualFold(k[:len("x-b3-")], "x-b3-")) &&
			!(len(k) > len("uberctx-") && strings.EqualFold(k[:len("uberctx-")], "uberctx-")) {
			return false
		}
		return true
	}
	for _, n := range [...]string{"traceparent", "tracestate", "baggage", "b3", "uber-trace-id"} {
		if strings.EqualFold(k, n) {
			return true
		}
	}
	return false
}

// Transport wraps an upstream transport so each upstream call is a client span
// and carries the traceparent header.
func (t *Tracing) Transport(rt http.RoundTripper) http.RoundTripper {
	if !t.enabled {
		return rt
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.provider), otelhttp.WithPropagators(t.propagator))
}

// TraceID returns the current trace id for audit records, or "".
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// Shutdown flushes pending spans.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

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
// starts a server span per request.
func (t *Tracing) Handler(h http.Handler, operation string) http.Handler {
	if !t.enabled {
		return h // no per-request cost when tracing is off
	}
	return otelhttp.NewHandler(h, operation,
		otelhttp.WithTracerProvider(t.provider), otelhttp.WithPropagators(t.propagator))
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

package telemetry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds Gatehouse's Prometheus collectors in a registry of its own (no
// global default registry: two servers in one test process must not collide).
// Label values are only route names from the config, fixed outcome words and
// status classes: never a user id, a session id, a path from the request or a
// secret, so cardinality is bounded and nothing sensitive reaches a scraper.
type Metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	events         *prometheus.CounterVec
}

// NewMetrics creates and registers the collectors.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_requests_total",
		Help: "Requests handled, by route and outcome (allow, deny, error) and status code.",
	}, []string{"route", "outcome", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gatehouse_request_duration_seconds",
		Help:    "Time from request received to response written, by route.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	m.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_upstream_errors_total",
		Help: "Failed upstream round trips, by route and kind (unreachable, timeout, credential).",
	}, []string{"route", "kind"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_refusals_total",
		Help: "Requests Gatehouse refused, by route and stable error code (e.g. csrf_header_missing, audit_unavailable).",
	}, []string{"route", "code"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_security_events_total",
		Help: "Security events (login, logout, token_refresh, ...), by event and outcome.",
	}, []string{"event", "outcome"})
	m.reg.MustRegister(m.requests, m.duration, m.upstreamErrors, m.refusals, m.events,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry exposes the registry so other packages can register collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRequest records one handled request. route is the configured route
// name ("" becomes "none"); outcome is allow, deny or error.
func (m *Metrics) ObserveRequest(route, outcome string, status int, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "none"
	}
	m.requests.WithLabelValues(route, outcome, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// UpstreamError counts a failed upstream round trip.
func (m *Metrics) UpstreamError(route, kind string) {
	if m == nil {
		return
	}
	m.upstreamErrors.WithLabelValues(route, kind).Inc()
}

// Refused counts a refusal by its stable code (pipeline.Counter). status is
// already counted by ObserveRequest.
func (m *Metrics) Refused(route, code string, _ int) {
	if m == nil {
		return
	}
	if route == "" {
		route = "none"
	}
	m.refusals.WithLabelValues(route, code).Inc()
}

// Event counts a security event.
func (m *Metrics) Event(event, outcome string) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(event, outcome).Inc()
}

// Gauge registers a gauge whose value fn reports at each scrape (store up, audit buffer
// depth, open connections, ...). fn must be cheap and must not block for long.
func (m *Metrics) Gauge(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// Counter registers a counter whose total fn reports at each scrape (audit records dropped,
// connections refused).
func (m *Metrics) Counter(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

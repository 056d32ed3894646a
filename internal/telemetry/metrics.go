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
	// client labels what this view records (see For); "" for the
	// process-wide view.
	client string
}

// For returns a view of m that labels everything it records with the
// frontend client (the frontends of one process share the collectors).
func (m *Metrics) For(client string) *Metrics {
	if m == nil {
		return nil
	}
	v := *m
	v.client = client
	return &v
}

// NewMetrics creates and registers the collectors.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_requests_total",
		Help: "Requests handled, by frontend (client), route and outcome (allow, deny, error) and status code.",
	}, []string{"client", "route", "outcome", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gatehouse_request_duration_seconds",
		Help:    "Time from request received to response written, by frontend (client) and route.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"client", "route"})
	m.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_upstream_errors_total",
		Help: "Failed upstream round trips, by frontend (client), route and kind (unreachable, timeout, credential).",
	}, []string{"client", "route", "kind"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_refusals_total",
		Help: "Requests Gatehouse refused, by frontend (client), route and stable error code (e.g. csrf_header_missing, audit_unavailable).",
	}, []string{"client", "route", "code"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_security_events_total",
		Help: "Security events (login, logout, token_refresh, ...), by frontend (client; empty for process-wide events), event and outcome.",
	}, []string{"client", "event", "outcome"})
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
	m.requests.WithLabelValues(m.client, route, outcome, statusLabel(status)).Inc()
	m.duration.WithLabelValues(m.client, route).Observe(d.Seconds())
}

// statusLabel is the status code as a label value; the common codes are
// constants, so counting a request does not allocate (strconv.Itoa
// allocates for numbers of three digits).
func statusLabel(status int) string {
	switch status {
	case 200:
		return "200"
	case 201:
		return "201"
	case 204:
		return "204"
	case 206:
		return "206"
	case 301:
		return "301"
	case 302:
		return "302"
	case 303:
		return "303"
	case 304:
		return "304"
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 405:
		return "405"
	case 408:
		return "408"
	case 413:
		return "413"
	case 429:
		return "429"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	case 504:
		return "504"
	}
	return strconv.Itoa(status)
}

// UpstreamError counts a failed upstream round trip.
func (m *Metrics) UpstreamError(route, kind string) {
	if m == nil {
		return
	}
	m.upstreamErrors.WithLabelValues(m.client, route, kind).Inc()
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
	m.refusals.WithLabelValues(m.client, route, code).Inc()
}

// Event counts a security event.
func (m *Metrics) Event(event, outcome string) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(m.client, event, outcome).Inc()
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

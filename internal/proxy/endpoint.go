package proxy

import (
	"context"
	"errors"
	"net/http"

	"github.com/gatehouse-dev/gatehouse/internal/pipeline"
)

// Endpoints are API endpoints Gatehouse answers itself (composites). They
// share the routes' namespace (a path is a route's or an endpoint's, never
// both) and pass the route-level stages — path cleaning, method, CSRF,
// identify, limits — exactly as a route's requests do; the Endpoint stage
// then hands the identified request to ServeEndpoint instead of
// authorize … forward (an endpoint's own calls go through Call, each with
// its route's policy, credential and audit record).
type Endpoints interface {
	// Endpoint returns the name and method of the endpoint serving the
	// cleaned path; ok is false when none does.
	Endpoint(path string) (name, method string, ok bool)
	// Paths lists the endpoints' paths as configured ("/api/orders/{id}"):
	// the proxy is mounted on their first segment, as for routes.
	Paths() []string
	// ServeEndpoint answers an identified request (r.Caller is set) and
	// writes its own audit record.
	ServeEndpoint(ctx context.Context, w http.ResponseWriter, r *pipeline.Request)
}

// Endpoint answers requests for Options.Endpoints once the stages before it
// have passed; route requests go on to the stages after it. It must come
// after Identify (and the limit) and before Authorize.
func Endpoint() Stage { return endpointStage{} }

type endpointStage struct{}

func (endpointStage) run(ctx context.Context, p *Proxy, x *exchange) *pipeline.Refusal {
	if !x.rt.endpoint {
		return nil
	}
	p.opts.Endpoints.ServeEndpoint(ctx, x.w, &x.req)
	x.done = true
	return nil
}

// errNoEndpointStage: a stage list that routes endpoint requests but lacks
// the Endpoint stage must refuse, never forward them anywhere.
var errNoEndpointStage = errors.New("stage list: an endpoint request reached a route stage (Endpoint stage missing)")

func endpointMisrouted() *pipeline.Refusal {
	return &pipeline.Refusal{Status: http.StatusInternalServerError, Code: "endpoint_misconfigured",
		Message: "this endpoint cannot be served", Err: errNoEndpointStage}
}

// endpointRoute is the route-shaped stand-in for an endpoint request: the
// stages before Endpoint read only its name, method list and anonymity.
func endpointRoute(name, method string) *route {
	return &route{name: name, path: "", methods: []string{method}, allow: method, maxBody: -1, endpoint: true}
}

type correlationKey struct{}

// WithCorrelation returns ctx carrying a correlation id: every Call made
// with it records the id in its audit record (a composite's calls share
// the composite's).
func WithCorrelation(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

func correlationOf(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

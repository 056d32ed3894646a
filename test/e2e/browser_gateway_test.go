package e2e

import (
	"context"

	"github.com/gatehouse-dev/gatehouse/internal/demo"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

// startGateway starts Gatehouse from a configuration file for the browser tests, exactly as
// `gatehouse demo` does: it returns once the listeners are bound, and Gatehouse stops when
// ctx is done. Tests that must run without the gateway can set it to nil: they then skip.
var startGateway demo.StartGatewayFunc = func(ctx context.Context, configPath string) (string, <-chan error, error) {
	g, done, err := gateway.StartFile(ctx, configPath, gateway.Options{})
	if err != nil {
		return "", nil, err
	}
	return g.PublicURL(), done, nil
}

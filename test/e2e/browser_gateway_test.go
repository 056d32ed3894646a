package e2e

import "github.com/gatehouse-dev/gatehouse/internal/demo"

// startGateway starts Gatehouse from a configuration file for the browser tests, exactly as
// `gatehouse demo` does (config.Load, gateway.New, Run; it returns once the public listener
// accepts connections and stops when ctx is done).
//
// TODO(lead): wire it to internal/gateway. While it is nil the browser tests skip.
var startGateway demo.StartGatewayFunc

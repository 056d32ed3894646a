package gateway

import (
	"crypto/tls"
	"errors"
	"log/slog"

	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/server"
)

// publicTLS is the public listener's TLS configuration when tls: is set
// (certificate re-read when its files change), nil for plain HTTP behind a
// TLS-terminating load balancer.
func publicTLS(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
	if cfg.TLS == nil {
		return nil, nil
	}
	r, err := server.NewCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, log.With("component", "tls"))
	if err != nil {
		return nil, err
	}
	return r.TLSConfig(), nil
}

// errDraining makes /readyz fail once a shutdown has begun.
var errDraining = errors.New("shutting down")

package gateway

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/dpop"
	"github.com/gatehouse-dev/gatehouse/internal/oauthserver"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// buildOAuth builds the OAuth front door (nil without an oauth section). Its
// DPoP replay cache is the session store, so every instance sharing the
// store refuses a proof another instance has seen.
func buildOAuth(cfg *config.Config, sessions *session.Manager, login oauthserver.Login, log *audit.Logger, now func() time.Time, logger *slog.Logger) (*oauthserver.Server, error) {
	if cfg.OAuth == nil {
		return nil, nil
	}
	reg, routes, err := oauthRegistry(cfg)
	if err != nil {
		return nil, err
	}
	v, err := dpop.NewVerifier(dpop.Options{Replay: sessions, Now: now})
	if err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	return oauthserver.New(oauthserver.Options{PublicURL: cfg.PublicURL, Registry: reg, Routes: routes, Sessions: sessions,
		Login: login, DPoP: v, Auditor: log, Client: cfg.Client, Now: now, Logger: logger})
}

// oauthRegistry builds the client registry (Check calls it too) and lists
// the routes clients may be granted: every route that needs a session.
func oauthRegistry(cfg *config.Config) (*oauthserver.Registry, []string, error) {
	routes := make([]string, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		if !r.Anonymous {
			routes = append(routes, r.Name)
		}
	}
	if cfg.OAuth == nil {
		return nil, routes, nil
	}
	specs := make([]oauthserver.ClientSpec, 0, len(cfg.OAuth.Clients))
	for _, c := range cfg.OAuth.Clients {
		specs = append(specs, c.Spec())
	}
	reg, err := oauthserver.NewRegistry(specs, routes)
	if err != nil {
		return nil, nil, fmt.Errorf("oauth: %w", err)
	}
	return reg, routes, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/server"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("c", "gatehouse.yaml", "configuration file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errReported
	}
	log := telemetry.NewLogger(stderr, cfg.Telemetry.LogLevel)
	useRedisLogger(log)
	// Client connections, upstream connections, the store and the audit file all need
	// descriptors; server.max_connections defaults to a share of this limit.
	if n, err := server.RaiseFDLimit(); err != nil {
		log.Warn("could not raise the open-file limit", "err", err)
	} else if cfg.Server.MaxConnections == 0 {
		log.Info("open-file limit", "limit", n, "max_connections", server.DefaultMaxConnections(n))
	}
	return serve(ctx, cfg, log, stdout, nil)
}

// errAuditLost: the gateway stopped but its audit log could not take every record (exit 3).
var errAuditLost = errors.New("audit records lost at shutdown")

// serve builds and runs the gateway until ctx ends. ready, when set, is
// called with the bound public address once the gateway is built.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout io.Writer, ready func(g *gateway.Gateway)) error {
	g, err := gateway.New(ctx, cfg, gateway.Options{Logger: log, Version: version(), Stdout: stdout})
	if err != nil {
		return err
	}
	var urls []string
	for _, fc := range cfg.Frontends() {
		urls = append(urls, fc.Client+"="+fc.Origin()+fc.PathPrefix())
	}
	log.Info("gatehouse started", "version", version(), "public", g.PublicAddr(), "admin", g.AdminAddr(), "frontends", urls)
	if ready != nil {
		ready(g)
	}
	// SIGHUP reloads the configuration file (a rejected file changes
	// nothing; the gateway logs and audits why).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := g.Reload(ctx); err == nil {
					log.Info("reloaded on SIGHUP")
				}
			}
		}
	}()
	if err := g.Run(ctx); err != nil {
		if errors.Is(err, audit.ErrRecordsLost) {
			log.Error("gatehouse stopped, but audit records could not be written (is the audit disk full?); exit code 3", "err", err)
			return errAuditLost
		}
		return err
	}
	log.Info("gatehouse stopped")
	return nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/demo"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/telemetry"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	data := fs.String("data", "", "keep the demo's files (config, sessions, audit log) in this directory instead of a temporary one")
	addr := fs.String("addr", "", "public listener (loopback host:port); default 127.0.0.1 and a free port")
	verbose := fs.Bool("v", false, "log Gatehouse's own lines to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := telemetry.NewLogger(stderr, level)
	return demo.Run(ctx, demo.Options{
		DataDir: *data,
		Addr:    *addr,
		Out:     stdout,
		Logger:  log,
		StartGateway: func(ctx context.Context, configPath string) (string, <-chan error, error) {
			g, done, err := gateway.StartFile(ctx, configPath, gateway.Options{Logger: log, Version: version()})
			if err != nil {
				return "", nil, err
			}
			// The printed URL must sign in at once: wait for IdP discovery.
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			if err := g.WaitIdP(wctx); err != nil {
				return "", nil, fmt.Errorf("demo: %w", err)
			}
			return g.PublicURL(), done, nil
		},
	})
}

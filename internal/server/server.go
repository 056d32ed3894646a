// Package server runs Gatehouse's two listeners, the public one (frontend,
// /bff/*, API routes) and the admin one (health, readiness, metrics, admin
// API), with bounded timeouts and graceful shutdown.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Server. Zero durations take the defaults below.
type Options struct {
	PublicAddr string
	AdminAddr  string
	Public     http.Handler
	Admin      http.Handler
	Logger     *slog.Logger

	// ReadHeaderTimeout bounds how long a client may take to send headers
	// (slowloris). Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers. Default 64 KiB.
	MaxHeaderBytes int
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after a shutdown signal. Default 30s.
	ShutdownTimeout time.Duration

	// PublicListener and AdminListener, when set, are used instead of
	// listening on the addresses (tests pass :0 listeners).
	PublicListener net.Listener
	AdminListener  net.Listener

	// TLS, when set, makes the public listener serve HTTPS (see tls.go).
	TLS *tls.Config

	// DrainDelay: after the shutdown signal, Draining reports true (so
	// /readyz answers 503) while both listeners keep serving for this long;
	// then the listeners close. Load balancers that poll readiness thus stop
	// sending before any connection is refused. Default 0.
	DrainDelay time.Duration
}

// Server is the pair of HTTP servers.
type Server struct {
	opts   Options
	public *http.Server
	admin  *http.Server
	pubLn  net.Listener
	admLn  net.Listener

	draining atomic.Bool
}

// Draining reports whether a shutdown has begun (readiness must fail).
func (s *Server) Draining() bool { return s.draining.Load() }

// New prepares the servers and binds the listeners, so that a bad address is
// reported before anything starts.
func New(opts Options) (*Server, error) {
	if opts.ReadHeaderTimeout == 0 {
		opts.ReadHeaderTimeout = 10 * time.Second
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 120 * time.Second
	}
	if opts.MaxHeaderBytes == 0 {
		opts.MaxHeaderBytes = 64 << 10
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts}
	errLog := slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)
	// The public server has no global WriteTimeout: server-sent events and
	// WebSockets legitimately stay open, and every proxied route has its own
	// upstream timeout. The admin server's responses are all short.
	s.public = &http.Server{
		Handler:           opts.Public,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		ErrorLog:          errLog,
		TLSConfig:         opts.TLS,
	}
	s.admin = &http.Server{
		Handler:           opts.Admin,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	var err error
	if s.pubLn = opts.PublicListener; s.pubLn == nil {
		if s.pubLn, err = net.Listen("tcp", opts.PublicAddr); err != nil {
			return nil, fmt.Errorf("listen on %s (listen): %w", opts.PublicAddr, err)
		}
	}
	if s.admLn = opts.AdminListener; s.admLn == nil {
		if s.admLn, err = net.Listen("tcp", opts.AdminAddr); err != nil {
			s.pubLn.Close()
			return nil, fmt.Errorf("listen on %s (admin_listen): %w", opts.AdminAddr, err)
		}
	}
	return s, nil
}

// PublicAddr is the bound public address.
func (s *Server) PublicAddr() string { return s.pubLn.Addr().String() }

// AdminAddr is the bound admin address.
func (s *Server) AdminAddr() string { return s.admLn.Addr().String() }

// Run serves until ctx ends, then stops accepting connections, lets in-flight
// requests finish (up to ShutdownTimeout) and returns nil. A listener failure
// returns its error.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	serve := func(name string, srv *http.Server, ln net.Listener) {
		defer wg.Done()
		s.opts.Logger.Info("listening", "listener", name, "addr", ln.Addr().String())
		if err := serveMaybeTLS(srv, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("%s listener: %w", name, err)
		}
	}
	wg.Add(2)
	go serve("public", s.public, s.pubLn)
	go serve("admin", s.admin, s.admLn)

	var runErr error
	select {
	case <-ctx.Done():
		s.draining.Store(true)
		if d := s.opts.DrainDelay; d > 0 {
			s.opts.Logger.Info("shutting down: readiness fails, still serving while load balancers stop sending", "delay", d.String())
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case runErr = <-errc:
				t.Stop()
			}
		}
	case runErr = <-errc:
		s.draining.Store(true)
	}
	s.opts.Logger.Info("shutting down: finishing in-flight requests", "timeout", s.opts.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	var shutErr error
	for _, srv := range []*http.Server{s.public, s.admin} {
		if err := srv.Shutdown(sctx); err != nil {
			shutErr = errors.Join(shutErr, err)
		}
	}
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	if shutErr != nil {
		return fmt.Errorf("graceful shutdown: %w", shutErr)
	}
	return nil
}

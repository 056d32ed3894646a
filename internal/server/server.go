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
	"syscall"
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
	// after a shutdown signal; connections still open then (long streams) are
	// closed, and their handlers are given a moment to write their audit
	// records. Default 30s.
	ShutdownTimeout time.Duration
	// DrainDelay is how long the public listener keeps accepting after a
	// shutdown signal, answering with Connection: close while /readyz says
	// 503, so a load balancer can stop sending first. Default 0.
	DrainDelay time.Duration
	// BodyReadTimeout is the idle timeout of each read of a request body: a
	// client that sends nothing for this long is cut with 408. Default 10s.
	BodyReadTimeout time.Duration
	// MaxConnections caps open connections on the public listener; beyond it
	// new connections get a quick 503 and are closed. 0 derives it from the
	// open-file limit (DefaultMaxConnections); negative: no cap.
	MaxConnections int

	// PublicListener and AdminListener, when set, are used instead of
	// listening on the addresses (tests pass :0 listeners).
	PublicListener net.Listener
	AdminListener  net.Listener

	// TLS, when set, makes the public listener serve HTTPS (see tls.go).
	TLS *tls.Config
}

// Server is the pair of HTTP servers.
type Server struct {
	opts   Options
	public *http.Server
	admin  *http.Server
	pubLn  net.Listener
	admLn  net.Listener
	limit  *limitListener // nil without a cap

	draining atomic.Bool
	inFlight atomic.Int64
	// baseCtx is every public request's parent; cancelled when the shutdown
	// timeout ends what is still open.
	baseCtx    context.Context
	cancelBase context.CancelFunc
}

// waitIdle waits until no public request is in flight; false if stop came first.
func (s *Server) waitIdle(stop <-chan struct{}) bool {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.inFlight.Load() > 0 {
		select {
		case <-stop:
			return s.inFlight.Load() == 0
		case <-t.C:
		}
	}
	return true
}

// Stats are the server's gauges.
type Stats struct {
	// OpenConnections on the public listener (only counted with a cap).
	OpenConnections int64
	// RefusedConnections since start (beyond the cap).
	RefusedConnections uint64
	// InFlight public requests.
	InFlight int64
	// Draining is true once a shutdown signal arrived.
	Draining bool
}

// Stats returns the current gauges.
func (s *Server) Stats() Stats {
	st := Stats{InFlight: s.inFlight.Load(), Draining: s.draining.Load()}
	if s.limit != nil {
		st.OpenConnections = s.limit.open.Load()
		st.RefusedConnections = s.limit.refused.Load()
	}
	return st
}

// Ready reports ErrDraining once shutdown began (the /readyz check).
func (s *Server) Ready(context.Context) error {
	if s.draining.Load() {
		return ErrDraining
	}
	return nil
}

// ErrDraining means the instance is shutting down.
var ErrDraining = errors.New("shutting down")

// wrap counts in-flight requests, marks answers during a drain with
// Connection: close, and gives request bodies a progress deadline.
func (s *Server) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		if r.Body == nil || r.Body == http.NoBody || s.opts.BodyReadTimeout <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		b := &progressBody{body: r.Body, rc: http.NewResponseController(w), idle: s.opts.BodyReadTimeout}
		// The body is also in the context: wrappers further in (tracing) replace r.Body,
		// and a timed-out read cancels the request context, so the proxy's error handler
		// finds the cause here (BodyTimedOut).
		r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
		r.Body = b
		next.ServeHTTP(w, r)
		if !b.done {
			// A handler that answered without reading the whole body (a refusal) leaves the
			// server to discard the rest before answering; bound that too, or a client that
			// stops sending would hold the connection and its answer forever.
			_ = b.rc.SetReadDeadline(time.Now().Add(s.opts.BodyReadTimeout))
		}
	})
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
	if opts.BodyReadTimeout == 0 {
		opts.BodyReadTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts}
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	errLog := slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)
	// The public server has no global WriteTimeout: server-sent events and
	// WebSockets legitimately stay open, and every proxied route has its own
	// upstream timeout. The admin server's responses are all short.
	s.public = &http.Server{
		Handler:           s.wrap(opts.Public),
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
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
	if opts.MaxConnections == 0 {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
			opts.MaxConnections = DefaultMaxConnections(lim.Cur)
		}
	}
	if opts.MaxConnections > 0 {
		s.limit = newLimitListener(s.pubLn, opts.MaxConnections)
		s.pubLn = s.limit
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
	// Readiness turns 503 at once and answers carry Connection: close; the
	// admin listener keeps serving /readyz until the public side is done.
	s.draining.Store(true)
	s.opts.Logger.Info("shutting down: readiness is 503; finishing in-flight requests",
		"in_flight", s.inFlight.Load(), "drain_delay", s.opts.DrainDelay.String(), "timeout", s.opts.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	var shutErr error
	err := s.public.Shutdown(sctx)
	// Shutdown does not wait for hijacked connections (WebSockets): wait for
	// every handler, up to the same deadline.
	if err == nil && !s.waitIdle(sctx.Done()) {
		err = sctx.Err()
	}
	if err != nil {
		// Streams still open at the deadline are ended: their request
		// contexts are cancelled (which also ends proxied WebSockets) and
		// their connections closed; the handlers return and write their
		// records. That is the documented end of a stream at shutdown, not a
		// failure.
		n := s.inFlight.Load()
		s.cancelBase()
		_ = s.public.Close()
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok := s.waitIdle(wctx.Done())
		wcancel()
		if ok {
			s.opts.Logger.Warn("shutdown timeout reached: ended the requests still open", "ended_requests", n)
		} else {
			shutErr = fmt.Errorf("%d requests did not end within 5s of their connections being closed", s.inFlight.Load())
		}
	}
	if err := s.admin.Shutdown(sctx); err != nil {
		_ = s.admin.Close()
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

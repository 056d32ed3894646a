package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/oidc"
)

// errIdPNotReady is returned while discovery has not yet succeeded.
var errIdPNotReady = errors.New("the identity provider has not been reached yet (discovery pending)")

// lazyIdP holds the OIDC client once discovery has succeeded. Gatehouse
// starts even when the IdP is down (it must recover by itself, not crash-loop):
// until discovery succeeds, /bff/* answers 503 and credential-bearing routes
// fail closed, and /readyz reports the IdP as unavailable.
type lazyIdP struct {
	opts oidc.Options
	log  *slog.Logger
	h    atomic.Pointer[oidc.Handler]
	mux  atomic.Pointer[http.ServeMux]
	once sync.Once
	done chan struct{}
}

func newLazyIdP(opts oidc.Options, log *slog.Logger) *lazyIdP {
	return &lazyIdP{opts: opts, log: log, done: make(chan struct{})}
}

// connect tries discovery once.
func (l *lazyIdP) connect(ctx context.Context) error {
	if l.h.Load() != nil {
		return nil
	}
	h, err := oidc.New(ctx, l.opts)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	h.Register(mux)
	l.mux.Store(mux)
	l.h.Store(h)
	l.once.Do(func() { close(l.done) })
	return nil
}

// run retries discovery with capped exponential backoff until it succeeds or
// ctx ends.
func (l *lazyIdP) run(ctx context.Context) {
	wait := 250 * time.Millisecond
	for l.h.Load() == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := l.connect(cctx)
		cancel()
		if err == nil {
			l.log.Info("identity provider discovered", "issuer", l.opts.Issuer)
			return
		}
		l.log.Warn("identity provider discovery failed; retrying", "issuer", l.opts.Issuer, "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 15*time.Second)
	}
}

// handler returns the client, or nil while discovery is pending.
func (l *lazyIdP) handler() *oidc.Handler { return l.h.Load() }

// tokens returns the token service or errIdPNotReady.
func (l *lazyIdP) tokens() (*oidc.Tokens, error) {
	h := l.h.Load()
	if h == nil {
		return nil, errIdPNotReady
	}
	return h.Tokens(), nil
}

// StartHandoff starts an IdP login for the OAuth front door, or answers 503
// while discovery is pending.
func (l *lazyIdP) StartHandoff(w http.ResponseWriter, r *http.Request, browser bool, keep func(ctx context.Context, state string) error) {
	h := l.h.Load()
	if h == nil {
		apierror.Write(w, http.StatusServiceUnavailable, "idp_unavailable", "the identity provider cannot be reached yet; try again shortly")
		return
	}
	h.StartHandoff(w, r, browser, keep)
}

// ServeHTTP serves /bff/* or 503 while discovery is pending.
func (l *lazyIdP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mux := l.mux.Load()
	if mux == nil {
		apierror.Write(w, http.StatusServiceUnavailable, "idp_unavailable", "the identity provider cannot be reached yet; try again shortly")
		return
	}
	mux.ServeHTTP(w, r)
}

// Ready reports whether the IdP is discovered and its discovery document answers.
func (l *lazyIdP) Ready(ctx context.Context) error {
	h := l.h.Load()
	if h == nil {
		return errIdPNotReady
	}
	return h.Ready(ctx)
}

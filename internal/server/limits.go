package server

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// RaiseFDLimit raises the soft limit on open files to the hard limit (Go does this itself on
// Linux since 1.19; doing it here makes the limit explicit and logged) and returns it.
func RaiseFDLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return lim.Cur, nil
}

// FDReserve is the number of descriptors kept for everything but client connections (store,
// audit file, IdP, listeners, logs) on top of one upstream connection per client connection.
const FDReserve = 64

// DefaultMaxConnections derives the public listener's connection cap from the fd limit: each
// client connection may need one upstream connection, and FDReserve stay for the rest, so
// upstream dials and the store never fail for lack of descriptors.
func DefaultMaxConnections(fdLimit uint64) int {
	if fdLimit <= 2*FDReserve {
		return 16
	}
	n := (fdLimit - FDReserve) / 2
	return int(min(n, 1<<20))
}

// limitListener caps the number of open connections. Beyond the cap a new connection is
// answered at once with a 503 and closed (the client learns quickly; nothing waits for a free
// slot), and the open ones are unaffected.
type limitListener struct {
	net.Listener
	max  int64
	open atomic.Int64
	// refused counts connections turned away for the metrics.
	refused atomic.Uint64
	busy    string // the whole 503 answer
}

const busyBody = `{"error":"too_many_connections","message":"the gateway is at its connection limit; try again shortly"}` + "\n"

func newLimitListener(ln net.Listener, max int) *limitListener {
	return &limitListener{Listener: ln, max: int64(max),
		busy: "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
			strconv.Itoa(len(busyBody)) + "\r\n\r\n" + busyBody}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			// Answer without a goroutine per refused connection: a short deadline bounds the
			// write, which fits in the socket buffer anyway.
			_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			_, _ = io.WriteString(c, l.busy)
			_ = c.Close()
			continue
		}
		return &countedConn{Conn: c, l: l}, nil
	}
}

type countedConn struct {
	net.Conn
	l      *limitListener
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}

// ErrBodyTimeout is the error a request body read returns when the client sent nothing for
// the body read timeout. The request is answered 408.
var ErrBodyTimeout = errors.New("request body: the client sent nothing in time")

// progressBody gives every read of a request body its own deadline (an idle timeout per
// read, extended after each successful one), so a client that trickles a body or stops
// sending is cut, while a large upload that keeps progressing is not.
type progressBody struct {
	body interface {
		Read([]byte) (int, error)
		Close() error
	}
	rc       *http.ResponseController
	idle     time.Duration
	timedOut atomic.Bool
	done     bool
}

func (b *progressBody) Read(p []byte) (int, error) {
	if b.done {
		return b.body.Read(p)
	}
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.body.Read(p)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			b.timedOut.Store(true)
			return n, ErrBodyTimeout
		}
		// The body is done: lift the deadline so it cannot hit anything after it.
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (b *progressBody) Close() error { return b.body.Close() }

// BodyTimedOut reports whether err (or the request's body) shows that the client stopped
// sending its body: the answer is then 408, not a 502 or 504 blaming the upstream.
func BodyTimedOut(r *http.Request, err error) bool {
	if errors.Is(err, ErrBodyTimeout) {
		return true
	}
	b, ok := r.Context().Value(bodyKey{}).(*progressBody)
	return ok && b.timedOut.Load()
}

type bodyKey struct{}

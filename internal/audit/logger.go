package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Logger.
type Options struct {
	// Sink is "stdout" or "file".
	Sink string
	// Path of the log file (Sink "file"). Its directory is created if missing.
	Path string
	// FsyncInterval bounds how long a written record may stay unsynced (file sink). Default 1s.
	FsyncInterval time.Duration
	// MaxSize rotates the file before it would grow beyond this many bytes. 0 never rotates.
	MaxSize int64
	// Buffer is the number of records that may be reserved but not yet written. Default 4096.
	Buffer int
	// OnFailure is "deny" (the default) or "continue"; see Logger.
	OnFailure string
	// CloseTimeout bounds how long Close waits for outstanding reservations and a failing sink.
	// Default 5s.
	CloseTimeout time.Duration
	// Now is the clock for record times and rotated file names. Default time.Now.
	Now func() time.Time
	// Stdout is where the "stdout" sink writes. Default os.Stdout.
	Stdout io.Writer
	// Logger receives sink failures, recoveries, rotations and chain heads. Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultBuffer        = 4096
	defaultFsyncInterval = time.Second
	defaultCloseTimeout  = 5 * time.Second
	batchBytes           = 64 << 10
	retryMin             = 10 * time.Millisecond
	retryMax             = time.Second
)

// Logger writes audit records to one sink through a single writer goroutine, which assigns seq,
// prev and hash in commit order.
//
// A request reserves a slot before it is forwarded (Reserve) and fills it after the response
// (Commit). Reserve and Commit never wait for I/O. Because every committed record owns a slot
// in a bounded buffer, a record is never dropped for lack of room: when the buffer is full, or
// the sink is failing, Reserve refuses and the request is answered 503 instead of being
// served unaudited.
//
// When the sink fails (write error, disk full) the writer keeps the records it holds and retries
// with backoff until the sink works again, then carries on by itself. With OnFailure "deny" (the
// default) Reserve, Log and Ready report ErrUnavailable meanwhile: an access decision that cannot
// be audited is a control failure (NIST SP 800-53 AU-5, "response to audit logging process
// failures"; a policy enforcement point must not enforce unaudited), so the gateway fails
// closed. With "continue", requests proceed during a failure, which is logged and counted; a
// record that finds the buffer full is then dropped and counted in Stats.Dropped, which stays 0
// with "deny".
type Logger struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	deny     bool
	capacity int64

	ch       chan Record
	reserved atomic.Int64
	failing  atomic.Bool
	closed   atomic.Bool

	// stopMu orders late Commits against the writer's final drain.
	stopMu  sync.RWMutex
	stopped bool

	written     atomic.Uint64
	writeErrors atomic.Uint64
	dropped     atomic.Uint64

	mu      sync.Mutex // guards head and lastErr
	head    Head
	lastErr error

	closeOnce     sync.Once
	closing       chan struct{}
	closeDeadline time.Time
	done          chan struct{}
	closeErr      error

	w *writer
}

// Reasons for ErrUnavailable, built once so that refusing a request allocates nothing.
var (
	errClosed  = fmt.Errorf("%w: closed", ErrUnavailable)
	errFailing = fmt.Errorf("%w: sink failing", ErrUnavailable)
	errFull    = fmt.Errorf("%w: buffer full", ErrUnavailable)
)

// Pending is a reserved slot for one record. Exactly one of Commit or Cancel takes effect; later
// calls do nothing, so `defer p.Cancel()` after Reserve is safe.
type Pending struct {
	l     *Logger
	state atomic.Uint32 // 0 open, 1 committed, 2 cancelled
	drop  bool          // OnFailure "continue" with a full buffer: the record cannot be kept
}

// Stats are counters for metrics.
type Stats struct {
	// Written is the number of records written to the sink.
	Written uint64
	// WriteErrors counts failed writes, syncs and rotations (each retry counts).
	WriteErrors uint64
	// Dropped counts records that were lost; it stays 0 with OnFailure "deny" unless Close timed out.
	Dropped uint64
	// Buffered is the number of reserved records not yet written.
	Buffered int
}

// Open starts a Logger. For the file sink it continues the chain of the existing log (see the
// package documentation) and fails if the log's last line is incomplete or does not verify.
func Open(ctx context.Context, opts Options) (*Logger, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if opts.OnFailure == "" {
		opts.OnFailure = "deny"
	}
	switch {
	case opts.OnFailure != "deny" && opts.OnFailure != "continue":
		return nil, fmt.Errorf("open audit log: on_failure %q is not valid: use deny or continue", opts.OnFailure)
	case opts.Sink != "stdout" && opts.Sink != "file":
		return nil, fmt.Errorf("open audit log: sink %q is not valid: use stdout or file", opts.Sink)
	case opts.Sink == "file" && opts.Path == "":
		return nil, errors.New("open audit log: sink file needs a path")
	case opts.FsyncInterval < 0, opts.MaxSize < 0, opts.Buffer < 0, opts.CloseTimeout < 0:
		return nil, errors.New("open audit log: fsync_interval, max_size, buffer and close timeout must not be negative")
	}
	if opts.FsyncInterval == 0 {
		opts.FsyncInterval = defaultFsyncInterval
	}
	if opts.Buffer == 0 {
		opts.Buffer = defaultBuffer
	}
	if opts.CloseTimeout == 0 {
		opts.CloseTimeout = defaultCloseTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Logger{
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		deny:     opts.OnFailure == "deny",
		capacity: int64(opts.Buffer),
		ch:       make(chan Record, opts.Buffer),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	w := &writer{l: l, enc: newEncoder(), buf: make([]byte, 0, batchBytes+4096), out: opts.Stdout}
	head := Head{Hash: Genesis}
	if opts.Sink == "file" {
		var err error
		if head, err = openHead(opts.Path); err != nil {
			return nil, err
		}
		if err := w.openFile(opts.Path); err != nil {
			return nil, err
		}
		w.maxSize = opts.MaxSize
	}
	w.seq = head.Seq
	copy(w.prev[:], head.Hash)
	l.head = head
	l.w = w
	l.log.InfoContext(ctx, "audit log opened", "sink", opts.Sink, "path", opts.Path, "seq", head.Seq, "hash", head.Hash)
	go w.run()
	return l, nil
}

// Reserve reserves a slot for the record of a request about to be forwarded. ctx is accepted for
// symmetry with the rest of the pipeline; Reserve never waits, so it does not watch it. It returns
// ErrUnavailable when the buffer is full, the sink is failing (OnFailure "deny") or the Logger is
// closed; the caller must then answer 503 and not forward. It never blocks.
func (l *Logger) Reserve(ctx context.Context) (*Pending, error) {
	if l.closed.Load() {
		return nil, errClosed
	}
	if l.deny && l.failing.Load() {
		return nil, errFailing
	}
	for {
		n := l.reserved.Load()
		if n >= l.capacity {
			if l.deny {
				return nil, errFull
			}
			return &Pending{l: l, drop: true}, nil
		}
		if l.reserved.CompareAndSwap(n, n+1) {
			// Close sets closed before its writer looks at reserved for the last time: either the
			// writer waits for this slot, or this check sees closed.
			if l.closed.Load() {
				l.reserved.Add(-1)
				return nil, errClosed
			}
			return &Pending{l: l}, nil
		}
	}
}

// Commit fills the reserved slot with rec. It never waits for I/O. A zero rec.Time is set to now.
func (p *Pending) Commit(rec Record) {
	if !p.state.CompareAndSwap(0, 1) {
		return
	}
	l := p.l
	if p.drop {
		l.dropRecord("buffer full while the audit sink is failing (on_failure: continue)")
		return
	}
	if rec.Time.IsZero() {
		rec.Time = l.now()
	}
	l.stopMu.RLock()
	if l.stopped {
		l.stopMu.RUnlock()
		l.reserved.Add(-1)
		l.dropRecord("committed after the audit log was closed")
		return
	}
	l.ch <- rec // never blocks: every record in ch holds one of at most cap(ch) slots
	l.stopMu.RUnlock()
}

// Cancel releases the reserved slot without a record (the request was not forwarded).
func (p *Pending) Cancel() {
	if p.state.CompareAndSwap(0, 2) && !p.drop {
		p.l.reserved.Add(-1)
	}
}

// Log records an event that is not tied to a forwarded request (login, logout, ...): Reserve
// then Commit; it does not wait for the write. It returns ErrUnavailable when Reserve does, and
// the caller then fails the operation (503) rather than performing it unaudited.
func (l *Logger) Log(ctx context.Context, rec Record) error {
	if rec.Event == "" {
		return errors.New("audit: record has no event")
	}
	p, err := l.Reserve(ctx)
	if err != nil {
		return err
	}
	p.Commit(rec)
	return nil
}

// Ready returns nil when the Logger accepts records, and an error wrapping ErrUnavailable when it
// is closed or (with OnFailure "deny") its sink is failing.
func (l *Logger) Ready() error {
	if l.closed.Load() {
		return errClosed
	}
	if l.deny && l.failing.Load() {
		l.mu.Lock()
		err := l.lastErr
		l.mu.Unlock()
		return fmt.Errorf("%w: sink failing: %v", ErrUnavailable, err)
	}
	return nil
}

// Stats returns the Logger's counters.
func (l *Logger) Stats() Stats {
	return Stats{
		Written:     l.written.Load(),
		WriteErrors: l.writeErrors.Load(),
		Dropped:     l.dropped.Load(),
		Buffered:    int(l.reserved.Load()),
	}
}

// Head returns the seq and hash of the last record written, for anchoring the chain elsewhere.
func (l *Logger) Head() Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head
}

// Close stops taking reservations, waits (at most CloseTimeout) for reserved records to be
// committed or cancelled, writes every committed record, fsyncs and closes the sink. It reports
// an error if any record could not be written.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		l.closeDeadline = time.Now().Add(l.opts.CloseTimeout)
		close(l.closing)
		<-l.done
	})
	return l.closeErr
}

func (l *Logger) dropRecord(why string) {
	if n := l.dropped.Add(1); n&(n-1) == 0 { // log the 1st, 2nd, 4th, ... drop
		l.log.Error("audit record dropped", "reason", why, "dropped_total", n)
	}
}

// setFailing records a sink failure; it logs when the sink starts failing.
func (l *Logger) setFailing(err error) {
	l.writeErrors.Add(1)
	l.mu.Lock()
	l.lastErr = err
	l.mu.Unlock()
	if !l.failing.Swap(true) {
		l.log.Error("audit sink failing; retrying", "error", err, "on_failure", l.opts.OnFailure)
	}
}

func (l *Logger) setHealthy() {
	if l.failing.Swap(false) {
		l.log.Info("audit sink recovered")
	}
}

func (l *Logger) publishHead(h Head) {
	l.mu.Lock()
	l.head = h
	l.mu.Unlock()
}

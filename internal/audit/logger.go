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
	// Durability says what a forwarded request waits for before [Logger.Decision] returns, that
	// is before the upstream is contacted:
	//   - "sync": its decision record is written and fsynced (group commit: one
	//     fsync covers every record written since the last one), so no crash, of the process
	//     or of the machine, loses the record of a forwarded request;
	//   - "written" (the default): its record is written to the file (handed to the operating system, not
	//     fsynced), so a crash of the process (SIGKILL, OOM kill, panic) loses none; a crash
	//     of the machine may lose up to FsyncInterval of written records;
	//   - "interval": nothing; the writer has it. A SIGKILL also loses what the writer had not
	//     yet written (the last moments, see docs/admin.md).
	Durability string
	// FsyncInterval bounds how long a written record may stay unsynced (file sink). Default 1s.
	FsyncInterval time.Duration
	// MaxSize rotates the file before it would grow beyond this many bytes. 0 never rotates.
	MaxSize int64
	// Buffer is the number of records that may be reserved but not yet written. Default 4096.
	// Decisions, events and Reserve may use three quarters of it; the last quarter is kept for
	// completion records, so that a request already forwarded can almost always be completed.
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
	// syncWaitMax bounds how long Decision waits for its record to reach the disk before it
	// gives up and the request is refused (503) rather than forwarded unrecorded.
	syncWaitMax = 2 * time.Second
	batchBytes  = 64 << 10
	retryMin    = 10 * time.Millisecond
	retryMax    = time.Second
)

// Logger writes audit records to one sink through a single writer goroutine, which assigns seq,
// prev and hash in commit order.
//
// A forwarded request writes a decision record before it is forwarded (Decision; with
// Durability "sync" it waits for the fsync) and a completion record after the response
// (Completion); it holds no slot in between. Reserve and Commit (used by Log) hold a slot from
// one to the other and never wait for I/O; do not hold a reservation across a forwarded request. Because every committed record owns a slot
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
	wait     bool  // Decision waits for its record (Durability "sync" or "written")
	sync     bool  // ... and for its fsync
	capacity int64 // every record, completions included
	admit    int64 // decisions, events and Reserve: capacity less the completion headroom

	waitPool sync.Pool // *waiter for Decision callers

	ch       chan entry
	reserved atomic.Int64
	failing  atomic.Bool
	closed   atomic.Bool

	// stopMu orders late Commits against the writer's final drain.
	stopMu  sync.RWMutex
	stopped bool

	written     atomic.Uint64
	writeErrors atomic.Uint64
	syncs       atomic.Uint64
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
	errSlow    = fmt.Errorf("%w: the record did not reach the disk in time", ErrUnavailable)
)

// entry is one committed record on its way to the writer. done, when set, receives a value once
// the record is durable (Durability "sync").
type entry struct {
	rec  Record
	done chan bool
}

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
	// Syncs counts fsyncs of the file sink: with Durability "sync", Written ÷ Syncs is how many
	// records a group commit carries.
	Syncs uint64
	// WriteErrors counts failed writes, syncs and rotations (each retry counts).
	WriteErrors uint64
	// Dropped counts records that were lost; it stays 0 with OnFailure "deny" unless Close timed out.
	Dropped uint64
	// Buffered is the number of reserved records not yet written.
	Buffered int
	// Capacity is the size of the buffer (Options.Buffer).
	Capacity int
	// Admit is how much of it decisions and events may use before they are refused.
	Admit int
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
	if opts.Durability == "" {
		opts.Durability = "written"
	}
	switch {
	case opts.OnFailure != "deny" && opts.OnFailure != "continue":
		return nil, fmt.Errorf("open audit log: on_failure %q is not valid: use deny or continue", opts.OnFailure)
	case opts.Durability != "sync" && opts.Durability != "written" && opts.Durability != "interval":
		return nil, fmt.Errorf("open audit log: durability %q is not valid: use sync, written or interval", opts.Durability)
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
		waitPool: sync.Pool{New: func() any {
			t := time.NewTimer(time.Hour)
			t.Stop()
			return &waiter{done: make(chan bool, 1), timer: t}
		}},
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		deny:     opts.OnFailure == "deny",
		wait:     opts.Durability != "interval",
		sync:     opts.Durability == "sync",
		capacity: int64(opts.Buffer),
		admit:    max(1, int64(opts.Buffer)-int64(opts.Buffer)/4),
		ch:       make(chan entry, opts.Buffer),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	w := &writer{l: l, enc: newEncoder(), buf: make([]byte, 0, batchBytes+4096), out: opts.Stdout}
	head := Head{Hash: Genesis}
	var torn []byte
	if opts.Sink == "file" {
		var err error
		if torn, err = repairTornTail(opts.Path); err != nil {
			return nil, err
		}
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
	if torn != nil {
		// The chain continues with a record that says what was cut (see repairTornTail); it is
		// on disk before anything else is accepted.
		l.log.WarnContext(ctx, "audit log: cut an incomplete last line and recorded the repair",
			"path", opts.Path, "bytes", len(torn), "seq", head.Seq, "hash", head.Hash)
		l.reserved.Add(1)
		w.add(&entry{rec: repairRecord(torn, head, l.now())})
		w.flush()
		if err := w.file.Sync(); err != nil {
			w.file.Close()
			return nil, fmt.Errorf("open audit log: fsync after repair: %w", err)
		}
		w.dirty = false
		head = l.Head()
	}
	l.log.InfoContext(ctx, "audit log opened", "sink", opts.Sink, "path", opts.Path, "durability", opts.Durability,
		"seq", head.Seq, "hash", head.Hash)
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
	switch err := l.tryReserve(l.admit); {
	case err == errFull && !l.deny:
		return &Pending{l: l, drop: true}, nil
	case err != nil:
		return nil, err
	}
	return &Pending{l: l}, nil
}

// tryReserve takes one slot if fewer than limit are taken.
func (l *Logger) tryReserve(limit int64) error {
	for {
		n := l.reserved.Load()
		if n >= limit {
			return errFull
		}
		if l.reserved.CompareAndSwap(n, n+1) {
			// Close sets closed before its writer looks at reserved for the last time: either the
			// writer waits for this slot, or this check sees closed.
			if l.closed.Load() {
				l.reserved.Add(-1)
				return errClosed
			}
			return nil
		}
	}
}

// reserveWaiting is tryReserve that, when the buffer is full for a moment (a burst), waits
// for the writer to make room — at most syncWaitMax, and not while the sink is failing: a
// waiting caller holds no slot, so waiting starves no one.
func (l *Logger) reserveWaiting(ctx context.Context, limit int64) error {
	err := l.tryReserve(limit)
	if err != errFull {
		return err
	}
	wait := 100 * time.Microsecond
	deadline := time.Now().Add(syncWaitMax)
	for err == errFull && !l.failing.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
		err = l.tryReserve(limit)
	}
	return err
}

// enqueue hands a record that holds a slot to the writer; false if the Logger has stopped.
func (l *Logger) enqueue(e entry) bool {
	l.stopMu.RLock()
	defer l.stopMu.RUnlock()
	if l.stopped {
		l.reserved.Add(-1)
		l.dropRecord("committed after the audit log was closed")
		return false
	}
	l.ch <- e // never blocks: every entry in ch holds one of at most cap(ch) slots
	return true
}

// Decision records that a request is about to be forwarded (the decision record), before the
// upstream is contacted. It holds a slot only until the record is written, never for the
// request's lifetime: the request's outcome goes into a separate record ([Logger.Completion]),
// correlated by RequestID.
//
// With Durability "sync" it returns once the record is written and fsynced (or, for stdout,
// written); with "written" once it is written; with "interval" once the writer has it. It returns ErrUnavailable when the record
// cannot be taken or did not reach the disk within a bound (the sink is failing): the caller
// must then answer 503 and not forward. With OnFailure "continue" it refuses only when closed.
func (l *Logger) Decision(ctx context.Context, rec Record) error {
	if rec.Event == "" {
		return errors.New("audit: record has no event")
	}
	if l.closed.Load() {
		return errClosed
	}
	failing := l.failing.Load()
	if l.deny && failing {
		return errFailing
	}
	if err := l.reserveWaiting(ctx, l.admit); err != nil {
		if err == errFull && !l.deny {
			l.dropRecord("buffer full while the audit sink is failing (on_failure: continue)")
			return nil
		}
		return err
	}
	if rec.Time.IsZero() {
		rec.Time = l.now()
	}
	if !l.wait || failing {
		// interval, or on_failure continue during a failure: do not wait for the disk.
		if !l.enqueue(entry{rec: rec}) {
			return errClosed
		}
		return nil
	}
	wt := l.waitPool.Get().(*waiter)
	if !l.enqueue(entry{rec: rec, done: wt.done}) {
		l.waitPool.Put(wt)
		return errClosed
	}
	// The timer is the waiter's own, reset rather than made per call (Go ≥ 1.23: a stopped
	// timer's channel holds no stale value).
	wt.timer.Reset(syncWaitMax)
	select {
	case durable := <-wt.done:
		wt.timer.Stop()
		l.waitPool.Put(wt)
		if !durable && l.deny {
			// The sink failed while this record waited: the request is refused. The record stays
			// queued and is written on recovery; verify then lists it as a decision without a
			// completion.
			return errFailing
		}
		return nil
	case <-ctx.Done():
		// wt is abandoned, not pooled: the writer may still signal it.
		wt.timer.Stop()
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-wt.timer.C:
		// Abandoned too.
		if !l.deny {
			return nil
		}
		return errSlow
	}
}

// waiter is what a Decision caller waits on: done receives one value once its record is
// durable (true) or the sink failed (false); timer bounds the wait.
type waiter struct {
	done  chan bool
	timer *time.Timer
}

// Completion records the outcome of a request whose Decision was recorded. It never refuses
// (the request has already been answered) and waits for I/O never, for room at most a bounded
// moment. It may use the headroom of the buffer that decisions cannot; a record that finds no
// room within that moment (the sink has been failing) or arrives after Close is dropped and
// counted in Stats.Dropped — its decision record is on disk.
func (l *Logger) Completion(ctx context.Context, rec Record) {
	// A burst of completions (many streams ending at once) may find the buffer full for a
	// moment: wait for the writer, a bounded time, rather than drop the record.
	if err := l.reserveWaiting(context.WithoutCancel(ctx), l.capacity); err != nil {
		l.dropRecord("no room for a completion record (the audit sink is failing or the log is closed)")
		return
	}
	if rec.Time.IsZero() {
		rec.Time = l.now()
	}
	l.enqueue(entry{rec: rec})
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
	l.enqueue(entry{rec: rec})
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
		Syncs:       l.syncs.Load(),
		Dropped:     l.dropped.Load(),
		Buffered:    int(l.reserved.Load()),
		Capacity:    int(l.capacity),
		Admit:       int(l.admit),
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

// SaturatedErr reports (an error wrapping ErrUnavailable) when decisions and events are being
// refused for lack of room.
func (l *Logger) SaturatedErr() error {
	if l.reserved.Load() >= l.admit {
		return errFull
	}
	return nil
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

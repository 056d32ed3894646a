package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// writer is the Logger's single writer goroutine and all the state it alone touches.
type writer struct {
	l   *Logger
	enc *encoder

	buf     []byte      // encoded records not yet written
	pending int         // records in buf
	waiters []chan bool // Decision callers whose records are in buf or written but not yet synced
	seq     uint64
	prev    [64]byte

	out     io.Writer
	file    *os.File // nil for stdout
	path    string
	size    int64
	maxSize int64
	dirty   bool // written since the last fsync

	rotateFailing bool
}

func (w *writer) run() {
	l := w.l
	defer close(l.done)
	var tick <-chan time.Time
	if w.file != nil {
		t := time.NewTicker(l.opts.FsyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case e := <-l.ch:
			w.add(&e)
			w.drain()
			w.flush()
			switch {
			case l.sync:
				w.groupCommit()
			case l.wait:
				// Durability "written": the records are with the operating system.
				w.release()
			}
		case <-tick:
			w.sync()
		case <-l.closing:
			w.shutdown()
			return
		}
	}
}

// drain encodes the records already waiting, up to one batch.
func (w *writer) drain() {
	for len(w.buf) < batchBytes {
		select {
		case e := <-w.l.ch:
			w.add(&e)
		default:
			return
		}
	}
}

// add encodes rec as the next record of the chain, rotating first when it would overflow the file.
func (w *writer) add(e *entry) {
	if e.done != nil {
		w.waiters = append(w.waiters, e.done)
	}
	start := len(w.buf)
	before := w.prev
	w.seq++
	w.buf = w.enc.appendLine(w.buf, &e.rec, w.seq, &w.prev, &w.prev)
	if w.file == nil || w.maxSize <= 0 || w.size+int64(len(w.buf)) <= w.maxSize || w.size+int64(start) == 0 {
		w.pending++
		return
	}
	// Write the records before this one to the current file, then start a new file with this one.
	line := w.buf[start:]
	if start > 0 {
		w.write(w.buf[:start], w.pending, Head{Seq: w.seq - 1, Hash: string(before[:])})
	}
	w.rotate(Head{Seq: w.seq - 1, Hash: string(before[:])})
	w.buf = append(w.buf[:0], line...)
	w.pending = 1
}

// flush writes every encoded record.
func (w *writer) flush() {
	if w.pending == 0 {
		return
	}
	if w.write(w.buf, w.pending, Head{Seq: w.seq, Hash: string(w.prev[:])}) {
		w.buf = w.buf[:0]
		w.pending = 0
	}
}

// write writes b (n records ending at head) to the sink, retrying with backoff until it succeeds
// or, while closing, until the close deadline passes. It then releases the records' slots.
func (w *writer) write(b []byte, n int, head Head) bool {
	l := w.l
	off := 0
	backoff := retryMin
	for {
		k, err := w.out.Write(b[off:])
		off += k
		if err == nil && off < len(b) {
			err = io.ErrShortWrite
		}
		if err == nil {
			break
		}
		l.setFailing(fmt.Errorf("write audit log: %w", err))
		// Nobody waits for a failing disk: the requests waiting for these records are refused
		// (deny) or served (continue) now; the records stay and are written on recovery.
		w.answer(false)
		if !w.wait(backoff) {
			// Closing and out of time: the records stay reserved and are reported as lost.
			return false
		}
		backoff = min(2*backoff, retryMax)
	}
	w.size += int64(len(b))
	w.dirty = true
	l.reserved.Add(-int64(n))
	l.written.Add(uint64(n))
	l.publishHead(head)
	l.setHealthy()
	return true
}

// wait sleeps for d, cut short when Close begins; while closing it reports false once the close
// deadline has passed.
func (w *writer) wait(d time.Duration) bool {
	l := w.l
	select {
	case <-l.closing:
		left := time.Until(l.closeDeadline)
		if left <= 0 {
			return false
		}
		d = min(d, left)
		time.Sleep(d)
		return true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.closing:
	}
	return true
}

// groupCommit makes the records of waiting Decision callers durable: one fsync for every
// record written so far, then every waiter is released. Only decisions wait: a batch of
// completions and events alone is left to the fsync_interval tick, so it costs no fsync of
// its own (it is written at once, so a killed process loses none of it).
func (w *writer) groupCommit() {
	if len(w.waiters) == 0 {
		return
	}
	w.commit()
}

// sync runs at every fsync_interval tick: it also checks that the file is still in place.
func (w *writer) sync() {
	if w.file != nil {
		w.checkPath()
	}
	w.commit()
}

// commit fsyncs what was written and releases the Decision callers waiting for it (the group
// commit after every batch with Durability "sync").
func (w *writer) commit() {
	if w.file != nil {
		if w.dirty {
			w.l.syncs.Add(1)
			if err := w.file.Sync(); err != nil {
				w.l.setFailing(fmt.Errorf("fsync audit log: %w", err))
				w.answer(false)
				return
			}
			w.dirty = false
			w.l.setHealthy()
		}
	}
	w.release()
}

// release tells the Decision callers waiting for their records that they are durable. It runs
// only after a successful sync (or, for stdout, write) of everything in buf.
func (w *writer) release() {
	if w.pending > 0 {
		return
	}
	w.answer(true)
}

// answer tells every waiting Decision caller whether its record is durable. A waiter is
// answered once: buffered 1, one value per entry, so it never blocks.
func (w *writer) answer(durable bool) {
	for i, c := range w.waiters {
		c <- durable
		w.waiters[i] = nil
	}
	w.waiters = w.waiters[:0]
}

// shutdown writes everything committed before Close (waiting up to the deadline for reserved
// slots to be committed or cancelled), fsyncs and closes the sink.
func (w *writer) shutdown() {
	l := w.l
	for l.reserved.Load() > int64(w.pending) && time.Now().Before(l.closeDeadline) {
		select {
		case e := <-l.ch:
			w.add(&e)
			w.drain()
			w.flush()
		case <-time.After(5 * time.Millisecond):
		}
	}
	l.stopMu.Lock()
	l.stopped = true
	l.stopMu.Unlock()
	for {
		select {
		case e := <-l.ch:
			w.add(&e)
			continue
		default:
		}
		break
	}
	w.flush()
	var errs []error
	if w.file != nil {
		if w.dirty {
			if err := w.file.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("fsync audit log: %w: %w", ErrRecordsLost, err))
			} else {
				w.release()
			}
		} else {
			w.release()
		}
		if err := w.file.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close audit log: %w", err))
		}
	} else {
		w.release()
	}
	if lost := l.reserved.Swap(0); lost > 0 {
		l.dropped.Add(uint64(lost))
		errs = append(errs, fmt.Errorf("close audit log: %w: %d records were not written (never committed, or the sink kept failing: disk full?)", ErrRecordsLost, lost))
	}
	h := l.Head()
	l.log.Info("audit log closed", "seq", h.Seq, "hash", h.Hash, "written", l.written.Load())
	l.closeErr = errors.Join(errs...)
}

// openFile opens path for appending and learns its size.
func (w *writer) openFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open audit log: %w", err)
	}
	w.file, w.out, w.path, w.size = f, f, path, st.Size()
	return nil
}

// rotate renames the current file to path.<time>[-n] and continues in a new file. On failure it
// keeps writing to the current file and tries again at the next record (a rename is cheap; the
// fsync comes only after a successful one).
func (w *writer) rotate(head Head) {
	l := w.l
	fail := func(err error) {
		l.writeErrors.Add(1)
		if !w.rotateFailing {
			w.rotateFailing = true
			l.log.Error("audit log rotation failed; continuing in the current file", "error", err)
		}
	}
	name, err := rotatedName(w.path, l.now())
	if err != nil {
		fail(err)
		return
	}
	if err := os.Rename(w.path, name); err != nil {
		fail(fmt.Errorf("rotate audit log: %w", err))
		return
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		if rerr := os.Rename(name, w.path); rerr != nil {
			err = errors.Join(err, rerr) // the old file keeps the chain under its rotated name
		}
		fail(fmt.Errorf("rotate audit log: %w", err))
		return
	}
	syncDir(w.path, l)
	// The rename did not touch the old file's data; make it durable before letting go of it.
	if err := w.file.Sync(); err != nil {
		l.writeErrors.Add(1)
		l.log.Error("fsync rotated audit log", "file", name, "error", err)
	}
	w.dirty = false
	if err := w.file.Close(); err != nil {
		l.log.Warn("close rotated audit log", "file", name, "error", err)
	}
	w.file, w.out, w.size = f, f, 0
	w.rotateFailing = false
	l.log.Info("audit log rotated", "file", name, "seq", head.Seq, "hash", head.Hash)
}

// rotatedName returns a free name path.<UTC time>[-n].
func rotatedName(path string, now time.Time) (string, error) {
	base := path + "." + now.UTC().Format(rotatedLayout)
	name := base
	for n := 1; n < 1000; n++ {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			return name, nil
		} else if err != nil {
			return "", fmt.Errorf("rotate audit log: %w", err)
		}
		name = base + "-" + strconv.Itoa(n)
	}
	return "", fmt.Errorf("rotate audit log: no free name for %s", base)
}

// syncDir makes a rename durable.
func syncDir(path string, l *Logger) {
	d, err := os.Open(filepath.Dir(path))
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		l.log.Warn("fsync audit log directory", "error", err)
	}
}

// openHead returns the head the log at path continues from: its last record, or when the file
// is missing or empty the last record of the newest rotated file, or Genesis.
func openHead(path string) (Head, error) {
	h, ok, err := lastRecord(path)
	if err != nil || ok {
		return h, err
	}
	files, err := Files(path)
	if err != nil {
		return Head{}, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		if files[i] == path {
			continue
		}
		h, ok, err := lastRecord(files[i])
		if err != nil || ok {
			return h, err
		}
	}
	return Head{Hash: Genesis}, nil
}

// lastRecord reads and checks the last line of a log file.
func lastRecord(path string) (Head, bool, error) { return lastRecordBefore(path, -1) }

// lastRecordBefore is lastRecord for the file's first end bytes (-1: the whole file).
func lastRecordBefore(path string, limit int64) (Head, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Head{}, false, nil
	}
	if err != nil {
		return Head{}, false, fmt.Errorf("open audit log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Head{}, false, fmt.Errorf("open audit log: %w", err)
	}
	size := st.Size()
	if limit >= 0 && limit < size {
		size = limit
	}
	if size == 0 || !st.Mode().IsRegular() {
		return Head{}, false, nil
	}
	const chunk = 64 << 10
	var tail []byte
	end := size
	for {
		n := min(int64(chunk), end)
		b := make([]byte, n)
		if _, err := f.ReadAt(b, end-n); err != nil {
			return Head{}, false, fmt.Errorf("open audit log: read %s: %w", path, err)
		}
		tail = append(b, tail...)
		end -= n
		if tail[len(tail)-1] != '\n' {
			return Head{}, false, fmt.Errorf("open audit log %s: the last line is incomplete (a write was cut short or the file was truncated); "+
				"run `gatehouse audit verify %s`, then move the file aside or repair it before starting", path, path)
		}
		if i := bytes.LastIndexByte(tail[:len(tail)-1], '\n'); i >= 0 || end == 0 {
			line := tail[i+1 : len(tail)-1]
			e, reason := checkLine(line)
			if reason != "" {
				return Head{}, false, fmt.Errorf("open audit log %s: the last record does not verify (%s); "+
					"run `gatehouse audit verify %s` and move the file aside before starting", path, reason, path)
			}
			return Head{Seq: e.Seq, Hash: e.Hash}, true, nil
		}
		if int64(len(tail)) > maxLineSize {
			return Head{}, false, fmt.Errorf("open audit log %s: the last line is longer than %d bytes", path, maxLineSize)
		}
	}
}

// checkPath notices that the log file was deleted or replaced under the
// running process (records would otherwise go on into an unlinked file that
// nobody can read, while requests are served). It syncs what the old file
// received, says so loudly with the chain head, counts a write error, and
// continues the chain in a new file at the same path. The new file's first
// record keeps prev = the last hash written, so verifying the new file alone
// fails at its line 1: the removal stays visible, it is never papered over.
func (w *writer) checkPath() {
	cur, err := w.file.Stat()
	if err != nil {
		return
	}
	onDisk, err := os.Stat(w.path)
	if err == nil && os.SameFile(cur, onDisk) {
		return
	}
	l := w.l
	l.writeErrors.Add(1)
	h := l.Head()
	l.log.Error("audit log file was removed or replaced while in use; continuing the chain in a new file (verify will show the gap)",
		"path", w.path, "seq", h.Seq, "hash", h.Hash)
	if w.dirty {
		_ = w.file.Sync()
		w.dirty = false
	}
	old := w.file
	if err := w.openFile(w.path); err != nil {
		w.file, w.out = old, old
		l.setFailing(fmt.Errorf("reopen audit log: %w", err))
		return
	}
	_ = old.Close()
}

package audit

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFailingSinkDeniesRequestsThenRecovers: while the sink fails, Reserve and Ready report
// ErrUnavailable and the records already reserved are kept; once it works again, service resumes
// by itself and every record is in the chain.
func TestFailingSinkDeniesRequestsThenRecovers(t *testing.T) {
	var out switchWriter
	l := openStdout(t, &out, nil)
	ctx := context.Background()
	if err := l.Log(ctx, sampleRecord(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "first record written", func() bool { return l.Stats().Written == 1 })

	out.failing.Store(true)
	// These were reserved before the failure showed; they must survive it.
	var kept []*Pending
	for range 3 {
		p, err := l.Reserve(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, p)
	}
	for i, p := range kept {
		p.Commit(sampleRecord(i + 1))
	}
	eventually(t, "failure noticed", func() bool { return l.Ready() != nil })
	if _, err := l.Reserve(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Reserve while failing = %v, want ErrUnavailable", err)
	}
	if err := l.Log(ctx, Record{Event: EventLogin}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Log while failing = %v, want ErrUnavailable", err)
	}
	if err := l.Ready(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Ready = %v", err)
	}

	out.failing.Store(false)
	eventually(t, "recovery", func() bool { return l.Ready() == nil })
	p, err := l.Reserve(ctx)
	if err != nil {
		t.Fatalf("Reserve after recovery: %v", err)
	}
	p.Commit(sampleRecord(4))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Written != 5 || st.Dropped != 0 || st.WriteErrors == 0 || st.Buffered != 0 {
		t.Fatalf("stats = %+v, want 5 written, 0 dropped, some write errors", st)
	}
	if n, err := Verify(strings.NewReader(out.String()), "stdout"); err != nil || n != 5 {
		t.Fatalf("Verify = %d, %v; want 5", n, err)
	}
}

// TestDiskFullDeniesRequests uses a real ENOSPC (/dev/full): requests are refused, and Close
// reports the records it could not write instead of pretending.
func TestDiskFullDeniesRequests(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("/dev/full not available on this system")
	}
	l := openFile(t, "/dev/full", func(o *Options) { o.CloseTimeout = 50 * time.Millisecond })
	if err := l.Log(context.Background(), sampleRecord(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "disk full noticed", func() bool { return l.Ready() != nil })
	if _, err := l.Reserve(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Reserve on a full disk = %v, want ErrUnavailable", err)
	}
	err := l.Close()
	if !errors.Is(err, ErrRecordsLost) || !strings.Contains(err.Error(), "1 records were not written") {
		t.Fatalf("Close = %v, want it to report the unwritten record", err)
	}
	if st := l.Stats(); st.Dropped != 1 {
		t.Fatalf("stats = %+v, want the lost record counted", st)
	}
}

func TestFullBufferDeniesInsteadOfBlocking(t *testing.T) {
	var out switchWriter
	out.gate.Lock() // the sink hangs
	l := openStdout(t, &out, func(o *Options) { o.Buffer = 2 })
	ctx := context.Background()
	p1, err1 := l.Reserve(ctx)
	p2, err2 := l.Reserve(ctx)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := l.Reserve(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("third Reserve = %v, want ErrUnavailable", err)
	}
	p1.Commit(sampleRecord(1)) // does not block although the sink hangs
	p2.Cancel()                // frees a slot
	p3, err := l.Reserve(ctx)
	if err != nil {
		t.Fatalf("Reserve after Cancel: %v", err)
	}
	p3.Commit(sampleRecord(3))
	p3.Commit(sampleRecord(4)) // a second Commit or a Cancel after Commit does nothing
	p3.Cancel()
	out.gate.Unlock()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(strings.NewReader(out.String()), "stdout"); err != nil || n != 2 {
		t.Fatalf("Verify = %d, %v; want 2", n, err)
	}
}

func TestCloseFlushesEveryCommittedRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openFile(t, path, func(o *Options) { o.FsyncInterval = time.Hour })
	const n = 3000
	for i := range n {
		if err := l.Log(context.Background(), sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if res, err := VerifyFile(path); err != nil || res.Records != n {
		t.Fatalf("VerifyFile = %+v, %v; want %d", res, err, n)
	}
	if _, err := l.Reserve(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Reserve after Close = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCloseWaitsForReservedRequests: a request in flight when shutdown starts is still audited.
func TestCloseWaitsForReservedRequests(t *testing.T) {
	var out switchWriter
	l := openStdout(t, &out, nil)
	p, err := l.Reserve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error)
	go func() { closed <- l.Close() }()
	eventually(t, "close started", func() bool { return l.Ready() != nil })
	p.Commit(sampleRecord(1))
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(strings.NewReader(out.String()), "stdout"); err != nil || n != 1 {
		t.Fatalf("Verify = %d, %v; want 1", n, err)
	}
}

func TestConcurrentRequestsYieldOneValidChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openFile(t, path, func(o *Options) { o.Buffer = 64; o.MaxSize = 64 << 10 })
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed := 0
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				p, err := l.Reserve(context.Background())
				if err != nil {
					continue // buffer momentarily full: the request would get 503
				}
				if i%10 == 0 {
					p.Cancel()
					continue
				}
				rec := sampleRecord(g*1000 + i)
				p.Commit(rec)
				mu.Lock()
				committed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := Files(path)
	res, err := VerifyFiles(files...)
	if err != nil || res.Records != committed || committed == 0 {
		t.Fatalf("VerifyFiles = %+v, %v; want %d records", res, err, committed)
	}
	if st := l.Stats(); st.Written != uint64(committed) || st.Dropped != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestOnFailureContinueServesAndCounts: with on_failure continue, a failing sink does not deny,
// and records that find the buffer full are counted as dropped, never silently.
func TestOnFailureContinueServesAndCounts(t *testing.T) {
	var out switchWriter
	out.failing.Store(true)
	l := openStdout(t, &out, func(o *Options) { o.OnFailure = "continue"; o.Buffer = 2; o.CloseTimeout = 20 * time.Millisecond })
	for i := range 5 {
		if err := l.Log(context.Background(), sampleRecord(i)); err != nil {
			t.Fatalf("Log %d: %v", i, err)
		}
	}
	eventually(t, "write errors counted", func() bool { return l.Stats().WriteErrors > 0 })
	if err := l.Ready(); err != nil {
		t.Fatalf("Ready = %v, want nil with on_failure continue", err)
	}
	if st := l.Stats(); st.Dropped != 3 {
		t.Fatalf("stats = %+v, want 3 dropped", st)
	}
	out.failing.Store(false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(strings.NewReader(out.String()), "stdout"); err != nil || n != 2 {
		t.Fatalf("Verify = %d, %v; want the 2 buffered records", n, err)
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no sink":         {},
		"unknown sink":    {Sink: "syslog"},
		"file no path":    {Sink: "file"},
		"bad on_failure":  {Sink: "stdout", OnFailure: "ignore"},
		"negative buffer": {Sink: "stdout", Buffer: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if l, err := Open(context.Background(), o); err == nil {
				l.Close()
				t.Fatal("Open accepted bad options")
			}
		})
	}
}

// TestUnwritableDirectoryIsAClearError: a log that cannot be created stops start-up with the path
// in the error, rather than running unaudited. (Root ignores directory permissions.)
func TestUnwritableDirectoryIsAClearError(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	path := filepath.Join(dir, "audit.jsonl")
	_, err := Open(context.Background(), Options{Sink: "file", Path: path, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open = %v, want an error naming %s", err, path)
	}
}

// TestRotationFailureKeepsWriting: when the directory refuses the rename, records keep going
// to the current file (nothing lost, chain intact) and rotation resumes once it is allowed again.
func TestRotationFailureKeepsWriting(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l := openFile(t, path, func(o *Options) { o.MaxSize = 1500 })
	ctx := context.Background()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	for i := range 10 {
		if err := l.Log(ctx, sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "records written", func() bool { return l.Stats().Written == 10 })
	if st := l.Stats(); st.WriteErrors == 0 {
		t.Fatalf("stats = %+v, want the failed rotations counted", st)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := l.Log(ctx, sampleRecord(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := Files(path)
	if len(files) < 2 {
		t.Fatalf("files = %v, want rotation after the directory became writable", files)
	}
	if res, err := VerifyFiles(files...); err != nil || res.Records != 20 {
		t.Fatalf("VerifyFiles = %+v, %v; want 20", res, err)
	}
}

// TestDecisionIsOnDiskWhenItReturns: with durability sync or written, the decision record is
// in the file before Decision returns, so a request forwarded after it cannot be lost by a kill
// of the process; sync also fsyncs it (one fsync per decision here: they come one at a time),
// written does not (the fsync_interval tick does). A batch of completions alone costs no fsync.
func TestDecisionIsOnDiskWhenItReturns(t *testing.T) {
	for _, tc := range []struct {
		durability string
		syncs      uint64 // fsyncs after the 20 decisions and 20 completions
	}{
		{"sync", 20},
		{"written", 0},
	} {
		t.Run(tc.durability, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			l := openFile(t, path, func(o *Options) { o.Durability = tc.durability; o.FsyncInterval = time.Hour })
			defer l.Close()
			for i := range 20 {
				rec := sampleRecord(i)
				rec.Event, rec.Status = EventForward, 0
				if err := l.Decision(context.Background(), rec); err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), `"request_id":"req-`+strconv.Itoa(i)+`"`) {
					t.Fatalf("decision %d returned before its record was written", i)
				}
				rec.Event, rec.Status = EventAccess, 200
				l.Completion(context.Background(), rec)
			}
			waitFor(t, func() bool { return l.Stats().Written == 40 })
			if got := l.Stats().Syncs; got != tc.syncs {
				t.Fatalf("fsyncs = %d, want %d", got, tc.syncs)
			}
		})
	}
}

// TestIntervalDecisionDoesNotWaitForTheWriter: with durability interval, Decision returns while
// the writer is still busy (here: it cannot write at all), so nothing is waited for.
func TestIntervalDecisionDoesNotWaitForTheWriter(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	l, err := Open(context.Background(), Options{Sink: "stdout", Stdout: w, Durability: "interval", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { close(w.release); _ = l.Close() }()
	for i := range 3 {
		if err := l.Decision(context.Background(), Record{Event: EventForward, RequestID: "r" + strconv.Itoa(i)}); err != nil {
			t.Fatalf("decision %d: %v", i, err)
		}
	}
}

// TestDecisionsDoNotHoldSlots: any number of requests in flight (decided, not yet completed)
// hold no buffer capacity, so slow requests cannot starve everyone else (issue: global DoS
// through the audit buffer); completions may use the headroom decisions cannot.
func TestDecisionsDoNotHoldSlots(t *testing.T) {
	for _, durability := range []string{"sync", "written", "interval"} {
		t.Run(durability, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			l := openFile(t, path, func(o *Options) { o.Durability = durability; o.Buffer = 8 })
			for i := range 50 { // far more in flight than the buffer has slots
				for {
					err := l.Decision(context.Background(), Record{Event: EventForward, Outcome: OutcomeAllow, RequestID: "r" + strconv.Itoa(i)})
					if err == nil {
						break
					}
					if !errors.Is(err, errFull) || durability != "interval" {
						t.Fatalf("decision %d: %v", i, err)
					}
					time.Sleep(time.Millisecond) // interval: the writer empties the buffer
				}
			}
			for i := range 50 {
				for l.Stats().Buffered >= l.Stats().Capacity { // the test completes faster than any server would
					time.Sleep(time.Millisecond)
				}
				l.Completion(context.Background(), Record{Event: EventAccess, Outcome: OutcomeAllow, Status: 200, RequestID: "r" + strconv.Itoa(i)})
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if s := l.Stats(); s.Dropped != 0 || s.Written != 50+50+0 {
				t.Fatalf("stats %+v", s)
			}
			res, err := VerifyFile(path)
			if err != nil || res.Forwarded != 50 || res.UnfinishedCount != 0 {
				t.Fatalf("verify %+v %v", res, err)
			}
		})
	}
}

// TestVerifyReportsUnfinishedDecisions: a decision without its completion (the process was
// killed while the request was in flight) is reported by request id, not as a broken chain.
func TestVerifyReportsUnfinishedDecisions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openFile(t, path, nil)
	for _, id := range []string{"a", "b", "c"} {
		if err := l.Decision(context.Background(), Record{Event: EventForward, Outcome: OutcomeAllow, RequestID: id}); err != nil {
			t.Fatal(err)
		}
	}
	l.Completion(context.Background(), Record{Event: EventAccess, Outcome: OutcomeAllow, Status: 200, RequestID: "b"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := VerifyFile(path)
	if err != nil || res.Forwarded != 3 || res.UnfinishedCount != 2 || strings.Join(res.Unfinished, ",") != "a,c" {
		t.Fatalf("verify %+v %v", res, err)
	}
}

// TestSaturationIsReported: once decisions and events would be refused for lack of room,
// SaturatedErr says so (the /readyz audit_buffer check), and stops saying so when room returns.
func TestSaturationIsReported(t *testing.T) {
	l := openStdout(t, io.Discard, func(o *Options) { o.Buffer = 4 })
	defer l.Close()
	var held []*Pending
	for l.SaturatedErr() == nil {
		p, err := l.Reserve(context.Background())
		if err != nil {
			t.Fatalf("Reserve before saturation: %v", err)
		}
		held = append(held, p)
	}
	if len(held) != l.Stats().Admit {
		t.Fatalf("saturated after %d reservations, want %d", len(held), l.Stats().Admit)
	}
	if _, err := l.Reserve(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Reserve when saturated = %v", err)
	}
	for _, p := range held {
		p.Cancel()
	}
	if err := l.SaturatedErr(); err != nil {
		t.Fatalf("still saturated after the slots were released: %v", err)
	}
}

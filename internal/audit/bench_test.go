package audit

import (
	"context"
	"io"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkReserveCommit is the cost a request pays on the hot path: Reserve before forwarding
// plus Commit after the response. The timer stops while the writer empties the buffer, so the
// writer's encoding, hashing and I/O are not counted here (see the Sustained benchmarks).
func BenchmarkReserveCommit(b *testing.B) {
	l := openStdout(b, io.Discard, func(o *Options) { o.Buffer = 4096 })
	rec := sampleRecord(1)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%4096 == 0 && i > 0 {
			b.StopTimer()
			for l.Stats().Buffered > 0 {
				runtime.Gosched()
			}
			b.StartTimer()
		}
		p, err := l.Reserve(ctx)
		if err != nil {
			b.Fatal(err)
		}
		p.Commit(rec)
	}
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReserveCommitSustained is the end-to-end cost per record at saturation, writer
// included (request goroutines wait for a free slot instead of answering 503).
func BenchmarkReserveCommitSustained(b *testing.B) {
	b.Run("discard", func(b *testing.B) { benchSustained(b, openStdout(b, io.Discard, nil)) })
	b.Run("file", func(b *testing.B) {
		benchSustained(b, openFile(b, filepath.Join(b.TempDir(), "audit.jsonl"), nil))
	})
}

func benchSustained(b *testing.B, l *Logger) {
	rec := sampleRecord(1)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for {
				p, err := l.Reserve(ctx)
				if err == nil {
					p.Commit(rec)
					break
				}
				runtime.Gosched()
			}
		}
	})
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCanonicalEncode is the writer's cost per record: canonical encoding plus SHA-256.
func BenchmarkCanonicalEncode(b *testing.B) {
	rec := sampleRecord(1)
	rec.Time = t0
	enc := newEncoder()
	var prev [64]byte
	copy(prev[:], Genesis)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.appendLine(buf[:0], &rec, 1, &prev, &prev)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkVerify verifies a 1000-record file.
func BenchmarkVerify(b *testing.B) {
	path := writeLog(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyFile(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecision is what a forwarded request waits for before the upstream is contacted:
// with durability sync the decision record is written and fsynced (group commit: concurrent
// requests share one fsync), with written it is written, with interval it is only handed to the
// writer. Run with -cpu to
// see the group commit at work; the numbers are in docs/performance.md.
func BenchmarkDecision(b *testing.B) {
	for _, d := range []string{"sync", "written", "interval"} {
		for _, par := range []int{1, 64} {
			b.Run(d+"/concurrency="+strconv.Itoa(par), func(b *testing.B) {
				l := openFile(b, filepath.Join(b.TempDir(), "audit.jsonl"), func(o *Options) { o.Durability = d })
				rec := sampleRecord(1)
				rec.Event = EventForward
				ctx := context.Background()
				b.SetParallelism(par)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						for l.Decision(ctx, rec) != nil {
							runtime.Gosched() // interval: buffer full, the writer catches up
						}
					}
				})
				b.StopTimer()
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

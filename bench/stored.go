package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// storedSessions measures the session store at scale, in this process: n
// sessions seeded into a bolt file through session.Manager (as n sign-ins),
// uncached lookups in random order (the one store read a request makes
// when its session is not cached), the file's size, and the memory each
// cached session costs.
func (e *environment) storedSessions(ctx context.Context) ([]result, error) {
	n := e.f.stored
	dir := filepath.Join(e.dir, "stored")
	path := filepath.Join(dir, "sessions.db")
	t0 := time.Now()
	cookies, err := seedSessions(ctx, path, n)
	if err != nil {
		return nil, fmt.Errorf("seed %d sessions: %w", n, err)
	}
	seedTime := time.Since(t0)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	st, err := session.OpenBoltStore(path, session.BoltOptions{SweepInterval: -1})
	if err != nil {
		return nil, err
	}
	opts := session.Options{IdleTimeout: 2 * time.Hour, AbsoluteTimeout: 12 * time.Hour, HealthInterval: -1}
	uncached := opts
	uncached.CacheTTL = -1
	m := session.NewManager(st, uncached)
	handles := make([]session.Handle, n)
	for i, c := range cookies {
		if handles[i], err = session.ParseHandle(c); err != nil {
			m.Close()
			return nil, err
		}
	}
	// Uncached lookups, random order, two readers (the cores this runs on).
	lookups := min(n, 50_000)
	rnd := rand.New(rand.NewPCG(1, 2))
	order := rnd.Perm(n)[:lookups]
	lats := make([]time.Duration, lookups)
	const readers = 2
	errs := make(chan error, readers)
	start := time.Now()
	for w := range readers {
		go func() {
			for i := w; i < lookups; i += readers {
				t := time.Now()
				if _, err := m.Load(ctx, handles[order[i]], false); err != nil {
					errs <- fmt.Errorf("lookup %d: %w", i, err)
					return
				}
				lats[i] = time.Since(t)
			}
			errs <- nil
		}()
	}
	for range readers {
		if err := <-errs; err != nil {
			m.Close()
			return nil, err
		}
	}
	elapsed := time.Since(start)
	m.Close()
	slices.Sort(lats)
	s := summary{Target: "gatehouse", Requests: int64(lookups), RPS: float64(lookups) / elapsed.Seconds(),
		P50us: pct(lats, 0.5), P99us: pct(lats, 0.99), P999us: pct(lats, 0.999)}

	// Memory per cached session: load k sessions into a cache once
	// uncached (so the bolt pages they live on are already mapped), then
	// cache them and compare anonymous RSS and the live heap.
	k := min(n, 100_000)
	cached := opts
	cached.CacheTTL = time.Hour
	cached.CacheSize = k
	cached.CacheMemory = 8 << 30 // room for all k: the figure is what each costs, not the default bound
	// Closing a Manager closes its store: open the file again.
	if st, err = session.OpenBoltStore(path, session.BoltOptions{SweepInterval: -1}); err != nil {
		return nil, err
	}
	mc := session.NewManager(st, cached)
	defer mc.Close()
	// Only the handles stay reachable: the cookies and the lookup order
	// would otherwise be freed between the two readings.
	cookies, order, lats = nil, nil, nil
	anonBefore, heapBefore := memNow()
	for i := range k {
		if _, err := mc.Load(ctx, handles[i], false); err != nil {
			return nil, fmt.Errorf("cache session %d: %w", i, err)
		}
	}
	anonAfter, heapAfter := memNow()
	runtime.KeepAlive(mc)
	runtime.KeepAlive(handles)
	return []result{{Scenario: "stored-sessions", What: fmt.Sprintf("%d sessions in bolt (JWT-sized access and ID tokens, a refresh token, 13 claims: about 3 KB sealed): uncached lookups through session.Manager (random order, 2 readers, in process), file size, memory per cached session (%d cached)", n, k),
		Gatehouse: s, Extra: map[string]any{
			"sessions": n, "seed_seconds": seedTime.Seconds(), "file_bytes": fi.Size(), "file_bytes_per_session": fi.Size() / int64(n),
			"cached_sessions": k, "rss_anon_per_cached_session_bytes": (anonAfter - anonBefore) / int64(k),
			"heap_per_cached_session_bytes": (heapAfter - heapBefore) / int64(k),
		}}}, nil
}

// memNow returns anonymous resident memory (heap and stacks, not the bolt
// file's mapped pages) and the live heap after a full collection.
func memNow() (anon, heap int64) {
	runtime.GC()
	debug.FreeOSMemory() // return freed pages, so RSS counts what is live
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f, err := os.Open("/proc/self/status")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				anon = kb << 10
			}
		}
	}
	return anon, int64(ms.HeapAlloc)
}

package session_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// manySessions is how many sessions the many-session benchmarks seed: the
// load the performance issue measures (100,000 users in random order).
const manySessions = 100_000

// realisticSession is a session as the OIDC handler makes it: an ID
// token's claims merged with userinfo, JWT-sized tokens.
func realisticSession(i int) *session.Session {
	sub := fmt.Sprintf("user-%06d", i)
	jwt := "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0." + strings.Repeat("x", 600) + ".sig-" + strings.Repeat("s", 340)
	return &session.Session{
		Subject: sub, IdPSessionID: fmt.Sprintf("sid-%06d", i),
		Claims: map[string]any{
			"iss": "https://idp.example.com/realms/main", "sub": sub, "aud": "gatehouse", "azp": "gatehouse",
			"exp": 1.7e9, "iat": 1.7e9, "auth_time": 1.7e9, "sid": fmt.Sprintf("sid-%06d", i),
			"acr": "1", "amr": []any{"pwd", "otp"}, "email": sub + "@example.com", "email_verified": true,
			"name": "User " + sub, "preferred_username": sub, "given_name": "User", "family_name": sub,
			"groups": []any{"staff", "engineering"},
		},
		AccessToken:  secret.New(jwt),
		RefreshToken: secret.New("rt-" + strings.Repeat("r", 200)),
		IDToken:      secret.New(jwt),
		TokenType:    "Bearer",
		Scope:        "openid profile email",
		ACR:          "1", AMR: []string{"pwd", "otp"},
		AuthTime: time.Unix(1_700_000_000, 0),
	}
}

// seedBolt creates n sessions in a fresh bolt file through a Manager (as n
// sign-ins; concurrently, so that bolt batches the commits) and returns the
// file's path and the handles.
func seedBolt(b *testing.B, n int) (string, []session.Handle) {
	b.Helper()
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "sessions.db")
	st, err := session.OpenBoltStore(path, session.BoltOptions{SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	m := session.NewManager(st, session.Options{IdleTimeout: 2 * time.Hour, CacheTTL: -1, HealthInterval: -1})
	handles := make([]session.Handle, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				h, err := m.Create(ctx, realisticSession(i))
				if err != nil {
					errs <- err
					return
				}
				handles[i] = h
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if err := m.Close(); err != nil {
		b.Fatal(err)
	}
	return path, handles
}

// BenchmarkLoadMany measures Load with slide over many sessions in a bolt
// store, in random order: uncached (every request reads the store, as
// ~90% did with 100k sessions and a 10k cache), cached, and cached with
// concurrent requests (the cache's lock under load).
func BenchmarkLoadMany(b *testing.B) {
	ctx := context.Background()
	path, handles := seedBolt(b, manySessions)
	cookies := make([]string, len(handles))
	for i, h := range handles {
		cookies[i] = h.Cookie().Reveal()
	}
	open := func(b *testing.B, opts session.Options) *session.Manager {
		st, err := session.OpenBoltStore(path, session.BoltOptions{SweepInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		opts.IdleTimeout, opts.HealthInterval = 2*time.Hour, -1
		m := session.NewManager(st, opts)
		b.Cleanup(func() { _ = m.Close() })
		return m
	}
	load := func(b *testing.B, m *session.Manager, cookie string) {
		h, err := session.ParseHandle(cookie)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Load(ctx, h, true); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("uncached", func(b *testing.B) {
		m := open(b, session.Options{CacheTTL: -1})
		rnd := rand.New(rand.NewPCG(1, 2))
		b.ReportAllocs()
		for b.Loop() {
			load(b, m, cookies[rnd.IntN(len(cookies))])
		}
	})
	// warm caches every session and reports what they cost: the live heap
	// and the cache's estimate. (These sessions are ~5 KB: the default
	// budget would hold a quarter of them.)
	warm := func(b *testing.B) (m *session.Manager, report func()) {
		m = open(b, session.Options{CacheTTL: time.Hour, CacheMemory: 1 << 30})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, c := range cookies {
			load(b, m, c)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		n, est := session.CacheStats(m)
		if n != len(cookies) {
			b.Fatalf("%d of %d sessions cached", n, len(cookies))
		}
		return m, func() { // after the loop, whose start clears metrics
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "heap-B/session")
			b.ReportMetric(float64(est)/float64(n), "estimate-B/session")
		}
	}
	b.Run("cached", func(b *testing.B) {
		m, report := warm(b)
		rnd := rand.New(rand.NewPCG(1, 2))
		b.ReportAllocs()
		for b.Loop() {
			load(b, m, cookies[rnd.IntN(len(cookies))])
		}
		report()
	})
	b.Run("cached-parallel", func(b *testing.B) {
		m, _ := warm(b)
		var seed atomic.Uint64
		b.ReportAllocs()
		b.SetParallelism(16) // 32 concurrent requests on 2 cores
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			rnd := rand.New(rand.NewPCG(seed.Add(1), 2))
			for pb.Next() {
				load(b, m, cookies[rnd.IntN(len(cookies))])
			}
		})
	})
}

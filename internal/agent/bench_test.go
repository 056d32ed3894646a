package agent

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
)

// countingStore counts the grant reads Authenticate makes.
type countingStore struct {
	session.Store
	gets atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, id string) (session.Record, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, id)
}

// BenchmarkAuthenticate measures an agent request's authentication as the
// gateway runs it: the session manager with its cache on (the default), the
// grant store of each kind, the grant cache on (cached, the default) and
// off (uncached: one grant read and AEAD open per request, as before the
// cache). reads/op is grant-store reads per request.
func BenchmarkAuthenticate(b *testing.B) {
	kinds := []struct {
		name string
		open func(b *testing.B) session.Store
	}{
		{"memory", func(b *testing.B) session.Store { return session.NewMemoryStore(nil) }},
		{"redis", func(b *testing.B) session.Store {
			srv := redisserver.Start(b)
			s, err := session.NewRedisStore(session.RedisOptions{URL: srv.URL(), KeyPrefix: "gatehouse:agents:"})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, k := range kinds {
		for _, c := range []struct {
			name string
			ttl  time.Duration
		}{{"cached", 0}, {"uncached", -1}} {
			b.Run(k.name+"/"+c.name, func(b *testing.B) {
				ctx := context.Background()
				sessions := session.NewManager(session.NewMemoryStore(nil), session.Options{HealthInterval: -1})
				b.Cleanup(func() { _ = sessions.Close() })
				grants := &countingStore{Store: k.open(b)}
				b.Cleanup(func() { _ = grants.Close() })
				al, err := audit.Open(ctx, audit.Options{Sink: "stdout", Stdout: &syncbuf.Buffer{}, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = al.Close() })
				br, err := New(Options{Store: grants, Sessions: sessions, Delegable: testDelegable,
					MaxTTL: time.Hour, DefaultTTL: time.Hour, Audit: al, Client: "web", CacheTTL: c.ttl})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(br.Close)
				s := &session.Session{Subject: "alice"}
				h, err := sessions.Create(ctx, s)
				if err != nil {
					b.Fatal(err)
				}
				iss, err := br.Issue(ctx, h, s, Request{Name: "bot", Routes: []string{"profile"}}, allowAll)
				if err != nil {
					b.Fatal(err)
				}
				tok := iss.Token.Value().Reveal()
				if _, err := br.Authenticate(ctx, tok); err != nil {
					b.Fatal(err)
				}
				grants.gets.Store(0)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := br.Authenticate(ctx, tok); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(grants.gets.Load())/float64(b.N), "reads/op")
			})
		}
	}
}

package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// BenchmarkLoad measures the hot path: parse the cookie, then Load with
// slide (as every proxied request does), from the cache and from each store.
func BenchmarkLoad(b *testing.B) {
	ctx := context.Background()
	srv := redisserver.Start(b)
	stores := []struct {
		name string
		open func(b *testing.B) session.Store
	}{
		{"memory", func(b *testing.B) session.Store { return session.NewMemoryStore(nil) }},
		{"bolt", func(b *testing.B) session.Store {
			s, err := session.OpenBoltStore(b.TempDir()+"/s.db", session.BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"redis", func(b *testing.B) session.Store { return newRedis(b, srv, randomPrefix(b), nil) }},
	}
	for _, st := range stores {
		for _, mode := range []struct {
			name string
			ttl  time.Duration
		}{{"cached", time.Minute}, {"uncached", -1}} {
			b.Run(st.name+"/"+mode.name, func(b *testing.B) {
				m := session.NewManager(st.open(b), session.Options{CacheTTL: mode.ttl})
				defer m.Close()
				h, err := m.Create(ctx, userSession("alice", "sid-1"))
				if err != nil {
					b.Fatal(err)
				}
				cookie := h.Cookie().Reveal()
				b.ReportAllocs()
				for b.Loop() {
					hh, err := session.ParseHandle(cookie)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := m.Load(ctx, hh, true); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkParseHandle(b *testing.B) {
	h, _ := session.NewHandle()
	c := h.Cookie().Reveal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := session.ParseHandle(c); err != nil {
			b.Fatal(err)
		}
	}
}

package session_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/session/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

func TestMemoryStoreContract(t *testing.T) {
	storetest.Run(t, newMemory)
}

func TestBoltStoreContract(t *testing.T) {
	storetest.Run(t, newBolt)
}

func TestRedisStoreContract(t *testing.T) {
	srv := redisserver.Start(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
		return newRedis(t, srv, randomPrefix(t), now)
	})
}

func newMemory(t *testing.T, now func() time.Time) session.Store { return session.NewMemoryStore(now) }

func newBolt(t *testing.T, now func() time.Time) session.Store {
	s, err := session.OpenBoltStore(filepath.Join(t.TempDir(), "sessions.db"), session.BoltOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomPrefix(t testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "gh-test-" + hex.EncodeToString(b) + ":"
}

func newRedis(t testing.TB, srv *redisserver.Server, prefix string, now func() time.Time) *session.RedisStore {
	t.Helper()
	s, err := session.NewRedisStore(session.RedisOptions{URL: srv.URL(), KeyPrefix: prefix, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	accessToken  = "at-SECRET-0123456789abcdef"
	refreshToken = "rt-SECRET-fedcba9876543210"
	idToken      = "eyJhbGciOiJSUzI1NiJ9.idtoken-SECRET.sig"
)

func userSession(sub, sid string) *session.Session {
	return &session.Session{
		Subject: sub, IdPSessionID: sid,
		Claims:       map[string]any{"email": "alice@example.com", "name": "Alice"},
		AccessToken:  secret.New(accessToken),
		RefreshToken: secret.New(refreshToken),
		IDToken:      secret.New(idToken),
		TokenType:    "Bearer",
	}
}

type storeKind struct {
	name string
	open func(t *testing.T, now func() time.Time) session.Store
}

func allStores(t *testing.T) []storeKind {
	srv := redisserver.Start(t)
	return []storeKind{
		{"memory", newMemory},
		{"bolt", newBolt},
		{"redis", func(t *testing.T, now func() time.Time) session.Store {
			return newRedis(t, srv, randomPrefix(t), now)
		}},
	}
}

// The Manager behaves the same over every store: these are the attacks and
// rules that matter to callers.
func TestManagerOverEveryStore(t *testing.T) {
	ctx := context.Background()
	for _, sk := range allStores(t) {
		t.Run(sk.name, func(t *testing.T) {
			setup := func(t *testing.T, cacheTTL time.Duration) (*session.Manager, session.Store, *storetest.Clock) {
				c := storetest.NewClock()
				st := sk.open(t, c.Now)
				m := session.NewManager(st, session.Options{Now: c.Now, CacheTTL: cacheTTL, HealthInterval: -1,
					IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 12 * time.Hour})
				t.Cleanup(func() { _ = m.Close() })
				return m, st, c
			}
			wantNotFound := func(t *testing.T, m *session.Manager, h session.Handle) {
				t.Helper()
				if _, err := m.Load(ctx, h, false); !errors.Is(err, session.ErrNotFound) {
					t.Fatalf("Load = %v, want ErrNotFound", err)
				}
			}
			t.Run("RoundTrip", func(t *testing.T) {
				m, _, _ := setup(t, -1)
				h, err := m.Create(ctx, userSession("alice", "sid-1"))
				if err != nil {
					t.Fatal(err)
				}
				s, err := m.Load(ctx, h, true)
				if err != nil {
					t.Fatal(err)
				}
				if s.AccessToken.Reveal() != accessToken || s.RefreshToken.Reveal() != refreshToken ||
					s.IDToken.Reveal() != idToken || s.Claims["email"] != "alice@example.com" || s.ID != h.ID() {
					t.Fatalf("loaded %+v", s)
				}
			})
			t.Run("UnknownHandleIsNotFound", func(t *testing.T) {
				m, _, _ := setup(t, -1)
				h, _ := session.NewHandle()
				wantNotFound(t, m, h)
			})
			t.Run("TamperedRecordIsNotFound", func(t *testing.T) {
				m, st, _ := setup(t, -1)
				h, _ := m.Create(ctx, userSession("alice", "sid-1"))
				rec, err := st.Get(ctx, h.ID())
				if err != nil {
					t.Fatal(err)
				}
				rec.Sealed[len(rec.Sealed)-1] ^= 0x80
				if err := st.Replace(ctx, rec); err != nil {
					t.Fatal(err)
				}
				wantNotFound(t, m, h)
			})
			t.Run("IndexFieldsCannotBeRewrittenToDodgeRevocation", func(t *testing.T) {
				m, st, _ := setup(t, -1)
				h, _ := m.Create(ctx, userSession("alice", "sid-1"))
				rec, _ := st.Get(ctx, h.ID())
				rec.Subject = "someone-else"
				if err := st.Replace(ctx, rec); err != nil {
					t.Fatal(err)
				}
				wantNotFound(t, m, h)
			})
			t.Run("IdleAndAbsoluteExpiry", func(t *testing.T) {
				m, _, c := setup(t, -1)
				created := c.Now()
				idle, _ := m.Create(ctx, userSession("alice", ""))
				abs, _ := m.Create(ctx, userSession("alice", ""))
				// Activity every 20 minutes keeps one session alive...
				for c.Now().Add(20 * time.Minute).Before(created.Add(12 * time.Hour)) {
					c.Advance(20 * time.Minute)
					if _, err := m.Load(ctx, abs, true); err != nil {
						t.Fatalf("active session ended at %v: %v", c.Now().Sub(created), err)
					}
				}
				wantNotFound(t, m, idle) // ...the idle one is gone...
				c.Advance(created.Add(12 * time.Hour).Sub(c.Now()))
				wantNotFound(t, m, abs) // ...and activity never passes the absolute timeout.
			})
			t.Run("RevokedSessionIsNotFound", func(t *testing.T) {
				m, _, _ := setup(t, time.Hour)
				a, _ := m.Create(ctx, userSession("alice", "sid-1"))
				b, _ := m.Create(ctx, userSession("alice", "sid-2"))
				c, _ := m.Create(ctx, userSession("bob", "sid-3"))
				for _, h := range []session.Handle{a, b, c} {
					if _, err := m.Load(ctx, h, false); err != nil {
						t.Fatal(err)
					}
				}
				if n, err := m.DeleteByIdPSession(ctx, "sid-1"); n != 1 || err != nil {
					t.Fatalf("DeleteByIdPSession = %d, %v", n, err)
				}
				wantNotFound(t, m, a)
				if n, err := m.DeleteBySubject(ctx, "alice"); n != 1 || err != nil {
					t.Fatalf("DeleteBySubject = %d, %v", n, err)
				}
				wantNotFound(t, m, b)
				if err := m.Delete(ctx, c.ID()); err != nil {
					t.Fatal(err)
				}
				wantNotFound(t, m, c)
			})
		})
	}
}

func TestBoltSessionSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "sessions.db")
	open := func() *session.Manager {
		st, err := session.OpenBoltStore(path, session.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return session.NewManager(st, session.Options{})
	}
	m := open()
	h, err := m.Create(ctx, userSession("alice", "sid-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = open()
	defer m.Close()
	s, err := m.Load(ctx, h, true)
	if err != nil {
		t.Fatalf("Load after restart: %v", err)
	}
	if s.RefreshToken.Reveal() != refreshToken {
		t.Fatal("tokens lost across restart")
	}
}

// A thief who copies the bolt file gets neither tokens nor claims nor a
// usable cookie.
func TestBoltFileHoldsNoToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	st, err := session.OpenBoltStore(path, session.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := session.NewManager(st, session.Options{})
	h, err := m.Create(context.Background(), userSession("alice", "sid-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), h.ID()) {
		t.Fatal("file does not contain the session (test broken)")
	}
	for _, s := range []string{accessToken, refreshToken, idToken, "alice@example.com", h.Cookie().Reveal()} {
		if strings.Contains(string(raw), s) {
			t.Errorf("bolt file contains a secret (%d chars)", len(s))
		}
	}
}

func TestBoltFileServesOneInstance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	a, err := session.OpenBoltStore(path, session.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = session.OpenBoltStore(path, session.BoltOptions{OpenTimeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second open = %v, want a clear lock error", err)
	}
}

func TestBoltSweepDeletesExpiredRecords(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewClock()
	st, err := session.OpenBoltStore(filepath.Join(t.TempDir(), "s.db"), session.BoltOptions{Now: c.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	m := session.NewManager(st, session.Options{Now: c.Now, HealthInterval: -1})
	defer m.Close()
	for range 3 {
		if _, err := m.Create(ctx, userSession("alice", "sid")); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(10 * time.Minute)
	live, _ := m.Create(ctx, userSession("alice", "sid"))
	if n, err := st.Sweep(); n != 0 || err != nil {
		t.Fatalf("early Sweep = %d, %v", n, err)
	}
	c.Advance(25 * time.Minute) // the first three idled out
	if n, err := st.Sweep(); n != 3 || err != nil {
		t.Fatalf("Sweep = %d, %v; want 3", n, err)
	}
	if _, err := m.Load(ctx, live, false); err != nil {
		t.Fatalf("live session swept: %v", err)
	}
	if _, err := m.Once(ctx, "jti", time.Minute); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	if n, err := st.Sweep(); n != 1 || err != nil {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if first, _ := m.Once(ctx, "jti", time.Minute); !first {
		t.Fatal("expired once-key was not swept")
	}
}

// dumpRedis returns every value under prefix, as a thief would copy them.
func dumpRedis(t *testing.T, srv *redisserver.Server) string {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "\n")
		switch c.Type(ctx, k).Val() {
		case "hash":
			for f, v := range c.HGetAll(ctx, k).Val() {
				b.WriteString(f + "=" + v + "\n")
			}
		case "set":
			b.WriteString(strings.Join(c.SMembers(ctx, k).Val(), ",") + "\n")
		case "string":
			b.WriteString(c.Get(ctx, k).Val() + "\n")
		}
	}
	return b.String()
}

func TestRedisDumpHoldsNoTokenAndNoUsableSession(t *testing.T) {
	srv := redisserver.Start(t)
	m := session.NewManager(newRedis(t, srv, "gh:", nil), session.Options{})
	defer m.Close()
	h, err := m.Create(context.Background(), userSession("alice", "sid-1"))
	if err != nil {
		t.Fatal(err)
	}
	dump := dumpRedis(t, srv)
	if !strings.Contains(dump, h.ID()) {
		t.Fatal("dump does not contain the session (test broken)")
	}
	for _, s := range []string{accessToken, refreshToken, idToken, "alice@example.com", h.Cookie().Reveal()} {
		if strings.Contains(dump, s) {
			t.Errorf("redis dump contains a secret (%d chars)", len(s))
		}
	}
}

func TestRedisOutageFailsClosedAndRecovers(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	m := session.NewManager(newRedis(t, srv, "gh:", nil), session.Options{CacheTTL: time.Hour})
	defer m.Close()
	h, err := m.Create(ctx, userSession("alice", ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(ctx, h, false); err != nil { // cached from now on
		t.Fatal(err)
	}
	srv.Kill()
	killed := time.Now()
	for {
		_, err := m.Load(ctx, h, false)
		if errors.Is(err, session.ErrUnavailable) {
			break
		}
		if err != nil {
			t.Fatalf("Load while redis is down = %v, want ErrUnavailable", err)
		}
		if time.Since(killed) > 1500*time.Millisecond {
			t.Fatal("cached session still served 1.5s after redis died")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("ErrUnavailable %v after kill", time.Since(killed).Round(time.Millisecond))
	if err := m.Ready(ctx); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Ready = %v", err)
	}
	if _, err := m.Create(ctx, userSession("bob", "")); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Create while down = %v", err)
	}

	srv.Restart() // empty: redis runs without persistence here
	restarted := time.Now()
	for {
		_, err := m.Load(ctx, h, false)
		if errors.Is(err, session.ErrNotFound) {
			break // recovered; the session died with the data
		}
		if !errors.Is(err, session.ErrUnavailable) {
			t.Fatalf("Load after restart = %v", err)
		}
		if time.Since(restarted) > 5*time.Second {
			t.Fatal("manager did not recover after redis returned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h2, err := m.Create(ctx, userSession("alice", ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(ctx, h2, true); err != nil {
		t.Fatalf("Load after recovery: %v", err)
	}
}

func twoInstances(t *testing.T, opts session.Options) (a, b *session.Manager) {
	srv := redisserver.Start(t)
	a = session.NewManager(newRedis(t, srv, "gh:", nil), opts)
	b = session.NewManager(newRedis(t, srv, "gh:", nil), opts)
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// The documented bound for other instances: pub/sub delivers within
// milliseconds; the cache TTL (an hour here) is not what ends the session.
func TestRevocationOnOneInstanceReachesTheOther(t *testing.T) {
	ctx := context.Background()
	revoke := map[string]func(m *session.Manager, h session.Handle) error{
		"Delete": func(m *session.Manager, h session.Handle) error { return m.Delete(ctx, h.ID()) },
		"DeleteBySubject": func(m *session.Manager, h session.Handle) error {
			_, err := m.DeleteBySubject(ctx, "alice")
			return err
		},
		"DeleteByIdPSession": func(m *session.Manager, h session.Handle) error {
			_, err := m.DeleteByIdPSession(ctx, "idp-sid")
			return err
		},
	}
	for name, fn := range revoke {
		t.Run(name, func(t *testing.T) {
			a, b := twoInstances(t, session.Options{CacheTTL: time.Hour})
			time.Sleep(100 * time.Millisecond) // let both subscriptions start
			h, err := a.Create(ctx, userSession("alice", "idp-sid"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Load(ctx, h, false); err != nil { // cached on b
				t.Fatal(err)
			}
			if err := fn(a, h); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for {
				_, err := b.Load(ctx, h, false)
				if errors.Is(err, session.ErrNotFound) {
					break
				}
				if time.Since(start) > time.Second {
					t.Fatalf("instance b still serves the revoked session after 1s: %v", err)
				}
				time.Sleep(2 * time.Millisecond)
			}
			t.Logf("revocation seen by b after %v", time.Since(start))
		})
	}
}

func TestTokenRefreshOnOneInstanceReachesTheOther(t *testing.T) {
	ctx := context.Background()
	a, b := twoInstances(t, session.Options{CacheTTL: time.Hour})
	time.Sleep(100 * time.Millisecond)
	h, _ := a.Create(ctx, userSession("alice", ""))
	s, err := b.Load(ctx, h, false)
	if err != nil {
		t.Fatal(err)
	}
	s.AccessToken = secret.New("at-new")
	if err := b.Update(ctx, h, s); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		got, err := a.Load(ctx, h, false)
		if err != nil {
			t.Fatal(err)
		}
		if got.AccessToken.Reveal() == "at-new" {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("instance a still has the old token after 1s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestLockExcludesHoldersAcrossInstances(t *testing.T) {
	ctx := context.Background()
	a, b := twoInstances(t, session.Options{})
	var mu sync.Mutex
	holders, maxHolders, done := 0, 0, 0
	var wg sync.WaitGroup
	for i := range 10 {
		m := a
		if i%2 == 1 {
			m = b
		}
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			release, err := m.Lock(lctx, "refresh:session-1", 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			holders++
			maxHolders = max(maxHolders, holders)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			holders--
			done++
			mu.Unlock()
			release()
		})
	}
	wg.Wait()
	if maxHolders != 1 || done != 10 {
		t.Fatalf("max concurrent holders %d, completed %d", maxHolders, done)
	}
	release, err := a.Lock(ctx, "x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(short, "x", time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b took a's lock: %v", err)
	}
}

func TestOnceIsTrueOnceAcrossInstances(t *testing.T) {
	ctx := context.Background()
	a, b := twoInstances(t, session.Options{})
	if first, err := a.Once(ctx, "jti-1", time.Minute); !first || err != nil {
		t.Fatalf("a.Once = %v, %v", first, err)
	}
	if first, err := b.Once(ctx, "jti-1", time.Minute); first || err != nil {
		t.Fatalf("replay on b: Once = %v, %v", first, err)
	}
}

// A record mangled in the store is no session (401), not an outage (503).
func TestCorruptRecordIsNotFound(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	m := session.NewManager(newRedis(t, srv, "gh:", nil), session.Options{CacheTTL: -1})
	defer m.Close()
	h, err := m.Create(ctx, userSession("alice", ""))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.HSet(ctx, "gh:s:"+h.ID(), "c", "not-a-number").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(ctx, h, false); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Load of a corrupt record = %v, want ErrNotFound", err)
	}
}

package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/audit"
	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/session/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/syncbuf"
)

// cachedEnv is newEnv with a grant store that counts reads, so a test sees
// whether a request was served from the cache.
func cachedEnv(t *testing.T, k storeKind, mod func(*Options)) (*env, *countingStore) {
	t.Helper()
	var counter *countingStore
	wrapped := storeKind{name: k.name, open: func(t *testing.T, now func() time.Time) session.Store {
		counter = &countingStore{Store: k.open(t, now)}
		return counter
	}}
	return newEnv(t, wrapped, mod), counter
}

// Every refusal a cached grant must give, each on the request right after
// the event, with the cache holding the grant (no TTL has passed: the
// clock moves only where the case says).
func TestCachedGrantIsRefusedAtOnce(t *testing.T) {
	cases := []struct {
		name   string
		ttl    time.Duration // the grant's
		event  func(t *testing.T, e *env, s *session.Session, iss Issued)
		reason string
		reads  int64 // grant-store reads the refusing request makes
	}{
		{"user revokes", time.Minute, func(t *testing.T, e *env, s *session.Session, iss Issued) {
			if err := e.broker.Revoke(context.Background(), s.ID, iss.Grant.ID); err != nil {
				t.Fatal(err)
			}
		}, "token_unknown", 1},
		{"admin revokes", time.Minute, func(t *testing.T, e *env, _ *session.Session, iss Issued) {
			if _, err := e.broker.RevokeByID(context.Background(), iss.Grant.ID); err != nil {
				t.Fatal(err)
			}
		}, "token_unknown", 1},
		// The cache's own TTL is an hour here: only the per-request expiry
		// check can refuse it.
		{"grant expires", time.Minute, func(t *testing.T, e *env, _ *session.Session, _ Issued) {
			e.clock.Advance(time.Minute)
		}, "token_expired", 0},
		// No end hook is wired (see the cross-instance test for it): the
		// session load on every request is what refuses.
		{"session ends", time.Minute, func(t *testing.T, e *env, s *session.Session, _ Issued) {
			if err := e.sessions.End(context.Background(), s.ID, session.EndLogout); err != nil {
				t.Fatal(err)
			}
		}, "session_ended", 0},
		{"session idles out", 45 * time.Minute, func(t *testing.T, e *env, _ *session.Session, _ Issued) {
			e.clock.Advance(30 * time.Minute)
		}, "session_ended", 0},
		{"session ends and its grants are deleted", time.Minute, func(t *testing.T, e *env, s *session.Session, _ Issued) {
			if err := e.broker.EndSession(context.Background(), s.ID, "logout"); err != nil {
				t.Fatal(err)
			}
		}, "token_unknown", 1},
	}
	for _, k := range storeKinds(t) {
		for _, c := range cases {
			t.Run(k.name+"/"+c.name, func(t *testing.T) {
				ctx := context.Background()
				e, reads := cachedEnv(t, k, func(o *Options) {
					o.CacheTTL = time.Hour
					o.MaxTTL, o.DefaultTTL = time.Hour, time.Hour
				})
				h, s := e.login(t, "alice")
				iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}, TTL: c.ttl})
				tok := iss.Token.Value().Reveal()
				for range 2 {
					if _, err := e.broker.Authenticate(ctx, tok); err != nil {
						t.Fatal(err)
					}
				}
				if n := reads.gets.Load(); n != 1 {
					t.Fatalf("%d grant reads for two requests, want 1 (the second cached)", n)
				}
				c.event(t, e, s, iss)
				reads.gets.Store(0)
				_, err := e.broker.Authenticate(ctx, tok)
				if got := authReason(err); got != c.reason {
					t.Fatalf("next request: %v, want %s", err, c.reason)
				}
				if n := reads.gets.Load(); n != c.reads {
					t.Errorf("the refusal read the grant store %d times, want %d", n, c.reads)
				}
				if n := e.broker.cache.len(); n != 0 {
					t.Errorf("%d grants still cached after the refusal", n)
				}
				if _, err := e.broker.Authenticate(ctx, tok); authReason(err) == "" {
					t.Errorf("a later request: %v, want refused", err)
				}
			})
		}
	}
}

// The cache TTL bounds how long a cached grant is used without a store
// read, the session cache's bound by default.
func TestGrantCacheTTL(t *testing.T) {
	cases := []struct {
		name    string
		ttl     time.Duration
		advance time.Duration
		reads   int64
	}{
		{"default, within", 0, session.DefaultCacheTTL - time.Millisecond, 0},
		{"default, at the TTL", 0, session.DefaultCacheTTL, 1},
		{"disabled", -1, 0, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, reads := cachedEnv(t, storeKinds(t)[0], func(o *Options) { o.CacheTTL = c.ttl })
			h, s := e.login(t, "alice")
			tok := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}}).Token.Value().Reveal()
			if _, err := e.broker.Authenticate(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(c.advance)
			reads.gets.Store(0)
			if _, err := e.broker.Authenticate(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
			if n := reads.gets.Load(); n != c.reads {
				t.Errorf("%d grant reads, want %d", n, c.reads)
			}
		})
	}
}

// The attacker's side: tokens that do not open their grant are refused
// whether or not the grant is cached, never poison the cached grant and
// never take a cache slot.
func TestGrantCacheRefusesForgeries(t *testing.T) {
	ctx := context.Background()
	e, reads := cachedEnv(t, storeKinds(t)[0], nil)
	h, s := e.login(t, "alice")
	iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
	if _, err := e.broker.Authenticate(ctx, iss.Token.Value().Reveal()); err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		f := iss.Token
		f.raw[i] ^= 1
		return f.Value().Reveal()
	}
	forgeries := []struct {
		name  string
		token string
		reads int64
	}{
		// The cached grant's id (the raw id is unchanged) with a key one bit off,
		// first and last byte: the cache's key check refuses, without a read.
		{"cached id, key's first bit", flip(rawIDLen), 0},
		{"cached id, key's last bit", flip(rawLen - 1), 0},
		{"cached id, key all zero", func() string {
			f := iss.Token
			clear(f.raw[rawIDLen:])
			return f.Value().Reveal()
		}(), 0},
		// Another id: a store read, nothing found, nothing cached.
		{"cached key, another id", flip(0), 1},
		{"random token", func() string {
			var raw [rawLen]byte
			_, _ = rand.Read(raw[:])
			return TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
		}(), 1},
	}
	for _, f := range forgeries {
		t.Run(f.name, func(t *testing.T) {
			reads.gets.Store(0)
			if _, err := e.broker.Authenticate(ctx, f.token); authReason(err) != "token_unknown" {
				t.Errorf("forged token: %v, want token_unknown", err)
			}
			if n := reads.gets.Load(); n != f.reads {
				t.Errorf("%d grant reads, want %d", n, f.reads)
			}
			if n := e.broker.cache.len(); n != 1 {
				t.Errorf("%d grants cached, want the real one only", n)
			}
		})
	}
	reads.gets.Store(0)
	if _, err := e.broker.Authenticate(ctx, iss.Token.Value().Reveal()); err != nil || reads.gets.Load() != 0 {
		t.Errorf("the real token after the forgeries: %v, %d reads (want served from the cache)", err, reads.gets.Load())
	}

	// A flood of unknown tokens leaves the cache as it was.
	for range 1000 {
		var raw [rawLen]byte
		_, _ = rand.Read(raw[:])
		_, _ = e.broker.Authenticate(ctx, TokenPrefix+base64.RawURLEncoding.EncodeToString(raw[:]))
	}
	if n := e.broker.cache.len(); n != 1 {
		t.Errorf("%d grants cached after 1000 unknown tokens, want 1", n)
	}
}

// A grant whose record does not open with the token (edited in the store)
// is never cached, and a cached grant's entry holds neither the token nor
// its key: only a hash of the key.
func TestGrantCacheHoldsOnlyOpenedGrantsAndNoToken(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, storeKinds(t)[0], nil)
	h, s := e.login(t, "alice")
	tampered := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
	rec, _ := e.grants.Get(ctx, tampered.Grant.ID)
	rec.Sealed = bytes.Replace(rec.Sealed, []byte(`"route":"profile"`), []byte(`"route":"billing"`), 1)
	if err := e.grants.Replace(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := e.broker.Authenticate(ctx, tampered.Token.Value().Reveal()); authReason(err) != "token_unknown" {
			t.Fatalf("tampered grant: %v", err)
		}
	}
	if n := e.broker.cache.len(); n != 0 {
		t.Fatalf("a grant that did not open is cached (%d)", n)
	}

	iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
	if _, err := e.broker.Authenticate(ctx, iss.Token.Value().Reveal()); err != nil {
		t.Fatal(err)
	}
	en := e.broker.cache.get(iss.Grant.ID, e.clock.Now())
	if en == nil {
		t.Fatal("the grant is not cached")
	}
	held := append([]byte(en.grant.ID+en.grant.Name+en.grant.Subject+en.grant.SessionID), en.check[:]...)
	tok := iss.Token
	for what, secret := range map[string][]byte{
		"token":           []byte(tok.Value().Reveal()),
		"token body":      []byte(tok.Value().Reveal()[4:]),
		"token id bytes":  tok.raw[:rawIDLen],
		"token key bytes": tok.key(),
	} {
		if bytes.Contains(held, secret) {
			t.Errorf("the cache entry holds the %s", what)
		}
	}
}

// Revocations racing with requests: once Revoke has returned, no request
// that starts later is let through, and no racing read re-inserts the
// grant.
func TestGrantCacheRevocationRacesRequests(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, storeKinds(t)[0], nil)
	h, s := e.login(t, "alice")
	for range 20 {
		iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
		tok := iss.Token.Value().Reveal()
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						_, _ = e.broker.Authenticate(ctx, tok)
					}
				}
			})
		}
		if err := e.broker.Revoke(ctx, s.ID, iss.Grant.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.broker.Authenticate(ctx, tok); authReason(err) != "token_unknown" {
			t.Fatalf("a request after the revocation: %v", err)
		}
		close(stop)
		wg.Wait()
		if _, err := e.broker.Authenticate(ctx, tok); authReason(err) != "token_unknown" {
			t.Fatalf("after the racing requests: %v", err)
		}
		if e.broker.cache.get(iss.Grant.ID, e.clock.Now()) != nil {
			t.Fatal("a racing read re-inserted the revoked grant")
		}
	}
}

// instance is one Gatehouse instance's broker and session manager, over a
// Redis shared with the others.
type instance struct {
	sessions *session.Manager
	broker   *Broker
}

// twoInstances starts two brokers and session managers sharing one
// redis-server (sessions and grants, each in its namespace, with the
// gateway's prefixes), the session-end hook wired as the gateway wires it
// (on A only if hookA). The clock is frozen: neither the session cache's
// nor the grant cache's TTL ever passes, so whatever refuses a cached grant
// on the other instance is the invalidation.
func twoInstances(t *testing.T, hookA bool) (a, b *instance, clock *storetest.Clock) {
	t.Helper()
	srv := redisserver.Start(t)
	clock = storetest.NewClock()
	al, err := audit.Open(context.Background(), audit.Options{Sink: "stdout", Stdout: &syncbuf.Buffer{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = al.Close() })
	open := func(prefix string) session.Store {
		s, err := session.NewRedisStore(session.RedisOptions{URL: srv.URL(), KeyPrefix: prefix, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	start := func(hook bool) *instance {
		in := &instance{sessions: session.NewManager(open("gatehouse:"), session.Options{
			IdleTimeout: 30 * time.Minute, AbsoluteTimeout: time.Hour, Now: clock.Now, HealthInterval: -1})}
		t.Cleanup(func() { _ = in.sessions.Close() })
		grants := open("gatehouse:agents:")
		t.Cleanup(func() { _ = grants.Close() })
		in.broker, err = New(Options{Store: grants, Sessions: in.sessions, Delegable: testDelegable,
			MaxTTL: 15 * time.Minute, DefaultTTL: 15 * time.Minute, Audit: al, Client: "web", Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(in.broker.Close)
		if hook {
			in.sessions.OnEnd(func(_ context.Context, e session.SessionEnd) {
				in.broker.SessionEnded(e.ID, string(e.Cause), e.Remote)
			})
		}
		return in
	}
	a, b = start(hookA), start(true)
	// Both grant subscriptions are up (subscribing empties the cache, which
	// moves its generation): from here on no invalidation can be missed.
	waitFor(t, "the grant invalidation subscriptions", func() bool {
		return a.broker.cache.generation() > 0 && b.broker.cache.generation() > 0
	})
	return a, b, clock
}

// waitFor polls cond for at most 2 s: well under the 5 s cache TTL, which
// the frozen clock never lets pass anyway. Invalidations arrive in
// milliseconds; the bound only keeps a broken one from hanging the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 2 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Acceptance: a grant cached on instance B is refused there promptly when
// instance A revokes it or ends its session — through the pub/sub
// invalidation, not the cache TTL.
func TestCachedGrantIsRefusedOnTheOtherInstance(t *testing.T) {
	cases := []struct {
		name   string
		end    func(t *testing.T, a *instance, s *session.Session, iss Issued)
		reason string
	}{
		{"user revokes on A", func(t *testing.T, a *instance, s *session.Session, iss Issued) {
			if err := a.broker.Revoke(context.Background(), s.ID, iss.Grant.ID); err != nil {
				t.Fatal(err)
			}
		}, "token_unknown"},
		{"admin revokes on A", func(t *testing.T, a *instance, _ *session.Session, iss Issued) {
			if _, err := a.broker.RevokeByID(context.Background(), iss.Grant.ID); err != nil {
				t.Fatal(err)
			}
		}, "token_unknown"},
		{"user logs out on A", func(t *testing.T, a *instance, s *session.Session, _ Issued) {
			if err := a.sessions.End(context.Background(), s.ID, session.EndLogout); err != nil {
				t.Fatal(err)
			}
		}, ""}, // session_ended, or token_unknown once A's hook has deleted the grant
		{"operator revokes the session on A", func(t *testing.T, a *instance, s *session.Session, _ Issued) {
			if _, err := a.sessions.Revoke(context.Background(), s.ID); err != nil {
				t.Fatal(err)
			}
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			a, b, _ := twoInstances(t, true)
			s := &session.Session{Subject: "alice"}
			h, err := a.sessions.Create(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			iss, err := a.broker.Issue(ctx, h, s, Request{Name: "bot", Routes: []string{"profile"}}, allowAll)
			if err != nil {
				t.Fatal(err)
			}
			tok := iss.Token.Value().Reveal()
			for _, in := range []*instance{a, b} {
				if _, err := in.broker.Authenticate(ctx, tok); err != nil {
					t.Fatal(err)
				}
			}
			if b.broker.cache.get(iss.Grant.ID, b.broker.now()) == nil {
				t.Fatal("B has not cached the grant")
			}
			c.end(t, a, s, iss)
			if _, err := a.broker.Authenticate(ctx, tok); authReason(err) == "" {
				t.Errorf("A, at once: %v, want refused", err)
			}
			var last error
			waitFor(t, "B refusing the grant", func() bool {
				_, last = b.broker.Authenticate(ctx, tok)
				return authReason(last) != ""
			})
			if c.reason != "" && authReason(last) != c.reason {
				t.Errorf("B: %v, want %s", last, c.reason)
			}
			waitFor(t, "B dropping the cached grant", func() bool { return b.broker.cache.len() == 0 })
		})
	}
}

// A session's end on another instance also drops the session's cached
// grants here (session.Manager.OnEnd, Remote), before any request. A's
// hook is not wired, so A deletes no grant and publishes no grant
// invalidation: the session store's invalidation alone does it.
func TestRemoteSessionEndDropsCachedGrants(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoInstances(t, false)
	s := &session.Session{Subject: "alice"}
	h, err := a.sessions.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	var toks []string
	for _, name := range []string{"bot-a", "bot-b"} {
		iss, err := a.broker.Issue(ctx, h, s, Request{Name: name, Routes: []string{"profile"}}, allowAll)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, iss.Token.Value().Reveal())
	}
	for _, tok := range toks {
		if _, err := b.broker.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.broker.cache.len(); n != 2 {
		t.Fatalf("B caches %d grants, want 2", n)
	}
	if err := a.sessions.End(ctx, s.ID, session.EndLogout); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B dropping the ended session's grants", func() bool { return b.broker.cache.len() == 0 })
}

// gatedStore holds up the first Get after arm until release is closed, so a
// test can revoke a grant between a request's store read and its insert.
type gatedStore struct {
	session.Store
	mu      sync.Mutex
	armed   bool
	read    chan struct{} // closed when the held Get has read
	release chan struct{}
}

func (s *gatedStore) arm() {
	s.mu.Lock()
	s.armed, s.read, s.release = true, make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
}

func (s *gatedStore) Get(ctx context.Context, id string) (session.Record, error) {
	rec, err := s.Store.Get(ctx, id)
	s.mu.Lock()
	held := s.armed
	s.armed = false
	read, release := s.read, s.release
	s.mu.Unlock()
	if held {
		close(read)
		<-release
	}
	return rec, err
}

// A request that read the grant before a revocation and finishes after it
// may be answered (it started first), but must not cache what it read: the
// next request is refused.
func TestGrantReadBeforeARevocationIsNotCached(t *testing.T) {
	ctx := context.Background()
	var gated *gatedStore
	e := newEnv(t, storeKind{name: "memory", open: func(t *testing.T, now func() time.Time) session.Store {
		gated = &gatedStore{Store: session.NewMemoryStore(now)}
		return gated
	}}, nil)
	h, s := e.login(t, "alice")
	iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile"}})
	tok := iss.Token.Value().Reveal()
	gated.arm()
	done := make(chan error, 1)
	go func() {
		_, err := e.broker.Authenticate(ctx, tok)
		done <- err
	}()
	<-gated.read
	if err := e.broker.Revoke(ctx, s.ID, iss.Grant.ID); err != nil {
		t.Fatal(err)
	}
	close(gated.release)
	if err := <-done; err != nil {
		t.Fatalf("the request that read first: %v", err)
	}
	if _, err := e.broker.Authenticate(ctx, tok); authReason(err) != "token_unknown" {
		t.Fatalf("the next request: %v, want token_unknown (the racing read was cached)", err)
	}
}

// The routes and methods a delegation summarises (computed once per cached
// grant) are the grant's, on the request that reads the grant and on those
// served from the cache.
func TestDelegationSummariesMatchTheGrant(t *testing.T) {
	e := newEnv(t, storeKinds(t)[0], nil)
	h, s := e.login(t, "alice")
	iss := e.issue(t, h, s, Request{Name: "bot", Routes: []string{"profile", "billing"}, Methods: []string{"GET", "POST"}})
	for _, served := range []string{"read", "cached"} {
		d, err := e.broker.Authenticate(context.Background(), iss.Token.Value().Reveal())
		if err != nil {
			t.Fatal(err)
		}
		a := d.Agent()
		if !slices.Equal(d.Routes(), iss.Grant.Routes()) || !slices.Equal(d.Methods(), iss.Grant.Methods()) ||
			!slices.Equal(a.Routes, iss.Grant.Routes()) || !slices.Equal(a.Methods, iss.Grant.Methods()) {
			t.Errorf("%s: routes %v methods %v, agent %v %v; want %v %v", served, d.Routes(), d.Methods(),
				a.Routes, a.Methods, iss.Grant.Routes(), iss.Grant.Methods())
		}
	}
}

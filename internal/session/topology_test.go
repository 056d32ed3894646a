package session_test

// Redis Sentinel and Redis Cluster, as real processes: the store contract
// holds on each, two instances share sessions, locks, one-time keys and
// revocations through each, and losing a primary is survived without
// restarting the store: calls during the failover fail with ErrUnavailable
// (the gateway's 503), never with a wrong answer, no acknowledged
// revocation is lost, and service resumes by itself.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/session/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

type topology struct {
	name string
	opts func() session.RedisOptions
}

func sentinelTopology(t *testing.T) (topology, *redisserver.Sentinel) {
	st := redisserver.StartSentinel(t)
	return topology{"sentinel", func() session.RedisOptions {
		return session.RedisOptions{Addrs: st.SentinelAddrs(), MasterName: st.MasterName}
	}}, st
}

func clusterTopology(t *testing.T) (topology, *redisserver.Cluster) {
	cl := redisserver.StartCluster(t)
	return topology{"cluster", func() session.RedisOptions {
		return session.RedisOptions{Addrs: cl.Addrs(), Cluster: true}
	}}, cl
}

func (tp topology) store(t testing.TB, prefix string, now func() time.Time) *session.RedisStore {
	t.Helper()
	o := tp.opts()
	o.KeyPrefix, o.Now = prefix, now
	s, err := session.NewRedisStore(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRedisSentinelTopology(t *testing.T) {
	tp, st := sentinelTopology(t)
	runTopology(t, tp, func() (stop func()) {
		old := st.KillPrimary()
		st.WaitNewPrimary(old.Addr(), 30*time.Second)
		return func() {}
	})
}

func TestRedisClusterTopology(t *testing.T) {
	tp, cl := clusterTopology(t)
	runTopology(t, tp, func() (stop func()) {
		cl.KillPrimary(0)
		cl.WaitHealed(0, 30*time.Second)
		return func() {}
	})
}

func runTopology(t *testing.T, tp topology, failover func() func()) {
	// The contract runs on multi-key operations too (index sets, pipelines):
	// on a cluster, a command naming keys of two slots fails with CROSSSLOT,
	// so passing here shows every command stays within one slot.
	t.Run("StoreContract", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
			return tp.store(t, randomPrefix(t), now)
		})
	})
	t.Run("TwoInstances", func(t *testing.T) { topoTwoInstances(t, tp) })
	t.Run("PrimaryLoss", func(t *testing.T) { primaryLoss(t, tp, failover) })
}

// topoTwoInstances: sessions, refresh locks, back-channel jti (Once) and
// revocation are shared by two Managers on the topology.
func topoTwoInstances(t *testing.T, tp topology) {
	ctx := context.Background()
	prefix := randomPrefix(t)
	a := session.NewManager(tp.store(t, prefix, nil), session.Options{IdleTimeout: time.Hour, AbsoluteTimeout: 2 * time.Hour})
	b := session.NewManager(tp.store(t, prefix, nil), session.Options{IdleTimeout: time.Hour, AbsoluteTimeout: 2 * time.Hour})
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })

	h, err := a.Create(ctx, userSession("alice", "sid-1"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := b.Load(ctx, h, true); err != nil || s.AccessToken.Reveal() != accessToken {
		t.Fatalf("instance b loads a's session: %v", err)
	}
	// A refresh lock taken on a is held against b.
	release, err := a.Lock(ctx, "refresh:"+h.ID(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if _, err := b.Lock(short, "refresh:"+h.ID(), 10*time.Second); err == nil {
		t.Fatal("b took the refresh lock a holds")
	}
	cancel()
	release()
	rb, err := b.Lock(ctx, "refresh:"+h.ID(), 10*time.Second)
	if err != nil {
		t.Fatalf("b after a released: %v", err)
	}
	rb()
	// A back-channel logout token's jti is accepted once across instances.
	if first, err := a.Once(ctx, "jti:abc", time.Minute); err != nil || !first {
		t.Fatalf("first Once = %v, %v", first, err)
	}
	if first, err := b.Once(ctx, "jti:abc", time.Minute); err != nil || first {
		t.Fatalf("replayed jti on the other instance: Once = %v, %v (want false)", first, err)
	}
	// Revocation on a reaches b's cache by invalidation (b loaded it above).
	if _, err := a.DeleteByIdPSession(ctx, "sid-1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := b.Load(ctx, h, false)
		if errors.Is(err, session.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked on a, b still loads it after 2s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loadCounts are what a failover test prints.
type loadCounts struct {
	sent, ok, unavailable, other, lostRevocations int
}

func (c loadCounts) String() string {
	return fmt.Sprintf("sent=%d 2xx=%d 503=%d other=%d lost_revocations=%d", c.sent, c.ok, c.unavailable, c.other, c.lostRevocations)
}

// primaryLoss runs a bounded load of loads, creates, revocations and
// one-time keys on one Manager while failover kills a primary, and counts
// outcomes. A live session that loads, a revoked one that is not found, a
// fresh jti accepted once: 2xx. ErrUnavailable: 503. Anything else (a live
// session not found, a revoked one loaded, a replayed jti accepted): other.
func primaryLoss(t *testing.T, tp topology, failover func() func()) {
	ctx := context.Background()
	prefix := randomPrefix(t)
	opts := session.Options{IdleTimeout: time.Hour, AbsoluteTimeout: 2 * time.Hour, CacheTTL: -1,
		HealthInterval: 100 * time.Millisecond}
	m := session.NewManager(tp.store(t, prefix, nil), opts)
	t.Cleanup(func() { _ = m.Close() })

	var (
		mu      sync.Mutex
		c       loadCounts
		live    []session.Handle
		revoked []session.Handle
		jtis    []string
		// removed are sessions a worker has begun to revoke: a concurrent
		// load may find them or not, and a revocation that failed may or may
		// not have been applied, so neither outcome is wrong for them.
		removed = map[string]bool{}
	)
	for i := range 50 {
		h, err := m.Create(ctx, userSession(fmt.Sprintf("user-%d", i), ""))
		if err != nil {
			t.Fatal(err)
		}
		live = append(live, h)
	}
	time.Sleep(200 * time.Millisecond) // let the replicas catch up before the kill
	outcome := func(ok bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		c.sent++
		switch {
		case errors.Is(err, session.ErrUnavailable):
			c.unavailable++
		case ok && err == nil:
			c.ok++
		default:
			c.other++
			t.Logf("wrong answer: %v", err)
		}
	}
	op := func(r *rand.Rand) {
		mu.Lock()
		kind := r.IntN(5)
		nLive := len(live)
		var h session.Handle
		if len(live) > 0 {
			h = live[r.IntN(len(live))]
		}
		var rh session.Handle
		if len(revoked) > 0 {
			rh = revoked[r.IntN(len(revoked))]
		}
		mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		switch {
		case kind == 0 && h != (session.Handle{}):
			_, err := m.Load(cctx, h, false)
			mu.Lock()
			isUnsure := removed[h.ID()]
			mu.Unlock()
			outcome(err == nil || (isUnsure && errors.Is(err, session.ErrNotFound)), errOrNil(err, isUnsure))
		case kind == 1:
			nh, err := m.Create(cctx, userSession("new", ""))
			outcome(err == nil, err)
			if err == nil {
				mu.Lock()
				live = append(live, nh)
				mu.Unlock()
			}
		case kind == 2 && nLive > 10:
			mu.Lock()
			i := r.IntN(len(live))
			h = live[i]
			live = append(live[:i], live[i+1:]...)
			removed[h.ID()] = true
			mu.Unlock()
			err := m.Delete(cctx, h.ID())
			mu.Lock()
			if err == nil {
				revoked = append(revoked, h)
			} else {
				live = append(live, h)
			}
			mu.Unlock()
			outcome(err == nil, err)
		case kind == 3 && rh != (session.Handle{}):
			_, err := m.Load(cctx, rh, false)
			if err == nil {
				mu.Lock()
				c.lostRevocations++
				mu.Unlock()
			}
			outcome(errors.Is(err, session.ErrNotFound), notFoundIsOK(err))
		default:
			jti := fmt.Sprintf("jti-%d", r.Uint64())
			first, err := m.Once(cctx, jti, time.Minute)
			if err == nil && first {
				mu.Lock()
				jtis = append(jtis, jti)
				mu.Unlock()
			}
			outcome(err == nil && first, err)
		}
	}

	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; i < 100000; i++ { // bounded: the loop ends by count or by stopLoad
				select {
				case <-stopLoad:
					return
				default:
				}
				op(r)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	failover()
	t.Logf("%s: new primary in place after %s", tp.name, time.Since(start).Round(time.Millisecond))
	// Service must resume by itself: the load must see successes again.
	mu.Lock()
	okAtFailover := c.ok
	mu.Unlock()
	resumed := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		resumed = c.ok > okAtFailover+200
		mu.Unlock()
		if resumed {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stopLoad)
	wg.Wait()

	// Every acknowledged revocation holds on a fresh instance, and every
	// jti accepted once is refused now.
	fresh := session.NewManager(tp.store(t, prefix, nil), opts)
	defer fresh.Close()
	for _, h := range revoked {
		if _, err := fresh.Load(ctx, h, false); !errors.Is(err, session.ErrNotFound) {
			c.lostRevocations++
			t.Errorf("revoked session %s: Load after failover = %v, want ErrNotFound", h.ID()[:8], err)
		}
	}
	replayed := 0
	for _, j := range jtis {
		if first, err := fresh.Once(ctx, j, time.Minute); err != nil || first {
			replayed++
		}
	}
	t.Logf("%s primary loss: %s (revocations=%d jtis=%d replayed_after=%d)", tp.name, c, len(revoked), len(jtis), replayed)
	fmt.Printf("%s primary loss: %s\n", tp.name, c)
	if !resumed {
		t.Errorf("service did not resume within 20s of the failover")
	}
	if c.other != 0 || c.lostRevocations != 0 || replayed != 0 {
		t.Errorf("other=%d lost_revocations=%d replayed_jtis=%d; want all 0", c.other, c.lostRevocations, replayed)
	}
	if c.unavailable == 0 {
		t.Logf("note: no request saw the failover window (it was shorter than the load's pace)")
	}
}

// errOrNil treats ErrNotFound as success for a session whose revocation
// may or may not have been applied.
func errOrNil(err error, unsure bool) error {
	if unsure && errors.Is(err, session.ErrNotFound) {
		return nil
	}
	return err
}

func notFoundIsOK(err error) error {
	if errors.Is(err, session.ErrNotFound) {
		return nil
	}
	if err == nil {
		return errors.New("revoked session loaded")
	}
	return err
}

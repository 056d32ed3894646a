package session_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/testclock"
)

type ends struct {
	mu  sync.Mutex
	got []session.SessionEnd
	ch  chan struct{}
}

func newEnds(m *session.Manager) *ends {
	e := &ends{ch: make(chan struct{}, 100)}
	m.OnEnd(func(_ context.Context, s session.SessionEnd) {
		e.mu.Lock()
		e.got = append(e.got, s)
		e.mu.Unlock()
		e.ch <- struct{}{}
	})
	return e
}

func (e *ends) reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = nil
	for len(e.ch) > 0 {
		<-e.ch
	}
}

func (e *ends) list() []session.SessionEnd {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

// wait blocks until n ends were reported (the remote ones arrive over pub/sub).
func (e *ends) wait(t *testing.T, n int) []session.SessionEnd {
	t.Helper()
	for len(e.list()) < n {
		select {
		case <-e.ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d session ends reported: %v", len(e.list()), n, e.list())
		}
	}
	return e.list()
}

// OnEnd reports every end, with its cause, on the instance that ended the
// session and (over redis pub/sub) on another one; an update ends nothing.
func TestOnEndFiresLocallyAndRemotely(t *testing.T) {
	srv := redisserver.Start(t)
	prefix := randomPrefix(t)
	clk := &testclock.Clock{}
	opts := session.Options{Now: clk.Now, HealthInterval: -1, IdleTimeout: 10 * time.Minute}
	m1 := session.NewManager(newRedis(t, srv, prefix, clk.Now), opts)
	m2 := session.NewManager(newRedis(t, srv, prefix, clk.Now), opts)
	t.Cleanup(func() { _ = m1.Close(); _ = m2.Close() })
	e1, e2 := newEnds(m1), newEnds(m2)
	ctx := context.Background()
	create := func(sub, sid string) session.Handle {
		t.Helper()
		h, err := m1.Create(ctx, &session.Session{Subject: sub, IdPSessionID: sid, AccessToken: secret.New("at")})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	// The second instance's subscription is up once it reports a probe end.
	for probe := true; probe; {
		p := create("probe", "")
		if err := m1.End(ctx, p.ID(), session.EndDeleted); err != nil {
			t.Fatal(err)
		}
		select {
		case <-e2.ch:
			probe = false
		case <-time.After(200 * time.Millisecond):
		}
	}
	for len(e2.ch) > 0 {
		<-e2.ch
	}
	e1.reset()
	e2.reset()
	// An update (token refresh) ends nothing.
	u := create("carol", "sid-u")
	s, err := m1.Load(ctx, u, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.Update(ctx, u, s); err != nil {
		t.Fatal(err)
	}

	a := create("alice", "sid-a")
	b1, b2 := create("bob", "sid-b1"), create("bob", "sid-b2")
	c := create("dave", "sid-c")
	x := create("erin", "sid-x")
	if err := m1.End(ctx, a.ID(), session.EndLogout); err != nil {
		t.Fatal(err)
	}
	if _, err := m1.EndBySubject(ctx, "bob", session.EndRevoked); err != nil {
		t.Fatal(err)
	}
	if ids, err := m1.EndByIdPSession(ctx, "sid-c", session.EndBackchannel); err != nil || !slices.Equal(ids, []string{c.ID()}) {
		t.Fatalf("EndByIdPSession = %v, %v", ids, err)
	}
	clk.Advance(11 * time.Minute)
	if _, err := m1.Load(ctx, x, false); err == nil {
		t.Fatal("expired session loaded")
	}
	want := map[string]session.EndCause{a.ID(): session.EndLogout, b1.ID(): session.EndRevoked, b2.ID(): session.EndRevoked,
		c.ID(): session.EndBackchannel, x.ID(): session.EndExpired}
	for name, e := range map[string]*ends{"local": e1, "remote": e2} {
		got := e.wait(t, len(want))
		if len(got) != len(want) {
			t.Fatalf("%s: %d ends reported, want %d: %v", name, len(got), len(want), got)
		}
		for _, g := range got {
			if want[g.ID] != g.Cause || g.Remote != (name == "remote") {
				t.Errorf("%s: reported %+v, want cause %q remote=%v", name, g, want[g.ID], name == "remote")
			}
		}
	}
}

package oidc_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
	"github.com/gatehouse-dev/gatehouse/internal/oidc"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// The stale-cache refresh race: instance two still caches the session with
// the refresh token instance one has already used and rotated (its
// invalidation has not arrived; over a memory store it never does). Under the
// refresh lock instance two must read the store, see the new tokens and not
// refresh again: a second refresh would present a rotated refresh token,
// get invalid_grant and wrongly end the session.
func TestRefreshUnderLockIgnoresAnotherInstancesStaleCache(t *testing.T) {
	e := newEnv(t, envOpts{accessTTL: 5 * time.Minute, cacheTTL: time.Hour})
	b := e.browser()
	e.login(b, "alice", "wonderland")
	h, s := e.session(b)

	mgr2 := session.NewManager(e.store, session.Options{Now: e.clock.Now, CacheTTL: time.Hour, HealthInterval: -1})
	t.Cleanup(func() { _ = mgr2.Close() })
	h2, err := oidc.New(context.Background(), oidc.Options{
		Issuer: e.op.Issuer(), ClientID: clientID, ClientSecret: e.secret, PublicURL: e.gw.URL,
		CookieName: cookieName, CookieKeys: secret.RandomKeyRing(), Sessions: mgr2, Clock: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := mgr2.Load(ctx, h, false); err != nil { // instance two caches the original
		t.Fatal(err)
	}
	e.clock.Advance(4*time.Minute + 30*time.Second)

	tok1, err := e.h.Tokens().AccessToken(ctx, h, s)
	if err != nil {
		t.Fatal(err)
	}
	if tok1.Equal(s.AccessToken) {
		t.Fatal("instance one did not refresh")
	}
	stale, err := mgr2.Load(ctx, h, false)
	if err != nil {
		t.Fatal(err)
	}
	if !stale.RefreshToken.Equal(s.RefreshToken) {
		t.Fatal("precondition: instance two's cache should still hold the old refresh token")
	}
	tok2, err := h2.Tokens().AccessToken(ctx, h, stale)
	if err != nil {
		t.Fatalf("instance two: %v (the session was ended by a second refresh)", err)
	}
	if !tok2.Equal(tok1) {
		t.Fatal("instance two did not use instance one's refreshed token")
	}
	if n := e.op.Count(idp.GrantRefreshToken); n != 1 {
		t.Fatalf("refreshes at the OP: %d, want exactly 1", n)
	}
	if _, err := e.mgr.Load(ctx, h, false); err != nil {
		t.Fatalf("session after both instances used it: %v", err)
	}
}

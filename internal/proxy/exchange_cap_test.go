package proxy

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// rotatingTokens returns the session's access token as set by the test.
type rotatingTokens struct{ cur atomic.Pointer[string] }

func (r *rotatingTokens) AccessToken(context.Context, *Identity) (secret.Secret, error) {
	return secret.New(*r.cur.Load()), nil
}

// Issue 10 item 11: an exchanged token is cached no longer than the subject
// token's lifetime, and re-checked against the session's current token on
// each use.
func TestExchangedTokenCacheCappedAndRecheckedAgainstSession(t *testing.T) {
	tokens := &rotatingTokens{}
	tokens.cur.Store(ptr("subject-1"))
	var id *Identity
	h := newHarness(t, func(h *harness, specs []RouteSpec, o *Options) []RouteSpec {
		o.UserTokens = tokens
		o.ExchangeSkew = 10 * time.Second
		// The exchanged token lives 5m; the subject only 2m.
		id = h.auth.sessions[aliceCookie]
		id.Session = &session.Session{ID: id.SessionID, AccessToken: secret.New("subject-1"), AccessTokenExpiry: h.clock.Now().Add(2 * time.Minute)}
		return specs
	})
	call := func() {
		t.Helper()
		res, body := h.do(h.req("GET", "/api/billing/plan", nil))
		if res.StatusCode != http.StatusOK {
			t.Fatalf("billing: %d %s", res.StatusCode, body)
		}
	}
	call()
	call()
	if n := h.xchg.calls.Load(); n != 1 {
		t.Fatalf("exchanges = %d, want 1 (cached)", n)
	}
	// Past the subject token's expiry (less skew) the cached token is not
	// used, although the exchanged token itself would still be valid.
	h.clock.Advance(2*time.Minute - 5*time.Second)
	call()
	if n := h.xchg.calls.Load(); n != 2 {
		t.Fatalf("exchanges = %d, want 2: the cache outlived the subject token", n)
	}
	// The session's token changes (refresh): the next use re-exchanges.
	id.Session.AccessTokenExpiry = h.clock.Now().Add(10 * time.Minute)
	call()
	if n := h.xchg.calls.Load(); n != 3 {
		t.Fatalf("exchanges = %d, want 3 (entry cached under the old expiry)", n)
	}
	call()
	if n := h.xchg.calls.Load(); n != 3 {
		t.Fatalf("exchanges = %d, want 3 (cached)", n)
	}
	tokens.cur.Store(ptr("subject-2"))
	call()
	if n := h.xchg.calls.Load(); n != 4 {
		t.Fatalf("exchanges = %d, want 4: a token exchanged from a replaced subject was reused", n)
	}
	hits := h.ups["billing"].Hits()
	if got := hits[len(hits)-1].Header.Get("Authorization"); got != "Bearer xchg-4-billing-api-for-subject-2" {
		t.Fatalf("upstream got %q", got)
	}
}

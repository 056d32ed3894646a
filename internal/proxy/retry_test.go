package proxy

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// refreshingTokens hands out "old" until RefreshRejected replaces it.
type refreshingTokens struct {
	refreshed atomic.Bool
	refreshes atomic.Int64
}

func (r *refreshingTokens) AccessToken(context.Context, *Identity) (secret.Secret, error) {
	if r.refreshed.Load() {
		return secret.New("new-token"), nil
	}
	return secret.New("old-token"), nil
}

func (r *refreshingTokens) RefreshRejected(_ context.Context, _ *Identity, rejected secret.Secret) (secret.Secret, error) {
	r.refreshes.Add(1)
	r.refreshed.Store(true)
	return secret.New("new-token"), nil
}

// An upstream 401 is retried once with a refreshed token when the body can
// be replayed; a body over the replay limit is never sent twice, and the
// client gets 401 (never 502).
func TestUpstream401RetryOnlyWithReplayableBody(t *testing.T) {
	tokens := &refreshingTokens{}
	h := newHarness(t, func(h *harness, specs []RouteSpec, o *Options) []RouteSpec {
		o.UserTokens = tokens
		return specs
	})
	h.ups["stream"].handle(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer new-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	})
	// A body over the replay limit (the route allows 1 KiB; widen it here).
	big := bytes.Repeat([]byte("x"), maxReplayBody+1)
	h2 := newHarness(t, func(h *harness, specs []RouteSpec, o *Options) []RouteSpec {
		o.UserTokens = &refreshingTokens{}
		for i := range specs {
			if specs[i].Name == "stream" {
				specs[i].MaxBodyBytes = 1 << 20
			}
		}
		return specs
	})
	h2.ups["stream"].handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	res, body := h2.do(h2.req("POST", "/api/stream/up", bytes.NewReader(big)))
	wantError(t, res, body, http.StatusUnauthorized, "upstream_unauthorized")
	if n := len(h2.ups["stream"].Hits()); n != 1 {
		t.Fatalf("a %d-byte body was sent %d times; want once (no replay)", len(big), n)
	}

	// No body: retried once with the new token.
	res, body = h.do(h.req("GET", "/api/stream/x", nil))
	if res.StatusCode != 200 {
		t.Fatalf("GET after refresh: %d %s", res.StatusCode, body)
	}
	if n := len(h.ups["stream"].Hits()); n != 2 || tokens.refreshes.Load() != 1 {
		t.Fatalf("hits %d, refreshes %d; want 2 and 1", n, tokens.refreshes.Load())
	}
	// A small body: replayed byte for byte.
	tokens.refreshed.Store(false)
	h.ups["stream"].reset()
	res, body = h.do(h.req("POST", "/api/stream/y", strings.NewReader(`{"a":1}`)))
	hits := h.ups["stream"].Hits()
	if res.StatusCode != 200 || len(hits) != 2 || hits[0].Body != `{"a":1}` || hits[1].Body != `{"a":1}` {
		t.Fatalf("POST: %d %s; hits %d", res.StatusCode, body, len(hits))
	}
}

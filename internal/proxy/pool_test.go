package proxy

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestUpstreamConnectionsArePooled sends waves of concurrent requests and
// counts the upstream connections they used: a route keeps enough idle
// keep-alive connections for its concurrency, so after the first wave no new
// connection is opened (Go's default of 2 idle per host would open n-2 new
// ones per wave), and routes[].max_idle_conns bounds what is kept.
func TestUpstreamConnectionsArePooled(t *testing.T) {
	const n, waves = 16, 4
	for _, tc := range []struct {
		name     string
		maxIdle  int
		wantSame bool
	}{
		{"default", 0, true},
		{"max_idle_conns 4", 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(_ *harness, specs []RouteSpec, _ *Options) []RouteSpec {
				for i := range specs {
					if specs[i].Name == "public" {
						specs[i].MaxIdleConns = tc.maxIdle
					}
				}
				return specs
			})
			var mu sync.Mutex
			conns := map[string]bool{}
			arrived, release := 0, make(chan struct{})
			h.ups["public"].handle(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				conns[r.RemoteAddr] = true
				arrived++
				if arrived == n {
					close(release)
				}
				ch := release
				mu.Unlock()
				// Hold every request until the wave's n are in flight, so the
				// wave needs n upstream connections at once.
				select {
				case <-ch:
				case <-time.After(10 * time.Second):
				}
				w.Write([]byte(`{}`))
			})
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
			defer client.CloseIdleConnections()
			for wave := range waves {
				mu.Lock()
				arrived, release = 0, make(chan struct{})
				mu.Unlock()
				var wg sync.WaitGroup
				for range n {
					wg.Go(func() {
						req := h.req("GET", "/api/public/x", nil)
						res, err := client.Do(req)
						if err != nil {
							t.Error(err)
							return
						}
						res.Body.Close()
						if res.StatusCode != http.StatusOK {
							t.Errorf("wave %d: status %d", wave, res.StatusCode)
						}
					})
				}
				wg.Wait()
			}
			mu.Lock()
			got := len(conns)
			mu.Unlock()
			if tc.wantSame && got != n {
				t.Fatalf("%d requests in %d waves of %d used %d upstream connections, want %d (reused)", n*waves, waves, n, got, n)
			}
			if !tc.wantSame && got <= n {
				t.Fatalf("with max_idle_conns %d, %d waves of %d used only %d upstream connections: the limit is not applied", tc.maxIdle, waves, n, got)
			}
		})
	}
}

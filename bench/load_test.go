// The go test benchmarks here are the in-process form of the load benchmark: the full gateway (session
// from a real OP login, CSRF, route, CEL policy, user-token credential, header
// hygiene, hash-chained audit) against a bare httputil.ReverseProxy, both over
// loopback TCP to the same upstream. Results go in docs/performance.md.
//
//	go test -run '^$' -bench . -benchmem ./bench/
package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/idp"
)

func upstream(b *testing.B) *httptest.Server {
	body := []byte(`{"id":"me","name":"Alice"}`)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Cleanup(s.Close)
	return s
}

func client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: &http.Transport{MaxIdleConnsPerHost: 64},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func hammer(b *testing.B, c *http.Client, u string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", u, nil)
			req.Header.Set("X-CSRF", "1")
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkBareReverseProxy is the baseline: httputil.ReverseProxy, no checks.
func BenchmarkBareReverseProxy(b *testing.B) {
	up := upstream(b)
	u, _ := url.Parse(up.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }}
	front := httptest.NewServer(rp)
	b.Cleanup(front.Close)
	hammer(b, client(), front.URL+"/me")
}

// BenchmarkGatewayUserTokenRoute is the full pipeline on a signed-in session.
func BenchmarkGatewayUserTokenRoute(b *testing.B) {
	for _, store := range []string{"memory", "bolt"} {
		b.Run(store, func(b *testing.B) { benchGateway(b, store) })
	}
}

func benchGateway(b *testing.B, store string) {
	up := upstream(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	p := idp.MustStart(b, idp.Options{Clients: []idp.Client{{ID: "bench", Secret: "bench-client-secret-0123",
		RedirectURIs: []string{base + "/bff/callback"}}}, Logger: slog.New(slog.DiscardHandler)})
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("bench-client-secret-0123"), 0o600); err != nil {
		b.Fatal(err)
	}
	yaml := `public_url: "` + base + `"
identity:
  issuer: "` + p.Issuer() + `"
  client_id: bench
  client_secret: ${file:secret}
session:
  store: ` + store + `
  bolt: { path: sessions.db }
audit:
  sink: file
  path: audit.jsonl
telemetry:
  log_level: error
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + up.URL + `/"
    credential: user_token
    allow: 'user.email_verified == true && request.method == "GET"'
# One session drives the whole load: its budget is raised so the limit
# stage is measured, not hit.
rate_limits:
  default: { requests: 1000000, per: 1s }
  concurrent_per_caller: 100000
`
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	adm, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	g, err := gateway.New(ctx, cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), PublicListener: ln, AdminListener: adm})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for i := 0; ; i++ {
		if resp, err := http.Get("http://" + adm.Addr().String() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 200 {
			b.Fatal("gateway not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := client()
	// Readiness no longer waits for the IdP's discovery document: a sign-in
	// right after start may get 503 until it has been fetched.
	var cb string
	for i := 0; ; i++ {
		if cb, err = p.Login(ctx, c, base+"/bff/login?returnUrl=/", "alice", "wonderland"); err == nil {
			break
		}
		if i > 100 {
			b.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := c.Get(cb)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	hammer(b, c, base+"/api/profile/me")
}

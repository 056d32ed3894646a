package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

type instantSeams struct{ id Identity }

func (s *instantSeams) Authenticate(context.Context, *http.Request) (*Identity, error) {
	return &s.id, nil
}
func (s *instantSeams) AccessToken(context.Context, *Identity) (secret.Secret, error) {
	return secret.New("token"), nil
}
func (s *instantSeams) Reserve(context.Context, *AuditEvent) (Reservation, error) { return s, nil }
func (s *instantSeams) Record(context.Context, *AuditEvent) error                 { return nil }
func (s *instantSeams) Commit(context.Context, *AuditEvent)                       {}

// BenchmarkProxyPipeline compares the full pipeline (seams answering
// instantly) with a bare httputil.ReverseProxy against the same upstream.
func BenchmarkProxyPipeline(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	}))
	defer up.Close()
	upURL := mustURL(up.URL + "/")

	bare := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(upURL)
		pr.SetXForwarded()
	}}
	seams := &instantSeams{id: Identity{SessionID: "s", Subject: "alice"}}
	p, err := New([]RouteSpec{{
		Name: "profile", Path: "/api/profile/", Upstream: upURL, Methods: []string{"GET"},
		Credential: Credential{Kind: CredentialUserToken}, Authorizer: AllowAll{},
	}}, Options{PublicURL: mustURL(publicURL), Authenticator: seams, UserTokens: seams, Auditor: seams})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()

	run := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest("GET", "http://app.example.com/api/profile/me?x=1", nil)
			r.Header.Set("X-CSRF", "1")
			r.Header.Set("Cookie", "gh=abc")
			r.Header.Set("Accept", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, bare) })
	b.Run("gatehouse", func(b *testing.B) { run(b, p) })
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

func BenchmarkCleanPath(b *testing.B) {
	for _, p := range []string{"/api/profile/me", "/api/profile/./a/../me%20x"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = CleanPath(p)
			}
		})
	}
}

// BenchmarkFoldCheck is the route-confusion check: free for plain paths,
// one NFKC pass and fold for the rest.
func BenchmarkFoldCheck(b *testing.B) {
	f := newFoldIndex()
	rt := &route{name: "echo", path: "/api/echo/", prefix: true}
	if err := f.add(rt); err != nil {
		b.Fatal(err)
	}
	for _, p := range []string{"/api/echo/hello/world", "/api/echo/Hello/World"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if f.confused(p, rt) {
					b.Fatal("confused")
				}
			}
		})
	}
}

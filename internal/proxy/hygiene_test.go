package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

func TestScrubDropsEverySpellingOfForbiddenHeaders(t *testing.T) {
	long := "X_Forwarded_" + strings.Repeat("Padding_", 10)
	h := http.Header{
		"X-Forwarded-User":                {"a"},
		"X_forwarded_user":                {"a"},
		"X_FORWARDED_EMAIL":               {"a"},
		"x-auth-request-user":             {"a"},
		"X_Real_Ip":                       {"a"},
		"X-Amzn-Oidc-Data":                {"a"},
		"X_Amzn_Oidc_Identity":            {"a"},
		"X-Goog-Authenticated-User-Email": {"a"},
		"X-Ms-Client-Principal-Name":      {"a"},
		"X-Consumer-Username":             {"a"},
		"X-Remote-Groups":                 {"a"},
		"Remote-Email":                    {"a"},
		"X_Authenticated_Userid":          {"a"},
		"X-Userinfo":                      {"a"},
		long:                              {"a"},
		"X_Api_Key":                       {"a"},
		"Authorization":                   {"a"},
		"Cookie":                          {"a"},
		"Accept":                          {"json"},
		"X-Request-Id":                    {"keep"},
		"X_Custom":                        {"dropped: _ spelling"},
		"X-Custom":                        {"keep"},
	}
	scrubRequestHeaders(h, map[string]struct{}{"x-api-key": {}}, scrubOpts{})
	if len(h) != 3 || h.Get("Accept") != "json" || h.Get("X-Request-Id") != "keep" || h.Get("X-Custom") != "keep" {
		t.Fatalf("after scrub: %v", h)
	}
}

// FuzzScrubRequestHeaders checks that no header whose normalised name is on
// the drop list survives, whatever its spelling or length, and that nothing
// else is dropped.
func FuzzScrubRequestHeaders(f *testing.F) {
	for _, s := range []string{"X-Forwarded-User", "x_forwarded_for", "AUTHORIZATION", "X-Api-Key", "X_API_KEY", "Accept",
		"X-Auth-Request-" + strings.Repeat("x", 70), "Forwarded", "cookie"} {
		f.Add(s)
	}
	creds := map[string]struct{}{"x-api-key": {}}
	f.Fuzz(func(t *testing.T, name string) {
		h := http.Header{name: {"v"}}
		scrubRequestHeaders(h, creds, scrubOpts{})
		n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		_, cred := creds[n]
		_, mo := methodOverrides[n]
		_, tr := traceHeaders[n]
		shouldDrop := isDropped(n) || cred || mo || tr || strings.Contains(name, "_")
		if _, kept := h[name]; kept == shouldDrop {
			t.Fatalf("header %q (normalised %q): kept=%v, should drop=%v", name, n, kept, shouldDrop)
		}
	})
}

func TestExchangeWithoutExpiryIsNotCached(t *testing.T) {
	h := newHarness(t)
	h.xchg.ttl = -time.Hour // already expired: never cached
	for range 3 {
		res, _ := h.do(h.req("GET", "/api/billing/x", nil))
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
	}
	if c := h.xchg.calls.Load(); c != 3 {
		t.Fatalf("exchanges = %d, want 3 (nothing cacheable)", c)
	}
}

// A caller that gives up waiting does not cancel the exchange its
// concurrent peers share.
func TestExchangeCallerCancellationDoesNotFailPeers(t *testing.T) {
	now := time.Now
	xc := newExchangeCache(30*time.Second, now)
	release := make(chan struct{})
	p := &Proxy{opts: Options{
		UserTokens: &testUserTokens{},
		Exchanger: exchangerFunc(func(ctx context.Context) (secret.Secret, time.Time, error) {
			<-release
			return secret.New("t"), now().Add(time.Hour), ctx.Err()
		}),
	}}
	rt := &route{name: "r", cred: Credential{Kind: CredentialTokenExchange, Audience: "a"}}
	id := &Identity{SessionID: "s", Subject: "u"}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := xc.get(ctx, p, rt, id); first <- err }()
	second := make(chan error, 1)
	go func() { _, err := xc.get(context.Background(), p, rt, id); second <- err }()
	cancel()
	if err := <-first; err == nil {
		t.Fatal("cancelled caller got a token")
	}
	close(release)
	if err := <-second; err != nil {
		t.Fatalf("peer failed: %v", err)
	}
}

type exchangerFunc func(ctx context.Context) (secret.Secret, time.Time, error)

func (f exchangerFunc) Exchange(ctx context.Context, _ secret.Secret, _, _, _ string) (secret.Secret, time.Time, error) {
	return f(ctx)
}

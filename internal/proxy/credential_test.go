package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// hostileHeaders are what a malicious page or client adds to try to smuggle
// identity, credentials or forwarding claims past the gateway.
var hostileHeaders = []string{
	"Authorization: Bearer attacker-token",
	"authorization: Basic YXR0YWNrZXI6cHc=",
	"Proxy-Authorization: Basic eA==",
	"X-Forwarded-User: root",
	"X_Forwarded_User: root",
	"x-forwarded_email: root@example.com",
	"X-FORWARDED-ACCESS-TOKEN: stolen",
	"X_Forwarded_Access_Token: stolen",
	"X-Forwarded-For: 6.6.6.6",
	"X_Forwarded_For: 6.6.6.6",
	"X-Forwarded-Host: evil.example",
	"X-Forwarded-Proto: https",
	"Forwarded: for=6.6.6.6;host=evil.example",
	"X-Real-IP: 6.6.6.6",
	"X_Real_Ip: 6.6.6.6",
	"X-Original-URL: /admin",
	"X-Rewrite-URL: /admin",
	"X-Auth-Request-User: root",
	"X_Auth_Request_Email: root@example.com",
	"X-Auth-Request-Access-Token: stolen",
	"X-Http-Method-Override: DELETE",
	"X-Api-Key: attacker-key",
	"X_Api_Key: attacker-key",
	"x-api-key: attacker-key-2",
	"Cookie: other=1",
	"Connection: X-Api-Key, Authorization, keep-alive",
	"Keep-Alive: timeout=5",
}

// forbiddenUpstreamValues must not appear in any header an upstream receives.
var forbiddenUpstreamValues = []string{"attacker", "YXR0YWNrZXI", "root", "stolen", "6.6.6.6", "evil.example", "/admin", "DELETE", aliceCookie, "other=1"}

func TestUpstreamReceivesOnlyTheRouteCredential(t *testing.T) {
	tests := []struct {
		route, path string
		wantHeader  string // header carrying the credential
		wantValue   string
	}{
		{"profile", "/api/profile/me", "Authorization", "Bearer user-at-alice"},
		{"billing", "/api/billing/plan", "Authorization", "Bearer xchg-1-billing-api-for-user-at-alice"},
		{"catalog", "/api/catalog/items", "Authorization", "Bearer gatehouse-cc-token"},
		{"weather", "/api/weather/today", "X-Api-Key", "weather-key-1"},
		{"public", "/api/public/x", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			h := newHarness(t)
			status, body := h.raw(tt.path, hostileHeaders...)
			if status != http.StatusOK {
				t.Fatalf("status = %d (%s)", status, body)
			}
			hits := h.ups[tt.route].Hits()
			if len(hits) != 1 || h.totalHits() != 1 {
				t.Fatalf("hits on %s = %d, total %d", tt.route, len(hits), h.totalHits())
			}
			got := hits[0].Header
			for k, vs := range got {
				n := normHeader(k)
				if k != "Authorization" && k != "X-Api-Key" && (n == "authorization" || n == "x-api-key") {
					t.Errorf("credential-like header %q reached the upstream", k)
				}
				if strings.HasPrefix(n, "x-auth-request") || n == "x-real-ip" || n == "forwarded" || n == "cookie" ||
					n == "x-original-url" || n == "x-rewrite-url" || n == "x-http-method-override" || n == "proxy-authorization" ||
					n == "keep-alive" || n == "x-forwarded-user" || n == "x-forwarded-email" || n == "x-forwarded-access-token" {
					t.Errorf("header %q reached the upstream", k)
				}
				for _, v := range vs {
					for _, bad := range forbiddenUpstreamValues {
						if strings.Contains(v, bad) {
							t.Errorf("upstream header %s: %q contains client value %q", k, v, bad)
						}
					}
				}
			}
			if tt.wantHeader == "" {
				if len(got["Authorization"]) > 0 || len(got["X-Api-Key"]) > 0 {
					t.Fatalf("credential none: upstream received %v / %v", got["Authorization"], got["X-Api-Key"])
				}
			} else {
				if vs := got[tt.wantHeader]; len(vs) != 1 || vs[0] != tt.wantValue {
					t.Fatalf("%s = %q, want exactly [%q]", tt.wantHeader, vs, tt.wantValue)
				}
				other := "X-Api-Key"
				if tt.wantHeader == "X-Api-Key" {
					other = "Authorization"
				}
				if len(got[other]) > 0 {
					t.Fatalf("upstream also received %s", other)
				}
			}
			if xff := got.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "127.0.0.1" {
				t.Fatalf("X-Forwarded-For = %q, want the connection's address only", xff)
			}
			if v := got.Get("X-Forwarded-Host"); v != "app.example.com" {
				t.Fatalf("X-Forwarded-Host = %q", v)
			}
			if v := got.Get("X-Forwarded-Proto"); v != "http" {
				t.Fatalf("X-Forwarded-Proto = %q", v)
			}
		})
	}
}

// Repeated client Authorization headers or a mixed-case copy of the route's
// credential header cannot add a second value upstream.
func TestDuplicateCredentialHeadersCollapseToTheRouteOne(t *testing.T) {
	h := newHarness(t)
	status, _ := h.raw("/api/weather/x", "X-Api-Key: a", "X-API-KEY: b", "x-api-key: c", "X_API_KEY: d", "Authorization: Bearer e", "Authorization: Bearer f")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	got := h.ups["weather"].Hits()[0].Header
	if vs := got["X-Api-Key"]; len(vs) != 1 || vs[0] != "weather-key-1" {
		t.Fatalf("X-Api-Key = %q", vs)
	}
	for k := range got {
		if normHeader(k) == "x-api-key" && k != "X-Api-Key" || k == "Authorization" {
			t.Fatalf("%s reached the upstream", k)
		}
	}
}

func TestForwardedHeadersTrustedOnlyFromTrustedProxies(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			h := newHarness(t, func(h *harness, s []RouteSpec, o *Options) []RouteSpec {
				if trusted {
					o.TrustedProxies = []netipPrefix{mustPrefix("127.0.0.0/8")}
				}
				return s
			})
			status, _ := h.raw("/api/public/x", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Host: app.example.com", "X-Forwarded-Proto: https")
			if status != 200 {
				t.Fatalf("status %d", status)
			}
			got := h.ups["public"].Hits()[0].Header
			wantXFF, wantProto := "127.0.0.1", "http"
			if trusted {
				wantXFF, wantProto = "203.0.113.7, 127.0.0.1", "https"
			}
			if v := got.Values("X-Forwarded-For"); len(v) != 1 || v[0] != wantXFF {
				t.Fatalf("X-Forwarded-For = %q, want %q", v, wantXFF)
			}
			if v := got.Get("X-Forwarded-Proto"); v != wantProto {
				t.Fatalf("X-Forwarded-Proto = %q, want %q", v, wantProto)
			}
			_, _, rec := h.audit.last()
			_ = rec
			res, _, _ := h.audit.last()
			wantIP := "127.0.0.1"
			if trusted {
				wantIP = "203.0.113.7"
			}
			if res[0].ClientIP.String() != wantIP {
				t.Fatalf("audited client IP %s, want %s", res[0].ClientIP, wantIP)
			}
		})
	}
}

func TestUpstreamSetCookieDroppedUnlessAllowed(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow=%v", allow), func(t *testing.T) {
			h := newHarness(t, func(h *harness, s []RouteSpec, o *Options) []RouteSpec {
				for i := range s {
					if s[i].Name == "public" {
						s[i].AllowSetCookie = allow
					}
				}
				return s
			})
			h.ups["public"].handle(func(w http.ResponseWriter, r *http.Request) {
				http.SetCookie(w, &http.Cookie{Name: "up", Value: "1"})
				w.Write([]byte("ok"))
			})
			res, _ := h.do(h.req("GET", "/api/public/x", nil))
			if got := len(res.Header["Set-Cookie"]) > 0; got != allow {
				t.Fatalf("Set-Cookie passed = %v, want %v", got, allow)
			}
		})
	}
}

// An upstream challenge never reaches the browser as one: it would prompt
// for a password, or make the SPA believe its own session ended.
func TestUpstreamChallengeBecomesGatehouseError(t *testing.T) {
	h := newHarness(t)
	h.ups["public"].handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	res, body := h.do(h.req("GET", "/api/public/x", nil))
	wantError(t, res, body, http.StatusBadGateway, "upstream_unauthorized")
	if res.Header.Get("WWW-Authenticate") != "" {
		t.Fatal("challenge passed through")
	}
	h.ups["public"].handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
		w.WriteHeader(http.StatusForbidden)
	})
	res, body = h.do(h.req("GET", "/api/public/x", nil))
	wantError(t, res, body, http.StatusForbidden, "upstream_forbidden")
	h.ups["public"].handle(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"app":"no"}`))
	})
	res, body = h.do(h.req("GET", "/api/public/x", nil))
	if res.StatusCode != 403 || body != `{"app":"no"}` {
		t.Fatalf("plain upstream 403 should pass through: %d %s", res.StatusCode, body)
	}
}

// An upstream refusing the user's own token (user_token, token_exchange)
// answers 401, so a Duende-style SPA signs in again instead of seeing a 502;
// the challenge itself still never reaches the browser.
func TestUpstreamRefusingUserTokenAnswers401(t *testing.T) {
	h := newHarness(t)
	for _, name := range []string{"profile", "billing"} {
		h.ups[name].handle(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
		})
		res, body := h.do(h.req("GET", "/api/"+name+"/x", nil))
		wantError(t, res, body, http.StatusUnauthorized, "upstream_unauthorized")
		if res.Header.Get("WWW-Authenticate") != "" {
			t.Fatalf("%s: challenge passed through", name)
		}
	}
}

// Headers smuggled as chunked-request trailers arrive after the checks: they
// are not forwarded at all.
func TestRequestTrailersAreNotForwarded(t *testing.T) {
	h := newHarness(t)
	status, body := h.rawRequest("POST /api/public/x HTTP/1.1\r\nHost: app.example.com\r\nX-CSRF: 1\r\n" +
		"Transfer-Encoding: chunked\r\nTrailer: X-Forwarded-User, Authorization\r\nConnection: close\r\n\r\n" +
		"3\r\nabc\r\n0\r\nX-Forwarded-User: root\r\nAuthorization: Bearer attacker\r\n\r\n")
	if status != 200 {
		t.Fatalf("status %d %s", status, body)
	}
	hits := h.ups["public"].Hits()
	if len(hits) != 1 || hits[0].Body != "abc" {
		t.Fatalf("hits %+v", hits)
	}
	if len(hits[0].Trailer) != 0 || hits[0].Header.Get("Trailer") != "" {
		t.Fatalf("trailers reached the upstream: %v / %q", hits[0].Trailer, hits[0].Header.Get("Trailer"))
	}
}

// A client (or even a trusted proxy) choosing the Host header or
// X-Forwarded-Host cannot make an upstream believe it is served from another
// host: upstreams build absolute links and redirects from X-Forwarded-Host.
func TestHostHeaderInjectionCannotSetForwardedHost(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			h := newHarness(t, func(h *harness, s []RouteSpec, o *Options) []RouteSpec {
				if trusted {
					o.TrustedProxies = []netipPrefix{mustPrefix("127.0.0.0/8")}
				}
				return s
			})
			status, body := h.rawRequest("GET /api/public/x HTTP/1.1\r\nHost: evil.example\r\nX-CSRF: 1\r\n" +
				"X-Forwarded-Host: evil2.example\r\nX_Forwarded_Host: evil3.example\r\nConnection: close\r\n\r\n")
			if status != 200 {
				t.Fatalf("status %d %s", status, body)
			}
			got := h.ups["public"].Hits()[0].Header
			if v := got.Values("X-Forwarded-Host"); len(v) != 1 || v[0] != "app.example.com" {
				t.Fatalf("X-Forwarded-Host = %q, want public_url's host only", v)
			}
			for k, vs := range got {
				for _, v := range vs {
					if strings.Contains(v, "evil") {
						t.Fatalf("upstream header %s: %q carries the client's host", k, v)
					}
				}
			}
		})
	}
}

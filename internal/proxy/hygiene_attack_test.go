package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// Item 9: identity, mTLS and method-override headers a client writes never
// reach an upstream, in any spelling.
func TestIdentityAndMTLSHeadersNeverReachUpstreams(t *testing.T) {
	h := newHarness(t)
	forged := []string{
		"X-User-Id", "X_User_Id", "x-user-id", "X-Userid", "X-User-Name", "X-User-Email", "X-User-Roles", "X-Roles", "X_Roles",
		"X-Groups", "X-Role", "X-Ssl-Client-Cert", "X-Ssl-Client-Verify", "X-Ssl-Client-S-Dn", "X_SSL_CLIENT_CERT", "Ssl-Client-Cert",
		"X-Ssl-Cert", "Cf-Access-Jwt-Assertion", "Cf-Access-Authenticated-User-Email", "CF_ACCESS_CLIENT_ID", "X-Client-Cert",
		"X-Client-Cert-Chain", "X-Client-Verify", "X-Client-Dn", "X-Forwarded-Client-Cert", "X-Arr-Clientcert", "X-Amzn-Mtls-Clientcert",
		"X-Tls-Client-Cert", "X-Mtls-Client-Cert", "X-Username", "X-Permissions", "X-Identity", "X-Principal-Name", "X-Group-Ids", "X-Jwt-Assertion", "X-Pomerium-Jwt-Assertion", "X-Authentik-Username",
		"X-Http-Method-Override", "X-HTTP-Method-Override", "X_Http_Method_Override", "X-Method-Override", "X-Http-Method",
		"Traceparent", "Tracestate", "Baggage",
	}
	r := h.req("GET", "/api/profile/me", nil)
	for _, k := range forged {
		r.Header[k] = []string{"forged"}
	}
	r.Header["X-Tenant"] = []string{"mine"}
	if res, body := h.do(r); res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	got := h.ups["profile"].Hits()[0].Header
	for k, vs := range got {
		if slices.Contains(vs, "forged") {
			t.Errorf("upstream received %s: %v", k, vs)
		}
	}
	if got.Get("X-Tenant") != "mine" {
		t.Errorf("an ordinary header was dropped: %v", got)
	}
}

// Item 9: a _method query parameter (which frameworks read as the method)
// is refused, never forwarded, on routes that did not opt in.
func TestMethodOverrideQueryIsRefused(t *testing.T) {
	h := newHarness(t)
	for _, q := range []string{"_method=DELETE", "_METHOD=delete", "%5Fmethod=DELETE", "_m%65thod=PUT", "a=1&_method=DELETE",
		"a=1;_method=DELETE", "x-http-method-override=DELETE", "X_HTTP_METHOD_OVERRIDE=DELETE", "x-method-override=PATCH", "_method"} {
		res, body := h.do(h.req("POST", "/api/profile/me?"+q, strings.NewReader("{}")))
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", q, res.StatusCode, body)
		}
	}
	h.wantNothingForwarded()
	if res, body := h.do(h.req("GET", "/api/profile/me?method=x&my_method=y", nil)); res.StatusCode != 200 {
		t.Fatalf("ordinary query refused: %d %s", res.StatusCode, body)
	}
}

// Item 9: a route that opts in forwards overrides, but only to a method it
// allows: the override never widens the route's method list.
func TestMethodOverrideOptInStaysWithinTheRouteMethods(t *testing.T) {
	h := newHarness(t, func(h *harness, specs []RouteSpec, _ *Options) []RouteSpec {
		for i := range specs {
			if specs[i].Name == "profile" { // GET, POST
				specs[i].AllowMethodOverride = true
			}
		}
		return specs
	})
	r := h.req("POST", "/api/profile/me", strings.NewReader("{}"))
	r.Header.Set("X-HTTP-Method-Override", "GET")
	if res, body := h.do(r); res.StatusCode != 200 || h.ups["profile"].Hits()[0].Header.Get("X-Http-Method-Override") != "GET" {
		t.Fatalf("opted-in override not forwarded: %d %s", res.StatusCode, body)
	}
	h.resetHits()
	for _, set := range []func(*http.Request){
		func(r *http.Request) { r.Header.Set("X-HTTP-Method-Override", "DELETE") },
		func(r *http.Request) { r.Header.Set("X-Method-Override", "put") },
		func(r *http.Request) { r.Header["X-Http-Method"] = []string{"GET", "DELETE"} },
		func(r *http.Request) { r.URL.RawQuery = "_method=DELETE" },
		func(r *http.Request) { r.URL.RawQuery = "_method=%44ELETE" },
	} {
		r := h.req("POST", "/api/profile/me", strings.NewReader("{}"))
		set(r)
		res, body := h.do(r)
		wantError(t, res, body, http.StatusMethodNotAllowed, "method_not_allowed")
	}
	h.wantNothingForwarded()
}

// Item 12: trace context and baggage from an untrusted client never reach
// an upstream; a trusted proxy's do.
func TestClientTraceContextReachesUpstreamsOnlyFromTrustedProxies(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	send := func(h *harness) http.Header {
		r := h.req("GET", "/api/profile/me", nil)
		r.Header.Set("Traceparent", tp)
		r.Header.Set("Tracestate", "evil=1")
		r.Header.Set("Baggage", "user=admin")
		r.Header["TraceParent"] = []string{tp}
		if res, body := h.do(r); res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, body)
		}
		return h.ups["profile"].Hits()[0].Header
	}
	got := send(newHarness(t))
	for _, k := range []string{"Traceparent", "Tracestate", "Baggage", "TraceParent"} {
		if len(got[k]) > 0 {
			t.Errorf("untrusted client's %s reached the upstream: %v", k, got[k])
		}
	}
	got = send(newHarness(t, func(_ *harness, specs []RouteSpec, o *Options) []RouteSpec {
		o.TrustedProxies = []netipPrefix{mustPrefix("127.0.0.0/8")}
		return specs
	}))
	if got.Get("Traceparent") != tp || got.Get("Baggage") != "user=admin" {
		t.Errorf("trusted proxy's trace context dropped: %v", got)
	}
}

// Item 7: an authenticated answer is never stored by a shared cache.
func TestAuthenticatedAnswersAreNotCacheable(t *testing.T) {
	h := newHarness(t, func(h *harness, specs []RouteSpec, _ *Options) []RouteSpec {
		for i := range specs {
			if specs[i].Name == "billing" {
				specs[i].AllowCaching = true
			}
		}
		return specs
	})
	for _, u := range []string{"profile", "billing", "public"} {
		h.ups[u].handle(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=600, s-maxage=3600")
			w.Header().Set("CDN-Cache-Control", "max-age=3600")
			w.Header().Set("Surrogate-Control", "max-age=3600")
			w.Header().Set("Vary", "Accept-Encoding")
			w.Header().Set("Expires", "Thu, 01 Dec 2099 16:00:00 GMT")
			w.Write([]byte(`{}`))
		})
	}
	res, _ := h.do(h.req("GET", "/api/profile/me", nil))
	if cc := res.Header.Values("Cache-Control"); !slices.Equal(cc, []string{"no-store"}) {
		t.Errorf("authenticated answer Cache-Control = %v, want no-store", cc)
	}
	wantVaryCookie(t, res.Header)
	for _, k := range []string{"Cdn-Cache-Control", "Surrogate-Control", "Expires"} {
		if v := res.Header.Get(k); v != "" {
			t.Errorf("%s passed: %q", k, v)
		}
	}

	res, _ = h.do(h.req("GET", "/api/billing/x", nil))
	cc := res.Header.Get("Cache-Control")
	if !strings.HasPrefix(cc, "private") || strings.Contains(cc, "public") || strings.Contains(cc, "s-maxage") || !strings.Contains(cc, "max-age=600") {
		t.Errorf("opted-in route Cache-Control = %q, want private, max-age=600", cc)
	}
	wantVaryCookie(t, res.Header)

	// An anonymous route's answer is the same for everyone: left alone.
	res, _ = h.do(h.req("GET", "/api/public/x", nil))
	if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "public") {
		t.Errorf("anonymous route Cache-Control = %q, want the upstream's", cc)
	}

	// Opted in, no directive at all: private, not heuristically shared.
	h.ups["billing"].handle(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) })
	res, _ = h.do(h.req("GET", "/api/billing/x", nil))
	if cc := res.Header.Get("Cache-Control"); cc != "private" {
		t.Errorf("opted-in route without directives: %q, want private", cc)
	}
}

func wantVaryCookie(t *testing.T, h http.Header) {
	t.Helper()
	for _, v := range h.Values("Vary") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "cookie") {
				return
			}
		}
	}
	t.Errorf("Vary = %v, want Cookie", h.Values("Vary"))
}

// Item 8: credentials and Clear-Site-Data from an upstream never reach the
// browser, and an allow_set_cookie upstream cannot set Gatehouse's cookies.
func TestResponseHygieneKeepsGatehouseCredentialsAndCookies(t *testing.T) {
	h := newHarness(t, func(h *harness, specs []RouteSpec, o *Options) []RouteSpec {
		o.ProtectedCookies = []string{"__Host-gh", "__Host-gh-login"}
		for i := range specs {
			if specs[i].Name == "weather" {
				specs[i].AllowSetCookie = true
			}
		}
		return specs
	})
	evil := []string{"__Host-gh=fixed; Path=/; Secure", "__host-gh=fixed", "__HOST-GH=fixed", "__Secure-gh=fixed", "gh=fixed",
		"GH=fixed", " gh =fixed", "=__Host-gh=fixed", "__Host-gh", "__Host-gh-login=x", "gh-login=x", "__Secure-__Host-gh=x",
		"__Host-Http-gh=x", "__Http-gh-login=x"}
	h.ups["weather"].handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Authorization", "Bearer upstream-secret")
		w.Header().Set("Proxy-Authorization", "Basic x")
		w.Header().Set("X-Api-Key", r.Header.Get("X-Api-Key"))
		w.Header()["X_Api_Key"] = []string{r.Header.Get("X-Api-Key")}
		w.Header()["x-api-key"] = []string{r.Header.Get("X-Api-Key")}
		w.Header().Set("Clear-Site-Data", `"*"`)
		w.Header()["Clear_Site_Data"] = []string{`"cookies"`}
		for _, c := range evil {
			w.Header().Add("Set-Cookie", c)
		}
		w.Header().Add("Set-Cookie", "pref=dark; Path=/")
		w.Header().Add("Set-Cookie", "ghost=1; Path=/")
		w.Write([]byte(`{}`))
	})
	res, body := h.do(h.req("GET", "/api/weather/today", nil))
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	for k, vs := range res.Header {
		n := normHeader(k)
		if n == "authorization" || n == "proxy-authorization" || n == "x-api-key" || n == "clear-site-data" {
			t.Errorf("browser received %s: %v", k, vs)
		}
		for _, v := range vs {
			if strings.Contains(v, "weather-key-1") || strings.Contains(v, "upstream-secret") {
				t.Errorf("browser received a credential in %s", k)
			}
		}
	}
	if sc := res.Header.Values("Set-Cookie"); !slices.Equal(sc, []string{"pref=dark; Path=/", "ghost=1; Path=/"}) {
		t.Errorf("Set-Cookie passed = %q, want only the upstream's own cookies", sc)
	}
}

func FuzzSetsProtectedCookie(f *testing.F) {
	for _, s := range []string{"__Host-gh=x", "=gh=x", "gh", " __SECURE-gh =1; Path=/", "pref=1", "__Host-=x"} {
		f.Add(s)
	}
	prot := []string{"gh", "gh-login"}
	f.Fuzz(func(t *testing.T, v string) {
		got := setsProtectedCookie(v, prot)
		// What a browser would store and send back as the cookie's name.
		c, err := http.ParseSetCookie(v)
		if err == nil && !got && strings.EqualFold(cookieBase(c.Name), "gh") {
			t.Fatalf("%q sets %q but passed", v, c.Name)
		}
	})
}

// FuzzMethodOverrideQuery checks that no spelling of a method-override
// parameter that a standard query parser would decode escapes the scan.
func FuzzMethodOverrideQuery(f *testing.F) {
	for _, s := range []string{"_method=DELETE", "a=1;%5Fmethod=PUT", "X_HTTP_METHOD_OVERRIDE=x", "_m%65thod", "q=%zz", "a=b&c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		found := false
		methodOverrideQuery(raw, func(string) bool { found = true; return false })
		vs, err := url.ParseQuery(strings.ReplaceAll(raw, ";", "&"))
		if err != nil || found {
			return
		}
		for k := range vs {
			n := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(k)), "_", "-")
			if _, mo := methodOverrides[n]; mo || n == "-method" {
				t.Fatalf("query %q: parameter %q not seen as a method override", raw, k)
			}
		}
	})
}

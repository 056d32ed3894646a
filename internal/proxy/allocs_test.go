package proxy

import (
	"net/http"
	"net/url"
	"testing"
)

// The checks every request passes must not allocate (they run on every API
// call; allocations there are GC pressure paid by all). These count
// allocations, they do not time anything.

func TestCSRFCheckDoesNotAllocate(t *testing.T) {
	pu, _ := url.Parse("https://app.example.com")
	c, err := newCSRFCheck(pu, CSRFOptions{AllowedOrigins: []string{"https://admin.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		h         http.Header
		websocket bool
		wantCode  string
	}{
		{"same-origin XHR", http.Header{"X-Csrf": {"1"}, "Origin": {"https://app.example.com"}, "Sec-Fetch-Site": {"same-origin"}}, false, ""},
		{"no Origin", http.Header{"X-Csrf": {"1"}}, false, ""},
		{"WebSocket", http.Header{"Origin": {"https://admin.example.com"}}, true, ""},
		{"header missing", http.Header{"Origin": {"https://app.example.com"}}, false, "csrf_header_missing"},
		{"header wrong", http.Header{"X-Csrf": {"2"}}, false, "csrf_header_invalid"},
		{"cross-site", http.Header{"X-Csrf": {"1"}, "Sec-Fetch-Site": {"cross-site"}}, false, "csrf_cross_site"},
		{"foreign Origin", http.Header{"X-Csrf": {"1"}, "Origin": {"https://evil.example"}}, false, "csrf_origin_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _ := c.check(tc.h, tc.websocket); code != tc.wantCode {
				t.Fatalf("code %q, want %q", code, tc.wantCode)
			}
			if n := testing.AllocsPerRun(100, func() { c.check(tc.h, tc.websocket) }); n != 0 {
				t.Fatalf("CSRF check allocates %.0f times per request", n)
			}
		})
	}
}

func TestHeaderHygieneDoesNotAllocate(t *testing.T) {
	credNames := map[string]struct{}{"x-api-key": {}}
	template := http.Header{
		"Accept": {"application/json"}, "Accept-Encoding": {"gzip"}, "Accept-Language": {"en"},
		"User-Agent": {"Mozilla/5.0"}, "Cookie": {"__Host-gatehouse=abc"}, "X-Csrf": {"1"},
		"Authorization": {"Bearer stolen"}, "X-Forwarded-For": {"1.2.3.4"}, "X_forwarded_user": {"root"},
		"X-Api-Key": {"guess"}, "Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		"X-Http-Method-Override": {"DELETE"}, "Content-Type": {"application/json"},
		"A-Long-Header-Name-Of-The-Kind-Some-Frameworks-Send-X-Custom-Correlation-Context-Value-Extended": {"v"},
	}
	h := http.Header{}
	refill := func() {
		for k, v := range template {
			h[k] = v
		}
	}
	refill()
	scrubRequestHeaders(h, credNames, scrubOpts{})
	for _, gone := range []string{"Cookie", "Authorization", "X-Forwarded-For", "X_forwarded_user", "X-Api-Key", "Traceparent", "X-Http-Method-Override"} {
		if _, ok := h[gone]; ok {
			t.Fatalf("%s was not removed", gone)
		}
	}
	if h.Get("Accept") == "" || h.Get("X-Csrf") == "" {
		t.Fatalf("ordinary headers removed: %v", h)
	}
	// Refilling the map reuses its buckets, so what is counted is the scrub.
	if n := testing.AllocsPerRun(100, func() { refill(); scrubRequestHeaders(h, credNames, scrubOpts{}) }); n != 0 {
		t.Fatalf("request header hygiene allocates %.0f times per request", n)
	}

	rt := &route{name: "profile"}
	resp := http.Header{}
	respTemplate := http.Header{"Content-Type": {"application/json"}, "Content-Length": {"26"}, "Date": {"x"},
		"Set-Cookie": {"a=b"}, "Www-Authenticate": {"Basic"}, "Clear-Site-Data": {"\"*\""}, "Vary": {"Accept-Encoding"}}
	refillResp := func() {
		for k, v := range respTemplate {
			resp[k] = v
		}
	}
	refillResp()
	scrubResponseHeaders(resp, rt)
	if _, ok := resp["Set-Cookie"]; ok || resp.Get("Www-Authenticate") != "" || resp.Get("Cache-Control") != "no-store" {
		t.Fatalf("response hygiene not applied: %v", resp)
	}
	resp = http.Header{}
	for k := range respTemplate {
		if k != "Vary" {
			resp[k] = nil
		}
	}
	refillResp = func() {
		for k, v := range respTemplate {
			if k != "Vary" {
				resp[k] = v
			}
		}
		delete(resp, "Vary")
	}
	if n := testing.AllocsPerRun(100, func() { refillResp(); scrubResponseHeaders(resp, rt) }); n != 0 {
		t.Fatalf("response header hygiene allocates %.0f times per response", n)
	}
}

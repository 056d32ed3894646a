package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// Issue 10 item 8 through the real gateway: an allow_set_cookie upstream
// cannot set Gatehouse's own session or login-state cookie, in any
// spelling, and its Authorization and Clear-Site-Data never reach the
// browser.
func TestUpstreamCannotSetGatehouseCookies(t *testing.T) {
	var names []string
	up := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		for _, n := range names {
			w.Header().Add("Set-Cookie", n+"=fixated; Path=/")
		}
		w.Header().Add("Set-Cookie", "theme=dark; Path=/")
		w.Header().Set("Authorization", "Bearer upstream-secret")
		w.Header().Set("Clear-Site-Data", `"cookies"`)
		w.Write([]byte(`{}`))
	})
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: prefs
    path: /api/prefs/
    upstream: "` + up.URL + `/"
    credential: none
    anonymous: true
    allow_set_cookie: true
`})
	base := strings.TrimPrefix(strings.TrimPrefix(e.Cfg.EffectiveCookieName(), "__Host-"), "__Secure-")
	for _, b := range []string{base, base + "-login"} {
		names = append(names, b, strings.ToUpper(b), "__Host-"+b, "__host-"+b, "__Secure-"+b, " "+b, "="+b)
	}
	res := e.raw("GET", "/api/prefs/x", "X-CSRF: 1")
	if res.Status != 200 {
		t.Fatalf("%d %s", res.Status, res.Body)
	}
	if sc := res.Header.Values("Set-Cookie"); len(sc) != 1 || sc[0] != "theme=dark; Path=/" {
		t.Errorf("Set-Cookie reaching the browser: %q", sc)
	}
	if res.Header.Get("Authorization") != "" || res.Header.Get("Clear-Site-Data") != "" {
		t.Errorf("upstream Authorization/Clear-Site-Data passed: %v", res.Header)
	}
}

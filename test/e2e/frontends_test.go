package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

// Three frontends in one process — web on 127.0.0.1, partners on
// localhost (same port), shop under 127.0.0.1/shop — each its own client
// at the real OP, sharing one real Redis store, web and partners with the
// very same cookie name. A session works on its own frontend only: at
// another it is 401 even when the cookie is copied across by hand, and the
// routes of one frontend are 404 at the others; nothing reaches another
// frontend's upstream.
func TestFrontendsAreIsolated(t *testing.T) {
	srv := redisserver.Start(t)
	ln, port := feListen(t)
	web := feSite{"web", "http://127.0.0.1:" + port}
	partners := feSite{"partners", "http://localhost:" + port}
	shop := feSite{"shop", "http://127.0.0.1:" + port + "/shop"}
	p := feIdP(t, web, partners, shop)
	upWeb, upPartners, upShop := newRecorder(t, nil), newRecorder(t, nil), newRecorder(t, nil)

	cfg := fmt.Sprintf(`session:
  store: redis
  redis: { url: "%s" }
audit: { sink: file, path: audit.jsonl, fsync_interval: 50ms }
admin: { token: "${file:admin-token}" }
telemetry: { log_level: debug }
frontends:
  - client: web
    public_url: "%s"
%s    session: { cookie_name: __Host-gatehouse }
    routes:
      - { name: web-api, path: /api/web/, upstream: "%s", credential: user_token }
  - client: partners
    public_url: "%s"
%s    session: { cookie_name: __Host-gatehouse }
    routes:
      - { name: partner-api, path: /api/partners/, upstream: "%s", credential: user_token }
  - client: shop
    public_url: "%s"
%s    session: { cookie_name: __Secure-shop }
    routes:
      - { name: cart, path: /api/cart/, upstream: "%s", credential: user_token }
`, srv.URL(), web.Base, feIdentity(web), upWeb.URL, partners.Base, feIdentity(partners), upPartners.URL,
		shop.Base, feIdentity(shop), upShop.URL)
	dir := t.TempDir()
	sessWriteFile(t, dir, "admin-token", "e2e-admin-token-0123456789")
	e := startGW(t, gwOptions{Header: cfg, IdP: p, Listener: ln, Dir: dir})

	alice := feLogin(t, e, web, "alice", "wonderland")
	bob := feLogin(t, e, partners, "bob", "builder")
	carol := feLogin(t, e, shop, "alice", "wonderland")

	// Each works on its own frontend.
	for _, c := range []struct {
		b    *http.Client
		url  string
		up   *recorder
		path string
	}{
		{alice, web.Base + "/api/web/me", upWeb, "/me"},
		{bob, partners.Base + "/api/partners/orders", upPartners, "/orders"},
		{carol, shop.Base + "/api/cart/items", upShop, "/items"},
	} {
		if code, body := feCall(t, c.b, "GET", c.url, ""); code != 200 {
			t.Fatalf("%s: %d %s", c.url, code, body)
		}
		if got := c.up.last(t).Path; got != c.path {
			t.Errorf("%s reached its upstream as %s, want %s", c.url, got, c.path)
		}
	}
	if code, _ := feCall(t, alice, "GET", web.Base+"/bff/user", ""); code != 200 {
		t.Fatalf("web /bff/user: %d", code)
	}
	if code, body := feCall(t, carol, "GET", shop.Base+"/bff/user", ""); code != 200 || !strings.Contains(body, `"bff:logout_url","value":"/shop/bff/logout?sid=`) {
		t.Fatalf("shop /bff/user: %d %s", code, body)
	}
	// The path-bound frontend's cookie lives under its prefix.
	for _, c := range carol.Jar.Cookies(mustParse(t, web.Base+"/")) {
		if c.Name == "shop" {
			t.Errorf("the shop cookie is sent outside /shop")
		}
	}
	upWeb.reset()
	upPartners.reset()
	upShop.reset()

	// Identical cookie names on the two hosts: copy each cookie to the other.
	webCookie := feCookie(t, alice, web.Base+"/", "gatehouse")
	partnersCookie := feCookie(t, bob, partners.Base+"/", "gatehouse")
	shopCookie := feCookie(t, carol, shop.Base+"/", "shop")
	if webCookie == partnersCookie {
		t.Fatal("two sessions share a handle")
	}
	attacks := []struct{ url, cookie string }{
		{partners.Base + "/bff/user", "gatehouse=" + webCookie},
		{partners.Base + "/api/partners/orders", "gatehouse=" + webCookie},
		{web.Base + "/bff/user", "gatehouse=" + partnersCookie},
		{web.Base + "/api/web/me", "gatehouse=" + partnersCookie},
		{shop.Base + "/bff/user", "shop=" + webCookie},
		{shop.Base + "/api/cart/items", "shop=" + partnersCookie},
		{web.Base + "/api/web/me", "gatehouse=" + shopCookie},
		{partners.Base + "/api/partners/orders", "gatehouse=" + shopCookie},
	}
	for _, a := range attacks {
		if code, body := feCall(t, nil, "GET", a.url, a.cookie); code != http.StatusUnauthorized {
			t.Errorf("%s with another frontend's session: %d %s, want 401", a.url, code, body)
		}
	}
	// One frontend's routes do not exist at the others, even with a valid
	// session there.
	for _, c := range []struct {
		b   *http.Client
		url string
	}{
		{bob, partners.Base + "/api/web/me"},
		{alice, web.Base + "/api/partners/orders"},
		{alice, web.Base + "/api/cart/items"},
		{carol, shop.Base + "/api/web/me"},
		{bob, partners.Base + "/shop/api/cart/items"},
	} {
		if code, body := feCall(t, c.b, "GET", c.url, ""); code != http.StatusNotFound {
			t.Errorf("%s: %d %s, want 404", c.url, code, body)
		}
	}
	// A Host no frontend is bound to reaches nothing.
	if r := e.raw("GET", "/api/web/me", "Host: evil.example:"+port, "Cookie: gatehouse="+webCookie, "X-CSRF: 1"); r.Status != http.StatusNotFound {
		t.Errorf("unbound Host: %d, want 404", r.Status)
	}
	if n := upWeb.count() + upPartners.count() + upShop.count(); n != 0 {
		t.Fatalf("%d requests reached an upstream across frontends", n)
	}
	// The original sessions are unharmed by the attempts.
	if code, _ := feCall(t, alice, "GET", web.Base+"/api/web/me", ""); code != 200 {
		t.Errorf("web session after the attacks: %d", code)
	}
	if code, _ := feCall(t, bob, "GET", partners.Base+"/api/partners/orders", ""); code != 200 {
		t.Errorf("partners session after the attacks: %d", code)
	}

	// The admin API lists per frontend, and audit records name the frontend.
	adm := &http.Client{}
	list := func(q string) []map[string]any {
		code, body := e.sessAdmin(adm, "GET", "/admin/sessions?sub=user-alice"+q, "e2e-admin-token-0123456789")
		if code != 200 {
			t.Fatalf("admin list%s: %d %s", q, code, body)
		}
		var out struct{ Sessions []map[string]any }
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		return out.Sessions
	}
	if all, webOnly, partnersOnly := list(""), list("&client=web"), list("&client=partners"); len(all) != 2 || len(webOnly) != 1 || webOnly[0]["client"] != "web" || len(partnersOnly) != 0 {
		t.Errorf("admin list: all=%v web=%v partners=%v", all, webOnly, partnersOnly)
	}
	if code, _ := e.sessAdmin(adm, "POST", "/admin/sessions/revoke?sub=user-alice&client=shop", "e2e-admin-token-0123456789"); code != 200 {
		t.Fatalf("admin revoke for shop: %d", code)
	}
	if code, _ := feCall(t, carol, "GET", shop.Base+"/api/cart/items", ""); code != http.StatusUnauthorized {
		t.Errorf("shop session after revoking shop's: %d, want 401", code)
	}
	if code, _ := feCall(t, alice, "GET", web.Base+"/api/web/me", ""); code != 200 {
		t.Errorf("web session after revoking shop's: %d, want 200", code)
	}
	var sawPartners bool
	for _, l := range e.auditLines() {
		if strings.Contains(l, `"event":"access"`) && strings.Contains(l, `"client":"partners"`) && strings.Contains(l, `"route":"partner-api"`) {
			sawPartners = true
		}
	}
	if !sawPartners {
		t.Error("no access record names the partners frontend")
	}
	metrics := get(t, e.Admin+"/metrics")
	for _, m := range []string{`gatehouse_requests_total{client="partners",code="200",outcome="allow",route="partner-api"}`,
		`gatehouse_requests_total{client="shop",code="200",outcome="allow",route="cart"}`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

package e2e

// Helpers for tests of several frontends in one process: frontends on
// 127.0.0.1:<port> and localhost:<port> (two hosts on one listener) and a
// path-bound one under 127.0.0.1:<port>/shop, each its own client at the
// real OP.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
)

// feSite is one frontend as a browser reaches it.
type feSite struct {
	Client string
	Base   string // public_url
}

// feClients registers one OP client per site (client id = site's client).
func feIdP(t *testing.T, sites ...feSite) *idp.Provider {
	t.Helper()
	var cs []idp.Client
	for _, s := range sites {
		cs = append(cs, idp.Client{ID: "e2e-" + s.Client, Secret: gwClientSecret,
			RedirectURIs: []string{s.Base + "/bff/callback"}, PostLogoutRedirectURIs: []string{s.Base + "/"}})
	}
	return idp.MustStart(t, idp.Options{Clients: cs})
}

// feIdentity is a frontends[] entry's identity block for site.
func feIdentity(s feSite) string {
	return fmt.Sprintf(`    identity:
      issuer: "{{.Issuer}}"
      client_id: e2e-%s
      client_secret: ${file:client-secret}
`, s.Client)
}

// feListen binds the test's public listener and returns its port.
func feListen(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return ln, port
}

// feLogin signs user in at site through its /bff/login.
func feLogin(t *testing.T, e *gwEnv, site feSite, user, pass string) *http.Client {
	t.Helper()
	b := newHTTPBrowser(t)
	ret := strings.TrimPrefix(site.Base, "http://")
	ret = ret[strings.IndexByte(ret+"/", '/'):] + "/"
	cb, err := e.IdP.Login(context.Background(), b, site.Base+"/bff/login?returnUrl="+ret, user, pass)
	if err != nil {
		t.Fatalf("login at %s: %v\nlogs:\n%s", site.Client, err, sessTail(e.Logs.String(), 4000))
	}
	resp, err := b.Get(cb)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback at %s: %d %s\nlogs:\n%s", site.Client, resp.StatusCode, body, sessTail(e.Logs.String(), 4000))
	}
	return b
}

// feCall calls url the way the SPA does (X-CSRF, Origin of the url), with
// the browser's cookies, or with only cookie when cookie is set (an
// attacker replaying a cookie by hand). It returns the status and body.
func feCall(t *testing.T, b *http.Client, method, url, cookie string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-CSRF", "1")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
		b = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// feCookie returns the value of the cookie named name the browser holds
// for url.
func feCookie(t *testing.T, b *http.Client, url, name string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for _, c := range b.Jar.Cookies(req.URL) {
		if c.Name == name {
			return c.Value
		}
	}
	t.Fatalf("no %s cookie for %s", name, url)
	return ""
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

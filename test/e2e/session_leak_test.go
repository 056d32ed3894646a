package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The grep test: a whole session life through the gateway (login, /bff/user,
// API calls with user_token, token_exchange and client_credentials, a token
// refresh, anonymous and forged-cookie errors, the admin API, a back-channel
// logout, an RP-initiated logout followed to the OP and back) while every
// response the test's clients receive is recorded. Afterwards none of the
// OP's token values (every access, refresh and ID token its token endpoint
// issued, and every token an upstream received), nor the client secret, nor
// the admin token, appears in any recorded response header or body, in any
// Gatehouse log line, or in the audit file.
//
// The one allowed exception (design: Decisions): the ID token as
// id_token_hint in the Location of /bff/logout's redirect to the OP's
// end_session_endpoint. Exactly that query parameter of exactly that header
// is removed before scanning, after checking it is an issued ID token.
func TestSessionNoTokenInAnyResponseLogOrAuditLine(t *testing.T) {
	const adminToken = "admin-token-e2e-leakcheck-0123456789"
	issued := &sessTokens{}
	wire := &sessWire{}
	ln, base := sessListen(t)
	p := sessRecordingIdP(t, 5*time.Minute, issued, base)
	ups := map[string]*recorder{"profile": newRecorder(t, nil), "billing": newRecorder(t, nil), "catalog": newRecorder(t, nil)}
	dir := t.TempDir()
	sessWriteFile(t, dir, "admin-token", adminToken)
	e := startGW(t, gwOptions{IdP: p, Listener: ln, Dir: dir, Config: `
admin:
  token: ${file:admin-token}
routes:
  - name: profile
    path: /api/profile/
    upstream: "` + ups["profile"].URL + `/"
    credential: user_token
  - name: billing
    path: /api/billing/
    upstream: "` + ups["billing"].URL + `/"
    credential:
      token_exchange:
        audience: billing-api
  - name: catalog
    path: /api/catalog/
    upstream: "` + ups["catalog"].URL + `/"
    anonymous: true
    credential: client_credentials
`})
	get := func(b *http.Client, target string) (int, http.Header) {
		t.Helper()
		req, err := http.NewRequest("GET", target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-CSRF", "1")
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	want := func(b *http.Client, path string, code int) {
		t.Helper()
		if got, _ := get(b, e.URL+path); got != code {
			t.Fatalf("GET %s: %d, want %d\nlogs:\n%s", path, got, code, sessTail(e.Logs.String(), 4000))
		}
	}

	alice := sessRecBrowser(t, wire)
	e.loginWith(alice, "alice", "wonderland")
	want(alice, "/bff/user", 200)
	for _, path := range []string{"/api/profile/me", "/api/billing/invoices", "/api/catalog/items"} {
		want(alice, path, 200)
	}
	// Back-channel logout before the clock moves (a logout token lives 2m
	// by the OP's real clock).
	bob := sessRecBrowser(t, wire)
	e.loginWith(bob, "bob", "builder")
	want(bob, "/api/profile/me", 200)
	if _, err := p.EndSession(context.Background(), "user-bob"); err != nil {
		t.Fatalf("back-channel logout: %v", err)
	}
	want(bob, "/api/profile/me", 401)

	e.Clock.Advance(4*time.Minute + 40*time.Second) // refresh on the next user_token use
	want(alice, "/api/profile/me", 200)
	want(alice, "/api/billing/invoices", 200)
	want(alice, "/bff/user", 200)

	anon := sessRecBrowser(t, wire)
	want(anon, "/api/profile/me", 401)
	want(anon, "/bff/user", 401)
	forged := sessRecBrowser(t, wire)
	u, _ := url.Parse(e.URL)
	ck := e.sessionCookie(alice)
	last := "A"
	if strings.HasSuffix(ck, "A") { // the forgery must differ from the real cookie
		last = "B"
	}
	forged.Jar.SetCookies(u, []*http.Cookie{{Name: e.Cfg.EffectiveCookieName(), Value: ck[:len(ck)-1] + last}})
	want(forged, "/api/profile/me", 401)

	admin := &http.Client{Transport: alice.Transport}
	if code, _ := e.sessAdmin(admin, "GET", "/admin/sessions?sub=user-alice", adminToken); code != 200 {
		t.Fatalf("admin list: %d", code)
	}

	// RP-initiated logout, followed through the OP and back.
	sid := e.sessPublicID(alice)
	code, hdr := get(alice, e.URL+"/bff/logout?sid="+url.QueryEscape(sid))
	if code != http.StatusFound && code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	next := hdr.Get("Location")
	for range 5 {
		if next == "" {
			break
		}
		target, err := url.Parse(next)
		if err != nil {
			t.Fatal(err)
		}
		target = u.ResolveReference(target)
		if target.Host != u.Host && !strings.HasPrefix(target.String(), p.Issuer()) {
			break
		}
		_, h := get(alice, target.String())
		next = h.Get("Location")
	}
	want(alice, "/api/profile/me", 401)
	e.Stop() // flush the audit file and every log line

	// The needles: everything the OP issued, everything upstreams received.
	needles := map[string]string{} // value -> what it is
	for v, kind := range issued.all() {
		needles[v] = kind
	}
	for name, up := range ups {
		for _, r := range up.requests() {
			if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
				needles[tok] = "token received by upstream " + name
			}
		}
	}
	kinds := map[string]int{}
	for _, kind := range issued.all() {
		kinds[kind]++
	}
	if kinds["access_token"] < 4 || kinds["refresh_token"] < 2 || kinds["id_token"] < 2 {
		t.Fatalf("the run should have issued access (login, refresh, exchange, client credentials), refreshed and ID tokens; got %v", kinds)
	}
	needles[gwClientSecret] = "client secret"
	needles[adminToken] = "admin token"
	// A JWT's payload and signature are unique to it: a log line holding
	// only part of a token is a leak too.
	for v, what := range needles {
		if parts := strings.Split(v, "."); len(parts) == 3 {
			for _, part := range parts[1:] {
				if len(part) >= 16 {
					needles[part] = what + " (JWT segment)"
				}
			}
		}
	}

	// The haystacks.
	endSession := discoveredEndSession(t, p.Issuer())
	type hay struct{ where, text string }
	var hays []hay
	hints := 0
	for _, w := range wire.all() {
		h := w.Header.Clone()
		if strings.HasPrefix(w.URL, e.URL+"/bff/logout?") {
			if loc := h.Get("Location"); strings.HasPrefix(loc, endSession+"?") {
				lu, _ := url.Parse(loc)
				q := lu.Query()
				hint := q.Get("id_token_hint")
				if issued.all()[hint] != "id_token" || !strings.Contains(loc, hint) {
					t.Fatal("the logout redirect's id_token_hint is not an ID token the OP issued")
				}
				// Control: the scan does find a token where one is.
				if _, ok := needles[hint]; !ok {
					t.Fatal("control: the ID token in the hint is not among the needles")
				}
				q.Del("id_token_hint")
				lu.RawQuery = q.Encode()
				h.Set("Location", lu.String()) // the one documented exception, removed
				hints++
			}
		}
		var hb strings.Builder
		for k, vs := range h {
			hb.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
		}
		hays = append(hays, hay{w.Method + " " + w.URL + " response headers", hb.String()}, hay{w.Method + " " + w.URL + " response body", string(w.Body)})
	}
	if hints != 1 {
		t.Fatalf("expected exactly one logout redirect with id_token_hint, saw %d", hints)
	}
	for i, line := range strings.Split(e.Logs.String(), "\n") {
		hays = append(hays, hay{"gatehouse log line " + jsonMsg(line, i), line})
	}
	auditBytes, err := os.ReadFile(e.Audit)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(auditBytes), "\n") {
		hays = append(hays, hay{"audit line " + jsonMsg(line, i), line})
	}
	if len(wire.all()) < 20 || len(strings.Split(string(auditBytes), "\n")) < 5 {
		t.Fatalf("the run recorded too little to prove anything: %d responses, audit %d bytes", len(wire.all()), len(auditBytes))
	}

	for _, hs := range hays {
		for v, what := range needles {
			if strings.Contains(hs.text, v) {
				t.Errorf("%s found in %s", what, hs.where) // never print the value
			}
		}
	}
	t.Logf("scanned %d responses, %d log lines, %d audit lines for %d token values and segments",
		len(wire.all()), strings.Count(e.Logs.String(), "\n"), strings.Count(string(auditBytes), "\n"), len(needles))
}

// jsonMsg names a JSON log line by its msg/event field (never its content).
func jsonMsg(line string, i int) string {
	var m map[string]any
	_ = json.Unmarshal([]byte(line), &m)
	for _, k := range []string{"msg", "event"} {
		if s, ok := m[k].(string); ok {
			return "#" + strconv.Itoa(i) + " (" + s + ")"
		}
	}
	return "#" + strconv.Itoa(i)
}

// discoveredEndSession reads the OP's end_session_endpoint from discovery.
func discoveredEndSession(t *testing.T, issuer string) string {
	t.Helper()
	resp, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || d.EndSession == "" {
		t.Fatalf("OP discovery has no end_session_endpoint (%v)", err)
	}
	return d.EndSession
}

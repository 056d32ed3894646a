package e2e

import (
	"net/http"
	"testing"
)

// Issue 10 item 3, from the attacker's side: the policy checks one tenant,
// the attacker adds a second copy (repeated parameter, repeated header line,
// another spelling of the name) hoping the upstream acts on the other. The
// request is refused before anything is forwarded, or the second copy never
// reaches the upstream.
func TestPolicyReadsWhatTheUpstreamReceives(t *testing.T) {
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Config: `
session:
  store: memory
routes:
  - name: q
    path: /api/q/
    upstream: "` + up.URL + `/"
    credential: none
    anonymous: true
    allow: 'request.query.tenant == "mine"'
  - name: h
    path: /api/h/
    upstream: "` + up.URL + `/"
    credential: none
    anonymous: true
    allow: 'request.headers["x-tenant"] == "mine"'
`})
	for _, target := range []string{"/api/q/x?tenant=mine&tenant=victim", "/api/q/x?tenant=victim&tenant=mine",
		"/api/q/x?tenant=mine&TENANT=victim", "/api/q/x?tenant=mine&%74enant=victim", "/api/q/x?tenant=mine;tenant=victim"} {
		if res := e.raw("GET", target, "X-CSRF: 1"); res.Status != http.StatusForbidden && res.Status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want refused", target, res.Status, res.Body)
		}
	}
	for _, hdrs := range [][]string{
		{"X-Tenant: mine", "X-Tenant: victim"},
		{"X-Tenant: victim", "x-tenant: mine"},
		{"x-tenant: mine", "X-TENANT: victim"},
	} {
		if res := e.raw("GET", "/api/h/x", append([]string{"X-CSRF: 1"}, hdrs...)...); res.Status != http.StatusForbidden {
			t.Errorf("%v: %d %s, want 403", hdrs, res.Status, res.Body)
		}
	}
	if n := up.count(); n != 0 {
		t.Fatalf("the upstream received %d ambiguous requests (first %s?%s)", n, up.requests()[0].Path, up.requests()[0].Query)
	}

	// X_Tenant beside X-Tenant: the policy sees mine, and so does the
	// upstream; the _ spelling never arrives.
	if res := e.raw("GET", "/api/h/x", "X-CSRF: 1", "X-Tenant: mine", "X_Tenant: victim", "X_TENANT: victim"); res.Status != 200 {
		t.Fatalf("X-Tenant: mine: %d %s", res.Status, res.Body)
	}
	got := up.last(t).Header
	if vs := got.Values("X-Tenant"); len(vs) != 1 || vs[0] != "mine" {
		t.Errorf("upstream X-Tenant = %v", vs)
	}
	for k := range got {
		if k == "X_Tenant" || k == "X_TENANT" {
			t.Errorf("upstream received %s", k)
		}
	}
	// X_Tenant alone is not X-Tenant to the policy: denied, not forwarded.
	up.reset()
	if res := e.raw("GET", "/api/h/x", "X-CSRF: 1", "X_Tenant: mine"); res.Status != http.StatusForbidden || up.count() != 0 {
		t.Errorf("X_Tenant alone: %d, upstream %d", res.Status, up.count())
	}
}

package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// With several frontends, list and revoke take ?client=: only that
// frontend's sessions are listed or ended; an unknown client is a 400 that
// lists the known ones (and ends nothing).
func TestClientFilter(t *testing.T) {
	const tok = "admin-token-0123456789"
	store := session.NewMemoryStore(time.Now)
	mk := func(fe string) *session.Manager {
		m := session.NewManager(nopClose{store}, session.Options{HealthInterval: -1, Frontend: fe})
		t.Cleanup(func() { m.Close() })
		return m
	}
	web, shop := mk("web"), mk("shop")
	newSession(t, web, "alice")
	newSession(t, shop, "alice")
	mux := http.NewServeMux()
	Register(mux, Options{Token: secret.Static(tok), Sessions: web, Client: "web", Clients: []string{"web", "shop"}})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	count := func(q string) int {
		code, body := do(t, "GET", srv.URL+"/admin/sessions?sub=alice"+q, tok)
		if code != 200 {
			t.Fatalf("list%s: %d %v", q, code, body)
		}
		return len(body["sessions"].([]any))
	}
	if all, w, s := count(""), count("&client=web"), count("&client=shop"); all != 2 || w != 1 || s != 1 {
		t.Fatalf("list: all=%d web=%d shop=%d", all, w, s)
	}
	if code, body := do(t, "GET", srv.URL+"/admin/sessions?sub=alice&client=nope", tok); code != http.StatusBadRequest || body["error"] != "unknown_client" {
		t.Fatalf("unknown client: %d %v", code, body)
	}
	if code, body := do(t, "POST", srv.URL+"/admin/sessions/revoke?sub=alice&client=nope", tok); code != http.StatusBadRequest {
		t.Fatalf("revoke for an unknown client: %d %v", code, body)
	}
	if code, body := do(t, "POST", srv.URL+"/admin/sessions/revoke?sub=alice&client=shop", tok); code != 200 || body["revoked"] != 1.0 {
		t.Fatalf("revoke for shop: %d %v", code, body)
	}
	if w, s := count("&client=web"), count("&client=shop"); w != 1 || s != 0 {
		t.Fatalf("after revoking shop's: web=%d shop=%d", w, s)
	}
}

type nopClose struct{ session.Store }

func (nopClose) Close() error { return nil }

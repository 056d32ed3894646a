package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apierror"
	"github.com/gatehouse-dev/gatehouse/internal/session"
)

const testCookie = "gh"

// browserFor resolves the session cookie and demands X-CSRF: 1, as the
// gateway's browser guard does.
func browserFor(m *session.Manager) BrowserSession {
	return func(w http.ResponseWriter, r *http.Request) (session.Handle, *session.Session, bool) {
		if r.Header.Get("X-CSRF") != "1" {
			apierror.Write(w, http.StatusForbidden, "csrf_header_missing", "send X-CSRF: 1")
			return session.Handle{}, nil, false
		}
		c, err := r.Cookie(testCookie)
		if err != nil {
			apierror.Write(w, http.StatusUnauthorized, "no_session", "sign in")
			return session.Handle{}, nil, false
		}
		h, err := session.ParseHandle(c.Value)
		if err != nil {
			apierror.Write(w, http.StatusUnauthorized, "no_session", "sign in")
			return session.Handle{}, nil, false
		}
		s, err := m.Load(r.Context(), h, true)
		if err != nil {
			apierror.Write(w, http.StatusUnauthorized, "no_session", "sign in")
			return session.Handle{}, nil, false
		}
		return h, s, true
	}
}

type client struct {
	t   *testing.T
	mux *http.ServeMux
	h   session.Handle
}

func (c *client) do(method, path, body string, hdr ...string) (*httptest.ResponseRecorder, map[string]any) {
	c.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("X-CSRF", "1")
	if !c.h.IsZero() {
		req.AddCookie(&http.Cookie{Name: testCookie, Value: c.h.Cookie().Reveal()})
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	c.mux.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec, out
}

func newHTTP(t *testing.T) (*env, *http.ServeMux) {
	e := newEnv(t, storeKinds(t)[0], nil)
	mux := http.NewServeMux()
	e.broker.Register(mux, browserFor(e.sessions), allowAll)
	return e, mux
}

func TestTokenEndpoints(t *testing.T) {
	e, mux := newHTTP(t)
	h, _ := e.login(t, "alice")
	c := &client{t: t, mux: mux, h: h}

	rec, out := c.do("POST", TokensPath, `{"name":"bot","routes":["profile","admin"],"methods":["GET","POST"],"ttl":"1h"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST = %d %s", rec.Code, rec.Body)
	}
	tok, _ := out["token"].(string)
	if !strings.HasPrefix(tok, "gha_") || out["id"] == "" || out["name"] != "bot" {
		t.Fatalf("response = %v", out)
	}
	for _, k := range []string{"id", "token", "name", "routes", "methods", "expires_at"} {
		if _, ok := out[k]; !ok {
			t.Errorf("response lacks %q", k)
		}
	}
	if got, _ := json.Marshal(out["routes"]); string(got) != `["profile"]` {
		t.Errorf("routes = %s (narrowed to the delegable profile)", got)
	}
	if got, _ := json.Marshal(out["methods"]); string(got) != `["GET"]` {
		t.Errorf("methods = %s (profile serves GET only)", got)
	}
	exp, _ := time.Parse(time.RFC3339Nano, out["expires_at"].(string))
	if got := exp.Sub(e.clock.Now()); got != 15*time.Minute {
		t.Errorf("expires in %s, want max_ttl 15m", got)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Error("the token response may be cached")
	}
	if _, err := e.broker.Authenticate(context.Background(), tok); err != nil {
		t.Fatalf("issued token does not authenticate: %v", err)
	}

	rec, out = c.do("GET", TokensPath, "")
	if rec.Code != 200 || strings.Contains(rec.Body.String(), tok[4:]) || strings.Contains(rec.Body.String(), `"token"`) {
		t.Fatalf("list = %d %s", rec.Code, rec.Body)
	}
	list, _ := out["tokens"].([]any)
	if len(list) != 1 {
		t.Fatalf("list = %v", out)
	}
	id := list[0].(map[string]any)["id"].(string)

	// Another session — even the same user's — neither lists nor revokes it.
	h2, _ := e.login(t, "alice")
	other := &client{t: t, mux: mux, h: h2}
	if _, out := other.do("GET", TokensPath, ""); len(out["tokens"].([]any)) != 0 {
		t.Errorf("another session lists %v", out)
	}
	if rec, _ := other.do("DELETE", TokensPath+"/"+id, ""); rec.Code != http.StatusNotFound {
		t.Errorf("DELETE from another session = %d", rec.Code)
	}
	if rec, _ := c.do("DELETE", TokensPath+"/"+id, ""); rec.Code != http.StatusOK {
		t.Errorf("DELETE = %d %s", rec.Code, rec.Body)
	}
	if _, err := e.broker.Authenticate(context.Background(), tok); err == nil {
		t.Error("revoked token still authenticates")
	}
	if rec, _ := c.do("DELETE", TokensPath+"/"+id, ""); rec.Code != http.StatusNotFound {
		t.Errorf("second DELETE = %d", rec.Code)
	}
}

func TestTokenEndpointRefusals(t *testing.T) {
	e, mux := newHTTP(t)
	h, _ := e.login(t, "alice")
	c := &client{t: t, mux: mux, h: h}
	ok := `{"name":"bot","routes":["profile"]}`
	rec, out := c.do("POST", TokensPath, ok)
	tok := out["token"].(string)

	cases := []struct {
		name   string
		c      *client
		body   string
		hdr    []string
		status int
		code   string
	}{
		{"no session", &client{t: t, mux: mux}, ok, nil, 401, "no_session"},
		{"no CSRF header", c, ok, []string{"X-CSRF", ""}, 403, "csrf_header_missing"},
		{"agent token next to the cookie", c, ok, []string{"Authorization", "Bearer " + tok}, 403, "agent_forbidden"},
		{"agent token, other scheme spelling", c, ok, []string{"Authorization", "bearer  " + tok}, 403, "agent_forbidden"},
		{"bad json", c, `{"name":`, nil, 400, "invalid_request"},
		{"bad ttl", c, `{"name":"bot","routes":["profile"],"ttl":"forever"}`, nil, 400, "invalid_request"},
		{"nothing delegable", c, `{"name":"bot","routes":["admin"]}`, nil, 403, "nothing_delegable"},
		{"too large", c, `{"name":"` + strings.Repeat("a", 9000) + `"}`, nil, 413, "body_too_large"},
	}
	_ = rec
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, out := tc.c.do("POST", TokensPath, tc.body, tc.hdr...)
			if rec.Code != tc.status || out["error"] != tc.code {
				t.Errorf("= %d %s, want %d %s", rec.Code, rec.Body, tc.status, tc.code)
			}
		})
	}
	// An agent token alone (no cookie) can neither list nor mint.
	for _, m := range []string{"GET", "POST"} {
		a := &client{t: t, mux: mux}
		if rec, _ := a.do(m, TokensPath, ok, "Authorization", "Bearer "+tok); rec.Code != 403 {
			t.Errorf("%s with an agent token = %d", m, rec.Code)
		}
	}
	// The per-session limit (3 in this env; one issued above).
	c.do("POST", TokensPath, ok)
	c.do("POST", TokensPath, ok)
	if rec, out := c.do("POST", TokensPath, ok); rec.Code != http.StatusConflict || out["error"] != "agent_token_limit" {
		t.Errorf("over the limit = %d %s", rec.Code, rec.Body)
	}
}

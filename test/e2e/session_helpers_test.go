package e2e

// Helpers for the session end-to-end tests (session_*_test.go): an OP whose
// token-endpoint answers are recorded (every token it issued), a browser
// whose every response is recorded, and concurrency-safe request helpers.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/idp"
)

// sessTokens collects every token value the OP issued, by kind.
type sessTokens struct {
	mu   sync.Mutex
	vals map[string]string // value -> kind (access_token, refresh_token, id_token)
}

func (l *sessTokens) add(kind, v string) {
	if v == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.vals == nil {
		l.vals = map[string]string{}
	}
	l.vals[v] = kind
}

func (l *sessTokens) all() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.vals))
	for k, v := range l.vals {
		out[k] = v
	}
	return out
}

// sessRecordingIdP is startIdP, but the OP is served through a handler that
// records every token in its JSON answers (the token endpoint's responses to
// Gatehouse), so a test knows every access, refresh and ID token issued.
func sessRecordingIdP(t *testing.T, ttl time.Duration, tl *sessTokens, bases ...string) *idp.Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := idp.Client{ID: gwClientID, Secret: gwClientSecret}
	for _, b := range bases {
		c.RedirectURIs = append(c.RedirectURIs, b+"/bff/callback")
		c.PostLogoutRedirectURIs = append(c.PostLogoutRedirectURIs, b+"/")
	}
	if len(bases) > 0 {
		c.BackChannelLogoutURI = bases[0] + "/bff/backchannel"
	}
	p, err := idp.New(context.Background(), idp.Options{Issuer: "http://" + ln.Addr().String(),
		Clients: []idp.Client{c}, AccessTokenTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	next := p.Handler()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var m map[string]any
		if json.Unmarshal(rec.Body.Bytes(), &m) == nil {
			for _, k := range []string{"access_token", "refresh_token", "id_token"} {
				if s, ok := m[k].(string); ok {
					tl.add(k, s)
				}
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// sessWireEntry is one response a test client received.
type sessWireEntry struct {
	Method, URL string
	Status      int
	Header      http.Header
	Body        []byte
}

// sessWire records every response its clients receive.
type sessWire struct {
	mu      sync.Mutex
	entries []sessWireEntry
}

func (l *sessWire) all() []sessWireEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sessWireEntry(nil), l.entries...)
}

type sessRecTransport struct {
	base http.RoundTripper
	log  *sessWire
}

func (rt *sessRecTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	rt.log.mu.Lock()
	rt.log.entries = append(rt.log.entries, sessWireEntry{req.Method, req.URL.String(), resp.StatusCode, resp.Header.Clone(), body})
	rt.log.mu.Unlock()
	if rerr != nil {
		return nil, fmt.Errorf("read response body: %w", rerr)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// sessRecBrowser is newHTTPBrowser whose every response goes to l.
func sessRecBrowser(t *testing.T, l *sessWire) *http.Client {
	b := newHTTPBrowser(t)
	b.Transport = &sessRecTransport{base: http.DefaultTransport.(*http.Transport).Clone(), log: l}
	return b
}

// sessAPI is gwEnv.api against any base URL, safe to call from goroutines
// (returns errors instead of failing the test).
func sessAPI(b *http.Client, base, method, path string) (int, []byte, error) {
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-CSRF", "1")
	resp, err := b.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// sessWithCookie calls path on e with exactly the given raw session cookie value
// (no jar), the way an attacker replays or forges one.
func (e *gwEnv) sessWithCookie(value, path string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("X-CSRF", "1")
	req.AddCookie(&http.Cookie{Name: e.Cfg.EffectiveCookieName(), Value: value})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// sessAdmin calls the admin listener with the bearer token (empty: none).
func (e *gwEnv) sessAdmin(c *http.Client, method, path, token string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.Admin+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// sessPublicID is the session's public id as /bff/user reports it.
func (e *gwEnv) sessPublicID(b *http.Client) string {
	e.t.Helper()
	code, u := e.user(b)
	if code != 200 {
		e.t.Fatalf("/bff/user: %d %v", code, u)
	}
	lu, err := url.Parse(u.get("bff:logout_url"))
	sid := ""
	if err == nil {
		sid = lu.Query().Get("sid")
	}
	if sid == "" {
		e.t.Fatalf("/bff/user has no bff:logout_url with a sid: %v", u)
	}
	return sid
}

// sessWant asserts an API call's status.
func (e *gwEnv) sessWant(b *http.Client, path string, want int) []byte {
	e.t.Helper()
	code, body := e.api(b, "GET", path, nil)
	if code != want {
		e.t.Fatalf("GET %s: %d %s; want %d\nlogs:\n%s", path, code, body, want, sessTail(e.Logs.String(), 4000))
	}
	return body
}

// sessErrCode asserts a JSON error body {"error": ..., "message": ...}.
func sessErrCode(t *testing.T, body []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body is not JSON: %q", body)
	}
	code, _ := m["error"].(string)
	if code == "" {
		t.Fatalf("error body has no error code: %s", body)
	}
	return code
}

func sessTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// sessWriteFile writes a secret the config references as ${file:name}.
func sessWriteFile(t *testing.T, dir, name, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sessListen binds a loopback port for a gateway (so the IdP can register it first).
func sessListen(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String()
}

// sessPost posts a form to the gateway without cookies (the back-channel).
func (e *gwEnv) sessPost(path string, form url.Values) (int, []byte) {
	e.t.Helper()
	resp, err := http.Post(e.URL+path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

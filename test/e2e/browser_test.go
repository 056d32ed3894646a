package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// apiRoutes are the demo SPA's API buttons and what each upstream must have received.
var apiRoutes = []struct {
	name, path string
	kind       string // credential kind the upstream echoes
	looks      string // part of its reading of the credential
}{
	{"profile", "/api/profile/me", "bearer_jwt", "signed-in user's access token"},
	{"billing", "/api/billing/plan", "bearer_jwt", "billing-api"},
	{"notifications", "/api/notifications/unread", "bearer_jwt", "client credentials"},
	{"weather", "/api/weather/today", "api_key", "static API key"},
}

// secretsOf reads the secrets the demo wrote for Gatehouse; none may ever reach the browser.
func secretsOf(t *testing.T, d *runningDemo) []string {
	t.Helper()
	var out []string
	for _, p := range []string{d.APIKeyPath, filepath.Join(d.DataDir, "client-secret")} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read demo secret: %v", err)
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	return out
}

// signIn goes from the signed-out SPA through the OP's login form back to the signed-in SPA.
func signIn(t *testing.T, ctx context.Context, d *runningDemo, username string) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(d.PublicURL),
		chromedp.WaitVisible(chromedp.ID("signin")),
		chromedp.Click(chromedp.ID("signin")),
		// The development OP's login page, on the issuer's origin.
		chromedp.WaitVisible(chromedp.CSS(`button[data-user="`+username+`"]`)),
	); err != nil {
		t.Fatalf("reach the OP login form: %v", err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if !strings.HasPrefix(loc, d.IssuerURL+"/login") {
		t.Fatalf("login form at %s, want the OP at %s", loc, d.IssuerURL)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button[data-user="`+username+`"]`)),
		chromedp.WaitVisible(chromedp.ID("signed-in")),
	); err != nil {
		t.Fatalf("sign in as %s: %v", username, err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != d.PublicURL {
		t.Fatalf("after sign-in the browser is at %s, want %s", loc, d.PublicURL)
	}
}

func textOf(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("read #%s: %v", id, err)
	}
	return s
}

// TestBrowserDemoFlowKeepsTokensOnTheServer drives the demo SPA in Chromium: sign in at the
// OP, see the claims and a live countdown, call each route and see which credential its
// upstream received, read the audit tail, sign out — and checks at each step that the page
// holds no token and no readable session cookie, and that the CSRF header is enforced.
func TestBrowserDemoFlowKeepsTokensOnTheServer(t *testing.T) {
	chromium := requireBrowserPrereqs(t)
	d := startDemo(t, nil)
	ctx, rec := newBrowser(t, chromium)
	screenshotOnFailure(t, ctx)
	secrets := secretsOf(t, d)

	signIn(t, ctx, d, "alice")

	// Claims from /bff/user, and a countdown that moves.
	if claims := textOf(t, ctx, "claims"); !strings.Contains(claims, "alice@example.com") || !strings.Contains(claims, "user-alice") {
		t.Errorf("claims table lacks alice's email/sub:\n%s", claims)
	}
	first := textOf(t, ctx, "countdown")
	if !strings.Contains(first, "m ") {
		t.Errorf("countdown shows %q, want minutes and seconds", first)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById('countdown').textContent !== `+jsString(first),
		chromedp.WithPollingTimeout(3*time.Second))); err != nil {
		t.Errorf("countdown did not tick within 3s (stuck at %q): %v", first, err)
	}

	// Each route: the upstream saw exactly the credential kind the route names.
	for _, a := range apiRoutes {
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.ID("call-"+a.name)),
			chromedp.WaitVisible(chromedp.CSS(`#result-`+a.name+`[data-status] details`)),
		); err != nil {
			t.Fatalf("call %s: %v", a.name, err)
		}
		attrs, err := chromedp.Run(ctx, chromedp.Attributes(chromedp.ID("result-"+a.name)))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`#result-`+a.name+` pre`)))
		if err != nil {
			t.Fatal(err)
		}
		if attrs["data-status"] != "200" || attrs["data-kind"] != a.kind || !strings.Contains(raw, a.looks) {
			t.Errorf("%s: status %s, credential kind %q, want 200 and %q looking like %q; response:\n%s",
				a.name, attrs["data-status"], attrs["data-kind"], a.kind, a.looks, raw)
		}
		if strings.Contains(raw, `"cookie_received": true`) {
			t.Errorf("%s: the browser's cookie reached the upstream", a.name)
		}
	}
	// The dashboard composite: one request, three calls, one shaped answer.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("call-dashboard")),
		chromedp.WaitVisible(chromedp.CSS(`#result-dashboard[data-status] details`)),
	); err != nil {
		t.Fatalf("call dashboard: %v", err)
	}
	if attrs, err := chromedp.Run(ctx, chromedp.Attributes(chromedp.ID("result-dashboard"))); err != nil || attrs["data-status"] != "200" {
		t.Errorf("dashboard: %v %v", attrs, err)
	}
	if s := textOf(t, ctx, "result-dashboard"); !strings.Contains(s, "Alice") || !strings.Contains(s, "plan ") || !strings.Contains(s, "unread") {
		t.Errorf("dashboard card shows %q, want the name, plan and unread count", s)
	}
	var got map[string]any
	raw, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`#result-billing pre`)))
	if err == nil && json.Unmarshal([]byte(raw), &got) == nil {
		if c, _ := got["credential"].(map[string]any); c != nil {
			cl, _ := c["claims"].(map[string]any)
			if aud, _ := cl["aud"].([]any); len(aud) != 1 || aud[0] != "billing-api" {
				t.Errorf("billing upstream got audience %v, want [billing-api]", cl["aud"])
			}
		}
	}

	// The audit tail shows the calls just made.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`[...document.querySelectorAll('#audit tr')].some(r => r.textContent.includes('weather'))`,
		chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		t.Errorf("audit tail does not show the weather call: %v\n%s", err, textOf(t, ctx, "audit"))
	}

	// The guarantees, checked from the page.
	if err := checkCookieHttpOnly(ctx, d.URL, true); err != nil {
		t.Error(err)
	}
	if err := checkNoTokenInPage(ctx); err != nil {
		t.Error(err)
	}
	if err := checkCSRFRequired(ctx, []string{"/api/profile/me", "/api/billing/plan", "/api/notifications/unread", "/api/weather/today"}); err != nil {
		t.Error(err)
	}

	if !t.Failed() && os.Getenv("GATEHOUSE_UPDATE_SCREENSHOT") == "1" {
		saveScreenshot(t, ctx, filepath.Join("..", "..", "docs", "screenshots", "demo-signed-in.png"))
	}

	// Sign out through logout_url: back to the signed-out SPA, session gone.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("signout")),
		chromedp.WaitVisible(chromedp.ID("signin")),
	); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	if status, err := pageEval[int](ctx, `fetch('/bff/user', {headers: {'X-CSRF': '1'}}).then(r => r.status)`); err != nil || status != 401 {
		t.Errorf("after sign-out /bff/user answered %d (%v), want 401", status, err)
	}
	if err := checkCookieHttpOnly(ctx, d.URL, false); err != nil {
		t.Error(err)
	}

	// Every response the browser received in the whole flow.
	if err := rec.settle(ctx); err != nil {
		t.Error(err)
	}
	entries := rec.snapshot()
	if err := checkNoTokenExposure(entries, d.URL, endSessionEndpoint(t, d.IssuerURL), secrets); err != nil {
		t.Error(err)
	}
	sawUser := false
	for _, e := range entries {
		if strings.HasPrefix(e.URL, d.URL+"/bff/user") && e.Body != "" {
			sawUser = true
		}
	}
	if !sawUser {
		t.Error("the recorder saw no /bff/user body: the exposure check would be vacuous")
	}
}

// TestBrowserDetectorsCatchRegressions breaks each guarantee on the wire (a test-only front
// proxy between the browser and Gatehouse) and shows the detector the flow test relies on
// reports it. A detector that passed here would be blind.
func TestBrowserDetectorsCatchRegressions(t *testing.T) {
	chromium := requireBrowserPrereqs(t)

	t.Run("session cookie loses HttpOnly", func(t *testing.T) {
		d := startDemo(t, stripHttpOnly)
		ctx, _ := newBrowser(t, chromium)
		screenshotOnFailure(t, ctx)
		signIn(t, ctx, d, "bob")
		err := checkCookieHttpOnly(ctx, d.URL, true)
		if err == nil || !strings.Contains(err.Error(), "not HttpOnly") || !strings.Contains(err.Error(), "document.cookie") {
			t.Fatalf("detector missed a script-readable session cookie: %v", err)
		}
	})

	t.Run("bff user returns a token", func(t *testing.T) {
		d := startDemo(t, injectTokenIntoUser)
		ctx, rec := newBrowser(t, chromium)
		screenshotOnFailure(t, ctx)
		signIn(t, ctx, d, "bob")
		if err := checkNoTokenInPage(ctx); err == nil || !strings.Contains(err.Error(), "/bff/user returned") {
			t.Errorf("page detector missed a token in /bff/user: %v", err)
		}
		if err := rec.settle(ctx); err != nil {
			t.Fatal(err)
		}
		err := checkNoTokenExposure(rec.snapshot(), d.URL, endSessionEndpoint(t, d.IssuerURL), nil)
		if err == nil || !strings.Contains(err.Error(), "/bff/user") {
			t.Errorf("network detector missed a token in /bff/user: %v", err)
		}
	})

	t.Run("CSRF header no longer required", func(t *testing.T) {
		d := startDemo(t, addCSRFHeader)
		ctx, _ := newBrowser(t, chromium)
		screenshotOnFailure(t, ctx)
		signIn(t, ctx, d, "bob")
		err := checkCSRFRequired(ctx, []string{"/api/profile/me"})
		if err == nil || !strings.Contains(err.Error(), "without X-CSRF answered 200") {
			t.Fatalf("detector missed an API that no longer requires X-CSRF: %v", err)
		}
	})
}

// stripHttpOnly removes HttpOnly from every Set-Cookie Gatehouse sends.
func stripHttpOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&headerHook{ResponseWriter: w, hook: func(h http.Header) {
			for i, c := range h.Values("Set-Cookie") {
				var parts []string
				for _, p := range strings.Split(c, ";") {
					if !strings.EqualFold(strings.TrimSpace(p), "HttpOnly") {
						parts = append(parts, p)
					}
				}
				h["Set-Cookie"][i] = strings.Join(parts, ";")
			}
		}}, r)
	})
}

// fakeLeakedToken is JWT-shaped, as the OP's access tokens are.
const fakeLeakedToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLWJvYiJ9.c2lnbmF0dXJlLW9mLWEtbGVha2VkLXRva2Vu"

// injectTokenIntoUser adds an access_token member to /bff/user answers.
func injectTokenIntoUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/bff/user" {
			next.ServeHTTP(w, r)
			return
		}
		buf := &bufferedResponse{header: http.Header{}}
		next.ServeHTTP(buf, r)
		body := buf.body.Bytes()
		var claims []map[string]any
		if buf.code == http.StatusOK && json.Unmarshal(body, &claims) == nil {
			claims = append(claims, map[string]any{"type": "access_token", "value": fakeLeakedToken})
			body, _ = json.Marshal(claims)
		}
		for k, v := range buf.header {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(max(buf.code, 200))
		_, _ = w.Write(body)
	})
}

// addCSRFHeader adds X-CSRF: 1 to every request, as if Gatehouse stopped requiring it.
func addCSRFHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("X-CSRF", "1")
		next.ServeHTTP(w, r)
	})
}

type headerHook struct {
	http.ResponseWriter
	hook  func(http.Header)
	wrote bool
}

func (h *headerHook) WriteHeader(code int) {
	if !h.wrote {
		h.wrote = true
		h.hook(h.Header())
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h *headerHook) Write(b []byte) (int, error) {
	if !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(b)
}

type bufferedResponse struct {
	header http.Header
	body   bytes.Buffer
	code   int
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}
func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func saveScreenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	t.Logf("wrote %s", path)
}

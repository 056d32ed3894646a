package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The demo SPA mints an agent token, shows it once with a curl line that
// uses it, calls the granted route as the agent (no cookie) and shows an
// out-of-grant call refused; the token works outside the browser and dies
// with the session.
func TestBrowserDemoMintsAnAgentTokenAndShowsItsLimits(t *testing.T) {
	chromium := requireBrowserPrereqs(t)
	d := startDemo(t, nil)
	ctx, _ := newBrowser(t, chromium)
	screenshotOnFailure(t, ctx)
	signIn(t, ctx, d, "alice")

	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("agent-mint")),
		chromedp.WaitVisible(chromedp.ID("agent-token")),
	); err != nil {
		t.Fatalf("mint: %v", err)
	}
	tok := strings.TrimSpace(textOf(t, ctx, "agent-token"))
	if !strings.HasPrefix(tok, "gha_") || len(tok) != 68 {
		t.Fatalf("the page shows %q, want a gha_ token", tok)
	}
	curl := textOf(t, ctx, "agent-curl")
	if !strings.Contains(curl, "Authorization: Bearer "+tok) || !strings.Contains(curl, d.URL+"/api/profile/me") {
		t.Errorf("curl line %q", curl)
	}
	for _, c := range []struct{ button, line, status, text string }{
		{"agent-call-granted", "agent-granted", "200", "HTTP 200"},
		{"agent-call-refused", "agent-refused", "403", "agent_scope"},
	} {
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.ID(c.button)),
			chromedp.WaitVisible(chromedp.CSS(`#`+c.line+`[data-status]`)),
		); err != nil {
			t.Fatalf("%s: %v", c.button, err)
		}
		attrs, _ := chromedp.Run(ctx, chromedp.Attributes(chromedp.ID(c.line)))
		if text := textOf(t, ctx, c.line); attrs["data-status"] != c.status || !strings.Contains(text, c.text) {
			t.Errorf("%s: %s %q, want %s %q", c.button, attrs["data-status"], text, c.status, c.text)
		}
	}
	if err := checkNoTokenInPage(ctx); err != nil { // web storage and cookies stay empty
		t.Error(err)
	}

	// The curl line's call, from outside the browser.
	agentGet := func() int {
		req, _ := http.NewRequest("GET", d.URL+"/api/profile/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := agentGet(); code != 200 {
		t.Fatalf("the curl line's request: %d", code)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("signout")),
		chromedp.WaitVisible(chromedp.ID("signin")),
	); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for agentGet() != 401 {
		if time.Now().After(deadline) {
			t.Fatal("after sign-out the agent token still works")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

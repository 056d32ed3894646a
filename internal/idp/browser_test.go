package idp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// TestBrowserLoginWithChromium drives the login page in a real Chromium: the CSRF cookie,
// Origin check, CSP and the redirect back to the client must all work in a browser.
func TestBrowserLoginWithChromium(t *testing.T) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium not installed (required in CI)")
		}
		t.Skip("chromium not installed")
	}
	got := make(chan url.Values, 1)
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.URL.Query():
		default:
		}
		_, _ = w.Write([]byte("callback reached"))
	}))
	t.Cleanup(rp.Close)
	p := MustStart(t, Options{Clients: []Client{{ID: "spa-bff", Secret: "s3cret", RedirectURIs: []string{rp.URL + "/bff/callback"}}}})

	conf := &oauth2.Config{ClientID: "spa-bff", RedirectURL: rp.URL + "/bff/callback", Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: p.URL() + "/authorize"}}
	authURL := conf.AuthCodeURL("st4te", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox)...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 30*time.Second)
	defer cancelT()

	button := chromedp.CSS(`button[data-user="bob"]`)
	if err := chromedp.Do(ctx, chromedp.Navigate(authURL), chromedp.WaitVisible(button)); err != nil {
		t.Fatalf("browser: open login page: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 gives a PNG
	if err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(button)); err != nil {
		t.Fatalf("browser: click: %v", err)
	}
	if dir := os.Getenv("IDP_SCREENSHOT_DIR"); dir != "" {
		_ = os.WriteFile(dir+"/idp-login.png", shot, 0o600)
	}
	select {
	case q := <-got:
		if q.Get("code") == "" || q.Get("state") != "st4te" || q.Get("iss") != p.URL() {
			t.Fatalf("callback query = %v", q)
		}
	case <-ctx.Done():
		t.Fatal("the browser never reached the client's redirect_uri")
	}
}

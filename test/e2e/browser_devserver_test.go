package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
)

// viteLikeIndex is what a Vite + React dev server serves: the React Refresh preamble as an
// inline module script, the app as a module, and an HMR WebSocket to the dev server itself.
const viteLikeIndex = `<!doctype html><html><head><meta charset="utf-8">
<script type="module">
  window.inlineModuleRan = true; // import RefreshRuntime from "/@react-refresh" in real life
</script>
<script type="module" src="/src/main.js"></script>
</head><body><div id="root"></div></body></html>`

// TestBrowserDevServerBehindGatehouseWorks puts a Vite-like dev server (owned by the test)
// behind Gatehouse as frontend.upstream and loads it in Chromium: the inline module script runs,
// the app module loads, and the HMR WebSocket to the dev server opens under Gatehouse's default
// CSP; each security header arrives exactly once.
func TestBrowserDevServerBehindGatehouseWorks(t *testing.T) {
	chromium := requireBrowserPrereqs(t)
	var dev *httptest.Server
	dev = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hmr":
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			_ = c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"connected"}`))
			<-r.Context().Done()
			c.CloseNow()
		case "/src/main.js":
			w.Header().Set("Content-Type", "text/javascript")
			// Vite's client connects its HMR socket straight to the dev server.
			_, _ = w.Write([]byte(`document.getElementById("root").textContent = "app loaded";
const ws = new WebSocket("ws://` + strings.TrimPrefix(dev.URL, "http://") + `/hmr");
ws.onmessage = (e) => { window.hmr = e.data; };
ws.onerror = () => { window.hmr = "error"; };`))
		default:
			w.Header().Set("Content-Type", "text/html")
			// Dev servers may send their own headers: Gatehouse must not duplicate them.
			w.Header().Set("X-Frame-Options", "SAMEORIGIN")
			_, _ = w.Write([]byte(viteLikeIndex))
		}
	}))
	t.Cleanup(dev.Close)

	e := startGW(t, gwOptions{Config: `session:
  store: memory
frontend:
  upstream: "` + dev.URL + `/"
`})
	ctx, _ := newBrowser(t, chromium)
	screenshotOnFailure(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(e.URL+"/"), chromedp.WaitVisible(chromedp.ID("root"))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.inlineModuleRan === true && document.getElementById("root").textContent === "app loaded" && window.hmr !== undefined`,
		chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		t.Fatalf("the dev setup did not come up under Gatehouse's CSP: %v", err)
	}
	if hmr, err := pageEval[string](ctx, `window.hmr`); err != nil || hmr != `{"type":"connected"}` {
		t.Errorf("HMR WebSocket: %q (%v), want the dev server's hello", hmr, err)
	}

	res, err := http.Get(e.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, k := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Cross-Origin-Opener-Policy"} {
		if n := len(res.Header.Values(k)); n != 1 {
			t.Errorf("%s sent %d times: %q", k, n, res.Header.Values(k))
		}
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse-dev/gatehouse/internal/demo"
)

// requireBrowserPrereqs skips (or, in CI, fails) when the browser tests cannot run here.
func requireBrowserPrereqs(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests are not short")
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/chromium"); serr == nil {
			path = "/usr/bin/chromium"
		} else if os.Getenv("CI") == "true" {
			t.Fatal("chromium is missing; CI must run the browser tests: apt-get install chromium")
		} else {
			t.Skip("chromium not found; install with: apt-get install chromium")
		}
	}
	if startGateway == nil {
		t.Skip("startGateway (test/e2e/browser_gateway_test.go) is not wired to internal/gateway yet")
	}
	return path
}

// runningDemo is a demo started for one test.
type runningDemo struct {
	demo.Info
	// URL is the public URL without the trailing slash.
	URL string
}

// startDemo runs demo.Run with the real gateway. With a wrap, the browser reaches Gatehouse
// through a test-only front proxy running wrap at the public address (the flip tests use it
// to break one guarantee on the wire and show that a detector notices).
func startDemo(t *testing.T, wrap func(http.Handler) http.Handler) *runningDemo {
	t.Helper()
	start := startGateway
	if wrap != nil {
		start = frontedStarter(t, startGateway, wrap)
	}
	// The demo takes a free port before Gatehouse binds it (the URL must be in
	// the config first); a parallel test may take it in between: try again.
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan demo.Info, 1)
		runErr := make(chan error, 1)
		go func() {
			runErr <- demo.Run(ctx, demo.Options{
				StartGateway: start, Out: io.Discard,
				Ready: func(i demo.Info) { ready <- i },
			})
		}()
		select {
		case info := <-ready:
			t.Cleanup(func() {
				cancel()
				select {
				case err := <-runErr:
					if err != nil {
						t.Errorf("demo.Run: %v", err)
					}
				case <-time.After(20 * time.Second):
					t.Error("demo did not stop within 20s of cancel")
				}
			})
			return &runningDemo{Info: info, URL: strings.TrimSuffix(info.PublicURL, "/")}
		case err := <-runErr:
			cancel()
			if attempt < 3 && err != nil && strings.Contains(err.Error(), "address already in use") {
				t.Logf("demo.Run: %v; trying another port", err)
				continue
			}
			t.Fatalf("demo.Run: %v", err)
		case <-time.After(30 * time.Second):
			cancel()
			t.Fatal("demo did not become ready within 30s")
		}
		return nil
	}
}

var listenLine = regexp.MustCompile(`(?m)^listen: "(127\.0\.0\.1:\d+)"$`)

// frontedStarter moves Gatehouse to another loopback port (by rewriting the generated config's
// listen line: public_url is unchanged) and serves wrap(reverse proxy to Gatehouse) at the
// public address, so the browser sees Gatehouse's responses as modified by wrap.
func frontedStarter(t *testing.T, inner demo.StartGatewayFunc, wrap func(http.Handler) http.Handler) demo.StartGatewayFunc {
	return func(ctx context.Context, path string) (string, <-chan error, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", nil, err
		}
		m := listenLine.FindSubmatch(b)
		if m == nil {
			return "", nil, errors.New("front proxy: no listen line in the demo config")
		}
		public := string(m[1])
		back, err := freeAddr()
		if err != nil {
			return "", nil, err
		}
		b = listenLine.ReplaceAll(b, []byte(`listen: "`+back+`"`))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return "", nil, err
		}
		_, done, err := inner(ctx, path)
		if err != nil {
			return "", done, err
		}
		target := &url.URL{Scheme: "http", Host: back}
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // Gatehouse sees the public host, as without the proxy
		}}
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", public)
		if err != nil {
			return "", done, fmt.Errorf("front proxy: listen on %s: %w", public, err)
		}
		srv := &http.Server{Handler: wrap(rp), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		go func() { <-ctx.Done(); _ = srv.Close() }()
		return "http://" + public, done, nil
	}
}

// endSessionEndpoint reads the OP's end_session_endpoint from discovery.
func endSessionEndpoint(t *testing.T, issuer string) string {
	t.Helper()
	resp, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatalf("OP discovery: %v", err)
	}
	defer resp.Body.Close()
	var doc struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc.EndSession == "" {
		t.Fatalf("OP discovery has no end_session_endpoint: %v", err)
	}
	return doc.EndSession
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// newBrowser starts a headless Chromium with a fresh profile; its network traffic is recorded.
func newBrowser(t *testing.T, execPath string) (context.Context, *netRecorder) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// Start the browser without a deadline (a deadline on the first Run would bind the
	// browser's life to it), then give the whole test a budget.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	rec, err := recordNetwork(ctx)
	if err != nil {
		t.Fatalf("record network: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	t.Cleanup(cancel)
	return tctx, rec
}

// netEntry is one response (or redirect response) the browser received.
type netEntry struct {
	RequestID network.RequestID
	URL       string
	Status    int64
	Headers   map[string]string
	Body      string
	BodyErr   error
	// Raw marks the raw headers of Network.responseReceivedExtraInfo (Set-Cookie included);
	// for a redirect hop its URL may already name the next hop.
	Raw bool
}

// netRecorder keeps every response's headers and body that reached the page.
type netRecorder struct {
	mu       sync.Mutex
	entries  []*netEntry
	byID     map[network.RequestID]*netEntry
	urls     map[network.RequestID]string
	seen     int       // loadingFinished events seen by the listener
	fetched  int       // bodies fetched (or failed) by the body goroutine
	last     time.Time // when the listener last saw an event
	progress chan struct{}
}

func headerMap(h network.Headers) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[strings.ToLower(k)] = fmt.Sprint(v)
	}
	return out
}

func recordNetwork(ctx context.Context) (*netRecorder, error) {
	r := &netRecorder{byID: map[network.RequestID]*netEntry{}, urls: map[network.RequestID]string{}, progress: make(chan struct{}, 1)}
	finished := chromedp.Events(ctx, network.LoadingFinished)
	err := chromedp.Listen(ctx, func(ev any) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.last = time.Now()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			r.urls[ev.RequestID] = ev.Request.URL
			if rr := ev.RedirectResponse; rr != nil {
				r.entries = append(r.entries, &netEntry{RequestID: ev.RequestID, URL: rr.URL, Status: rr.Status, Headers: headerMap(rr.Headers)})
			}
		case *network.EventResponseReceived:
			e := &netEntry{RequestID: ev.RequestID, URL: ev.Response.URL, Status: ev.Response.Status, Headers: headerMap(ev.Response.Headers)}
			r.entries = append(r.entries, e)
			r.byID[ev.RequestID] = e
		case *network.EventResponseReceivedExtraInfo:
			// Raw headers as received, Set-Cookie included.
			r.entries = append(r.entries, &netEntry{RequestID: ev.RequestID, URL: r.urls[ev.RequestID], Status: ev.StatusCode, Headers: headerMap(ev.Headers), Raw: true})
		case *network.EventLoadingFinished:
			r.seen++
		}
	})
	if err != nil {
		return nil, err
	}
	go func() {
		for ev, err := range finished {
			if err != nil {
				return
			}
			res, berr := chromedp.Call(ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: ev.RequestID})
			r.mu.Lock()
			if e := r.byID[ev.RequestID]; e != nil {
				e.Body, e.BodyErr = string(res.Body), berr
			}
			r.fetched++
			r.mu.Unlock()
			select {
			case r.progress <- struct{}{}:
			default:
			}
		}
	}()
	return r, nil
}

// settle waits until the network has been quiet for a moment and every finished response's
// body has been read.
func (r *netRecorder) settle(ctx context.Context) error {
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		done := r.fetched >= r.seen && time.Since(r.last) > 300*time.Millisecond
		r.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-r.progress:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return errors.New("response bodies not all read within 5s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// snapshot returns copies of the entries recorded so far.
func (r *netRecorder) snapshot() []netEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]netEntry, len(r.entries))
	for i, e := range r.entries {
		out[i] = *e
	}
	return out
}

// artifactDir is where failure screenshots go: $GATEHOUSE_E2E_ARTIFACTS, or a temporary
// directory that survives the test (t.TempDir would delete the evidence).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("GATEHOUSE_E2E_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	d, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		return os.TempDir()
	}
	return d
}

// screenshotOnFailure registers a cleanup that saves the page when the test failed.
func screenshotOnFailure(t *testing.T, ctx context.Context) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		buf, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("failure screenshot: %v", err)
			return
		}
		name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + ".png"
		p := filepath.Join(artifactDir(t), name)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			t.Logf("failure screenshot: %v", err)
			return
		}
		loc, _ := chromedp.Run(sctx, chromedp.Location())
		t.Logf("failure screenshot of %s: %s", loc, p)
	})
}

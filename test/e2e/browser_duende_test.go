package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The SPA snippets from Duende BFF's documentation, verbatim but for the wrapping needed to
// return a value to the test: an SPA written for Duende must work against Gatehouse unchanged.
const (
	// docs.duendesoftware.com, "BFF / Session Management / User Endpoint".
	duendeUserSnippet = `(async () => {
		var req = new Request("/bff/user", {
			headers: new Headers({
				"X-CSRF": "1",
			}),
		});
		var resp = await fetch(req);
		if (resp.ok) {
			const claims = await resp.json();
			const logoutUrl = claims.find(c => c.type === "bff:logout_url").value;
			const sub = claims.find(c => c.type === "sub").value;
			const expiresIn = claims.find(c => c.type === "bff:session_expires_in").value;
			return {status: resp.status, logoutUrl, sub, expiresIn};
		}
		return {status: resp.status};
	})()`

	// "BFF / Session Management / Silent Login": the iframe + postMessage helper.
	duendeSilentLoginSnippet = `(() => {
		if (!document.querySelector("#bff-silent-login")) {
			const f = document.createElement("iframe");
			f.id = "bff-silent-login";
			f.style.display = "none";
			document.body.append(f);
		}
		function silentLogin(iframeSelector) {
			const timeout = 5000;
			return new Promise((resolve, reject) => {
				function onMessage(e) {
					// look for messages sent from the BFF iframe
					if (e.data && e.data["source"] === "bff-silent-login") {
						window.removeEventListener("message", onMessage);
						// send along the boolean result
						resolve(e.data.isLoggedIn);
					}
				}
				// listen for the iframe response to notify its done
				window.addEventListener("message", onMessage);
				// we're setting up a time to handle scenarios when the iframe doesn't return immediately (despite prompt=none).
				window.setTimeout(() => {
					window.removeEventListener("message", onMessage);
					reject(new Error("timed_out"));
				}, timeout);
				// send the iframe to the silent login endpoint to kick off the workflow
				document.querySelector(iframeSelector).src = "/bff/silent-login";
			});
		}
		return silentLogin("#bff-silent-login");
	})()`
)

type duendeUser struct {
	Status    int     `json:"status"`
	LogoutURL string  `json:"logoutUrl"`
	Sub       string  `json:"sub"`
	ExpiresIn float64 `json:"expiresIn"`
}

// TestBrowserDuendeSnippetsWork runs Duende's documented SPA code in Chromium against
// Gatehouse: the user-claims lookup, the logout URL, and silent login (iframe + postMessage),
// signed out and signed in.
func TestBrowserDuendeSnippetsWork(t *testing.T) {
	chromium := requireBrowserPrereqs(t)
	d := startDemo(t, nil)
	ctx, _ := newBrowser(t, chromium)
	screenshotOnFailure(t, ctx)

	if err := chromedp.Do(ctx, chromedp.Navigate(d.PublicURL), chromedp.WaitVisible(chromedp.ID("signin"))); err != nil {
		t.Fatal(err)
	}
	if u, err := pageEval[duendeUser](ctx, duendeUserSnippet); err != nil || u.Status != 401 {
		t.Errorf("signed out: user snippet gave %+v (%v), want status 401", u, err)
	}
	if in, err := pageEval[bool](ctx, duendeSilentLoginSnippet); err != nil || in {
		t.Errorf("signed out: silent login gave isLoggedIn=%v (%v), want false", in, err)
	}

	signIn(t, ctx, d, "alice")
	u, err := pageEval[duendeUser](ctx, duendeUserSnippet)
	if err != nil {
		t.Fatalf("user snippet: %v", err)
	}
	if u.Status != 200 || u.Sub != "user-alice" || !strings.HasPrefix(u.LogoutURL, "/bff/logout?sid=") || u.ExpiresIn <= 0 {
		t.Errorf("signed in: user snippet gave %+v", u)
	}
	// The dev OP keeps no SSO session, so prompt=none answers login_required: what the
	// callback reports is the Gatehouse session, which still stands.
	if in, err := pageEval[bool](ctx, duendeSilentLoginSnippet); err != nil || !in {
		t.Errorf("signed in: silent login gave isLoggedIn=%v (%v), want true", in, err)
	}
	if u2, err := pageEval[duendeUser](ctx, duendeUserSnippet); err != nil || u2.Status != 200 || u2.LogoutURL != u.LogoutURL {
		t.Errorf("after silent login the session changed or ended: %+v (%v)", u2, err)
	}

	// Duende's logout: window.location = logoutUrl.
	if _, err := pageEval[bool](ctx, `(window.location = `+jsString(u.LogoutURL)+`, true)`); err != nil {
		t.Fatalf("logout through bff:logout_url: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("signin"))); err != nil {
		t.Fatalf("logout through bff:logout_url: %v", err)
	}
	if u, err := pageEval[duendeUser](ctx, duendeUserSnippet); err != nil || u.Status != 401 {
		t.Errorf("after logout: user snippet gave %+v (%v), want 401", u, err)
	}
}

// TestBrowserSilentLoginCallbackTellsOnlyItsOwnOrigin frames the silent-login callback from
// another origin, as an attacker page would, to learn whether the visitor is signed in: the
// page must not render there, and no message may reach the attacker.
func TestBrowserSilentLoginCallbackTellsOnlyItsOwnOrigin(t *testing.T) {
	chromium := requireBrowserPrereqs(t)
	d := startDemo(t, nil)
	ctx, _ := newBrowser(t, chromium)
	screenshotOnFailure(t, ctx)
	signIn(t, ctx, d, "alice")

	// "localhost" is another origin (and site) than the demo's 127.0.0.1.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><script>
			window.got = [];
			window.addEventListener("message", (e) => window.got.push(JSON.stringify(e.data)));
		</script><iframe id="f" src="` + d.URL + `/bff/silent-login-callback"></iframe>`))
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)
	if err := chromedp.Do(ctx, chromedp.Navigate(evilURL)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // give a message time to arrive, were one sent
	got, err := pageEval[[]string](ctx, `window.got`)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("the attacker's page received %v from the framed silent-login callback", got)
	}
}

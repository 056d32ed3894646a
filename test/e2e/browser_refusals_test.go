package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserDemoShowsRefusals drives the demo's enforcement panels in Chromium: a call the
// route's policy refuses (403 with its reason in the audit log), a forged call without the
// CSRF header (401), and a session revoked through the admin API whose next call answers 401
// — then the signed-out page with the next steps. With GATEHOUSE_UPDATE_SCREENSHOT=1 it
// writes the README's screenshots from this run.
func TestBrowserDemoShowsRefusals(t *testing.T) {
	chromium := requireBrowserPrereqs(t)
	d := startDemo(t, nil)
	ctx, _ := newBrowser(t, chromium)
	screenshotOnFailure(t, ctx)
	update := os.Getenv("GATEHOUSE_UPDATE_SCREENSHOT") == "1"
	shots := filepath.Join("..", "..", "docs", "screenshots")

	signIn(t, ctx, d, "alice")
	panel := func(button, result string) map[string]string {
		t.Helper()
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.ID(button)),
			chromedp.WaitVisible(chromedp.CSS(`#`+result+`[data-status] p`)),
		); err != nil {
			t.Fatalf("%s: %v", button, err)
		}
		attrs, err := chromedp.Run(ctx, chromedp.Attributes(chromedp.ID(result)))
		if err != nil {
			t.Fatal(err)
		}
		attrs["text"] = textOf(t, ctx, result)
		return attrs
	}

	if a := panel("try-policy", "result-policy"); a["data-status"] != "403" || a["data-error"] != "policy_denied" || !strings.Contains(a["text"], "refused") {
		t.Errorf("policy panel: %v, want 403 policy_denied shown as refused", a)
	}
	if a := panel("try-csrf", "result-csrf"); a["data-status"] != "401" || a["data-error"] != "csrf_header_missing" {
		t.Errorf("CSRF panel: %v, want 401 csrf_header_missing", a)
	}
	if update && !t.Failed() {
		saveScreenshot(t, ctx, filepath.Join(shots, "demo-refusals.png"))
	}
	if a := panel("try-revoke", "result-revoke"); a["data-status"] != "401" || a["data-error"] != "unauthenticated" || !strings.Contains(a["text"], "answered 200") {
		t.Errorf("revoke panel: %v, want the admin API's 200 and then 401 unauthenticated", a)
	}
	if status, err := pageEval[int](ctx, `fetch('/bff/user', {headers: {'X-CSRF': '1'}}).then(r => r.status)`); err != nil || status != 401 {
		t.Errorf("after the revocation /bff/user answered %d (%v), want 401", status, err)
	}

	// The audit log holds each refusal with its reason.
	want := map[string]bool{"reports": false, "csrf": false}
	f, err := os.Open(d.AuditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["outcome"] == "allow" {
			continue
		}
		line := sc.Text()
		if rec["route"] == "reports" && strings.Contains(line, "cel_denied") {
			want["reports"] = true
		}
		if strings.Contains(line, "csrf") && rec["route"] == "profile" {
			want["csrf"] = true
		}
	}
	for k, ok := range want {
		if !ok {
			t.Errorf("the audit log has no %s refusal with its reason", k)
		}
	}

	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("revoke-continue")),
		chromedp.WaitVisible(chromedp.ID("next-steps")),
	); err != nil {
		t.Fatalf("signed-out state: %v", err)
	}
	if s := textOf(t, ctx, "next-steps"); !strings.Contains(s, "signed out") || !strings.Contains(s, "gatehouse check") || !strings.Contains(s, "docs/") {
		t.Errorf("signed-out state does not give the next step: %q", s)
	}
	if update && !t.Failed() {
		saveScreenshot(t, ctx, filepath.Join(shots, "demo-signed-out.png"))
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The detectors below are plain functions so that the flip tests can show each one fails
// when its guarantee is broken on purpose.

// jwtShape matches a JWS compact serialisation whose header and payload are JSON objects
// (base64url of `{"` is "eyJ"): every access and ID token the development OP issues.
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)

// tokenFields are JSON member names that must never reach the page.
var tokenFields = []string{"access_token", "refresh_token", "id_token", "token", "client_secret"}

// pageEval evaluates a JavaScript expression (awaiting a promise) in the page.
func pageEval[T any](ctx context.Context, expr string) (T, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// checkCookieHttpOnly fails when script can read any cookie of the app's origin, or when a
// cookie the browser holds for it lacks HttpOnly. signedIn also requires a session cookie.
func checkCookieHttpOnly(ctx context.Context, appURL string, signedIn bool) error {
	visible, err := pageEval[string](ctx, `document.cookie`)
	if err != nil {
		return fmt.Errorf("read document.cookie: %w", err)
	}
	var problems []string
	if visible != "" {
		var names []string
		for _, c := range strings.Split(visible, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(c), "=")
			names = append(names, name)
		}
		problems = append(problems, "document.cookie exposes cookie(s) "+strings.Join(names, ", ")+" to script")
	}
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{appURL}})
	if err != nil {
		return fmt.Errorf("read cookies: %w", err)
	}
	httpOnly := 0
	for _, c := range res.Cookies {
		if !c.HTTPOnly {
			problems = append(problems, fmt.Sprintf("cookie %q is not HttpOnly", c.Name))
			continue
		}
		httpOnly++
	}
	if signedIn && httpOnly == 0 {
		problems = append(problems, "signed in, but the browser holds no HttpOnly session cookie")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// checkNoTokenInPage fails when web storage holds anything, or when the page's DOM, storage or
// /bff/user answer contains a token-shaped value or a token field.
func checkNoTokenInPage(ctx context.Context) error {
	var st struct {
		Local   int    `json:"local"`
		Session int    `json:"session"`
		Dump    string `json:"dump"`
		User    string `json:"user"`
		Status  int    `json:"status"`
	}
	raw, err := pageEval[[]byte](ctx, `(async () => {
		const dump = JSON.stringify({local: {...localStorage}, session: {...sessionStorage}}) + document.documentElement.outerHTML;
		const r = await fetch('/bff/user', {headers: {'X-CSRF': '1'}, credentials: 'same-origin', cache: 'no-store'});
		return {local: localStorage.length, session: sessionStorage.length, dump, user: await r.text(), status: r.status};
	})()`)
	if err != nil {
		return fmt.Errorf("inspect page: %w", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("inspect page: %w", err)
	}
	var problems []string
	if st.Local+st.Session > 0 {
		problems = append(problems, fmt.Sprintf("web storage holds %d item(s) (localStorage %d, sessionStorage %d)", st.Local+st.Session, st.Local, st.Session))
	}
	if jwtShape.MatchString(st.Dump) {
		problems = append(problems, "the page (DOM or web storage) contains a JWT")
	}
	if jwtShape.MatchString(st.User) {
		problems = append(problems, "/bff/user returned a JWT")
	}
	if st.Status == 200 {
		if f := tokenFieldIn([]byte(st.User)); f != "" {
			problems = append(problems, "/bff/user returned a "+f+" member")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// tokenFieldIn returns the first token-named member anywhere in a JSON document, or "".
func tokenFieldIn(doc []byte) string {
	var v any
	if json.Unmarshal(doc, &v) != nil {
		return ""
	}
	var walk func(any) string
	walk = func(v any) string {
		switch x := v.(type) {
		case map[string]any:
			// Duende's claims array names a member by its "type".
			if typ, ok := x["type"].(string); ok {
				for _, f := range tokenFields {
					if strings.EqualFold(typ, f) {
						return typ
					}
				}
			}
			for k, child := range x {
				for _, f := range tokenFields {
					if strings.EqualFold(k, f) {
						return k
					}
				}
				if f := walk(child); f != "" {
					return f
				}
			}
		case []any:
			for _, child := range x {
				if f := walk(child); f != "" {
					return f
				}
			}
		}
		return ""
	}
	return walk(v)
}

// checkCSRFRequired fails unless a cookie-borne API request without the CSRF header is refused
// with 401 (Duende's status) for every path, while the same request with the header is not refused for CSRF.
func checkCSRFRequired(ctx context.Context, paths []string) error {
	b, err := json.Marshal(paths)
	if err != nil {
		return err
	}
	raw, err := pageEval[[]byte](ctx, `(async (paths) => {
		const out = [];
		for (const p of paths) {
			const bare = await fetch(p, {credentials: 'same-origin', cache: 'no-store'});
			const withHeader = await fetch(p, {credentials: 'same-origin', cache: 'no-store', headers: {'X-CSRF': '1'}});
			out.push({path: p, bare: bare.status, with: withHeader.status});
		}
		return out;
	})(`+string(b)+`)`)
	if err != nil {
		return fmt.Errorf("CSRF probe: %w", err)
	}
	var res []struct {
		Path       string `json:"path"`
		Bare, With int
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("CSRF probe: %w", err)
	}
	var problems []string
	for _, r := range res {
		if r.Bare != 401 {
			problems = append(problems, fmt.Sprintf("GET %s without X-CSRF answered %d, want 401", r.Path, r.Bare))
		}
		if r.With == 401 {
			problems = append(problems, fmt.Sprintf("GET %s with X-CSRF answered 401: the probe proves nothing", r.Path))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// checkNoTokenExposure fails when any response the browser received (headers or body)
// contains a JWT or one of the secrets, except the one documented place: the id_token_hint
// in a redirect to the IdP's end-session endpoint (endSession), which Gatehouse sends at
// logout after the session is already deleted.
func checkNoTokenExposure(entries []netEntry, appURL, endSession string, secrets []string) error {
	var problems []string
	for _, e := range entries {
		where := shortURL(e.URL)
		if e.Raw {
			where = "raw headers of the request to " + where
		}
		for k, v := range e.Headers {
			if k == "location" {
				v = withoutIDTokenHint(v, endSession)
			}
			if jwtShape.MatchString(v) {
				problems = append(problems, fmt.Sprintf("%s: header %s carries a JWT", where, k))
			}
			for _, s := range secrets {
				if s != "" && strings.Contains(v, s) {
					problems = append(problems, fmt.Sprintf("%s: header %s carries a secret", where, k))
				}
			}
		}
		if jwtShape.MatchString(e.Body) {
			problems = append(problems, fmt.Sprintf("%s: body carries a JWT", where))
		}
		if f := tokenFieldIn([]byte(e.Body)); f != "" && strings.HasPrefix(e.URL, appURL) {
			problems = append(problems, fmt.Sprintf("%s: body has a %s member", where, f))
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(e.Body, s) {
				problems = append(problems, fmt.Sprintf("%s: body carries a secret", where))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(dedupe(problems), "; "))
	}
	return nil
}

// withoutIDTokenHint drops the id_token_hint parameter from a redirect to the end-session
// endpoint; any other Location is returned unchanged (and so still scanned in full).
func withoutIDTokenHint(loc, endSession string) string {
	if endSession == "" || !strings.HasPrefix(loc, endSession+"?") {
		return loc
	}
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	q := u.Query()
	q.Del("id_token_hint")
	u.RawQuery = q.Encode()
	return u.String()
}

func shortURL(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Host + p.Path
	}
	return "?"
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

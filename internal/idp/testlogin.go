package idp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// Login signs username in programmatically, as a browser would: starting from authURL (the
// OP's authorize URL, or any URL that redirects there) it follows redirects to the login page,
// submits the form, and returns the URL the OP redirects to at the client's redirect_uri
// (code, state, iss) WITHOUT requesting it. client may be nil; its Jar (when set) receives the
// cookies met on the way, and its redirect policy is not used.
func (p *Provider) Login(ctx context.Context, client *http.Client, authURL, username, password string) (string, error) {
	c := &http.Client{}
	if client != nil {
		cp := *client
		c = &cp
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if c.Jar == nil {
		jar, err := cookiejar.New(nil)
		if err != nil {
			return "", fmt.Errorf("idp login: cookie jar: %w", err)
		}
		c.Jar = jar
	}
	loginURL := p.issuer + "/login"

	// 1. Follow redirects until the login page answers.
	next := authURL
	var page string
	for hops := 0; ; hops++ {
		if hops > 10 {
			return "", errors.New("idp login: too many redirects before the login page")
		}
		resp, body, err := do(ctx, c, http.MethodGet, next, nil)
		if err != nil {
			return "", err
		}
		if loc := resp.Header.Get("Location"); isRedirect(resp.StatusCode) && loc != "" {
			u, err := resp.Request.URL.Parse(loc)
			if err != nil {
				return "", fmt.Errorf("idp login: bad redirect: %w", err)
			}
			if !strings.HasPrefix(u.String(), p.issuer+"/") && (u.Query().Has("error") || u.Query().Has("code")) {
				return "", fmt.Errorf("idp login: the OP redirected back to the client before login (error=%q)", u.Query().Get("error"))
			}
			next = u.String()
			continue
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(next, loginURL+"?") {
			return "", fmt.Errorf("idp login: expected the login page, got %s at %s", resp.Status, strings.SplitN(next, "?", 2)[0])
		}
		page = body
		break
	}
	u, _ := url.Parse(next)
	id := u.Query().Get("authRequestID")
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		return "", errors.New("idp login: login page has no CSRF field")
	}

	// 2. Submit the form, then follow the OP's own redirects (authorize callback) only.
	form := url.Values{"authRequestID": {id}, "csrf": {m[1]}, "username": {username}, "password": {password}}
	resp, _, err := do(ctx, c, http.MethodPost, loginURL, form)
	if err != nil {
		return "", err
	}
	for hops := 0; ; hops++ {
		if !isRedirect(resp.StatusCode) {
			if resp.StatusCode == http.StatusUnauthorized {
				return "", errors.New("idp login: invalid username or password")
			}
			return "", fmt.Errorf("idp login: unexpected %s after submitting the login form", resp.Status)
		}
		target, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			return "", fmt.Errorf("idp login: bad redirect: %w", err)
		}
		if !strings.HasPrefix(target.String(), p.issuer+"/authorize") || hops > 10 {
			return target.String(), nil
		}
		if resp, _, err = do(ctx, c, http.MethodGet, target.String(), nil); err != nil {
			return "", err
		}
	}
}

func isRedirect(code int) bool { return code >= 300 && code < 400 }

func do(ctx context.Context, c *http.Client, method, target string, form url.Values) (*http.Response, string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, "", fmt.Errorf("idp login: build request: %w", err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if u, err := url.Parse(target); err == nil {
			req.Header.Set("Origin", u.Scheme+"://"+u.Host)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("idp login: %s %s: %w", method, req.URL.Scheme+"://"+req.URL.Host+req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, "", fmt.Errorf("idp login: read response: %w", err)
	}
	return resp, string(b), nil
}

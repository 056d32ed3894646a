package e2e

// Helpers for the proxy end-to-end tests (proxy_*_test.go): raw HTTP/1.1
// over TCP (so hostile request lines and header spellings reach Gatehouse
// exactly as written), JWT payload decoding, and a goroutine-leak check.

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// verifyNoLeaks checks, after every other cleanup of the test has run (the
// gateway stopped, the IdP and the upstreams closed), that the test left no
// goroutine behind. Call it first thing in the test: goroutines alive before
// it (other tests, chromedp) are ignored. Such a test must not be parallel.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		// The tests' own clients keep idle keep-alive connections.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		// goleak retries for about half a second; connection goroutines of
		// closed servers may need a little longer on a loaded machine.
		var err error
		for range 8 {
			if err = goleak.Find(ignore); err == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Errorf("goroutines leaked after the gateway stopped:\n%v", err)
	})
}

// host is the gateway's public host:port (what a browser sends as Host).
func (e *gwEnv) host() string {
	u, err := url.Parse(e.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.Host
}

// cookieHeader is the browser's session cookie as a request header line.
func (e *gwEnv) cookieHeader(b *http.Client) string {
	e.t.Helper()
	v := e.sessionCookie(b)
	if v == "" {
		e.t.Fatal("the browser holds no session cookie")
	}
	return "Cookie: " + e.Cfg.EffectiveCookieName() + "=" + v
}

// rawResponse is what Gatehouse answered to a raw request.
type rawResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// raw sends "METHOD target HTTP/1.1" with Host and the given header lines
// verbatim (nothing is canonicalised, duplicates stay duplicates) and reads
// one response.
func (e *gwEnv) raw(method, target string, headers ...string) rawResponse {
	e.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	hasHost := false
	for _, h := range headers {
		if strings.HasPrefix(strings.ToLower(h), "host:") {
			hasHost = true
		}
	}
	if !hasHost {
		b.WriteString("Host: " + e.host() + "\r\n")
	}
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return e.rawMessage(b.String())
}

// rawMessage sends msg as the whole request and reads one response.
func (e *gwEnv) rawMessage(msg string) rawResponse {
	e.t.Helper()
	r, err := rawExchange(e.host(), msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// rawExchange sends msg to addr and reads one response. It does not touch a
// testing.T, so goroutines may call it.
func rawExchange(addr, msg string) (rawResponse, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return rawResponse{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, msg); err != nil {
		return rawResponse{}, err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return rawResponse{}, fmt.Errorf("read response: %w", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return rawResponse{res.StatusCode, res.Header, body}, nil
}

// jwtClaims decodes a JWT's payload without verifying it.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT (%d parts)", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return m
}

// audiences reads a JWT's aud claim (string or array).
func audiences(c map[string]any) []string {
	switch v := c["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, a := range v {
			s, _ := a.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// bearerOf returns the one bearer token in h, failing unless there is
// exactly one Authorization header of the Bearer scheme.
func bearerOf(t *testing.T, h http.Header) string {
	t.Helper()
	vs := h.Values("Authorization")
	if len(vs) != 1 || !strings.HasPrefix(vs[0], "Bearer ") {
		t.Fatalf("upstream Authorization = %d value(s), want exactly one bearer token", len(vs))
	}
	return strings.TrimPrefix(vs[0], "Bearer ")
}

// wantJSONError asserts a Gatehouse JSON error with status and code.
func wantJSONError(t *testing.T, r rawResponse, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d (%s)", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want JSON (%s)", ct, r.Body)
	}
	var m struct{ Error, Message string }
	if err := json.Unmarshal(r.Body, &m); err != nil || m.Message == "" {
		t.Fatalf("body is not {error, message}: %s", r.Body)
	}
	if code != "" && m.Error != code {
		t.Fatalf("error %q, want %q (%s)", m.Error, code, r.Body)
	}
}

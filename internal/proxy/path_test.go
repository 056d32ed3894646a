package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	long := "/api/" + strings.Repeat("a", DefaultMaxPathLength)
	tests := []struct {
		raw, want string // want "" means rejected
	}{
		{"/api/profile/me", "/api/profile/me"},
		{"/", "/"},
		{"/api/profile/", "/api/profile/"},
		{"/api//profile///me", "/api/profile/me"},
		{"/api/./profile/me", "/api/profile/me"},
		{"/api/x/../profile/me", "/api/profile/me"},
		{"/api/profile/me/.", "/api/profile/me/"},
		{"/api/profile/me/..", "/api/profile/"},
		{"/api/%2e%2e/bff/user", "/bff/user"},
		{"/api/%2E/profile", "/api/profile"},
		{"/api/.%2e/x", "/x"},
		{"/api/profile/%61%62", "/api/profile/ab"},
		{"/api/profile/a%20b", "/api/profile/a b"},
		{"/api/profile/caf%C3%A9", "/api/profile/café"},
		{"/api/profile/.well-known", "/api/profile/.well-known"},
		{"/api/profile/a..b", "/api/profile/a..b"},
		{"/api/profile/a:b@c", "/api/profile/a:b@c"},
		{"/..", ""},
		{"/api/../../etc/passwd", ""},
		{"/api/%2e%2e/%2e%2e/x", ""},
		{"/api/profile%2fme", ""},
		{"/api/profile%2Fme", ""},
		{"/api/profile%5cme", ""},
		{"/api/profile\\me", ""},
		{"/api/profile/%252e%252e/x", ""},
		{"/api/profile/%25", ""},
		{"/api/profile/%", ""},
		{"/api/profile/%2", ""},
		{"/api/profile/%zz", ""},
		{"/api/profile/%00", ""},
		{"/api/profile/a\x00b", ""},
		{"/api/profile/%0d%0aX-Evil:1", ""},
		{"/api/profile/%7f", ""},
		{"/api/profile;jsessionid=1", ""},
		{"/api/profile/%3b/x", ""},
		{"/api/profile/%3f", ""},
		{"/api/profile/%23", ""},
		{"/api/profile/#frag", ""},
		{"/api/profile/...", ""},
		{"/api/profile/..%20", ""},
		{"/api/profile/. ", ""},
		{"/api/profile/%c0%af", ""},
		{"/api/profile/%ef%bc%8f", ""},          // fullwidth solidus
		{"/api/profile/%ef%bc%8e%ef%bc%8e", ""}, // fullwidth dots
		{"/api/profile/%e2%88%95", ""},          // division slash
		{"/api/profile/%e2%80%ae", ""},          // right-to-left override
		{"/api/profile/%e2%80%8b", ""},          // zero width space
		{"/api/profile/\xc3\xa9", ""},           // raw UTF-8 must be escaped
		{"api/profile", ""},
		{"", ""},
		{long, ""},
	}
	for _, tt := range tests {
		got, err := CleanPath(tt.raw)
		if tt.want == "" {
			if err == nil {
				t.Errorf("CleanPath(%q) = %q, want rejection", tt.raw, got)
			} else if !errors.Is(err, ErrBadPath) {
				t.Errorf("CleanPath(%q) error %v does not wrap ErrBadPath", tt.raw, err)
			} else if strings.Contains(err.Error(), tt.raw) && len(tt.raw) > 2 {
				t.Errorf("CleanPath(%q) error echoes the path: %v", tt.raw, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
}

func TestCleanPathFastPathDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() { _, _ = CleanPath("/api/profile/me") })
	if allocs != 0 {
		t.Fatalf("allocs = %v, want 0", allocs)
	}
}

// Each hostile path either is refused before any upstream is contacted, or
// reaches exactly the upstream its cleaned path routes to, with exactly that
// path: never a different upstream, never a path the matcher did not see.
func TestHostilePathsReachOnlyTheirRoute(t *testing.T) {
	h := newHarness(t)
	type want struct {
		status   int
		upstream string // "" = nothing forwarded
		path     string // path the upstream must see
	}
	refused := func(status int) want { return want{status: status} }
	tests := []struct {
		target string
		want   want
	}{
		{"/api/public/../admin/x", refused(403)}, // cleaned to /api/admin/x: admin policy applies
		{"/api/public/%2e%2e/admin/x", refused(403)},
		{"/api/public/%2E%2E/admin/x", refused(403)},
		{"/api/public/.%2e/admin/x", refused(403)},
		{"/api/public/%2e./admin/x", refused(403)},
		{"/api/public/..%2fadmin/x", refused(400)},
		{"/api/public/%2e%2e%2fadmin/x", refused(400)},
		{"/api/public/..%5cadmin/x", refused(400)},
		{"/api/public/..\\admin/x", refused(400)},
		{"/api/public/%252e%252e/admin/x", refused(400)},
		{"/api/public/%25%32%65%25%32%65/admin", refused(400)},
		{"/api/public;/../admin/x", refused(400)},
		{"/api/public/..;/admin/x", refused(400)},
		{"/api/public/x;a=b", refused(400)},
		{"/api/public/%3b/x", refused(400)},
		{"/api/public/x%00", refused(400)},
		{"/api/public/x%0d%0aHost:%20evil", refused(400)},
		{"/api/public/x%09y", refused(400)},
		{"/api/public/%ef%bc%8e%ef%bc%8e/admin", refused(400)},
		{"/api/public/%ef%bc%8fadmin", refused(400)},
		{"/api/public/%c0%ae%c0%ae/admin", refused(400)},
		{"/api/public/%e2%80%ae", refused(400)},
		{"/api/public/%23/../../admin/x", refused(400)},
		{"/api/public/%3f/../admin", refused(400)},
		{"/api/public/" + strings.Repeat("a/", 1100), refused(400)},
		{"/api/../../../etc/passwd", refused(400)},
		{"/../api/public/x", refused(400)},
		{"/api/public/...", refused(400)},
		{"/api/public/%2e%2e%20/admin", refused(400)},
		{"/api/publicx/y", refused(404)},
		{"/api/public", refused(404)},
		{"/API/public/x", refused(404)},
		{"/api/timex", refused(404)},
		{"/api/time/x", refused(404)},
		{"/api/nothing/here", refused(404)},
		{"/api/public/%2e%2e/%2e%2e/bff/user", refused(404)},
		{"/api/%2e%2e/bff/user", refused(404)},
		{"//api/public/x", want{200, "public", "/x"}},
		{"/api//public//x", want{200, "public", "/x"}},
		{"/api/public/./x", want{200, "public", "/x"}},
		{"/api/public/a/../x", want{200, "public", "/x"}},
		{"/api/public/%2e/x", want{200, "public", "/x"}},
		{"/api/public/%78", want{200, "public", "/x"}},
		{"/api/public/a%20b", want{200, "public", "/a b"}},
		{"/api/public/caf%c3%a9", want{200, "public", "/café"}},
		{"/api/public/x?next=/../admin/%2e%2e", want{200, "public", "/x"}},
		{"/api/public/x?%2f=..;", want{200, "public", "/x"}},
		{"/api/admin/../public/x", want{200, "public", "/x"}},
		{"/api/time", want{200, "exact", "/now"}},
		{"/api/keep/a/../b", want{200, "keep", "/base/api/keep/b"}},
		{"http://evil.example/api/public/x", want{200, "public", "/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			h.resetHits()
			status, body := h.raw(tt.target)
			if status != tt.want.status {
				t.Fatalf("status = %d, want %d (%s)", status, tt.want.status, body)
			}
			if tt.want.upstream == "" {
				h.wantNothingForwarded()
				return
			}
			hits := h.ups[tt.want.upstream].Hits()
			if len(hits) != 1 || h.totalHits() != 1 {
				t.Fatalf("want exactly one hit on %s, got %d (total %d)", tt.want.upstream, len(hits), h.totalHits())
			}
			if hits[0].Path != tt.want.path {
				t.Fatalf("upstream saw path %q (raw %q), want %q", hits[0].Path, hits[0].RequestURI, tt.want.path)
			}
			if hits[0].Host != h.ups[tt.want.upstream].Listener.Addr().String() {
				t.Fatalf("upstream saw Host %q", hits[0].Host)
			}
		})
	}
}

// The query string is forwarded as sent and never takes part in matching.
func TestQueryIsForwardedNotMatched(t *testing.T) {
	h := newHarness(t)
	status, _ := h.raw("/api/public/x?a=1&b=%2e%2e%2fadmin&c")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	hits := h.ups["public"].Hits()
	if len(hits) != 1 || hits[0].RawQuery != "a=1&b=%2e%2e%2fadmin&c" {
		t.Fatalf("hits = %+v", hits)
	}
}

// FuzzCleanPathMatchesForwarded checks that whatever CleanPath accepts is
// stable (cleaning its escaped form changes nothing) and that the path an
// upstream decodes from the forwarded request is exactly the matched path
// mapped through the route.
func FuzzCleanPathMatchesForwarded(f *testing.F) {
	for _, s := range []string{"/api/p/x", "/api/p/%2e%2e/q", "/api/p/a%20b", "/api/p//x/./y/..", "/api/p/caf%C3%A9",
		"/api/p/%3a@!$&'()*+,=", "/api/q", "/api/p/%2f", "/api/p/\\", "/api/p/%25", "/api/p/a?b", "/api/p/%ef%bc%8f"} {
		f.Add(s)
	}
	up, _ := url.Parse("http://up.internal/base/")
	routes := []*route{
		{name: "p", path: "/api/p/", prefix: true, upstream: up, upBase: "/base"},
		{name: "q", path: "/api/q", upstream: up, upBase: "/base"},
		{name: "k", path: "/api/k/", prefix: true, keepPrefix: true, upstream: up, upBase: "/base"},
	}
	tbl := table{exact: map[string]*route{"/api/q": routes[1]}, prefix: map[string]*route{"/api/p/": routes[0], "/api/k/": routes[2]}}
	f.Fuzz(func(t *testing.T, raw string) {
		clean, err := CleanPath(raw)
		if err != nil {
			return
		}
		again, err := cleanPath((&url.URL{Path: clean}).EscapedPath(), 1<<20)
		if err != nil || again != clean {
			t.Fatalf("CleanPath not stable: %q -> %q -> %q, %v", raw, clean, again, err)
		}
		rt := tbl.match(clean)
		if rt == nil {
			return
		}
		if rt.prefix && !strings.HasPrefix(clean, rt.path) || !rt.prefix && clean != rt.path {
			t.Fatalf("route %s matched %q", rt.name, clean)
		}
		// What the upstream's server decodes from the request line we send.
		want := upstreamPath(rt, clean)
		out := &url.URL{Scheme: "http", Host: "up.internal", Path: want}
		req, err := http.NewRequest("GET", out.String(), nil)
		if err != nil {
			t.Fatalf("forwarded URL unparsable: %v", err)
		}
		got, err := url.ParseRequestURI(req.URL.RequestURI())
		if err != nil {
			t.Fatalf("upstream cannot parse %q: %v", req.URL.RequestURI(), err)
		}
		if got.Path != want {
			t.Fatalf("upstream decodes %q, matcher saw %q (forwarded as %q)", got.Path, want, req.URL.RequestURI())
		}
		var tail string
		switch {
		case rt.keepPrefix:
			tail = clean
		case rt.prefix:
			tail = clean[len(rt.path)-1:]
		}
		if rt.prefix && got.Path != "/base"+tail {
			t.Fatalf("upstream path %q is not the matched path %q below the route", got.Path, clean)
		}
	})
}

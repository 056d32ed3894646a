package compose

import (
	"context"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/proxy"
)

// hostileSet: a claim fills one path segment, the composite's query fills one
// query value, the path parameter another segment.
func hostileSet(t testing.TB) *Set {
	return mustCompile(t, Spec{Name: "item", Path: "/api/items/{id}", Calls: []CallSpec{{
		Name: "item", Route: "profile", Path: "/items/{param.id}/{user.v}",
		Query: map[string]string{"q": "{query.q}", "fixed": "f-{user.v}"},
	}}})
}

func TestHostileTemplateValuesNeverChangeTheUpstreamPathOrHost(t *testing.T) {
	cases := []struct {
		name   string
		claim  any
		accept bool // the value is carried as one segment; otherwise bad_input and nothing is sent
	}{
		{"dot dot slash", "../", false},
		{"dot dot", "..", false},
		{"dot", ".", false},
		{"dots and slash encoded", "..%2f", false},
		{"encoded slash", "%2f", false},
		{"encoded slash upper", "%2F", false},
		{"percent", "100%", false},
		{"question mark", "?", false},
		{"hash", "#", false},
		{"at host", "@host", true},
		{"host and port", "evil.example:80", true},
		{"backslash", `\`, false},
		{"backslash dots", `..\..`, false},
		{"slash", "a/b", false},
		{"scheme relative", "//evil.example", false},
		{"absolute URL", "http://evil.example/", false},
		{"empty", "", false},
		{"semicolon", "x;y", false},
		{"NUL", "a\x00b", false},
		{"newline", "a\nb", false},
		{"bidi override", "a\u202eb", false},
		{"division slash look-alike", "a\u2215b", false},
		{"fullwidth dot look-alike", "\uff0e\uff0e", false},
		{"invalid UTF-8", "a\xffb", false},
		{"space", "a b", true},
		{"unicode", "é", true},
		{"number claim", 42.0, true},
		{"bool claim", true, false},
		{"object claim", map[string]any{"a": "b"}, false},
		{"null claim", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, jsonAnswer(map[string]string{"ok": "1"}))
			p := &pipe{routes: map[string]*upstream{"profile": up}}
			w, rep := serve(t, context.Background(), hostileSet(t), "/api/items/7?q=fine",
				&Input{Doer: p, Claims: map[string]any{"v": tc.claim}})
			reqs := up.seen()
			if !tc.accept {
				if w.Code != 400 || rep.Calls[0].Code != CodeBadInput || len(reqs) != 0 {
					t.Fatalf("status %d, outcome %+v, upstream saw %+v", w.Code, rep.Calls[0], reqs)
				}
				if strings.Contains(w.Body.String(), "{user.v}") == false {
					t.Errorf("the answer should name the placeholder: %s", w.Body)
				}
				return
			}
			if w.Code != 200 || len(reqs) != 1 {
				t.Fatalf("status %d %s, upstream saw %+v", w.Code, w.Body, reqs)
			}
			want, _ := scalarText(tc.claim)
			r := reqs[0]
			if r.Host != up.srv.Listener.Addr().String() {
				t.Errorf("host %q", r.Host)
			}
			if r.Path != "/api/profile/items/7/"+want {
				t.Errorf("upstream path %q", r.Path)
			}
			if r.Query.Get("fixed") != "f-"+want || len(r.Query) != 2 {
				t.Errorf("upstream query %v", r.Query)
			}
		})
	}
}

func TestHostileQueryValuesStayOneQueryValue(t *testing.T) {
	for _, v := range []string{"../", "%2f", "?", "#", "@host", `\`, "a&b=c", "x#y", "q=1&q=2", "", "é ü", "//evil.example/"} {
		t.Run(v, func(t *testing.T) {
			up := newUpstream(t, jsonAnswer(map[string]string{"ok": "1"}))
			p := &pipe{routes: map[string]*upstream{"profile": up}}
			w, _ := serve(t, context.Background(), hostileSet(t), "/api/items/7?"+url.Values{"q": {v}}.Encode(),
				&Input{Doer: p, Claims: map[string]any{"v": "u"}})
			reqs := up.seen()
			if w.Code != 200 || len(reqs) != 1 {
				t.Fatalf("status %d %s", w.Code, w.Body)
			}
			r := reqs[0]
			if r.Path != "/api/profile/items/7/u" || r.Host != up.srv.Listener.Addr().String() {
				t.Errorf("upstream got %+v", r)
			}
			if len(r.Query) != 2 || len(r.Query["q"]) != 1 || r.Query.Get("q") != v {
				t.Errorf("upstream query %v, want q=%q once", r.Query, v)
			}
		})
	}
	for name, raw := range map[string]string{"given twice": "q=a&q=b", "absent": "", "control character": "q=%00"} {
		t.Run(name, func(t *testing.T) {
			up := newUpstream(t, jsonAnswer(map[string]string{}))
			w, rep := serve(t, context.Background(), hostileSet(t), "/api/items/7?"+raw,
				&Input{Doer: &pipe{routes: map[string]*upstream{"profile": up}}, Claims: map[string]any{"v": "u"}})
			if w.Code != 400 || rep.Calls[0].Placeholder != "{query.q}" || up.hits.Load() != 0 {
				t.Errorf("status %d, outcome %+v", w.Code, rep.Calls[0])
			}
		})
	}
}

func TestPathParameterFromTheRequestIsOneSegment(t *testing.T) {
	set := hostileSet(t)
	for path, want := range map[string]string{
		"/api/items/@evil.example": "@evil.example",
		"/api/items/a b":           "a b",
	} {
		c, params := set.Match(path)
		if c == nil || params.Get("id") != want {
			t.Errorf("Match(%q) = %v %q", path, c, params.Get("id"))
		}
	}
	for _, path := range []string{"/api/items", "/api/items/", "/api/items/a/b", "/api/itemsx/a", "/api/item/a"} {
		if c, _ := set.Match(path); c != nil {
			t.Errorf("Match(%q) matched", path)
		}
	}
}

func TestResultValuesFillTemplates(t *testing.T) {
	set := mustCompile(t, Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{
		{Name: "p", Route: "profile", Path: "/me"},
		{Name: "b", Route: "billing", Path: "/a/{calls.p.account.id}/{calls.p.items.1}", DependsOn: []string{"p"}},
	}})
	for _, tc := range []struct {
		name   string
		result any
		path   string // "" when the call must fail with bad_result_value
	}{
		{"nested string and list element", map[string]any{"account": map[string]any{"id": "a1"}, "items": []any{"x", 9007199254740993}}, "/api/billing/a/a1/9007199254740993"},
		{"float", map[string]any{"account": map[string]any{"id": 1.5}, "items": []any{"x", "y"}}, "/api/billing/a/1.5/y"},
		{"missing field", map[string]any{"account": map[string]any{}, "items": []any{"x", "y"}}, ""},
		{"index out of range", map[string]any{"account": map[string]any{"id": "a"}, "items": []any{"x"}}, ""},
		{"hostile", map[string]any{"account": map[string]any{"id": "../../admin"}, "items": []any{"x", "y"}}, ""},
		{"object", map[string]any{"account": map[string]any{"id": map[string]any{}}, "items": []any{"x", "y"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			billing := newUpstream(t, jsonAnswer(map[string]any{}))
			p := &pipe{routes: map[string]*upstream{"profile": newUpstream(t, jsonAnswer(tc.result)), "billing": billing}}
			w, rep := serve(t, context.Background(), set, "/api/c", &Input{Doer: p})
			if tc.path == "" {
				if w.Code != 502 || rep.Calls[1].Code != CodeBadResult || billing.hits.Load() != 0 {
					t.Errorf("status %d outcome %+v", w.Code, rep.Calls[1])
				}
				return
			}
			if s := billing.seen(); w.Code != 200 || len(s) != 1 || s[0].Path != tc.path {
				t.Errorf("status %d %s, billing saw %+v", w.Code, w.Body, s)
			}
		})
	}
}

// FuzzTemplate checks the template invariants for any claim and query value:
// either the call is refused, or the path is exactly the template with the
// value as one segment, under the route's path, reading back unchanged
// through CleanPath, and the query value arrives as exactly that one value.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"../", "..", ".", "%2f", "?", "#", "@host", `\`, "a/b", "", " ", "é", "\u2215", "a\x00", "%", "x;y", "..;", "%2e%2e", "\uff0e", "a b", "~", "-._~"} {
		f.Add(s, s)
	}
	set := mustCompile(f, Spec{Name: "f", Path: "/api/f/{id}", Calls: []CallSpec{{
		Name: "c", Route: "profile", Path: "/x/{user.v}/y{param.id}",
		Query: map[string]string{"q": "{query.q}", "r": "pre-{user.v}"},
	}}})
	k := set.all[0].calls[0]
	f.Fuzz(func(t *testing.T, claim, qv string) {
		v := &values{claims: map[string]any{"v": claim}, params: []string{"7"}, query: url.Values{"q": {qv}}}
		path, fl := k.path.expandPath(v, k.routePath, k.routePrefix)
		if fl == nil {
			want := "/api/profile/x/" + claim + "/y7"
			if path != want {
				t.Fatalf("path %q, want %q", path, want)
			}
			if strings.Count(path, "/") != 5 || strings.ContainsAny(claim, "/\\?#%;") || claim == "" || claim == "." || claim == ".." {
				t.Fatalf("value %q accepted into path %q", claim, path)
			}
			esc := (&url.URL{Path: path}).EscapedPath()
			if clean, err := proxy.CleanPath(esc); err != nil || clean != path {
				t.Fatalf("path %q does not read back through CleanPath: %q %v", path, clean, err)
			}
			u, err := url.Parse("http://upstream.test" + esc)
			if err != nil || u.Host != "upstream.test" || u.Path != path || u.RawQuery != "" || u.Fragment != "" {
				t.Fatalf("URL for %q: %v %+v", path, err, u)
			}
		} else if fl.code != CodeBadInput {
			t.Fatalf("code %q", fl.code)
		}
		q, fl := k.query[0].t.expandQuery(v)
		if fl != nil {
			if utf8Clean(qv) {
				t.Fatalf("clean query value %q refused", qv)
			}
			return
		}
		got, err := url.ParseQuery(url.Values{"q": {q}}.Encode())
		if err != nil || len(got) != 1 || len(got["q"]) != 1 || got.Get("q") != qv {
			t.Fatalf("query value %q came back as %v (%v)", qv, got, err)
		}
	})
}

func TestExactRouteAndPathParameters(t *testing.T) {
	me := newUpstream(t, jsonAnswer(map[string]string{"sub": "u-1"}))
	billing := newUpstream(t, jsonAnswer(map[string]any{"total": 12}))
	p := &pipe{routes: map[string]*upstream{"me": me, "billing": billing}}
	set := mustCompile(t, Spec{Name: "order", Path: "/api/orders/{id}/summary", Calls: []CallSpec{
		{Name: "me", Route: "me"},
		{Name: "o", Route: "billing", Path: "/orders/{param.id}", Query: map[string]string{"for": "{user.sub}", "v": "2"}},
	}, Shape: `{"id": param.id, "total": o.total, "who": me.sub}`})
	w, _ := serve(t, context.Background(), set, "/api/orders/o-9/summary", &Input{Doer: p, Claims: map[string]any{"sub": "u-1"}})
	if w.Code != 200 || w.Body.String() != `{"id":"o-9","total":12,"who":"u-1"}` {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if s := me.seen(); len(s) != 1 || s[0].Path != "/api/me" {
		t.Errorf("me saw %+v", s)
	}
	if s := billing.seen(); len(s) != 1 || s[0].Path != "/api/billing/orders/o-9" || s[0].Query.Encode() != "for=u-1&v=2" {
		t.Errorf("billing saw %+v", s)
	}
}

func TestServeWithoutDoerRefuses(t *testing.T) {
	set := mustCompile(t, Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{{Name: "a", Route: "profile", Path: "/x"}}})
	c, _ := set.Match("/api/c")
	w := httptest.NewRecorder()
	if rep := c.Serve(w, httptest.NewRequest("GET", "/api/c", nil), &Input{}); w.Code != 500 || rep.Error != "composite_misconfigured" {
		t.Errorf("%d %+v", w.Code, rep)
	}
}

package compose

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCompileReportsEveryProblemWithItsPlace(t *testing.T) {
	call := func(name, route, path string, deps ...string) CallSpec {
		return CallSpec{Name: name, Route: route, Path: path, DependsOn: deps}
	}
	one := func(calls ...CallSpec) Spec { return Spec{Name: "c", Path: "/api/c", Calls: calls} }
	cases := []struct {
		name string
		spec Spec
		want []string // substrings of the problems, in order
	}{
		{"unknown route", one(call("a", "nope", "/x")), []string{`composites[c].calls.a.route: unknown route "nope" (routes: billing, me, notifications, profile, weather)`}},
		{"cycle", one(call("a", "profile", "/x", "b"), call("b", "profile", "/y", "c"), call("c", "profile", "/z", "a")),
			[]string{`depends_on forms a cycle: a -> b -> c -> a`}},
		{"self dependency", one(call("a", "profile", "/x", "a")), []string{`a call cannot depend on itself`}},
		{"unknown dependency", one(call("a", "profile", "/x", "zz")), []string{`depends on unknown call "zz"`}},
		{"template names unknown call", one(call("a", "profile", "/{calls.zz.id}")), []string{`calls.a.path: placeholder {calls.zz.id} names unknown call "zz"`}},
		{"template reads a call not in depends_on", one(call("a", "profile", "/x"), call("b", "profile", "/{calls.a.id}")),
			[]string{`calls.b.path: placeholder {calls.a.id} reads call "a", which is not in depends_on`}},
		{"template without field", one(call("a", "profile", "/x"), call("b", "profile", "/{calls.a}", "a")), []string{`must name a field`}},
		{"unknown parameter", one(call("a", "profile", "/{param.id}")), []string{`placeholder {param.id} names no parameter`}},
		{"unknown source", one(call("a", "profile", "/{session.id}")), []string{`unknown source "session"`}},
		{"unterminated placeholder", one(call("a", "profile", "/{user.sub")), []string{`unterminated {`}},
		{"stray brace", one(call("a", "profile", "/x}")), []string{`unmatched }`}},
		{"dot segment in call path", one(call("a", "profile", "/../admin")), []string{`is not a clean path`}},
		{"encoded slash in call path", one(call("a", "profile", "/a%2Fb")), []string{`is not a clean path`}},
		{"query in call path", one(call("a", "profile", "/a?x=1")), []string{`put query parameters under query:`}},
		{"call path on a prefix route must start with /", one(call("a", "profile", "me")), []string{`must start with /`}},
		{"call path on an exact route", one(call("a", "me", "/x")), []string{`matches exactly /api/me: leave the call's path empty`}},
		{"method the route does not allow", one(CallSpec{Name: "a", Route: "profile", Path: "/x", Method: "POST"}), []string{`route "profile" does not allow POST (it allows GET)`}},
		{"HEAD call", one(CallSpec{Name: "a", Route: "profile", Path: "/x", Method: "HEAD"}), []string{`not supported for calls`}},
		{"duplicate call", one(call("a", "profile", "/x"), call("a", "profile", "/y")), []string{`call "a" is defined twice`}},
		{"reserved call name", one(call("user", "profile", "/x")), []string{`call name "user" is reserved`}},
		{"call name not an identifier", one(call("my-call", "profile", "/x")), []string{`must be an identifier`}},
		{"no calls", Spec{Name: "c", Path: "/api/c"}, []string{`needs at least one call`}},
		{"same path as an exact route", Spec{Name: "c", Path: "/api/me", Calls: []CallSpec{call("a", "profile", "/x")}}, []string{`path /api/me is also served by route "me"`}},
		{"under a prefix route", Spec{Name: "c", Path: "/api/profile/{id}", Calls: []CallSpec{call("a", "profile", "/x")}}, []string{`is also served by route "profile" (/api/profile/)`}},
		{"parameter that could be an exact route", Spec{Name: "c", Path: "/api/{x}", Calls: []CallSpec{call("a", "profile", "/x")}}, []string{`also served by route "me"`}},
		{"trailing slash", Spec{Name: "c", Path: "/api/c/", Calls: []CallSpec{call("a", "profile", "/x")}}, []string{`must not end with /`}},
		{"unclean path", Spec{Name: "c", Path: "/api//c", Calls: []CallSpec{call("a", "profile", "/x")}}, []string{`is not clean`}},
		{"partial parameter segment", Spec{Name: "c", Path: "/api/c-{id}", Calls: []CallSpec{call("a", "profile", "/x")}}, []string{`must be a whole segment`}},
		{"bad method", Spec{Name: "c", Path: "/api/c", Method: "get", Calls: []CallSpec{call("a", "profile", "/x")}}, []string{`method "get" is not supported`}},
		{"negative timeouts", Spec{Name: "c", Path: "/api/c", Timeout: -1, Calls: []CallSpec{{Name: "a", Route: "profile", Path: "/x", Timeout: -time.Second}}},
			[]string{`composites[c].timeout: timeout must be positive`, `calls.a.timeout: timeout must be positive`}},
		{"shape does not compile", Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{call("a", "profile", "/x")}, Shape: `{"x": a.name +}`}, []string{`composites[c].shape: shape 1:`}},
		{"shape names an unknown call", Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{call("a", "profile", "/x")}, Shape: `{"x": b.name}`}, []string{`undeclared reference to 'b'`}},
		{"shape is not an object", Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{call("a", "profile", "/x")}, Shape: `"hello"`}, []string{`shape yields string; it must yield a JSON object`}},
		{"shape is not JSON-able", Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{call("a", "profile", "/x")}, Shape: `{"d": duration("1s")}`}, []string{`google.protobuf.Duration value, which has no JSON form`}},
		{"shape with non-string keys", Spec{Name: "c", Path: "/api/c", Calls: []CallSpec{call("a", "profile", "/x")}, Shape: `{1: "x"}`}, []string{`map with int keys`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile([]Spec{tc.spec}, testRoutes)
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Compile accepted it (err %v)", err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("problems:\n%s\nwant one containing %q", msg, w)
				}
			}
		})
	}
}

func TestCompileProblemsCarryPositions(t *testing.T) {
	specs := []Spec{
		{Name: "a", Path: "/api/a", Key: "composites[0]", Pos: "gh.yaml:10", FieldPos: map[string]string{"shape": "gh.yaml:20"},
			Calls: []CallSpec{
				{Name: "p", Route: "nope", Path: "/x", Pos: "gh.yaml:12", FieldPos: map[string]string{"route": "gh.yaml:13"}},
				{Name: "q", Route: "profile", Path: "/{calls.p.id}", Pos: "gh.yaml:14"},
			}},
		{Name: "b", Path: "/api/b", Key: "composites[1]", Pos: "gh.yaml:30", FieldPos: map[string]string{"shape": "gh.yaml:31"},
			Calls: []CallSpec{{Name: "p", Route: "profile", Path: "/x"}}, Shape: "{\n\"x\": nope}"},
		{Name: "b", Path: "/api/b", Key: "composites[2]", Pos: "gh.yaml:40", Calls: []CallSpec{{Name: "p", Route: "profile", Path: "/x"}}},
	}
	_, err := Compile(specs, testRoutes)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err %v", err)
	}
	want := []Problem{
		{Pos: "gh.yaml:13", Key: "composites[0].calls.p.route", Composite: 0, Call: "p", Field: "route"},
		{Pos: "gh.yaml:14", Key: "composites[0].calls.q.path", Composite: 0, Call: "q", Field: "path"},
		{Pos: "gh.yaml:31", Key: "composites[1].shape", Composite: 1, Field: "shape"},
		{Pos: "gh.yaml:40", Key: "composites[2].name", Composite: 2, Field: "name"},
	}
	if len(errs.Problems) != len(want) {
		t.Fatalf("problems:\n%s", err)
	}
	for i, w := range want {
		g := errs.Problems[i]
		g.Message = ""
		if g != w {
			t.Errorf("problem %d = %+v, want %+v", i, errs.Problems[i], w)
		}
	}
	if !strings.HasPrefix(errs.Problems[0].String(), "gh.yaml:13: composites[0].calls.p.route: unknown route") {
		t.Errorf("String() = %q", errs.Problems[0].String())
	}
}

func TestShapePositionTranslation(t *testing.T) {
	var gotLine, gotCol int
	_, err := Compile([]Spec{{Name: "a", Path: "/api/a", Calls: []CallSpec{{Name: "p", Route: "profile", Path: "/x"}},
		Shape:    "{\n  \"x\": nope}",
		ShapePos: func(line, col int) string { gotLine, gotCol = line, col; return "f.yaml:99" }}}, testRoutes)
	var errs *Errors
	if !errors.As(err, &errs) || errs.Problems[0].Pos != "f.yaml:99" || gotLine != 2 || gotCol != 8 {
		t.Errorf("err %v, line %d col %d", err, gotLine, gotCol)
	}
}

func TestCompileAcceptsTheDesignExample(t *testing.T) {
	set, err := Compile([]Spec{{
		Name: "dashboard", Path: "/api/dashboard",
		Calls: []CallSpec{
			{Name: "profile", Route: "profile", Path: "/me"},
			{Name: "notifications", Route: "notifications", Path: "/unread", Optional: true, Timeout: 2 * time.Second},
			{Name: "plan", Route: "billing", Path: "/accounts/{calls.profile.account_id}/plan", DependsOn: []string{"profile"}},
		},
		Shape: "{\"name\": profile.name,\n \"unread\": notifications == null ? 0 : notifications.count,\n \"plan\": plan.tier}",
	}, {
		Name: "order", Path: "/api/orders/{id}/summary", Method: "GET", Timeout: 3 * time.Second,
		Calls: []CallSpec{{Name: "me", Route: "me"}, {Name: "o", Route: "billing", Path: "/orders/{param.id}", Query: map[string]string{"for": "{user.sub}"}}},
	}}, testRoutes)
	if err != nil {
		t.Fatal(err)
	}
	c := set.Composites()[0]
	if c.Timeout() != DefaultCallTimeout || c.Method() != "GET" || c.Name() != "dashboard" || c.Path() != "/api/dashboard" {
		t.Errorf("defaults: %v %s", c.Timeout(), c.Method())
	}
	if refs := c.Calls(); len(refs) != 3 || refs[2] != (CallRef{Name: "plan", Route: "billing", Method: "GET"}) || !refs[1].Optional {
		t.Errorf("Calls() = %+v", refs)
	}
	if set.Composites()[1].Timeout() != 3*time.Second {
		t.Errorf("explicit timeout lost")
	}
}

func TestOverlappingCompositesAreRefused(t *testing.T) {
	calls := []CallSpec{{Name: "a", Route: "profile", Path: "/x"}}
	_, err := Compile([]Spec{
		{Name: "one", Path: "/api/orders/{id}", Calls: calls},
		{Name: "two", Path: "/api/orders/latest", Calls: calls},
	}, testRoutes)
	if err == nil || !strings.Contains(err.Error(), `overlaps composite "one"`) {
		t.Errorf("err %v", err)
	}
}

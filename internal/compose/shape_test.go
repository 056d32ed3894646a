package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// memDoer answers each route with a fixed JSON body, without a network.
type memDoer map[string]string

func (m memDoer) Do(ctx context.Context, route, method, path string, query url.Values) (*http.Response, error) {
	body, ok := m[route]
	if !ok {
		return &http.Response{StatusCode: 500, Header: http.Header{}, Body: http.NoBody}, nil
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}},
		ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}, nil
}

func TestShapes(t *testing.T) {
	doer := memDoer{
		"profile": `{"name":"Ada","id":42,"big":9007199254740993,"ratio":0.25,"admin":false,"tags":["a","b"],"addr":{"city":"Zürich"},"html":"<b>&</b>","none":null}`,
		"weather": `[1,2.5,"x",{"k":true}]`,
	}
	calls := []CallSpec{{Name: "p", Route: "profile", Path: "/me"}, {Name: "w", Route: "weather", Path: "/x"}, {Name: "n", Route: "notifications", Path: "/y", Optional: true}}
	cases := []struct {
		name, shape string
		status      int
		want        string // the answer, or a substring of the error message
	}{
		{"default shape", "", 200, `{"p":{"addr":{"city":"Zürich"},"admin":false,"big":9007199254740993,"html":"\u003cb\u003e\u0026\u003c/b\u003e","id":42,"name":"Ada","none":null,"ratio":0.25,"tags":["a","b"]},"w":[1,2.5,"x",{"k":true}],"n":null,"errors":[{"call":"n","code":"upstream_status"}]}`},
		{"fields by call name", `{"name": p.name, "id": p.id, "unread": n == null ? 0 : n.count}`, 200, `{"id":42,"name":"Ada","unread":0,"errors":[{"call":"n","code":"upstream_status"}]}`},
		{"calls map", `{"city": calls.p.addr.city, "ok": calls.n == null}`, 200, `{"city":"Zürich","ok":true,"errors":[{"call":"n","code":"upstream_status"}]}`},
		{"all JSON types", `{"i": 1, "u": 2u, "d": 1.5, "whole": 2.0, "s": "x\n\"y\"", "b": true, "z": null, "l": [1, "a", [null]], "m": {"k": {"k2": []}}}`, 200,
			`{"b":true,"d":1.5,"i":1,"l":[1,"a",[null]],"m":{"k":{"k2":[]}},"s":"x\n\"y\"","u":2,"whole":2,"z":null,"errors":[{"call":"n","code":"upstream_status"}]}`},
		{"user param query", `{"sub": user.sub, "q": query.q, "has_dup": "dup" in query}`, 200, `{"has_dup":false,"q":"1","sub":"u-1","errors":[{"call":"n","code":"upstream_status"}]}`},
		{"list results and comprehensions", `{"nums": w.filter(x, type(x) == int || type(x) == double), "tags": p.tags.map(t, t.upperAscii())}`, 200,
			`{"nums":[1,2.5],"tags":["A","B"],"errors":[{"call":"n","code":"upstream_status"}]}`},
		{"big integers stay exact", `{"big": p.big, "next": p.id + 1}`, 200, `{"big":9007199254740993,"next":43,"errors":[{"call":"n","code":"upstream_status"}]}`},
		{"a missing field fails without quoting data", `{"x": p.secret_field}`, 502, `no such key`},
		{"a null optional read fails", `{"x": n.count}`, 502, `composite_shape_failed`},
		{"non-JSON value at run time", `{"t": dyn(timestamp("2020-01-01T00:00:00Z"))}`, 502, `has no JSON form`},
		{"NaN", `{"x": 0.0 / 0.0}`, 502, `NaN`},
		{"non-object at run time", `dyn(p.tags)`, 502, `not a JSON object`},
		{"errors member is reserved", `{"errors": 1}`, 502, `errors\" member`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := mustCompile(t, Spec{Name: "s", Path: "/api/s", Calls: calls, Shape: tc.shape})
			w, _ := serve(t, context.Background(), set, "/api/s?q=1&dup=a&dup=b", &Input{Doer: doer, Claims: map[string]any{"sub": "u-1"}})
			if w.Code != tc.status {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if tc.status == 200 {
				if w.Body.String() != tc.want {
					t.Errorf("answer %s\nwant   %s", w.Body, tc.want)
				}
				var v any
				if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
					t.Errorf("answer is not JSON: %v", err)
				}
				return
			}
			if !strings.Contains(w.Body.String(), tc.want) {
				t.Errorf("answer %s, want it to contain %q", w.Body, tc.want)
			}
			if strings.Contains(w.Body.String(), "Ada") || strings.Contains(w.Body.String(), "Zürich") {
				t.Errorf("a shape failure revealed call data: %s", w.Body)
			}
		})
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl\x00\x01\x1f", "<script>&", "\u2028\u2029", "bad\xffutf8", "é😀", "\t\r\n"} {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

package dpop

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseClaims(t *testing.T) {
	cases := []struct {
		name string
		in   string
		ok   bool
		want claims
	}{
		{"honest", `{"jti":"a1","htm":"GET","htu":"https://x/p","iat":1700000000,"ath":"h"}`, true,
			claims{JTI: "a1", HTM: "GET", HTU: "https://x/p", IAT: 1700000000, HasIAT: true, ATH: "h", HasATH: true}},
		{"white space and order", " {\n\t\"iat\" : 1.5e3 , \"jti\":\"x\" }\r\n", true, claims{JTI: "x", IAT: 1500, HasIAT: true}},
		{"empty object", `{}`, true, claims{}},
		{"escapes", `{"jti":"a\"b\\c\/d\u00e9\n","htu":"\ud83d\ude00"}`, true, claims{JTI: "a\"b\\c/dé\n", HTU: "😀"}},
		{"lone surrogate as encoding/json", `{"jti":"\ud800x","htm":"\ud800\u0041"}`, true, claims{JTI: "\uFFFDx", HTM: "\uFFFDA"}},
		{"null is absent", `{"ath":null,"iat":null,"jti":null}`, true, claims{}},
		{"empty ath is present", `{"ath":""}`, true, claims{HasATH: true}},
		{"other members skipped", `{"x":{"a":[1,-2.5e-3,true,false,null,"s",{}],"b":[]},"jti":"j","nonce":"n"}`, true, claims{JTI: "j", Nonce: "n"}},
		{"names are case-sensitive", `{"JTI":"j"}`, true, claims{}},

		{"duplicate jti", `{"jti":"a","jti":"b"}`, false, claims{}},
		{"duplicate iat", `{"iat":1,"iat":2}`, false, claims{}},
		{"jti a number", `{"jti":1}`, false, claims{}},
		{"iat a string", `{"iat":"1700000000"}`, false, claims{}},
		{"iat huge", `{"iat":1e400}`, false, claims{}},
		{"iat leading zero", `{"iat":0123}`, false, claims{}},
		{"iat plus sign", `{"iat":+1}`, false, claims{}},
		{"iat hex", `{"iat":0x10}`, false, claims{}},
		{"iat bare dot", `{"iat":1.}`, false, claims{}},
		{"array", `["jti"]`, false, claims{}},
		{"null", `null`, false, claims{}},
		{"trailing data", `{"jti":"a"}x`, false, claims{}},
		{"two objects", `{"jti":"a"}{"jti":"b"}`, false, claims{}},
		{"trailing comma", `{"jti":"a",}`, false, claims{}},
		{"missing colon", `{"jti" "a"}`, false, claims{}},
		{"unterminated", `{"jti":"a`, false, claims{}},
		{"control character", "{\"jti\":\"a\x01\"}", false, claims{}},
		{"bad escape", `{"jti":"\x"}`, false, claims{}},
		{"short unicode escape", `{"jti":"\u12"}`, false, claims{}},
		{"invalid UTF-8", "{\"jti\":\"\xff\"}", false, claims{}},
		{"single quotes", `{'jti':'a'}`, false, claims{}},
		{"bad literal", `{"x":tru}`, false, claims{}},
		{"deep nesting", `{"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, false, claims{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseClaims(tc.in)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Fatalf("parseClaims(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzParseClaims holds parseClaims to encoding/json: what it accepts is
// JSON whose members decode to the same values, and valid UTF-8 JSON with
// each claim once and of its type is accepted.
func FuzzParseClaims(f *testing.F) {
	for _, s := range []string{
		`{"jti":"a1","htm":"GET","htu":"https://x/p","iat":1700000000,"ath":"h"}`,
		`{"jti":"a\"b\\c\/d\u00e9\n","htu":"\ud83d\ude00","x":[1,{"y":null}]}`,
		`{"jti":"\ud800\u0041","iat":-1.5E+3}`,
		`{"iat":null,"ath":null}`, `{}`, `[]`, `{"jti":1}`, `{"x":1e400}`, `{"iat":1e400}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseClaims(s)
		var m map[string]any
		jsonErr := json.Unmarshal([]byte(s), &m)
		if ok {
			var rangeErr *json.UnmarshalTypeError
			if errors.As(jsonErr, &rangeErr) && json.Valid([]byte(s)) {
				// A number beyond float64 in a member nobody reads: parseClaims skips
				// it, as encoding/json does decoding into a struct; only a map refuses.
				return
			}
			if jsonErr != nil || m == nil {
				t.Fatalf("accepted %q, which encoding/json refuses: %v", s, jsonErr)
			}
			for name, v := range map[string]string{"jti": got.JTI, "htm": got.HTM, "htu": got.HTU, "ath": got.ATH, "nonce": got.Nonce} {
				if want, _ := m[name].(string); want != v {
					t.Fatalf("%q: %s = %q, encoding/json %q", s, name, v, want)
				}
			}
			if want, isNum := m["iat"].(float64); isNum != got.HasIAT || want != got.IAT {
				t.Fatalf("%q: iat = %v (%v), encoding/json %v", s, got.IAT, got.HasIAT, m["iat"])
			}
			return
		}
		if jsonErr != nil || m == nil || !utf8.ValidString(s) || !claimsOnceEach(s) {
			return
		}
		for _, name := range []string{"jti", "htm", "htu", "ath", "nonce"} {
			if v, ok := m[name]; ok && v != nil {
				if _, isStr := v.(string); !isStr {
					return
				}
			}
		}
		if v, ok := m["iat"]; ok && v != nil {
			if _, isNum := v.(float64); !isNum {
				return
			}
		}
		t.Fatalf("refused %q, which encoding/json reads", s)
	})
}

// claimsOnceEach reports whether no claim name occurs twice among the
// top-level members.
func claimsOnceEach(s string) bool {
	dec := json.NewDecoder(strings.NewReader(s))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		name, _ := tok.(string)
		switch name {
		case "jti", "htm", "htu", "ath", "nonce", "iat":
			if seen[name] {
				return false
			}
			seen[name] = true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return true
}

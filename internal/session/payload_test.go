package session

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
)

// payloadCases are sessions whose payloads the fast decoder must take
// itself: everything seal can write.
func payloadCases() map[string]*Session {
	jwt := "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("x", 300) + ".sig"
	berlin := time.FixedZone("", 2*3600)
	return map[string]*Session{
		"empty": {},
		"realistic": {
			Subject: "alice", IdPSessionID: "sid-1",
			Claims: map[string]any{
				"iss": "https://idp.example.com", "sub": "alice", "aud": "gatehouse", "exp": 1.7e9, "iat": 1700000000.0,
				"amr": []any{"pwd", "otp"}, "email_verified": true, "nothing": nil, "ratio": -0.25e-3,
				"address": map[string]any{"country": "DE", "lines": []any{"a", 1.0, false, nil, []any{}, map[string]any{}}},
			},
			AccessToken: secret.New(jwt), RefreshToken: secret.New("rt"), IDToken: secret.New(jwt),
			AccessTokenExpiry: time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC), TokenType: "Bearer",
			Scope: "openid email", AuthTime: time.Unix(1_700_000_000, 0), ACR: "urn:mace:incommon:iap:silver",
			AMR: []string{"pwd"}, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, berlin), AbsoluteExpiry: time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
		},
		// json.Marshal escapes <, >, &, U+2028/9 and control characters and
		// replaces invalid UTF-8: the decoder must undo exactly that.
		"escapes": {
			Subject: "o'brien&<co>", IdPSessionID: "sid\u2028x",
			Claims: map[string]any{
				"name": "Zoë \"Z\" Ñandú \\ / \b\f\n\r\t \x01 😀", "bad utf8": "a\xffb\xc3", "a&b<c>": "\u2029",
				"日本": "語", "": "empty key", "url": "https://example.com/?a=1&b=2",
			},
			TokenType: "DPoP", Scope: "x&y", ACR: "\x00", AMR: []string{"a\"b", "\u00e9"},
		},
		"empty collections": {Subject: "bob", Claims: map[string]any{}, AMR: []string{}},
		"native": {
			Subject: "carol", Native: &Native{ClientID: "app", Scopes: []string{"orders", "profile"}, JKT: "thumb"},
		},
		"native bare":  {Subject: "dave", Native: &Native{ClientID: "app"}},
		"other type":   {Subject: "erin", TokenType: "mac"},
		"many claims":  {Subject: "frank", Claims: manyClaims(40)},
		"long arrays":  {Subject: "gina", AMR: strings.Split(strings.Repeat("m,", 20)+"m", ","), Claims: map[string]any{"g": manyValues(30)}},
		"deep nesting": {Subject: "hal", Claims: map[string]any{"d": nested(maxDepth/2 - 1)}},
	}
}

func manyClaims(n int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[strings.Repeat("k", i+1)] = float64(i)
	}
	return m
}

func manyValues(n int) []any {
	vs := make([]any, n)
	for i := range vs {
		vs[i] = strings.Repeat("v", i)
	}
	return vs
}

func nested(depth int) any {
	if depth == 0 {
		return "leaf"
	}
	return map[string]any{"n": []any{nested(depth - 1)}}
}

func payloadOf(s *Session) payload {
	return payload{
		Subject: s.Subject, IdPSessionID: s.IdPSessionID, Claims: s.Claims,
		AccessToken: s.AccessToken.Reveal(), RefreshToken: s.RefreshToken.Reveal(), IDToken: s.IDToken.Reveal(),
		AccessTokenExpiry: s.AccessTokenExpiry, TokenType: s.TokenType, Scope: s.Scope,
		AuthTime: s.AuthTime, ACR: s.ACR, AMR: s.AMR,
		Created: s.Created, AbsoluteExpiry: s.AbsoluteExpiry, Native: s.Native,
	}
}

// Everything seal writes takes the fast path, and decodes to exactly what
// encoding/json makes of it.
func TestPayloadDecoderTakesWhatSealWrites(t *testing.T) {
	for name, s := range payloadCases() {
		t.Run(name, func(t *testing.T) {
			p := payloadOf(s)
			pt, err := json.Marshal(&p)
			if err != nil {
				t.Fatal(err)
			}
			var want payload
			if err := json.Unmarshal(pt, &want); err != nil {
				t.Fatal(err)
			}
			for _, hints := range [][2]string{{"", ""}, {s.Subject, s.IdPSessionID}} {
				var got payload
				d := payloadDecoder{data: pt, sub: hints[0], sid: hints[1]}
				if !d.payload(&got) {
					t.Fatalf("the fast decoder refused what json.Marshal wrote: %s", pt)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("fast decode differs from encoding/json:\n got %#v\nwant %#v", got, want)
				}
			}
		})
	}
}

// Whatever the input, decodePayload's answer is json.Unmarshal's: inputs
// the fast decoder does not know go to encoding/json.
func TestDecodePayloadMatchesEncodingJSON(t *testing.T) {
	for name, in := range map[string]string{
		"whitespace":             " {\n\t\"sub\" : \"a\" , \"claims\" : { \"x\" : [ 1 , 2 ] } }\r\n",
		"unknown field":          `{"sub":"a","extra":1}`,
		"field case":             `{"SUB":"a","Claims":{"x":1}}`,
		"escaped field name":     `{"s\u0075b":"a"}`,
		"duplicate field":        `{"sub":"a","sub":"b"}`,
		"duplicate claims merge": `{"claims":{"a":1},"claims":{"b":2}}`,
		"duplicate claim":        `{"claims":{"a":1,"a":"two"}}`,
		"null fields":            `{"sub":null,"claims":null,"amr":null,"native":null,"at_exp":null}`,
		"wrong types":            `{"sub":1}`,
		"amr not strings":        `{"amr":["a",1]}`,
		"native unknown":         `{"native":{"client_id":"a","x":1}}`,
		"native dup":             `{"native":{"jkt":"a","jkt":"b"}}`,
		"bad time":               `{"created":"yesterday"}`,
		"escaped time":           `{"created":"2026-01-02T03:04:05\u005a"}`,
		"time offset":            `{"created":"2026-01-02T03:04:05+05:30"}`,
		"huge number":            `{"claims":{"n":1e400}}`,
		"number forms":           `{"claims":{"a":-0,"b":0.5e+3,"c":12E-2,"d":-1.0}}`,
		"bad numbers":            `{"claims":{"a":01}}`,
		"bad number dot":         `{"claims":{"a":1.}}`,
		"bad number exp":         `{"claims":{"a":1e}}`,
		"bad minus":              `{"claims":{"a":-}}`,
		"lone surrogate":         `{"claims":{"a":"\ud800x","b":"\udc00","c":"\ud83d\ude00","d":"\ud800\u0041"}}`,
		"raw control":            "{\"sub\":\"a\x01\"}",
		"bad escape":             `{"sub":"\q"}`,
		"short unicode escape":   `{"sub":"\u12"}`,
		"invalid utf8 key":       "{\"claims\":{\"\xff\":1}}",
		"trailing data":          `{"sub":"a"} x`,
		"two objects":            `{}{}`,
		"not an object":          `["sub"]`,
		"unterminated":           `{"sub":"a"`,
		"unterminated string":    `{"sub":"a`,
		"trailing comma":         `{"sub":"a",}`,
		"empty":                  ``,
		"literals":               `{"claims":{"t":true,"f":false,"n":null}}`,
		"bad literal":            `{"claims":{"t":tru}}`,
		"too deep":               `{"claims":{"d":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`,
	} {
		t.Run(name, func(t *testing.T) { checkDecodeMatches(t, []byte(in)) })
	}
}

func checkDecodeMatches(t *testing.T, in []byte) {
	t.Helper()
	var want, got payload
	wantErr := json.Unmarshal(in, &want)
	gotErr := decodePayload(append([]byte(nil), in...), "a", "", &got)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("decodePayload(%q) error = %v, encoding/json: %v", in, gotErr, wantErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodePayload(%q) =\n %#v\nencoding/json:\n %#v", in, got, want)
	}
	// What the fast decoder takes, encoding/json takes too, the same way.
	var fast payload
	if d := (payloadDecoder{data: in, sub: "a"}); d.payload(&fast) {
		if wantErr != nil {
			t.Fatalf("the fast decoder took %q, which encoding/json refuses: %v", in, wantErr)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("fast decode of %q =\n %#v\nencoding/json:\n %#v", in, fast, want)
		}
	}
}

func FuzzDecodePayload(f *testing.F) {
	for _, s := range payloadCases() {
		p := payloadOf(s)
		pt, err := json.Marshal(&p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pt)
	}
	f.Add([]byte(`{"claims":{"a":"\ud800\udc00","b":[1,{"c":null}]}}`))
	f.Fuzz(func(t *testing.T, in []byte) { checkDecodeMatches(t, in) })
}

// The fast path's allocations for a typical payload: what is left of the
// ~90 encoding/json made.
func TestPayloadDecoderAllocations(t *testing.T) {
	s := payloadCases()["realistic"]
	p := payloadOf(s)
	pt, err := json.Marshal(&p)
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		var got payload
		if err := decodePayload(pt, s.Subject, s.IdPSessionID, &got); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%v allocations", allocs)
}

// BenchmarkOpen measures what an uncached Load does after the store read:
// AEAD open and payload decode of a typical session; json is the same
// payload through encoding/json, for reference.
func BenchmarkOpen(b *testing.B) {
	s := payloadCases()["realistic"]
	h, err := NewHandle()
	if err != nil {
		b.Fatal(err)
	}
	s.ID = h.ID()
	sealed, err := seal(h, s, "")
	if err != nil {
		b.Fatal(err)
	}
	rec := Record{ID: h.ID(), Subject: s.Subject, IdPSessionID: s.IdPSessionID, Sealed: sealed}
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := openFor(h, rec, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	p := payloadOf(s)
	pt, _ := json.Marshal(&p)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got payload
			if err := decodePayload(pt, s.Subject, s.IdPSessionID, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got payload
			if err := json.Unmarshal(pt, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}

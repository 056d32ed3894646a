package jsonscan

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"
)

// strOf reads in as one string and nothing else.
func strOf[T Text](in T, mode Mode) (string, bool) {
	s := New(in, mode)
	v, ok := s.Str()
	return v, ok && s.End()
}

// The string cases are held to encoding/json: a case json.Unmarshal takes
// into a string must read to the same value, and one it refuses must be
// refused; with RefuseInvalidUTF8, invalid UTF-8 is refused too.
func TestStr(t *testing.T) {
	long := strings.Repeat("x", 300)
	cases := []struct {
		name, in string
		plain    bool // the raw text is the value
	}{
		{"empty", `""`, true},
		{"plain", `"jti"`, true},
		{"white space around", " \t\r\n\"a b\" \n", true},
		{"long plain", `"` + long + `"`, true},
		{"UTF-8", `"Zoë 日本 😀"`, true},
		{"DEL is not a control character", "\"a\x7fb\"", true},
		{"simple escapes", `"\" \\ \/ \b \f \n \r \t"`, false},
		{"unicode escapes", `"\u0041\u00e9\u20AC\uFFFF\u0000"`, false},
		{"pair", `"\ud83d\ude00"`, false},
		{"pair upper case", `"\uD83D\uDE00x"`, false},
		{"lone high", `"\ud800x"`, false},
		{"lone high at the end", `"\ud800"`, false},
		{"lone low", `"\udc00"`, false},
		{"low then high", `"\udc00\ud800"`, false},
		{"high then a letter escape", `"\ud800\u0041"`, false},
		{"high then a simple escape", `"\ud800\n"`, false},
		{"two highs then a low", `"\ud800\ud83d\ude00"`, false},
		{"high then a bad escape", `"\ud800\u00zz"`, false},
		{"high then a short escape", `"\ud800\u12"`, false},
		{"escape at a word boundary", `"1234567\n90123456\u00e9"`, false},
		{"long escaped", `"` + long + `\n` + long + `"`, false},
		{"long with a pair", `"` + long + `\ud83d\ude00"`, false},

		{"invalid byte", "\"a\xffb\"", false},
		{"invalid at a word boundary", "\"1234567\xff\"", false},
		{"truncated sequence", "\"a\xc3\"", false},
		{"truncated before an escape", "\"a\xc3\\u00a9\"", false},
		{"overlong", "\"\xc0\xaf\"", false},
		{"surrogate in UTF-8", "\"\xed\xa0\x80\"", false},
		{"invalid and escaped", "\"\xff\\n\xfe\"", false},
		{"long invalid", "\"" + strings.Repeat("\xff", 200) + "\"", false},

		{"unterminated", `"abc`, false},
		{"unterminated after eight", `"abcdefghijkl`, false},
		{"unterminated escape", `"abc\`, false},
		{"no quote", `abc`, false},
		{"single quotes", `'abc'`, false},
		{"control character", "\"a\x01b\"", false},
		{"NUL", "\"a\x00b\"", false},
		{"raw newline", "\"a\nb\"", false},
		{"raw tab", "\"a\tb\"", false},
		{"control character at a word boundary", "\"1234567\x1f\"", false},
		{"bad escape", `"\x"`, false},
		{"upper-case U", `"\U0041"`, false},
		{"apostrophe escape", `"\'"`, false},
		{"short unicode escape", `"\u12"`, false},
		{"non-hex unicode escape", `"\u12g4"`, false},
		{"trailing data", `"a"b`, true},
		{"two strings", `"a" "b"`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want string
			jsonErr := json.Unmarshal([]byte(tc.in), &want)
			for _, mode := range []Mode{0, RefuseInvalidUTF8} {
				// The strict mode refuses exactly where the text is not
				// UTF-8 (each case is one string at most).
				wantOK := jsonErr == nil && (mode == 0 || utf8.ValidString(tc.in))
				gotS, okS := strOf(tc.in, mode)
				gotB, okB := strOf([]byte(tc.in), mode)
				if okS != wantOK || okB != wantOK {
					t.Fatalf("mode %d: Str(%q) ok = %v (from bytes %v), want %v; encoding/json: %v", mode, tc.in, okS, okB, wantOK, jsonErr)
				}
				if wantOK && (gotS != want || gotB != want) {
					t.Fatalf("mode %d: Str(%q) = %q (from bytes %q), encoding/json %q", mode, tc.in, gotS, gotB, want)
				}
			}
			s := New(tc.in, 0)
			if q, ok := s.ScanStr(); ok && q.Plain() != tc.plain {
				t.Fatalf("ScanStr(%q).Plain() = %v", tc.in, q.Plain())
			}
		})
	}
}

// A plain string from a string is a substring of it; from bytes, a copy;
// Raw is the text between the quotes.
func TestStrSharesOnlyStrings(t *testing.T) {
	in := `{"name":"value"}`
	s := New(in, 0)
	s.Consume('{')
	name, _ := s.Str()
	if name != "name" || unsafe.StringData(name) != unsafe.StringData(in[2:6]) {
		t.Fatalf("name %q is not a substring of the text", name)
	}
	b := []byte(in)
	bs := New(b, 0)
	bs.Consume('{')
	q, _ := bs.ScanStr()
	if string(q.Raw) != "name" || &q.Raw[0] != &b[2] {
		t.Fatalf("Raw %q is not the text between the quotes", q.Raw)
	}
	v := q.Value()
	b[2] = 'X'
	if v != "name" {
		t.Fatalf("a string from bytes changed with them: %q", v)
	}
}

func TestNumber(t *testing.T) {
	for _, in := range []string{
		"0", "-0", "1", "-1", "10", "1234567890", "0.5", "-0.5", "10.25", "1e5", "1E5", "1e+5", "1e-5",
		"1.5e300", "-1.5E-300", "1e400", "-1e400", "1e-400", "123456789012345678901234567890",
		"4.9406564584124654e-324", "1.7976931348623157e308", "1.7976931348623159e308",
		" 1 ", "\n-2\t",
		"", "-", "+1", "01", "-01", "00", "1.", ".5", "-.5", "1.e5", "1e", "1e+", "1e-", "1ee5", "1.5.5",
		"0x10", "Infinity", "-Infinity", "NaN", "1_000", "１", "1 2", "--1", "1-",
	} {
		t.Run(in, func(t *testing.T) {
			var want float64
			jsonErr := json.Unmarshal([]byte(in), &want)
			valid := json.Valid([]byte(in))
			for _, mode := range []Mode{0, RefuseInvalidUTF8} {
				s := New(in, mode)
				got, ok := s.Float()
				ok = ok && s.End()
				if ok != (jsonErr == nil) || ok && got != want {
					t.Fatalf("Float(%q) = %v, %v; encoding/json %v, %v", in, got, ok, want, jsonErr)
				}
				b := New([]byte(in), mode)
				n, ok := b.Number()
				if ok = ok && b.End(); ok != valid {
					t.Fatalf("Number(%q) ok = %v, json.Valid %v", in, ok, valid)
				}
				if ok && string(n) != strings.TrimSpace(in) {
					t.Fatalf("Number(%q) = %q", in, n)
				}
			}
		})
	}
}

func TestLiteral(t *testing.T) {
	for _, tc := range []struct {
		in, lit string
		ok      bool
	}{
		{"true", "true", true}, {" false", "false", true}, {"\nnull", "null", true},
		{"tru", "true", false}, {"True", "true", false}, {"nul", "null", false}, {"", "null", false},
		{"nullx", "null", true}, // the caller sees the x
	} {
		s := New(tc.in, 0)
		if ok := s.Literal(tc.lit); ok != tc.ok {
			t.Errorf("Literal(%q) in %q = %v", tc.lit, tc.in, ok)
		}
	}
	s := New(" \t\r\n{ ", 0)
	if s.Peek() != '{' || !s.Consume('{') || s.Consume('}') || !s.End() || s.Peek() != 0 {
		t.Fatal("white space, Peek, Consume, End")
	}
	if s := New(" \v{", 0); s.Peek() != '\v' {
		t.Fatal("vertical tab is not JSON white space")
	}
}

// Skip is json.Valid for one value, with its depth bound.
func TestSkip(t *testing.T) {
	for _, in := range []string{
		`null`, `true`, `false`, `0`, `-1.5e3`, `""`, `"a\"b"`, `[]`, `{}`, ` [ ] `, `[1,2,3]`,
		`{"a":1,"b":[true,false,null,{"c":"d"}],"e":{}}`, `[[[[[]]]]]`, `{"a":{"b":{"c":[{}]}}}`,
		`{"a":1e400}`, "[\"\xff\"]",
		``, ` `, `[`, `]`, `{`, `}`, `[1,]`, `[,1]`, `[1 2]`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{a:1}`,
		`{"a":1,}`, `{,"a":1}`, `{"a":1 "b":2}`, `{1:2}`, `[01]`, `[1.]`, `[tru]`, `[nul]`, `[1]]`,
		`"\x"`, "[\"\x01\"]", `{"a":[}`, `[}`, `{]`, `[1]x`, `[] []`, `'a'`, `[NaN]`,
	} {
		t.Run(in, func(t *testing.T) {
			want := json.Valid([]byte(in))
			s := New(in, 0)
			if ok := s.Skip(32) && s.End(); ok != want {
				t.Fatalf("Skip(%q) = %v, json.Valid %v", in, ok, want)
			}
			strict := New([]byte(in), RefuseInvalidUTF8)
			if ok := strict.Skip(32) && strict.End(); ok != (want && utf8.ValidString(in)) {
				t.Fatalf("strict Skip(%q) = %v", in, ok)
			}
		})
	}
	for _, tc := range []struct {
		in    string
		depth int
		ok    bool
	}{
		{`1`, 0, true}, {`"a"`, 0, true}, {`[]`, 0, false}, {`{}`, 0, false},
		{`[]`, 1, true}, {`[[]]`, 1, false}, {`[1,[2]]`, 1, false}, {`{"a":{}}`, 1, false}, {`{"a":1}`, 1, true},
		{strings.Repeat("[", 32) + strings.Repeat("]", 32), 32, true},
		{strings.Repeat("[", 33) + strings.Repeat("]", 33), 32, false},
		{strings.Repeat(`{"a":`, 32) + "1" + strings.Repeat("}", 32), 32, true},
		{strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat("}", 33), 32, false},
		{`[[],[],[[]]]`, 3, true}, {`[[],[],[[]]]`, 2, false},
	} {
		s := New(tc.in, 0)
		if ok := s.Skip(tc.depth) && s.End(); ok != tc.ok {
			t.Errorf("Skip(%d) of %q = %v", tc.depth, tc.in, ok)
		}
	}
}

// special must miss no byte that needs a look; a false alarm would only
// cost time, but it has none either.
func TestSpecial(t *testing.T) {
	needsLook := func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80 }
	check := func(w [8]byte) {
		var v uint64
		want := false
		for i, c := range w {
			v |= uint64(c) << (8 * i)
			want = want || needsLook(c)
		}
		if got := special(v); got != want {
			t.Fatalf("special(% x) = %v", w, got)
		}
	}
	for c := range 256 {
		for pos := range 8 {
			for _, fill := range []byte{'a', 0x20, 0x7f, '!', '#', '[', ']'} {
				w := [8]byte{fill, fill, fill, fill, fill, fill, fill, fill}
				w[pos] = byte(c)
				check(w)
			}
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		var w [8]byte
		for i := range w {
			w[i] = byte(0x18 + rnd.IntN(0x70)) // around the edges that matter
		}
		check(w)
	}
}

// The readers allocate only for the strings they return: none for a plain
// string read from a string, one for any other string, but two for one
// with escapes that decodes to more than 128 bytes.
func TestAllocations(t *testing.T) {
	longEscaped := `"` + strings.Repeat("x", 200) + `\n"`
	plainBytes := []byte(`"e1j3V_bKic8-LAEB"`)
	text := `{"jti":"e1j3V_bKic8-LAEB","htu":"https://app.example.com/api","iat":1700000000,"x":[1,-2.5e-3,true,null,"s",{"y":[]}],"esc":"a\"b\u00e9\ud83d\ude00"}`
	textBytes := []byte(text)
	for _, tc := range []struct {
		name string
		want float64
		run  func()
	}{
		{"plain strings, numbers and skip from a string", 0, func() {
			s := New(text, RefuseInvalidUTF8)
			s.Consume('{')
			s.Str()
			s.Consume(':')
			s.Str()
			s.Consume(',')
			s.Str()
			s.Consume(':')
			s.Str()
			s.Consume(',')
			s.Str()
			s.Consume(':')
			s.Float()
			s.Consume(',')
			s.Str()
			s.Consume(':')
			s.Skip(32)
		}},
		{"everything scanned from bytes", 0, func() {
			s := New(textBytes, 0)
			if !s.Skip(32) {
				panic("refused")
			}
		}},
		{"an escaped string", 1, func() {
			s := New(`"a\"b\u00e9\ud83d\ude00"`, 0)
			s.Str()
		}},
		{"a long escaped string", 2, func() {
			s := New(longEscaped, 0)
			s.Str()
		}},
		{"a plain string from bytes", 1, func() {
			s := New(plainBytes, 0)
			s.Str()
		}},
	} {
		if got := testing.AllocsPerRun(100, tc.run); got != tc.want {
			t.Errorf("%s: %v allocations, want %v", tc.name, got, tc.want)
		}
	}
}

// decodeAny decodes a value as encoding/json decodes it into an any, with
// the Scanner's readers: the fuzz target's way to hold every reader to
// encoding/json at once.
func decodeAny[T Text](s *Scanner[T], depth int) (any, bool) {
	switch c := s.Peek(); {
	case c == '"':
		return s.Str()
	case c == 't':
		return true, s.Literal("true")
	case c == 'f':
		return false, s.Literal("false")
	case c == 'n':
		return nil, s.Literal("null")
	case c == '[':
		if depth <= 0 {
			return nil, false
		}
		s.Consume('[')
		vs := []any{}
		if s.Consume(']') {
			return vs, true
		}
		for {
			v, ok := decodeAny(s, depth-1)
			if !ok {
				return nil, false
			}
			vs = append(vs, v)
			if !s.Consume(',') {
				return vs, s.Consume(']')
			}
		}
	case c == '{':
		if depth <= 0 {
			return nil, false
		}
		s.Consume('{')
		m := map[string]any{}
		if s.Consume('}') {
			return m, true
		}
		for {
			k, ok := s.Str()
			if !ok || !s.Consume(':') {
				return nil, false
			}
			v, ok := decodeAny(s, depth-1)
			if !ok {
				return nil, false
			}
			m[k] = v
			if !s.Consume(',') {
				return m, s.Consume('}')
			}
		}
	}
	return s.Float()
}

// jsonMaxDepth is encoding/json's nesting bound.
const jsonMaxDepth = 10000

func TestDecodeAnyMatchesEncodingJSON(t *testing.T) {
	for _, in := range fuzzSeeds {
		checkAgainstEncodingJSON(t, in)
	}
}

var fuzzSeeds = []string{
	`{"jti":"a1","htm":"GET","htu":"https://x/p","iat":1700000000,"ath":"h"}`,
	`{"a":[1,-2.5e-3,true,false,null,"s",{}],"b":[],"c":{"d":"\u00e9\ud83d\ude00\ud800x"}}`,
	`"a\"b\\c\/d\b\f\n\r\t"`, `"\ud800\u0041"`, "\"a\xffb\"", "[\"\xc3\"]", `-0.5E+3`, `1e400`,
	`[01]`, `{"a":1,"a":2}`, `{"":""}`, ` [ 1 , { "x" : null } ] `, `[`, `"\u12"`, `tru`, `nullx`,
	strings.Repeat("[", 40) + strings.Repeat("]", 40),
}

// checkAgainstEncodingJSON holds the readers to encoding/json on in: Skip
// takes what json.Valid takes, decodeAny decodes what json.Unmarshal does
// into an any and refuses the rest, both kinds of Text read alike, and the
// strict mode refuses exactly the texts that are not UTF-8 besides.
func checkAgainstEncodingJSON(t *testing.T, in string) {
	t.Helper()
	valid := json.Valid([]byte(in))
	utf := utf8.ValidString(in)
	s := New(in, 0)
	if ok := s.Skip(jsonMaxDepth) && s.End(); ok != valid {
		t.Fatalf("Skip(%q) = %v, json.Valid %v", in, ok, valid)
	}
	strict := New([]byte(in), RefuseInvalidUTF8)
	if ok := strict.Skip(jsonMaxDepth) && strict.End(); ok != (valid && utf) {
		t.Fatalf("strict Skip(%q) = %v, json.Valid %v, UTF-8 %v", in, ok, valid, utf)
	}

	var want any
	jsonErr := json.Unmarshal([]byte(in), &want)
	s = New(in, 0)
	got, ok := decodeAny(&s, jsonMaxDepth)
	ok = ok && s.End()
	if ok != (jsonErr == nil) {
		t.Fatalf("decoding %q: ok = %v, encoding/json: %v", in, ok, jsonErr)
	}
	if ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("decoding %q = %#v, encoding/json %#v", in, got, want)
	}
	b := New([]byte(in), 0)
	gotB, okB := decodeAny(&b, jsonMaxDepth)
	if okB = okB && b.End(); okB != ok || ok && !reflect.DeepEqual(gotB, got) {
		t.Fatalf("decoding %q from bytes = %#v, %v; from a string %#v, %v", in, gotB, okB, got, ok)
	}
	strictS := New(in, RefuseInvalidUTF8)
	_, okS := decodeAny(&strictS, jsonMaxDepth)
	if okS = okS && strictS.End(); okS != (ok && utf) {
		t.Fatalf("strict decoding %q: ok = %v", in, okS)
	}
}

// FuzzScan holds strings, numbers, literals and Skip to encoding/json.
func FuzzScan(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(checkAgainstEncodingJSON)
}

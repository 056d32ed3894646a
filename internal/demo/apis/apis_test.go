package apis

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeJWT builds an unsigned JWS-shaped token; the echo never verifies, so no key is needed.
func fakeJWT(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc.EncodeToString(b) + "." + enc.EncodeToString([]byte("signature-bytes-not-checked"))
}

func call(t *testing.T, h http.Handler, hdr http.Header) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/me?x=1", nil)
	for k, v := range hdr {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

func TestEchoNeverContainsTheCredential(t *testing.T) {
	people := map[string]Person{"user-alice": {Name: "Alice Liddell", Email: "alice@example.com"}}
	userTok := fakeJWT(t, map[string]any{"iss": "http://127.0.0.1:1", "sub": "user-alice", "aud": "gatehouse-demo", "client_id": "gatehouse-demo", "scope": "openid profile", "exp": 4102444800})
	exchTok := fakeJWT(t, map[string]any{"sub": "user-alice", "aud": []string{"billing-api"}, "client_id": "gatehouse-demo", "act": map[string]any{"sub": "agent-7"}})
	ccTok := fakeJWT(t, map[string]any{"sub": "gatehouse-demo", "aud": []string{"gatehouse-demo"}, "client_id": "gatehouse-demo"})
	const apiKey = "demo-key-0123456789abcdefSECRETtail"
	tests := []struct {
		name      string
		h         http.Handler
		hdr       http.Header
		secret    string
		wantKind  string
		wantLooks string
		wantIn    []string
	}{
		{"profile with user token", Profile(people), http.Header{"Authorization": {"Bearer " + userTok}}, userTok,
			"bearer_jwt", "signed-in user's access token", []string{`"name":"Alice Liddell"`, `"email":"alice@example.com"`, `"scope":"openid profile"`}},
		{"billing with exchanged token", Entitlements(), http.Header{"Authorization": {"Bearer " + exchTok}}, exchTok,
			"bearer_jwt", "delegated token", []string{`"aud":["billing-api"]`, `"plan":`, `"act":{"sub":"agent-7"}`}},
		{"notifications with client token", Notifications(), http.Header{"Authorization": {"Bearer " + ccTok}}, ccTok,
			"bearer_jwt", "client credentials", []string{`"unread":2`}},
		{"weather with api key", Weather(), http.Header{"X-Api-Key": {apiKey}, "Cookie": {"session=abc"}}, apiKey,
			"api_key", "static API key", []string{"••••••••tail", `"cookie_received":true`}},
		{"opaque bearer", Notifications(), http.Header{"Authorization": {"Bearer opaque-value-123456"}}, "opaque-value-123456",
			"bearer_opaque", "opaque", nil},
		{"nothing", Notifications(), nil, "", "none", "no credential", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.h, tt.hdr)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			if tt.secret != "" && strings.Contains(body, tt.secret) {
				t.Fatalf("response echoes the credential itself: %s", body)
			}
			// No part of a JWT either: the signature or header segment would also be a leak.
			for _, seg := range strings.Split(tt.secret, ".") {
				if len(seg) > 8 && strings.Contains(body, seg) {
					t.Fatalf("response contains a token segment: %s", body)
				}
			}
			var got struct{ Echo }
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if got.Credential.Kind != tt.wantKind || !strings.Contains(got.Credential.Looks, tt.wantLooks) {
				t.Fatalf("credential = %+v, want kind %q looking like %q", got.Credential, tt.wantKind, tt.wantLooks)
			}
			if got.Credential.Verified {
				t.Fatal("echo claims the signature was verified; it never is")
			}
			if got.Path != "/me" {
				t.Fatalf("path = %q, want /me (no query)", got.Path)
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %s: %s", w, body)
				}
			}
		})
	}
}

func TestMaskKeyShowsAtMostFourCharacters(t *testing.T) {
	for _, key := range []string{"", "short", "0123456789abcdef", "a-much-longer-api-key-value-9f3c"} {
		m := MaskKey(key)
		visible := strings.ReplaceAll(m, "•", "")
		if len(visible) > 4 {
			t.Errorf("MaskKey(%q) = %q shows %d characters", key, m, len(visible))
		}
		if len(key) >= 8 && strings.Contains(m, key[:len(key)-4]) {
			t.Errorf("MaskKey(%q) = %q shows the key", key, m)
		}
	}
	if got := MaskKey("short-key"); strings.Trim(got, "•") != "" {
		t.Errorf("short keys must be fully masked, got %q", got)
	}
}

func TestAPIsRefuseWrongCredential(t *testing.T) {
	if code, _ := call(t, Profile(nil), nil); code != http.StatusUnauthorized {
		t.Errorf("profile without a user token: %d, want 401", code)
	}
	if code, _ := call(t, Weather(), http.Header{"Authorization": {"Bearer x.y.z"}}); code != http.StatusUnauthorized {
		t.Errorf("weather without an API key: %d, want 401", code)
	}
}

func TestAuditTail(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "audit.jsonl")
	var sb strings.Builder
	for i := 1; i <= 30; i++ {
		sb.WriteString(`{"seq":` + itoa(i) + `,"event":"access"}` + "\n")
	}
	sb.WriteString("not json\n")
	sb.WriteString(`{"seq":31,"event":"acc`) // a partial line being written
	if err := os.WriteFile(p, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := TailJSONL(p, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || string(recs[0]) != `{"seq":26,"event":"access"}` || string(recs[4]) != `{"seq":30,"event":"access"}` {
		t.Fatalf("tail = %s", recs)
	}
	code, body := call(t, AuditTail(p, 3), nil)
	if code != 200 || !strings.Contains(body, `"records":[{"seq":28`) {
		t.Fatalf("%d %s", code, body)
	}
	missing, err := TailJSONL(filepath.Join(dir, "nope.jsonl"), 5)
	if err != nil || len(missing) != 0 {
		t.Fatalf("missing file: %v %v", missing, err)
	}
	r := httptest.NewRequest(http.MethodGet, "/?n=abc", nil)
	w := httptest.NewRecorder()
	AuditTail(p, 3).ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "abc") {
		t.Fatalf("bad n: %d %s", w.Code, w.Body.String())
	}
}

func TestAuditTailReadsOnlyTheEndOfLargeFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.jsonl")
	line := `{"pad":"` + strings.Repeat("x", 1000) + `"}` + "\n"
	if err := os.WriteFile(p, []byte(strings.Repeat(line, 400)+`{"last":true}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := TailJSONL(p, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 100 || string(recs[99]) != `{"last":true}` {
		t.Fatalf("got %d records, last %s", len(recs), recs[len(recs)-1])
	}
	for _, r := range recs {
		if !json.Valid(r) {
			t.Fatalf("invalid record %s", r)
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func FuzzInspect(f *testing.F) {
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln", "")
	f.Add("Bearer a.b.c", "")
	f.Add("", "some-api-key-value-0123")
	f.Add("Basic dXNlcjpwYXNz", "")
	f.Fuzz(func(t *testing.T, auth, key string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", auth)
		r.Header.Set(APIKeyHeader, key)
		b, err := json.Marshal(Inspect(r))
		if err != nil {
			t.Fatal(err)
		}
		if len(key) >= 16 && strings.Contains(string(b), key) {
			t.Fatalf("api key echoed: %s", b)
		}
	})
}

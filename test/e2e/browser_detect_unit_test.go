package e2e

import (
	"strings"
	"testing"
)

// TestTokenExposureDetectorIsNarrow checks the network detector without a browser: the only
// tolerated token is the id_token_hint of a redirect to the end-session endpoint.
func TestTokenExposureDetectorIsNarrow(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl"
	const app, endSession = "http://127.0.0.1:1000", "http://127.0.0.1:2000/end_session"
	tests := []struct {
		name    string
		e       netEntry
		secrets []string
		want    string // "" means no problem
	}{
		{"logout hint tolerated", netEntry{URL: app + "/bff/logout?sid=x", Headers: map[string]string{"location": endSession + "?id_token_hint=" + jwt + "&client_id=c"}}, nil, ""},
		{"JWT in another end-session parameter", netEntry{URL: app + "/bff/logout", Headers: map[string]string{"location": endSession + "?id_token_hint=" + jwt + "&state=" + jwt}}, nil, "header location carries a JWT"},
		{"hint to another endpoint", netEntry{URL: app + "/bff/logout", Headers: map[string]string{"location": "http://evil.example/end_session?id_token_hint=" + jwt}}, nil, "header location carries a JWT"},
		{"JWT in a body", netEntry{URL: app + "/bff/user", Body: `{"claims":{},"x":"` + jwt + `"}`}, nil, "body carries a JWT"},
		{"token member in a body", netEntry{URL: app + "/bff/user", Body: `[{"type":"sub","value":"u"},{"type":"refresh_token","value":"opaque"}]`}, nil, "refresh_token member"},
		{"JWT in a header", netEntry{URL: app + "/api/x", Headers: map[string]string{"x-debug": "Bearer " + jwt}}, nil, "header x-debug"},
		{"secret in a body", netEntry{URL: app + "/api/weather/today", Body: `{"k":"wx_demo_SECRET"}`}, []string{"wx_demo_SECRET"}, "body carries a secret"},
		{"clean", netEntry{URL: app + "/api/profile/me", Body: `{"credential":{"kind":"bearer_jwt"}}`, Headers: map[string]string{"content-type": "application/json"}}, []string{"wx_demo_SECRET"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkNoTokenExposure([]netEntry{tt.e}, app, endSession, tt.secrets)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), jwt) || strings.Contains(err.Error(), "wx_demo_SECRET")) {
				t.Fatalf("the detector's error repeats the leaked value: %v", err)
			}
		})
	}
}

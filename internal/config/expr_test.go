package config

import (
	"strings"
	"testing"
)

// A compiler error at (line, column) inside an allow expression maps to the
// file line and column where that text is written, for every YAML style.
func TestExprProblemAtMapsToFileLine(t *testing.T) {
	head := "public_url: https://app.example.com\nidentity:\n  issuer: https://idp.example.com\n  client_id: web\n  client_secret: plain-secret-for-tests\nroutes:\n  - name: r\n    path: /api/r/\n    upstream: http://r.internal/\n    credential: none\n"
	tests := []struct {
		name      string
		allow     string
		line, col int // position inside the expression
		wantLine  int
		wantCol   int
	}{
		{"plain", "    allow: user.a == 1\n", 1, 8, 11, 19},
		{"single quoted", "    allow: 'user.a == 1'\n", 1, 8, 11, 20},
		{"literal block line 2", "    allow: |\n      user.a == 1 &&\n      request.method == 1\n", 2, 16, 13, 22},
		{"folded block line 3", "    allow: >\n      user.a == 1 &&\n      user.b == 2 &&\n      request.method == 1\n", 1, 47, 14, 23},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(head+tt.allow), "g.yaml", t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Routes[0].Allow.ProblemAt(tt.line, tt.col, "boom")
			if p.Line != tt.wantLine || p.Column != tt.wantCol {
				src := cfg.Routes[0].Allow.Source
				t.Fatalf("got %d:%d, want %d:%d (source %q)", p.Line, p.Column, tt.wantLine, tt.wantCol, src)
			}
			if !strings.HasPrefix(p.String(), "g.yaml:") {
				t.Fatal(p.String())
			}
		})
	}
}

package config

import (
	"strings"
	"testing"
	"time"
)

func TestSecurityHeadersDecode(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       SecurityHeaders
		err        string // substring of the problem, "" = valid
	}{
		{"defaults", "", SecurityHeaders{HSTS: HSTS{MaxAge: DefaultHSTSMaxAge, IncludeSubDomains: true}}, ""},
		{"everything set", `security_headers:
  content_security_policy: "default-src 'self'"
  frame_options: sameorigin
  cross_origin_opener_policy: same-origin-allow-popups
  cross_origin_resource_policy: "off"
  referrer_policy: strict-origin
  hsts: { max_age: 8760h, include_subdomains: true, preload: true }
`, SecurityHeaders{ContentSecurityPolicy: "default-src 'self'", FrameOptions: "SAMEORIGIN", CrossOriginOpenerPolicy: "same-origin-allow-popups",
			CrossOriginResourcePolicy: Off, ReferrerPolicy: "strict-origin", HSTS: HSTS{MaxAge: 8760 * time.Hour, IncludeSubDomains: true, Preload: true}}, ""},
		{"csp and hsts off", "security_headers:\n  content_security_policy: \"off\"\n  hsts: off\n",
			SecurityHeaders{ContentSecurityPolicy: Off, HSTS: HSTS{Disabled: true, MaxAge: DefaultHSTSMaxAge, IncludeSubDomains: true}}, ""},
		{"bad frame option", "security_headers:\n  frame_options: ALLOW-FROM x\n", SecurityHeaders{}, `"ALLOW-FROM x" is not one of DENY, SAMEORIGIN, off`},
		{"preload without subdomains", "security_headers:\n  hsts: { include_subdomains: false, preload: true }\n", SecurityHeaders{}, "preload list requires include_subdomains"},
		{"hsts scalar not off", "security_headers:\n  hsts: yes-please\n", SecurityHeaders{}, "write hsts: off"},
		{"unknown key", "security_headers:\n  x_frame_options: DENY\n", SecurityHeaders{}, "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseString(t, head+route0+tt.yaml)
			if tt.err != "" {
				ps := problemsOf(t, err)
				if len(ps) != 1 || !strings.Contains(ps[0].Message, tt.err) || ps[0].Line < 11 {
					t.Fatalf("problems %v, want one at line ≥ 11 containing %q", ps, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.SecurityHeaders != tt.want {
				t.Fatalf("got %+v\nwant %+v", c.SecurityHeaders, tt.want)
			}
		})
	}
}

package proxy

import (
	"net/http"
	"net/url"
	"testing"
)

func TestCSRFGuardRefusesLikeTheRoutes(t *testing.T) {
	u, _ := url.Parse("https://app.example.com")
	g, err := NewCSRFGuard(u, CSRFOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		hdr  http.Header
		want string
	}{
		{http.Header{"X-Csrf": {"1"}}, ""},
		{http.Header{"X-Csrf": {"1"}, "Origin": {"https://app.example.com"}}, ""},
		{http.Header{}, "csrf_header_missing"},
		{http.Header{"X-Csrf": {"2"}}, "csrf_header_invalid"},
		{http.Header{"X-Csrf": {"1"}, "Origin": {"https://evil.example"}}, "csrf_origin_mismatch"},
		{http.Header{"X-Csrf": {"1"}, "Sec-Fetch-Site": {"cross-site"}}, "csrf_cross_site"},
	}
	for _, tc := range cases {
		if code, _ := g.Check(tc.hdr); code != tc.want {
			t.Errorf("%v: %q, want %q", tc.hdr, code, tc.want)
		}
	}
}

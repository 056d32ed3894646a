package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// withConfusableRoutes adds a broad route and stricter routes below it, the
// shape route confusion attacks: /api/echo/ for everyone, /api/echo/admin/
// and /api/echo/secret for admins only.
func withConfusableRoutes(h *harness, specs []RouteSpec, _ *Options) []RouteSpec {
	adminOnly := AuthorizerFunc(func(_ context.Context, in *AuthzInput) (bool, error) {
		return in.Identity != nil && in.Identity.Claims["admin"] == true, nil
	})
	for _, n := range []string{"echo", "echoadmin", "echosecret", "echokpi"} {
		h.ups[n] = newUpstream(h.t)
	}
	return append(specs,
		RouteSpec{Name: "echo", Path: "/api/echo/", Upstream: h.ups["echo"].url(h.t, "/"), Credential: Credential{Kind: CredentialNone}, Authorizer: AllowAll{}},
		RouteSpec{Name: "echoadmin", Path: "/api/echo/admin/", Upstream: h.ups["echoadmin"].url(h.t, "/"), Credential: Credential{Kind: CredentialNone}, Authorizer: adminOnly},
		RouteSpec{Name: "echosecret", Path: "/api/echo/secret", Upstream: h.ups["echosecret"].url(h.t, "/"), Credential: Credential{Kind: CredentialNone}, Authorizer: adminOnly},
		RouteSpec{Name: "echokpi", Path: "/api/echo/kpi/", Upstream: h.ups["echokpi"].url(h.t, "/"), Credential: Credential{Kind: CredentialNone}, Authorizer: adminOnly},
	)
}

// Item 2: a path that only a lenient upstream would read as a stricter
// route's path is refused before anything is forwarded.
func TestRouteConfusionThroughUpstreamNormalisationIsRefused(t *testing.T) {
	h := newHarness(t, withConfusableRoutes)
	for _, p := range []string{
		"/api/echo/ADMIN/x", "/api/echo/Admin/x", "/api/echo/aDmIn/", "/api/echo/ADMIN",
		"/api/echo/admin./x", "/api/echo/admin../x", "/api/echo/admin%20/x", "/api/echo/admin.%20./x", "/api/echo/admin%20",
		"/api/echo/%EF%BD%81dmin/x",         // FULLWIDTH LATIN SMALL LETTER A
		"/api/echo/%EF%BC%A1%EF%BC%A4MIN/x", // FULLWIDTH A, D
		"/api/echo/admin::$DATA", "/api/echo/admin::$DATA/x", "/api/echo/admin:$I30:$INDEX_ALLOCATION/x",
		"/api/echo/admin:stream/x", "/api/echo/admin~1/x", "/api/echo/ADMINI~1/x", "/api/echo/ADMIN~12.JS",
		"/api/echo/SECRET", "/api/echo/Secret.", "/api/echo/secret%20", "/api/echo/%C5%BFecret", // LATIN SMALL LETTER LONG S
		"/api/echo/secret::$DATA", "/api/echo/%EF%BD%93ecret",
		"/api/echo/%E2%84%AApi/x", // KELVIN SIGN
		"/api/echo/KPI/x",
	} {
		res, body := h.do(h.req("GET", p, nil))
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", p, res.StatusCode, body)
			continue
		}
		wantError(t, res, body, http.StatusBadRequest, "ambiguous_path")
	}
	h.wantNothingForwarded()

	// Ordinary paths still reach the broad route; the stricter routes
	// still serve their own exact spelling.
	for _, p := range []string{"/api/echo/hello", "/api/echo/administrator/x", "/api/echo/report.v2/x", "/api/echo/a.b", "/api/echo/caf%C3%A9", "/api/echo/x~y", "/api/echo/urn:a:b"} {
		if res, body := h.do(h.req("GET", p, nil)); res.StatusCode != 200 {
			t.Errorf("%s: %d %s, want 200", p, res.StatusCode, body)
		}
	}
	if n := len(h.ups["echo"].Hits()); n != 7 {
		t.Errorf("broad route forwarded %d, want 7", n)
	}
	r := h.req("GET", "/api/echo/admin/x", nil)
	r.Header.Set("Cookie", "gh="+adminCookie)
	if res, body := h.do(r); res.StatusCode != 200 || len(h.ups["echoadmin"].Hits()) != 1 {
		t.Errorf("admin's own path: %d %s", res.StatusCode, body)
	}
}

func TestRoutesThatFoldAlikeAreAConfigError(t *testing.T) {
	up := mustURL("http://127.0.0.1:1/")
	for _, pair := range [][2]string{{"/api/a/", "/api/A/"}, {"/api/x", "/api/X."}, {"/api/k/", "/api/\u212a/"}} {
		_, err := New([]RouteSpec{
			{Name: "one", Path: pair[0], Upstream: up, Anonymous: true, Credential: Credential{Kind: CredentialNone}, Authorizer: AllowAll{}},
			{Name: "two", Path: pair[1], Upstream: up, Anonymous: true, Credential: Credential{Kind: CredentialNone}, Authorizer: AllowAll{}},
		}, Options{PublicURL: mustURL(publicURL), Auditor: &testAuditor{}})
		if err == nil {
			t.Errorf("%q and %q accepted", pair[0], pair[1])
		}
	}
}

func FuzzFoldPath(f *testing.F) {
	for _, s := range []string{"/api/echo/ADMIN/x", "/a/\uff41dmin", "/a/admin::$DATA", "/a/ADMINI~1", "/a/b. .", "/\u2100", "/a/\u017fecret/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		fp, ok := foldPath(p)
		if !ok {
			return
		}
		// Folding is idempotent, so a folded route path and a folded
		// request path compare as the upstream would compare them.
		if again, ok2 := foldPath(fp); !ok2 || again != fp {
			t.Fatalf("foldPath(%q) = %q, again %q (%v)", p, fp, again, ok2)
		}
		if plainFold(p) && fp != p && strings.HasPrefix(p, "/") && !strings.Contains(p, "//") {
			t.Fatalf("plainFold(%q) but foldPath = %q", p, fp)
		}
	})
}

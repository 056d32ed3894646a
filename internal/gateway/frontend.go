package gateway

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// staticFrontend serves a built SPA from dir. Paths that name no file and
// look like client-side routes (no extension) get index.html, as SPAs with
// history routing expect; anything else missing is a 404.
func staticFrontend(dir string) http.Handler {
	fs := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		// Hidden files (.env, .git/, .htpasswd) are never part of a built SPA
		// and often hold secrets: refuse them whatever the directory holds.
		if strings.Contains(p, "/.") {
			http.NotFound(w, r)
			return
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p))); err != nil && path.Ext(p) == "" {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/"
			r = r2
		}
		if p == "/" || path.Ext(p) == ".html" || r.URL.Path == "/" {
			// The SPA shell must never be cached: it names the current assets.
			w.Header().Set("Cache-Control", "no-cache")
		}
		fs.ServeHTTP(w, r)
	})
}

// upstreamFrontend proxies to a frontend dev server. The dev server gets
// nothing that identifies the user: no cookie, no Authorization.
func upstreamFrontend(u *url.URL) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = u.Host
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Del("Authorization")
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del("Set-Cookie")
			return nil
		},
	}
}

// noFrontend answers every non-API, non-/bff path with 404.
func noFrontend() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Error(w, "Gatehouse serves no frontend here (see frontend: in the configuration).", http.StatusNotFound)
			return
		}
		http.NotFound(w, r)
	})
}

package gateway

import (
	"io/fs"
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
	files := http.FileServer(noListing{http.Dir(dir)})
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
		if !servable(dir, p) && path.Ext(p) == "" {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/"
			r = r2
		}
		if p == "/" || path.Ext(p) == ".html" || r.URL.Path == "/" {
			// The SPA shell must never be cached: it names the current assets.
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}

// servable reports whether p names a file, or a directory with an
// index.html, below dir: a directory without one is as good as missing.
func servable(dir, p string) bool {
	full := filepath.Join(dir, filepath.FromSlash(p))
	st, err := os.Stat(full)
	if err != nil {
		return false
	}
	if !st.IsDir() {
		return true
	}
	st, err = os.Stat(filepath.Join(full, "index.html"))
	return err == nil && !st.IsDir()
}

// noListing hides directories that have no index.html, so http.FileServer
// never renders a listing of the build directory (source maps, stale
// bundles, files nobody meant to publish); they answer 404 instead.
type noListing struct{ fs http.FileSystem }

func (n noListing) Open(name string) (http.File, error) {
	f, err := n.fs.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		idx, err := n.fs.Open(path.Join(name, "index.html"))
		if err != nil {
			f.Close()
			return nil, fs.ErrNotExist
		}
		idx.Close()
	}
	return f, nil
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

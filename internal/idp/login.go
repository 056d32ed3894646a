package idp

import (
	"context"
	"crypto/subtle"
	"embed"
	"html/template"
	"net/http"
	"strings"
)

//go:embed login.html
var loginFS embed.FS

var loginTemplate = template.Must(template.ParseFS(loginFS, "login.html"))

// csrfCookie carries the double-submit token of the login form.
const csrfCookie = "gh_devop_csrf"

// loginUI is the username/password page zitadel redirects to for each authorization request.
type loginUI struct {
	p        *Provider
	callback func(context.Context, string) string
}

func newLoginUI(p *Provider, callback func(context.Context, string) string) *loginUI {
	return &loginUI{p: p, callback: callback}
}

type loginPage struct {
	ID, CSRF, Error, Username string
	Users                     []User
}

func (l *loginUI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on the POST.
	h.Set("Referrer-Policy", "same-origin")
	// No form-action: Chromium applies it to the redirect back to the client too.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		l.show(w, r)
	case http.MethodPost:
		l.submit(w, r)
	default:
		h.Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (l *loginUI) show(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	if !l.p.store.pendingAuthRequest(id) {
		http.Error(w, "This sign-in request is unknown or expired. Start again from the application.", http.StatusBadRequest)
		return
	}
	token := randomID()
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: token, Path: "/login", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: strings.HasPrefix(l.p.issuer, "https://"),
	})
	l.render(w, http.StatusOK, loginPage{ID: id, CSRF: token})
}

func (l *loginUI) render(w http.ResponseWriter, status int, page loginPage) {
	page.Users = l.p.opts.Users
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := loginTemplate.ExecuteTemplate(w, "login", page); err != nil {
		l.p.logger.Error("render login page", "err", err)
	}
}

func (l *loginUI) submit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "could not read the login form", http.StatusBadRequest)
		return
	}
	// CSRF: the form must come from our own page (Origin, when sent) and echo the cookie.
	if o := r.Header.Get("Origin"); o != "" && o != l.p.issuer {
		http.Error(w, "cross-origin login form rejected", http.StatusForbidden)
		return
	}
	c, err := r.Cookie(csrfCookie)
	form := r.PostForm.Get("csrf")
	if err != nil || form == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) != 1 {
		http.Error(w, "login form expired or forged (CSRF check failed); reload the sign-in page", http.StatusForbidden)
		return
	}
	id := r.PostForm.Get("authRequestID")
	username := r.PostForm.Get("username")
	if err := l.p.store.checkLogin(id, username, r.PostForm.Get("password")); err != nil {
		status := http.StatusUnauthorized
		if err != errBadCredentials {
			status = http.StatusBadRequest
		}
		l.render(w, status, loginPage{ID: id, CSRF: c.Value, Error: err.Error(), Username: username})
		return
	}
	http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
}

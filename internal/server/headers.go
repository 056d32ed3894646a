package server

import "net/http"

// The values are built once and shared by every response: net/http only
// reads them, and each is a full slice (len == cap), so a later Add to the
// same header appends into a new array instead of writing into the shared
// one. Header.Set would allocate a slice per header per response.
var (
	nosniffValue    = []string{"nosniff"}
	noReferrerValue = []string{"no-referrer"}
	denyValue       = []string{"DENY"}
	sameOriginValue = []string{"same-origin"}
	defaultCSPValue = []string{"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"}
	hstsHeaderValue = []string{"max-age=63072000; includeSubDomains"}
)

// SecurityHeaders adds the headers every response Gatehouse itself produces
// should carry (management endpoints, errors, the embedded frontend). hsts is
// set only when the public URL is https: sending it over plain http is
// ignored by browsers and misleading in development.
func SecurityHeaders(next http.Handler, hsts bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Content-Type-Options"] = nosniffValue[:1:1]
		h["Referrer-Policy"] = noReferrerValue[:1:1]
		h["X-Frame-Options"] = denyValue[:1:1]
		h["Cross-Origin-Opener-Policy"] = sameOriginValue[:1:1]
		h["Cross-Origin-Resource-Policy"] = sameOriginValue[:1:1]
		if len(h["Content-Security-Policy"]) == 0 {
			h["Content-Security-Policy"] = defaultCSPValue[:1:1]
		}
		if hsts {
			h["Strict-Transport-Security"] = hstsHeaderValue[:1:1]
		}
		next.ServeHTTP(w, r)
	})
}

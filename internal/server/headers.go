package server

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Off, as a header's value in HeaderOptions, sends no such header.
const Off = "off"

// DefaultCSP is the Content-Security-Policy of every response unless
// configured otherwise: only the application's own origin, never framed.
const DefaultCSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// HeaderOptions configures SecurityHeaders. Empty fields take the defaults;
// Off sends no such header.
type HeaderOptions struct {
	// CSP is the Content-Security-Policy; default DefaultCSP with
	// frame-src 'self' and FrameSources (silent login frames the IdP), or
	// DevCSP when DevServer is set.
	CSP string
	// FrameSources are origins the default CSP lets the page frame (the
	// IdP's, so /bff/silent-login can run in an iframe).
	FrameSources []string
	// DevServer is the origin of a development frontend server
	// (frontend.upstream in development): the default CSP then allows its
	// inline module scripts and its HMR WebSocket.
	DevServer string
	// FrameOptions (X-Frame-Options) defaults to DENY.
	FrameOptions string
	// COOP and CORP default to same-origin; ReferrerPolicy to no-referrer.
	COOP, CORP, ReferrerPolicy string
	// HSTS: sent only when set (public URL https) and not HSTSOff.
	HSTS                  bool
	HSTSMaxAge            time.Duration
	HSTSIncludeSubDomains bool
	HSTSPreload           bool
}

// HeaderSet is the precomputed header list SecurityHeaders sends.
type HeaderSet struct {
	names  []string // canonical
	values [][]string
}

// NewHeaderSet computes the headers once, so that a request costs no
// formatting.
func NewHeaderSet(o HeaderOptions) *HeaderSet {
	hs := &HeaderSet{}
	add := func(name, v, def string) {
		if v == "" {
			v = def
		}
		if v == Off {
			return
		}
		hs.names = append(hs.names, http.CanonicalHeaderKey(name))
		hs.values = append(hs.values, []string{v})
	}
	add("X-Content-Type-Options", "", "nosniff")
	add("Referrer-Policy", o.ReferrerPolicy, "no-referrer")
	add("X-Frame-Options", o.FrameOptions, "DENY")
	add("Cross-Origin-Opener-Policy", o.COOP, "same-origin")
	add("Cross-Origin-Resource-Policy", o.CORP, "same-origin")
	add("Content-Security-Policy", o.CSP, defaultCSP(o))
	if o.HSTS {
		v := "max-age=" + strconv.FormatInt(int64(o.HSTSMaxAge/time.Second), 10)
		if o.HSTSIncludeSubDomains {
			v += "; includeSubDomains"
		}
		if o.HSTSPreload {
			v += "; preload"
		}
		add("Strict-Transport-Security", v, "")
	}
	return hs
}

func defaultCSP(o HeaderOptions) string {
	frames := "frame-src 'self'"
	for _, s := range o.FrameSources {
		frames += " " + s
	}
	if o.DevServer == "" {
		return DefaultCSP + "; " + frames
	}
	// A Vite/React (or Angular, Vue) dev server injects inline module
	// scripts (the React Refresh preamble), inline styles, and opens an HMR
	// WebSocket to itself. Development only: see docs/configuration.md.
	ws := "ws" + strings.TrimPrefix(o.DevServer, "http")
	return "default-src 'self' " + o.DevServer + "; script-src 'self' 'unsafe-inline' " + o.DevServer +
		"; style-src 'self' 'unsafe-inline' " + o.DevServer + "; connect-src 'self' ws: wss: " + o.DevServer + " " + ws +
		"; img-src 'self' data: " + o.DevServer + "; frame-ancestors 'none'; base-uri 'self'; object-src 'none'; " + frames
}

// Values returns the header's value and whether it is sent (for tests and docs).
func (hs *HeaderSet) Values(name string) (string, bool) {
	name = http.CanonicalHeaderKey(name)
	for i, n := range hs.names {
		if n == name {
			return hs.values[i][0], true
		}
	}
	return "", false
}

// SecurityHeaders adds hs's headers to every response: management
// endpoints, errors, the frontend and proxied responses. They are set before
// next runs, so a handler that needs another value for its own page (the
// silent-login callback must be framable by the app) replaces it with Set.
// When next only adds to a header Gatehouse set — a reverse proxy copying an
// upstream's X-Frame-Options or CSP — Gatehouse's value is kept and the
// upstream's dropped, so no header is ever sent twice. A header configured
// off is left entirely to next.
func SecurityHeaders(next http.Handler, hs *HeaderSet) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for i, n := range hs.names {
			h[n] = hs.values[i]
		}
		next.ServeHTTP(&dedupWriter{ResponseWriter: w, hs: hs}, r)
	})
}

// dedupWriter keeps the first value of each of Gatehouse's headers when the
// response headers are written.
type dedupWriter struct {
	http.ResponseWriter
	hs    *HeaderSet
	wrote bool
}

func (d *dedupWriter) dedup() {
	if d.wrote {
		return
	}
	h := d.ResponseWriter.Header()
	for _, n := range d.hs.names {
		if v := h[n]; len(v) > 1 {
			h[n] = v[:1]
		}
	}
}

func (d *dedupWriter) WriteHeader(code int) {
	d.dedup()
	if code >= 200 {
		d.wrote = true
	}
	d.ResponseWriter.WriteHeader(code)
}

func (d *dedupWriter) Write(b []byte) (int, error) {
	if !d.wrote {
		d.WriteHeader(http.StatusOK)
	}
	return d.ResponseWriter.Write(b)
}

// Flush writes the headers (deduplicated) and flushes, for streams.
func (d *dedupWriter) Flush() {
	d.dedup()
	d.wrote = true
	if f, ok := d.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack serves WebSocket upgrades; the proxy writes the 101 itself.
func (d *dedupWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	d.dedup()
	d.wrote = true
	return http.NewResponseController(d.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the connection's writer
// (deadlines, full-duplex).
func (d *dedupWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

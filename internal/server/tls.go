package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// CertReloader serves the certificate in CertFile/KeyFile and re-reads the
// pair when either file's modification time or size changes, so a renewed
// certificate (cert-manager, a Kubernetes Secret update, certbot) takes
// effect on the next handshake without a restart. A pair that fails to load
// is logged and the previous one stays in force.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	// checkEvery bounds how often the files are stat'ed (handshakes in
	// between reuse the last answer).
	checkEvery time.Duration

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     string
	lastCheck time.Time
}

// NewCertReloader loads the pair once; an error here stops the start.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log, checkEvery: time.Second}
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", certFile, keyFile, err)
	}
	r.cert, r.stamp = &cert, stamp
	return r, nil
}

// fileStamp identifies the files' current versions.
func (r *CertReloader) fileStamp() (string, error) {
	var stamp string
	for _, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		stamp += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.lastCheck) < r.checkEvery {
		return r.cert, nil
	}
	r.lastCheck = now
	stamp, err := r.fileStamp()
	if err != nil || stamp == r.stamp {
		if err != nil {
			r.log.Warn("tls certificate files unreadable; the previous certificate stays in force", "err", err)
		}
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// A renewal writes two files; between the writes they may not
		// match. Keep the old pair and look again at the next check.
		r.log.Warn("tls certificate reload failed; the previous certificate stays in force", "cert_file", r.certFile, "err", err)
		return r.cert, nil
	}
	r.cert, r.stamp = &cert, stamp
	r.log.Info("tls certificate reloaded", "cert_file", r.certFile)
	return r.cert, nil
}

// TLSConfig is the public listener's TLS configuration: TLS 1.2 or later,
// Go's default (AEAD, forward-secret) cipher suites, the certificate from r.
func (r *CertReloader) TLSConfig() *tls.Config {
	if r == nil {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// errNoTLS: a TLS config without a certificate source would fail every
// handshake; refuse to serve instead.
var errNoTLS = errors.New("tls: config has no certificate")

// serveMaybeTLS serves HTTPS on ln when srv has a TLS config (HTTP/2
// offered by ALPN), plain HTTP otherwise.
func serveMaybeTLS(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig == nil {
		return srv.Serve(ln)
	}
	if srv.TLSConfig.GetCertificate == nil && len(srv.TLSConfig.Certificates) == 0 {
		return errNoTLS
	}
	return srv.ServeTLS(ln, "", "")
}

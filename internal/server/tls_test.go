package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a self-signed certificate for 127.0.0.1 with the given
// serial number, and its key, as PEM files.
func writePair(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "gatehouse-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: nil,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedSerial connects with the given TLS version bounds and returns the
// serial number of the certificate the server presented.
func servedSerial(t *testing.T, addr string, minV, maxV uint16) (int64, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: minV, MaxVersion: maxV}) //nolint:gosec // the test inspects the served certificate itself
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func TestPublicListenerServesTLSAndReloadsTheCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, certFile, keyFile, 1)
	r, err := NewCertReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.checkEvery = 0 // look at the files on every handshake (no timing in the test)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	s, err := New(Options{Public: ok, Admin: ok, PublicListener: listen(t), AdminListener: listen(t), TLS: r.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if got, err := servedSerial(t, s.PublicAddr(), tls.VersionTLS12, 0); err != nil || got != 1 {
		t.Fatalf("first handshake: serial %d, %v; want 1", got, err)
	}
	// TLS 1.0 and 1.1 are refused.
	if _, err := servedSerial(t, s.PublicAddr(), tls.VersionTLS10, tls.VersionTLS11); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	// Plain HTTP to the TLS port gets no page.
	if resp, err := http.Get("http://" + s.PublicAddr() + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain http was served on the TLS listener")
		}
	}

	// A renewed pair is served on the next handshake, without a restart.
	writePair(t, certFile, keyFile, 2)
	bump(t, certFile, keyFile)
	if got, err := servedSerial(t, s.PublicAddr(), tls.VersionTLS12, 0); err != nil || got != 2 {
		t.Fatalf("after renewal: serial %d, %v; want 2", got, err)
	}
	// A broken pair (key of another certificate) keeps the last good one.
	other := filepath.Join(dir, "other.key")
	writePair(t, filepath.Join(dir, "other.crt"), other, 3)
	kb, _ := os.ReadFile(other)
	if err := os.WriteFile(keyFile, kb, 0o600); err != nil {
		t.Fatal(err)
	}
	bump(t, certFile, keyFile)
	if got, err := servedSerial(t, s.PublicAddr(), tls.VersionTLS12, 0); err != nil || got != 2 {
		t.Fatalf("after a mismatched key: serial %d, %v; want the previous, 2", got, err)
	}
	// HTTP/2 is offered over TLS.
	c, err := tls.Dial("tcp", s.PublicAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // as above
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("ALPN = %q, want h2", p)
	}
	c.Close()
}

// bump moves the files' modification times forward, so a rewrite within
// the file system's timestamp granularity is still seen as a change.
func bump(t *testing.T, files ...string) {
	t.Helper()
	bumpTime := time.Now().Add(time.Duration(len(files)) * time.Minute)
	for _, f := range files {
		bumpTime = bumpTime.Add(time.Second)
		if err := os.Chtimes(f, bumpTime, bumpTime); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCertReloaderRefusesAMissingPairAtStart(t *testing.T) {
	if _, err := NewCertReloader(filepath.Join(t.TempDir(), "none.crt"), "none.key", nil); err == nil {
		t.Fatal("a missing certificate file was accepted")
	}
}

package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pemPair writes a self-signed certificate and its key into dir.
func pemPair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func TestTLSKeys(t *testing.T) {
	dir := t.TempDir()
	cert, key := pemPair(t, dir, "a")
	_, otherKey := pemPair(t, dir, "b")
	tests := []struct {
		name, tls, want string // want: "" accepted, else a substring of the error
	}{
		{"pair", "tls:\n  cert_file: " + cert + "\n  key_file: " + key + "\n", ""},
		{"key missing", "tls:\n  cert_file: " + cert + "\n", "tls.key_file: required key is missing"},
		{"cert missing", "tls:\n  key_file: " + key + "\n", "tls.cert_file: required key is missing"},
		{"mismatched key", "tls:\n  cert_file: " + cert + "\n  key_file: " + otherKey + "\n", "do not load"},
		{"no such file", "tls:\n  cert_file: " + dir + "/none.crt\n  key_file: " + key + "\n", "do not load"},
		{"unknown key", "tls:\n  cert: x\n", `unknown key "cert"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseString(t, head+tc.tls)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.TLS == nil || c.TLS.CertFile != cert || c.TLS.KeyFile != key {
					t.Fatalf("TLS = %+v", c.TLS)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatal("the error quotes key material")
			}
		})
	}
	if c, err := parseString(t, head); err != nil || c.TLS != nil {
		t.Fatalf("without tls: TLS = %+v, %v; want nil", c.TLS, err)
	}
}

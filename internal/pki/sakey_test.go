package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestServiceAccountKeyReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	k1, err := LoadOrCreateServiceAccountKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	rk, ok := k1.(*rsa.PrivateKey)
	if !ok || rk.N.BitLen() != 2048 {
		t.Fatalf("key = %T, want a 2048-bit RSA key", k1)
	}
	st, err := os.Stat(filepath.Join(dir, ServiceAccountKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	k2, err := LoadOrCreateServiceAccountKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !rk.Equal(k2) {
		t.Error("a second start made a new key; tokens issued before a restart would be rejected")
	}
}

func TestServiceAccountKeyFormats(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	p8, _ := x509.MarshalPKCS8PrivateKey(ec)
	for name, data := range map[string][]byte{
		"ec":    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}),
		"pkcs8": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
		"ec with parameters": append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ServiceAccountKeyFile), data, 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := LoadOrCreateServiceAccountKey(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !ec.Equal(k) {
				t.Error("loaded a different key")
			}
		})
	}
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, ServiceAccountKeyFile), []byte("garbage"), 0o600)
	if _, err := LoadOrCreateServiceAccountKey(dir); err == nil {
		t.Error("a corrupt key file must be an error, not silently replaced")
	}
}

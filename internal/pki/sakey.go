package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ServiceAccountKeyFile is the key that signs service account tokens, under
// the TLS directory (DATA/server/tls/service.key), as in k3s.
const ServiceAccountKeyFile = "service.key"

// serviceAccountKeyBits: RSA 2048, so tokens are RS256 — what kube-apiserver
// signs with by default and what every OIDC relying party accepts.
const serviceAccountKeyBits = 2048

// LoadOrCreateServiceAccountKey returns the service account signing key in
// dir, creating an RSA key (mode 0600) on first start and reusing it after,
// so tokens issued before a restart stay valid. An existing PKCS#1, PKCS#8
// or EC key is accepted.
func LoadOrCreateServiceAccountKey(dir string) (crypto.Signer, error) {
	path := filepath.Join(dir, ServiceAccountKeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		key, err := parseSigner(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, serviceAccountKeyBits)
	if err != nil {
		return nil, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := writeFile(path, pemBytes, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

func parseSigner(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM private key")
		}
		var k any
		var err error
		switch b.Type {
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		default:
			continue // e.g. EC PARAMETERS before the key
		}
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", k)
		}
		return s, nil
	}
}

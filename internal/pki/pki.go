// Package pki owns skiff's certificates and credentials: the cluster CA, the
// API server's serving certificate, the admin client certificate, the admin
// kubeconfig, the join token that pins the CA, kubeadm-format bootstrap
// tokens (bootstraptoken.go) and the checked signing of node certificates
// for agents that join (node.go: the wire format of the join endpoint).
//
// Files under DATA/server/tls (created on first start, reused after):
//
//	ca.crt, ca.key                 cluster CA (signs serving and client certs)
//	serving.crt, serving.key       API server certificate (re-issued when SANs change)
//	client-admin.crt, .key         CN=system:admin, O=system:masters
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// renewBefore: a leaf certificate this close to expiry is re-issued at start.
	renewBefore = 90 * 24 * time.Hour
)

// CA is a certificate authority loaded in memory.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// KeyPair is a leaf certificate and its key, PEM encoded.
type KeyPair struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
}

// Bundle is everything the server needs from its TLS directory.
type Bundle struct {
	CA      *CA
	Serving KeyPair
	Admin   KeyPair
}

// ServingNames are the DNS names and IPs the serving certificate covers.
type ServingNames struct {
	DNSNames []string
	IPs      []net.IP
}

// DefaultServingNames are the SANs every skiff API server has, plus the host
// name, the given node IPs and the kubernetes service IP.
func DefaultServingNames(hostname string, serviceIP net.IP, nodeIPs ...net.IP) ServingNames {
	n := ServingNames{
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	if hostname != "" && !slices.Contains(n.DNSNames, hostname) {
		n.DNSNames = append(n.DNSNames, hostname)
	}
	if serviceIP != nil {
		n.IPs = append(n.IPs, serviceIP)
	}
	for _, ip := range nodeIPs {
		if ip != nil && !containsIP(n.IPs, ip) {
			n.IPs = append(n.IPs, ip)
		}
	}
	return n
}

// LoadOrCreate loads the bundle from dir, creating what is missing and
// re-issuing the serving certificate when it lacks one of names or is about
// to expire.
func LoadOrCreate(dir string, names ServingNames) (*Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	b := &Bundle{CA: ca}
	serving, err := loadLeaf(dir, "serving", ca)
	if err != nil || !coversNames(serving.Cert, names) {
		serving, err = ca.issue(dir, "serving", leafTemplate("skiff-apiserver", nil, names, x509.ExtKeyUsageServerAuth))
		if err != nil {
			return nil, fmt.Errorf("serving certificate: %w", err)
		}
	}
	b.Serving = serving
	admin, err := loadLeaf(dir, "client-admin", ca)
	if err != nil {
		admin, err = ca.issue(dir, "client-admin",
			leafTemplate("system:admin", []string{"system:masters"}, ServingNames{}, x509.ExtKeyUsageClientAuth))
		if err != nil {
			return nil, fmt.Errorf("admin certificate: %w", err)
		}
	}
	b.Admin = admin
	return b, nil
}

// IssueClient signs a client certificate (CN=user, O=groups) in memory.
func (ca *CA) IssueClient(user string, groups []string) (KeyPair, error) {
	return ca.sign(leafTemplate(user, groups, ServingNames{}, x509.ExtKeyUsageClientAuth))
}

// Pool returns a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func loadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certPEM, err1 := os.ReadFile(certPath)
	keyPEM, err2 := os.ReadFile(keyPath)
	if err1 == nil && err2 == nil {
		cert, key, err := parsePair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
		return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
	}
	if !errors.Is(err1, os.ErrNotExist) && err1 != nil {
		return nil, err1
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("skiff-ca@%d", now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

func leafTemplate(cn string, orgs []string, names ServingNames, usage x509.ExtKeyUsage) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     names.DNSNames,
		IPAddresses:  names.IPs,
	}
}

func (ca *CA) sign(tmpl *x509.Certificate) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return KeyPair{}, err
	}
	cert, _ := x509.ParseCertificate(der)
	keyPEM, err := encodeKey(key)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM, Cert: cert}, nil
}

func (ca *CA) issue(dir, name string, tmpl *x509.Certificate) (KeyPair, error) {
	kp, err := ca.sign(tmpl)
	if err != nil {
		return kp, err
	}
	if err := writeFile(filepath.Join(dir, name+".key"), kp.KeyPEM, 0o600); err != nil {
		return kp, err
	}
	return kp, writeFile(filepath.Join(dir, name+".crt"), kp.CertPEM, 0o644)
}

// loadLeaf reads name.crt/.key and checks they were signed by ca and are not
// about to expire.
func loadLeaf(dir, name string, ca *CA) (KeyPair, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return KeyPair{}, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, name+".key"))
	if err != nil {
		return KeyPair{}, err
	}
	cert, _, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return KeyPair{}, err
	}
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		return KeyPair{}, err
	}
	if time.Until(cert.NotAfter) < renewBefore {
		return KeyPair{}, errors.New("certificate expires soon")
	}
	return KeyPair{CertPEM: certPEM, KeyPEM: keyPEM, Cert: cert}, nil
}

func coversNames(cert *x509.Certificate, names ServingNames) bool {
	if cert == nil {
		return false
	}
	for _, n := range names.DNSNames {
		if !slices.Contains(cert.DNSNames, n) {
			return false
		}
	}
	for _, ip := range names.IPs {
		if !containsIP(cert.IPAddresses, ip) {
			return false
		}
	}
	return true
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		if ek, err2 := x509.ParseECPrivateKey(kb.Bytes); err2 == nil {
			k = ek
		} else {
			return nil, nil, err
		}
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("key cannot sign")
	}
	return cert, signer, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func containsIP(ips []net.IP, ip net.IP) bool {
	return slices.ContainsFunc(ips, func(x net.IP) bool { return x.Equal(ip) })
}

// writeFile writes atomically (temp file + rename) so a crash never leaves a
// half-written key behind.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// WriteFile is writeFile for other packages (kubeconfig, token).
func WriteFile(path string, data []byte, mode os.FileMode) error { return writeFile(path, data, mode) }

// SameFile reports whether path already holds data (to avoid rewriting).
func SameFile(path string, data []byte) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Equal(b, data)
}

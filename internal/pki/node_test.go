package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestNodeCSRsAreSignedForTheNodeOnly(t *testing.T) {
	b, err := LoadOrCreate(t.TempDir(), DefaultServingNames("host", net.ParseIP("10.43.0.1")))
	if err != nil {
		t.Fatal(err)
	}
	names := NodeServingNames("n1", []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("192.0.2.1"), nil})
	if len(names.IPs) != 2 || len(names.DNSNames) != 2 {
		t.Fatalf("names %+v", names)
	}
	clientCSR, _, err := NewNodeCSR("n1", ServingNames{})
	if err != nil {
		t.Fatal(err)
	}
	servingCSR, _, err := NewNodeCSR("n1", names)
	if err != nil {
		t.Fatal(err)
	}
	client, err := b.CA.SignNodeClient("n1", clientCSR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Cert.Verify(x509.VerifyOptions{Roots: b.CA.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if client.Cert.Subject.CommonName != "system:node:n1" || client.Cert.Subject.Organization[0] != "system:nodes" || len(client.KeyPEM) != 0 {
		t.Fatalf("client %v", client.Cert.Subject)
	}
	reserved := DefaultServingNames("host", net.ParseIP("10.43.0.1"))
	serving, err := b.CA.SignNodeServing("n1", servingCSR, reserved)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := serving.Cert.Verify(x509.VerifyOptions{Roots: b.CA.Pool(), DNSName: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	if time.Until(serving.Cert.NotAfter) < 300*24*time.Hour {
		t.Fatalf("lifetime ends %s", serving.Cert.NotAfter)
	}

	// Mixed up: a serving CSR as client CSR, another node's CSR.
	if _, err := b.CA.SignNodeClient("n1", servingCSR); !errors.Is(err, ErrInvalidCSR) {
		t.Errorf("serving CSR signed as client: %v", err)
	}
	if _, err := b.CA.SignNodeClient("n2", clientCSR); !errors.Is(err, ErrInvalidCSR) {
		t.Errorf("n1's CSR signed for n2: %v", err)
	}
	// The API server's names are reserved, but not for the server's own
	// node (empty reserved) and never loopback.
	hostCSR, _, _ := NewNodeCSR("host", NodeServingNames("host", []net.IP{net.ParseIP("10.43.0.1")}))
	if _, err := b.CA.SignNodeServing("host", hostCSR, reserved); !errors.Is(err, ErrInvalidCSR) {
		t.Errorf("API server names signed for a node: %v", err)
	}
	if _, err := b.CA.SignNodeServing("host", hostCSR, ServingNames{}); err != nil {
		t.Errorf("own node: %v", err)
	}
	for _, bad := range []string{"", "garbage", string(client.CertPEM), string(clientCSR) + "trailing"} {
		if _, err := b.CA.SignNodeClient("n1", []byte(bad)); !errors.Is(err, ErrInvalidCSR) {
			t.Errorf("%.20q: %v", bad, err)
		}
	}
	many := ServingNames{DNSNames: []string{"n1"}}
	for i := 0; i < 40; i++ {
		many.IPs = append(many.IPs, net.IPv4(192, 0, 2, byte(i)))
	}
	manyCSR, _, _ := NewNodeCSR("n1", many)
	if _, err := b.CA.SignNodeServing("n1", manyCSR, reserved); !errors.Is(err, ErrInvalidCSR) {
		t.Errorf("40 SANs: %v", err)
	}
	if err := ValidateNodeName("UPPER"); err == nil {
		t.Error("UPPER is no node name")
	}
}

func TestBootstrapTokenSecretRoundTrip(t *testing.T) {
	tok := NewBootstrapToken()
	if _, _, ok := ParseBootstrapToken(tok.String()); !ok || !IsBootstrapTokenID(tok.ID) || IsBootstrapTokenID(tok.String()) {
		t.Fatalf("token %q", tok)
	}
	tok.Description = "d"
	tok.Expires = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tok.Usages = []string{UsageSigning, UsageAuthentication}
	tok.Groups = []string{"system:bootstrappers:x"}
	sec := BootstrapTokenSecret(tok)
	if sec.Name != "bootstrap-token-"+tok.ID || sec.Namespace != "kube-system" || sec.Type != corev1.SecretTypeBootstrapToken ||
		string(sec.Data["expiration"]) != "2030-01-02T03:04:05Z" || string(sec.Data["usage-bootstrap-authentication"]) != "true" {
		t.Fatalf("secret %+v", sec)
	}
	got, err := BootstrapTokenFromSecret(sec)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != tok.String() || !got.Expires.Equal(tok.Expires) || strings.Join(got.Usages, ",") != "authentication,signing" ||
		!got.HasUsage(UsageAuthentication) || got.Description != "d" || got.Groups[0] != "system:bootstrappers:x" {
		t.Fatalf("round trip %+v", got)
	}
	if got.Expired(tok.Expires.Add(-time.Second)) || !got.Expired(tok.Expires) {
		t.Fatal("Expired")
	}
	sec.Name = "bootstrap-token-other0"
	if _, err := BootstrapTokenFromSecret(sec); !errors.Is(err, ErrBootstrapToken) {
		t.Fatalf("name mismatch: %v", err)
	}
	// Full token strings.
	full := Token{CAHash: CAHash([]byte("ca")), Secret: tok.String()}.String()
	if full != "K10"+CAHash([]byte("ca"))+"::"+tok.String() {
		t.Fatalf("full %q", full)
	}
	if p, err := ParseToken(full); err != nil || p.Secret != tok.String() || p.User != "" {
		t.Fatalf("parse %q: %+v %v", full, p, err)
	}
}

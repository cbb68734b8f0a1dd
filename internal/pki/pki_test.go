package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestLoadOrCreateIsStableAndReissuesOnNewNames(t *testing.T) {
	dir := t.TempDir()
	names := DefaultServingNames("host-a", net.ParseIP("10.43.0.1"), net.ParseIP("192.0.2.10"))
	b1, err := LoadOrCreate(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode: %v %v", fi.Mode(), err)
	}
	b2, err := LoadOrCreate(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	if !b1.CA.Cert.Equal(b2.CA.Cert) || !b1.Serving.Cert.Equal(b2.Serving.Cert) || !b1.Admin.Cert.Equal(b2.Admin.Cert) {
		t.Fatal("second start must reuse every certificate")
	}
	for _, want := range []string{"localhost", "kubernetes.default.svc", "host-a"} {
		if err := b1.Serving.Cert.VerifyHostname(want); err != nil {
			t.Errorf("serving cert does not cover %s: %v", want, err)
		}
	}
	for _, ip := range []string{"127.0.0.1", "10.43.0.1", "192.0.2.10"} {
		if err := b1.Serving.Cert.VerifyHostname(ip); err != nil {
			t.Errorf("serving cert does not cover %s: %v", ip, err)
		}
	}
	names2 := DefaultServingNames("host-a", net.ParseIP("10.43.0.1"), net.ParseIP("192.0.2.11"))
	b3, err := LoadOrCreate(dir, names2)
	if err != nil {
		t.Fatal(err)
	}
	if b3.Serving.Cert.Equal(b1.Serving.Cert) || !b3.CA.Cert.Equal(b1.CA.Cert) {
		t.Fatal("a new node IP must re-issue the serving cert under the same CA")
	}
	if _, err := b3.Serving.Cert.Verify(x509.VerifyOptions{Roots: b3.CA.Pool(), DNSName: "192.0.2.11"}); err != nil {
		t.Fatal(err)
	}
	if b1.Admin.Cert.Subject.CommonName != "system:admin" || b1.Admin.Cert.Subject.Organization[0] != "system:masters" {
		t.Fatalf("admin subject %v", b1.Admin.Cert.Subject)
	}
	if _, err := tls.X509KeyPair(b1.Admin.CertPEM, b1.Admin.KeyPEM); err != nil {
		t.Fatal(err)
	}
}

func TestTokenRoundTripAndPinning(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n")
	tok := Token{CAHash: CAHash(ca), Secret: NewSecret()}
	parsed, err := ParseToken(tok.String())
	if err != nil {
		t.Fatal(err)
	}
	if parsed != (Token{CAHash: tok.CAHash, User: "server", Secret: tok.Secret}) {
		t.Fatalf("round trip: %+v", parsed)
	}
	if !parsed.MatchesCA(ca) || parsed.MatchesCA([]byte("other")) {
		t.Fatal("CA pinning")
	}
	for _, bad := range []string{"", "K10abc::x", "K10" + tok.CAHash + "::server:", "has space"} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("ParseToken(%q) accepted", bad)
		}
	}
	if bare, err := ParseToken("s3cret"); err != nil || bare.Secret != "s3cret" || !bare.MatchesCA(ca) {
		t.Fatalf("bare secret: %+v %v", bare, err)
	}
}

func TestKubeconfig(t *testing.T) {
	b, err := LoadOrCreate(t.TempDir(), DefaultServingNames("", nil))
	if err != nil {
		t.Fatal(err)
	}
	data, err := Kubeconfig("https://127.0.0.1:6443", b.CA.CertPEM, b.Admin)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || len(cfg.TLSClientConfig.CAData) == 0 || len(cfg.TLSClientConfig.CertData) == 0 {
		t.Fatalf("rest config: %+v", cfg)
	}
}

package join_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-dev/skiff/internal/agent/join"
	"github.com/skiff-dev/skiff/internal/pki"
	"github.com/skiff-dev/skiff/internal/server"
	"github.com/skiff-dev/skiff/internal/server/servertest"
)

func opts(s *servertest.Running, dataDir, token, node string) join.Options {
	return join.Options{DataDir: dataDir, ServerURL: s.URL, Token: token, NodeName: node,
		NodeIPs: []net.IP{net.ParseIP("192.0.2.10")}, Logger: slog.New(slog.DiscardHandler)}
}

func bootstrap(t *testing.T, o join.Options) (*join.Credentials, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return join.Bootstrap(ctx, o)
}

func adminClient(t *testing.T, s *servertest.Running) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pprofStatus is what the API answers a client on /debug/pprof/: 200 for
// system:masters, 403 for another authenticated user, 401 for nobody.
func pprofStatus(t *testing.T, cfg *rest.Config) int {
	t.Helper()
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Get(cfg.Host + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestJoinWithTheServerToken(t *testing.T) {
	s := servertest.Start(t, server.Config{})
	adminBefore, err := os.ReadFile(s.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	creds, err := bootstrap(t, opts(s, data, s.Token(), "node-a"))
	if err != nil {
		t.Fatal(err)
	}

	tlsDir := filepath.Join(data, "agent", "tls")
	for path, mode := range map[string]fs.FileMode{
		creds.CAFile: 0o644, creds.ClientCertFile: 0o644, creds.ServingCertFile: 0o644,
		creds.ClientKeyFile: 0o600, creds.ServingKeyFile: 0o600, creds.KubeconfigFile: 0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %v", path, fi.Mode(), err, mode)
		}
	}
	if creds.CAFile != filepath.Join(tlsDir, "ca.crt") || creds.KubeconfigFile != filepath.Join(data, "agent", "kubelet.kubeconfig") ||
		creds.ServingCertFile != filepath.Join(tlsDir, "serving.crt") || creds.ClientKeyFile != filepath.Join(tlsDir, "client.key") {
		t.Errorf("paths %+v", creds)
	}
	serverCA, _ := os.ReadFile(filepath.Join(s.DataDir, "server", "tls", "ca.crt"))
	if !bytes.Equal(creds.CAPEM, serverCA) {
		t.Error("CAPEM is not the server's CA")
	}

	client := readCert(t, creds.ClientCertFile)
	if client.Subject.CommonName != "system:node:node-a" || len(client.Subject.Organization) != 1 || client.Subject.Organization[0] != "system:nodes" {
		t.Errorf("client subject %v", client.Subject)
	}
	if len(client.ExtKeyUsage) != 1 || client.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("client usages %v", client.ExtKeyUsage)
	}
	serving := readCert(t, creds.ServingCertFile)
	for _, h := range []string{"node-a", "localhost", "127.0.0.1", "192.0.2.10"} {
		if err := serving.VerifyHostname(h); err != nil {
			t.Errorf("serving cert: %v", err)
		}
	}
	if _, err := tls.LoadX509KeyPair(creds.ServingCertFile, creds.ServingKeyFile); err != nil {
		t.Error(err)
	}
	if want := client.NotAfter.Add(-client.NotAfter.Sub(client.NotBefore) / 3); creds.RenewAt.Sub(want).Abs() > time.Minute {
		t.Errorf("RenewAt %s, want about %s", creds.RenewAt, want)
	}

	// The RESTConfig and the kubeconfig reach the API as the node: it is
	// authenticated (the node list answers) but no admin (pprof is 403).
	kc, err := clientcmd.BuildConfigFromFlags("", creds.KubeconfigFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*rest.Config{"RESTConfig": creds.RESTConfig, "kubeconfig": kc} {
		if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err != nil {
			t.Errorf("%s: listing nodes: %v", name, err)
		}
		if code := pprofStatus(t, cfg); code != http.StatusForbidden {
			t.Errorf("%s: /debug/pprof/ answered %d, want 403 (authenticated, not system:masters)", name, code)
		}
	}
	anon := rest.AnonymousClientConfig(creds.RESTConfig)
	if code := pprofStatus(t, anon); code != http.StatusUnauthorized {
		t.Errorf("anonymous: /debug/pprof/ answered %d, want 401", code)
	}

	// The admin kubeconfig is neither changed nor copied.
	if adminAfter, _ := os.ReadFile(s.AdminKubeconfig); !bytes.Equal(adminBefore, adminAfter) {
		t.Error("the admin kubeconfig changed")
	}
	admin, _ := clientcmd.Load(adminBefore)
	adminCert := admin.AuthInfos["default"].ClientCertificateData
	_ = filepath.WalkDir(filepath.Join(data, "agent"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(path)
			if bytes.Contains(b, adminCert) || bytes.Contains(b, []byte("system:masters")) {
				t.Errorf("%s holds admin credentials", path)
			}
		}
		return nil
	})
	if strings.Contains(creds.RESTConfig.String(), string(adminCert)) {
		t.Error("RESTConfig uses the admin certificate")
	}
}

func TestJoinWithABootstrapToken(t *testing.T) {
	s := servertest.Start(t, server.Config{})
	admin := adminClient(t, s)
	serverTok, _ := pki.ParseToken(s.Token())
	create := func(bt pki.BootstrapToken) string {
		t.Helper()
		if _, err := admin.CoreV1().Secrets("kube-system").Create(context.Background(), pki.BootstrapTokenSecret(bt), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return pki.Token{CAHash: serverTok.CAHash, Secret: bt.String()}.String()
	}

	good := pki.NewBootstrapToken()
	good.Usages = []string{pki.UsageAuthentication, pki.UsageSigning}
	good.Expires = time.Now().Add(time.Hour)
	goodTok := create(good)
	if !strings.HasPrefix(goodTok, "K10"+serverTok.CAHash+"::"+good.ID+".") {
		t.Fatalf("token %q", goodTok)
	}
	creds, err := bootstrap(t, opts(s, t.TempDir(), goodTok, "node-b"))
	if err != nil {
		t.Fatal(err)
	}
	if c := readCert(t, creds.ClientCertFile); c.Subject.CommonName != "system:node:node-b" {
		t.Fatalf("subject %v", c.Subject)
	}

	expired := pki.NewBootstrapToken()
	expired.Usages = []string{pki.UsageAuthentication}
	expired.Expires = time.Now().Add(-time.Minute)
	noAuthUsage := pki.NewBootstrapToken()
	noAuthUsage.Usages = []string{pki.UsageSigning}
	deleted := pki.NewBootstrapToken()
	deleted.Usages = []string{pki.UsageAuthentication}
	deletedTok := create(deleted)
	if err := admin.CoreV1().Secrets("kube-system").Delete(context.Background(), deleted.SecretName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wrongSecret := good
	wrongSecret.Secret = strings.Repeat("0", 16)
	for name, tok := range map[string]string{
		"expired":                create(expired),
		"without authentication": create(noAuthUsage),
		"deleted":                deletedTok,
		"wrong secret":           pki.Token{CAHash: serverTok.CAHash, Secret: wrongSecret.String()}.String(),
		"wrong server secret":    pki.Token{CAHash: serverTok.CAHash, Secret: "0123456789abcdef0123456789abcdef"}.String(),
		"a Secret of another type": func() string {
			bt := pki.NewBootstrapToken()
			sec := pki.BootstrapTokenSecret(bt)
			sec.Type = corev1.SecretTypeOpaque
			if _, err := admin.CoreV1().Secrets("kube-system").Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			return pki.Token{CAHash: serverTok.CAHash, Secret: bt.String()}.String()
		}(),
	} {
		data := t.TempDir()
		_, err := bootstrap(t, opts(s, data, tok, "node-c"))
		if !errors.Is(err, join.ErrUnauthorized) {
			t.Errorf("%s: err %v, want ErrUnauthorized", name, err)
		}
		if _, err := os.Stat(filepath.Join(data, "agent", "tls", "client.key")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: a refused join left credentials behind (%v)", name, err)
		}
	}
}

func TestJoinRefusesAServerWhoseCADiffers(t *testing.T) {
	s := servertest.Start(t, server.Config{})
	tok, _ := pki.ParseToken(s.Token())
	other := pki.Token{CAHash: pki.CAHash([]byte("another CA")), Secret: tok.Secret}
	data := t.TempDir()
	_, err := bootstrap(t, opts(s, data, other.String(), "node-a"))
	if !errors.Is(err, join.ErrCAMismatch) || !strings.Contains(err.Error(), tok.CAHash) || !strings.Contains(err.Error(), other.CAHash) {
		t.Fatalf("err %v, want ErrCAMismatch naming %s and %s", err, tok.CAHash, other.CAHash)
	}
	if _, err := os.Stat(filepath.Join(data, "agent")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused join wrote to DATA/agent (%v)", err)
	}

	// A bare secret is refused without a CA saved by an earlier join …
	if _, err := bootstrap(t, opts(s, data, tok.Secret, "node-a")); !errors.Is(err, join.ErrNoCAHash) {
		t.Fatalf("bare secret, nothing saved: %v", err)
	}
	// … and accepted with one.
	if _, err := bootstrap(t, opts(s, data, s.Token(), "node-a")); err != nil {
		t.Fatal(err)
	}
	if _, err := bootstrap(t, opts(s, data, tok.Secret, "node-a")); err != nil {
		t.Fatalf("bare secret with the CA saved: %v", err)
	}
	// A server whose certificate the saved CA did not sign is refused
	// with a bare secret (a new node name forces a join).
	if err := os.WriteFile(filepath.Join(data, "agent", "tls", "ca.crt"), selfSignedCA(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := bootstrap(t, opts(s, data, tok.Secret, "node-z")); !errors.Is(err, join.ErrCAMismatch) {
		t.Fatalf("bare secret, another saved CA: %v", err)
	}
}

func TestCredentialsAreReusedThenRenewed(t *testing.T) {
	s := servertest.Start(t, server.Config{})
	data := t.TempDir()
	o := opts(s, data, s.Token(), "node-a")
	creds, err := bootstrap(t, o)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(creds.ClientCertFile)
	firstServing, _ := os.ReadFile(creds.ServingCertFile)

	// A restart reuses them, without the server.
	s.Stop()
	again, err := bootstrap(t, o)
	if err != nil {
		t.Fatalf("reuse with the server down: %v", err)
	}
	if b, _ := os.ReadFile(again.ClientCertFile); !bytes.Equal(b, first) {
		t.Fatal("client certificate not reused")
	}
	if b, _ := os.ReadFile(again.ServingCertFile); !bytes.Equal(b, firstServing) {
		t.Fatal("serving certificate not reused")
	}
	// A new node IP needs a new serving certificate: with the server down
	// that fails (and is retried until ctx ends) …
	o2 := o
	o2.NodeIPs = []net.IP{net.ParseIP("192.0.2.11")}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := join.Bootstrap(ctx, o2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("server down: %v", err)
	}

	// … and works against a new server on the same data, port and CA.
	s2 := servertest.Start(t, server.Config{DataDir: s.DataDir, HTTPSPort: port(t, s.URL), WriteKubeconfig: s.AdminKubeconfig})
	if s2.Token() != s.Token() {
		t.Fatal("the restarted server has another token")
	}
	renewed, err := bootstrap(t, o2)
	if err != nil {
		t.Fatal(err)
	}
	if err := readCert(t, renewed.ServingCertFile).VerifyHostname("192.0.2.11"); err != nil {
		t.Fatal(err)
	}

	// Credentials in the last third of their lifetime are renewed.
	b, err := pki.LoadOrCreate(filepath.Join(s.DataDir, "server", "tls"), pki.ServingNames{})
	if err != nil {
		t.Fatal(err)
	}
	old := readCert(t, renewed.ClientCertFile)
	keyPEM, _ := os.ReadFile(renewed.ClientKeyFile)
	tmpl := *old
	tmpl.NotBefore = time.Now().Add(-200 * 24 * time.Hour)
	tmpl.NotAfter = time.Now().Add(50 * 24 * time.Hour)
	key, _ := pem.Decode(keyPEM)
	priv, err := x509.ParseECPrivateKey(key.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, b.CA.Cert, priv.Public(), b.CA.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(renewed.ClientCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh, err := bootstrap(t, o2)
	if err != nil {
		t.Fatal(err)
	}
	if c := readCert(t, fresh.ClientCertFile); time.Until(c.NotAfter) < 300*24*time.Hour {
		t.Fatalf("not renewed: expires %s", c.NotAfter)
	}
}

func TestBadOptions(t *testing.T) {
	for name, o := range map[string]join.Options{
		"no data dir":   {ServerURL: "https://127.0.0.1:1", Token: "x", NodeName: "n"},
		"http":          {DataDir: t.TempDir(), ServerURL: "http://127.0.0.1:1", Token: "x", NodeName: "n"},
		"bad node name": {DataDir: t.TempDir(), ServerURL: "https://127.0.0.1:1", Token: "x", NodeName: "N_1"},
		"bad token":     {DataDir: t.TempDir(), ServerURL: "https://127.0.0.1:1", Token: "K10nothex::x", NodeName: "n"},
		"URL with path": {DataDir: t.TempDir(), ServerURL: "https://127.0.0.1:1/api", Token: "x", NodeName: "n"},
		"empty token":   {DataDir: t.TempDir(), ServerURL: "https://127.0.0.1:1", Token: " ", NodeName: "n"},
		"no server URL": {DataDir: t.TempDir(), Token: "x", NodeName: "n"},
	} {
		if _, err := join.Bootstrap(context.Background(), o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func port(t *testing.T, u string) int {
	_, p, err := net.SplitHostPort(strings.TrimPrefix(u, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, c := range p {
		n = n*10 + int(c-'0')
	}
	return n
}

func selfSignedCA(t *testing.T) []byte {
	b, err := pki.LoadOrCreate(t.TempDir(), pki.ServingNames{})
	if err != nil {
		t.Fatal(err)
	}
	return b.CA.CertPEM
}

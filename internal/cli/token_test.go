package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-dev/skiff/internal/agent/join"
	"github.com/skiff-dev/skiff/internal/pki"
	"github.com/skiff-dev/skiff/internal/server"
	"github.com/skiff-dev/skiff/internal/server/servertest"
)

// The table is laid out byte for byte as kubeadm's `token list`
// (cmd/kubeadm/app/cmd/token.go: tabwriter 10/4/3 per token, TTL padded to
// 9, USAGES to 22, DESCRIPTION to 56).
func TestTokenListLayoutIsKubeadms(t *testing.T) {
	expires := time.Date(2021, 3, 5, 19, 51, 22, 0, time.UTC)
	a := pki.BootstrapTokenSecret(pki.BootstrapToken{ID: "zlt7nb", Secret: "lpd06ao1kxf4uwgm", Expires: expires,
		Usages: []string{pki.UsageSigning, pki.UsageAuthentication}, Groups: []string{"system:bootstrappers:kubeadm:default-node-token"}})
	b := pki.BootstrapTokenSecret(pki.BootstrapToken{ID: "abcdef", Secret: "0123456789abcdef", Description: "for the lab"})
	client := fake.NewClientset(a, b)
	var out, errOut bytes.Buffer
	if err := listTokens(context.Background(), client, &out, &errOut, expires.Add(-23*time.Hour-30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	sp := func(n int) string { return strings.Repeat(" ", n) }
	// Each token has its own tabwriter and the header shares the first
	// one's, so with a never-expiring first token the header's EXPIRES
	// column is narrower than the next row's — kubeadm does the same.
	want := "TOKEN" + sp(21) + "TTL" + sp(9) + "EXPIRES" + sp(3) + "USAGES" + sp(19) + "DESCRIPTION" + sp(48) + "EXTRA GROUPS\n" +
		"abcdef.0123456789abcdef" + sp(3) + "<forever>" + sp(3) + "<never>" + sp(3) + "<none>" + sp(16+3) + "for the lab" + sp(45+3) + "<none>\n" +
		"zlt7nb.lpd06ao1kxf4uwgm" + sp(3) + "23h" + sp(6+3) + "2021-03-05T19:51:22Z" + sp(3) + "authentication,signing" + sp(3) + "<none>" + sp(50+3) + "system:bootstrappers:kubeadm:default-node-token\n"
	if out.String() != want || errOut.Len() > 0 {
		t.Fatalf("got\n%s\nwant\n%s\nstderr %q", out.String(), want, errOut.String())
	}
	out.Reset()
	if err := listTokens(context.Background(), fake.NewClientset(), &out, &errOut, expires); err != nil || out.Len() != 0 {
		t.Fatalf("no tokens: %q %v (kubeadm prints nothing, not even the header)", out.String(), err)
	}
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(append([]string{"skiff"}, args...), strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestTokenCreateListDeleteAgainstAServer(t *testing.T) {
	s := servertest.Start(t, server.Config{})
	serverTok, _ := pki.ParseToken(s.Token())
	kc := "--kubeconfig=" + s.AdminKubeconfig

	out, errOut, code := run(t, "token", "create", kc, "--ttl", "2h", "--description", "for node-x")
	if code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	m := regexp.MustCompile(`^K10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{16})\n$`).FindStringSubmatch(out)
	if m == nil || m[1] != serverTok.CAHash {
		t.Fatalf("create printed %q, want K10%s::<id>.<secret>", out, serverTok.CAHash)
	}
	full, id, secret := strings.TrimSpace(out), m[2], m[3]

	sec, err := adminSecrets(t, s).Get(context.Background(), "bootstrap-token-"+id, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Type != corev1.SecretTypeBootstrapToken || string(sec.Data["token-id"]) != id || string(sec.Data["token-secret"]) != secret ||
		string(sec.Data["usage-bootstrap-authentication"]) != "true" || string(sec.Data["description"]) != "for node-x" {
		t.Fatalf("secret %+v", sec)
	}
	exp, err := time.Parse(time.RFC3339, string(sec.Data["expiration"]))
	if err != nil || exp.Before(time.Now().Add(119*time.Minute)) || exp.After(time.Now().Add(121*time.Minute)) {
		t.Fatalf("expiration %q %v", sec.Data["expiration"], err)
	}

	// A forever token, and a chosen one.
	if _, errOut, code := run(t, "token", "create", kc, "--ttl", "0", "abcdef.0123456789abcdef"); code != 0 {
		t.Fatalf("create forever: %d %s", code, errOut)
	}
	if _, errOut, code := run(t, "token", "create", kc, "abcdef.0123456789abcdef"); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("create twice: %d %s", code, errOut)
	}
	if _, errOut, code := run(t, "token", "create", kc, "Not-A-Token"); code != 2 || !strings.Contains(errOut, "[a-z0-9]{6}") {
		t.Fatalf("create bad: %d %s", code, errOut)
	}

	out, errOut, code = run(t, "token", "list", kc)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("list: %d %q %s", code, out, errOut)
	}
	// Rows come in Secret name order; EXPIRES is narrow in a tabwriter
	// holding only "<never>" (see TestTokenListLayoutIsKubeadms).
	if !regexp.MustCompile(`^TOKEN {21}TTL {9}EXPIRES( {3}| {16})USAGES {19}DESCRIPTION {48}EXTRA GROUPS$`).MatchString(lines[0]) {
		t.Errorf("header %q", lines[0])
	}
	rows := strings.Join(lines[1:], "\n")
	if !regexp.MustCompile(`(?m)^abcdef\.0123456789abcdef   <forever>   <never>( {3}| {16})authentication {11}<none> {53}<none>$`).MatchString(rows) {
		t.Errorf("no forever row in\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^` + id + `\.` + secret + `   (1h|2h) {10}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ   authentication {11}for node-x {49}<none>$`).MatchString(rows) {
		t.Errorf("no row for %s in\n%s", id, out)
	}

	// The created token joins a node.
	data := t.TempDir()
	o := join.Options{DataDir: data, ServerURL: s.URL, Token: full, NodeName: "node-x",
		NodeIPs: []net.IP{net.ParseIP("192.0.2.20")}, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := join.Bootstrap(ctx, o); err != nil {
		t.Fatalf("join with the created token: %v", err)
	}

	// Delete by ID and by full token; deleted tokens join no more.
	if out, errOut, code := run(t, "token", "delete", kc, id, "K10"+serverTok.CAHash+"::abcdef.0123456789abcdef"); code != 0 ||
		out != "bootstrap token \""+id+"\" deleted\nbootstrap token \"abcdef\" deleted\n" {
		t.Fatalf("delete: %d %q %s", code, out, errOut)
	}
	if out, _, code := run(t, "token", "list", kc); code != 0 || out != "" {
		t.Fatalf("list after delete: %d %q", code, out)
	}
	if _, errOut, code := run(t, "token", "delete", kc, "zzzzzz"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("delete missing: %d %s", code, errOut)
	}
	if _, errOut, code := run(t, "token", "delete", kc, "nope"); code != 2 {
		t.Fatalf("delete bad: %d %s", code, errOut)
	}
	o.DataDir, o.NodeName = t.TempDir(), "node-y"
	if _, err := join.Bootstrap(ctx, o); !errors.Is(err, join.ErrUnauthorized) {
		t.Fatalf("join with a deleted token: %v", err)
	}
}

func adminSecrets(t *testing.T, s *servertest.Running) typedcorev1.SecretInterface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg).CoreV1().Secrets("kube-system")
}

package satoken_test

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/internal/apiserver"
	"github.com/skiff-dev/skiff/internal/pki"
	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/satoken"
	"github.com/skiff-dev/skiff/internal/store"
)

const adminToken = "test-admin-token"

// startAPI runs an API server whose authenticator is what internal/server
// composes: a fixed admin credential (standing in for client certificates)
// first, then service account bearer tokens.
// It serves TLS: upstream kubectl sends no bearer token over plain HTTP.
func startAPI(t *testing.T) (cfg *rest.Config, admin kubernetes.Interface) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "state.db"), store.BoltOptions{NoSync: true, CompactInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := registry.Resources(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.LoadOrCreateServiceAccountKey(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	var api *apiserver.Server
	tokens, err := satoken.New(satoken.Options{Key: key, Lookup: satoken.LookupFunc(
		func(ctx context.Context, gr schema.GroupResource, ns, name string) (runtime.Object, error) {
			return api.GetObject(ctx, gr, ns, name)
		})})
	if err != nil {
		t.Fatal(err)
	}
	api, err = apiserver.New(apiserver.Config{
		Store: st, Resources: res, TokenIssuer: tokens,
		Authenticator: func(r *http.Request) (apiserver.Identity, bool) {
			if r.Header.Get("Authorization") == "Bearer "+adminToken {
				return apiserver.Identity{Name: "admin", Groups: []string{"system:masters", "system:authenticated"}}, true
			}
			return tokens.AuthenticateRequest(r)
		},
		Version: version.Info{Major: "1", Minor: "32", GitVersion: "v1.32.0-skiff"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewTLSServer(api.Handler())
	t.Cleanup(func() {
		api.StopWatches()
		hs.CloseClientConnections()
		hs.Close()
		_ = st.Close()
	})
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw})
	cfg = &rest.Config{Host: hs.URL, QPS: -1, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}
	admin = kubernetes.NewForConfigOrDie(withToken(cfg, adminToken))
	if _, err := admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return cfg, admin
}

func withToken(cfg *rest.Config, token string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.BearerToken = token
	return c
}

// authenticates reports whether the API accepts token as a bearer token.
func authenticates(t *testing.T, cfg *rest.Config, token string) bool {
	t.Helper()
	c := kubernetes.NewForConfigOrDie(withToken(cfg, token))
	_, err := c.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{})
	if err != nil && !apierrors.IsUnauthorized(err) {
		t.Fatalf("unexpected error: %v", err)
	}
	return err == nil
}

func TestTokenRequestAuthenticatesAgainstAPI(t *testing.T) {
	cfg, admin := startAPI(t)
	ctx := context.Background()
	sas := admin.CoreV1().ServiceAccounts("default")
	if _, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := sas.CreateToken(ctx, "builder", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !authenticates(t, cfg, tr.Status.Token) {
		t.Fatal("a fresh TokenRequest token was rejected")
	}
	if authenticates(t, cfg, tr.Status.Token+"x") {
		t.Fatal("a corrupted token was accepted")
	}
	other, err := sas.CreateToken(ctx, "builder", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if authenticates(t, cfg, other.Status.Token) {
		t.Fatal("a token for another audience was accepted by the API")
	}

	// Deleting and recreating the service account revokes its tokens.
	if err := sas.Delete(ctx, "builder", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if authenticates(t, cfg, tr.Status.Token) {
		t.Fatal("token of a deleted service account was accepted")
	}
	if _, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if authenticates(t, cfg, tr.Status.Token) {
		t.Fatal("token of a recreated service account was accepted")
	}

	// A pod-bound token dies with its pod.
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{ServiceAccountName: "builder",
		Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}}
	if _, err := admin.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bound, err := sas.CreateToken(ctx, "builder", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "web"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !authenticates(t, cfg, bound.Status.Token) {
		t.Fatal("pod-bound token rejected")
	}
	if err := admin.CoreV1().Pods("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if authenticates(t, cfg, bound.Status.Token) {
		t.Fatal("token of a deleted pod was accepted")
	}
}

func TestKubectlCreateToken(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not on PATH")
	}
	cfg, admin := startAPI(t)
	ctx := context.Background()
	if _, err := admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	kc := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: " + cfg.Host +
		"\n    certificate-authority-data: " + base64.StdEncoding.EncodeToString(cfg.CAData) +
		"\nusers:\n- name: u\n  user:\n    token: " + adminToken +
		"\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: default\ncurrent-context: x\n"
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	tok, err := run("create", "token", "default", "--duration", "20m")
	if err != nil {
		t.Fatalf("kubectl create token: %v\n%s", err, tok)
	}
	if !authenticates(t, cfg, tok) {
		t.Fatal("kubectl's token was rejected")
	}
	out, err := run("create", "token", "default", "--duration", "1m")
	if err == nil || !strings.Contains(out, "may not specify a duration less than 10 minutes") {
		t.Fatalf("short duration: err=%v out=%s", err, out)
	}
	out, err = run("create", "token", "missing")
	if err == nil || !strings.Contains(out, `serviceaccounts "missing" not found`) {
		t.Fatalf("missing service account: err=%v out=%s", err, out)
	}
	out, err = run("get", "--raw", "/api/v1")
	if err != nil || !strings.Contains(out, `"name":"serviceaccounts/token","singularName":"","namespaced":true,"group":"authentication.k8s.io","version":"v1","kind":"TokenRequest","verbs":["create"]`) {
		t.Fatalf("discovery: err=%v out=%s", err, out)
	}
}

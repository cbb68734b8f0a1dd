package apiserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

type testEnv struct {
	t      *testing.T
	store  *store.Bolt
	srv    *Server
	http   *httptest.Server
	client kubernetes.Interface
	cfg    *rest.Config
}

type envOption func(*Config)

// graceful wraps a strategy with a GracefulDeleter that makes every object
// with spec.nodeName set (pods) delete gracefully, like the pod strategy.
type gracefulStrategy struct{ registry.Strategy }

func (gracefulStrategy) GracePeriod(obj runtime.Object, opts *metav1.DeleteOptions) (int64, bool) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return 0, false
	}
	secs := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		secs = *pod.Spec.TerminationGracePeriodSeconds
	}
	if opts != nil && opts.GracePeriodSeconds != nil {
		secs = *opts.GracePeriodSeconds
	}
	return secs, true
}

func withGracefulPods(c *Config) {
	for i, r := range c.Resources {
		if r.Resource == "pods" && r.Group == "" {
			if _, ok := r.Strategy.(registry.GracefulDeleter); ok {
				return
			}
			cp := *r
			cp.Strategy = gracefulStrategy{r.Strategy}
			c.Resources[i] = &cp
		}
	}
}

func newTestEnv(t testing.TB, opts ...envOption) *testEnv {
	t.Helper()
	return newTestEnvWithStore(t, store.BoltOptions{NoSync: true, CompactInterval: -1}, opts...)
}

func newTestEnvWithStore(t testing.TB, bo store.BoltOptions, opts ...envOption) *testEnv {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), bo)
	if err != nil {
		t.Fatal(err)
	}
	res, err := registry.Resources(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Resources: res, Version: version.Info{Major: "1", Minor: "32", GitVersion: "v1.32.0-skiff"}}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		_ = st.Close()
	})
	rc := &rest.Config{Host: hs.URL, QPS: -1, BearerToken: "admin"}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{store: st, srv: s, http: hs, client: cs, cfg: rc}
	if tt, ok := t.(*testing.T); ok {
		env.t = tt
	}
	ctx := context.Background()
	for _, ns := range []string{"default", "other"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

func cm(name string, labels map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Data: map[string]string{"k": "v"}}
}

func pod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1.25"}}}}
}

// do sends a raw request and returns the response (body read by caller).
func (e *testEnv) do(t testing.TB, method, path, contentType string, body []byte, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, bytesReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

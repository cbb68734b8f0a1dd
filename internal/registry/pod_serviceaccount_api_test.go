package registry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/internal/apiserver"
	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

// The ServiceAccount admission through the API server, as skiff server
// wires it (Config.Objects over the API server's own reads).
func TestServiceAccountAdmissionThroughAPI(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var srv *apiserver.Server
	res, err := registry.Resources(registry.Config{Objects: registry.ObjectGetterFunc(
		func(ctx context.Context, gr schema.GroupResource, ns, name string) (runtime.Object, error) {
			return srv.GetObject(ctx, gr, ns, name)
		})})
	if err != nil {
		t.Fatal(err)
	}
	srv, err = apiserver.New(apiserver.Config{Store: st, Resources: res,
		Authenticator: func(*http.Request) (apiserver.Identity, bool) {
			return apiserver.Identity{Name: "admin", Groups: []string{"system:masters"}}, true
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := srv.Init(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.StopWatches(); hs.CloseClientConnections(); hs.Close(); st.Close() })
	c := kubernetes.NewForConfigOrDie(&rest.Config{Host: hs.URL, QPS: -1})
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name, generate, sa string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, GenerateName: generate},
			Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	}
	pods := c.CoreV1().Pods("ns")

	_, err = pods.Create(ctx, pod("x", "", "sa"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || err.Error() != `pods "x" is forbidden: error looking up service account ns/sa: serviceaccount "sa" not found` {
		t.Fatalf("missing service account: %v", err)
	}
	_, err = pods.Create(ctx, pod("", "gen-", "sa"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if !apierrors.IsForbidden(err) || !strings.HasPrefix(err.Error(), `pods "gen-" is forbidden: error looking up service account ns/sa`) {
		t.Fatalf("generated name, dry run: %v", err)
	}

	if _, err := c.CoreV1().ServiceAccounts("ns").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := pods.Create(ctx, pod("web", "", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.ServiceAccountName != "default" || len(got.Spec.Volumes) != 1 ||
		!strings.HasPrefix(got.Spec.Volumes[0].Name, "kube-api-access-") || got.Spec.Volumes[0].Projected == nil {
		t.Fatalf("admitted pod: %+v", got.Spec)
	}
	m := got.Spec.Containers[0].VolumeMounts
	if len(m) != 1 || m[0].MountPath != "/var/run/secrets/kubernetes.io/serviceaccount" || !m[0].ReadOnly || m[0].Name != got.Spec.Volumes[0].Name {
		t.Fatalf("mounts %+v", m)
	}
}

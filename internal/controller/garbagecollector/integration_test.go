package garbagecollector

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// env is a real API server with a running garbage collector.
type env struct {
	t      *testing.T
	ctx    context.Context
	client kubernetes.Interface
	meta   metadata.Interface
	gc     *Controller
}

func startEnv(t *testing.T) *env {
	t.Helper()
	api := controllertest.Start(t)
	cc := api.Context(t)
	gc, err := New(cc, Options{ResyncPeriod: time.Second, InitialSyncTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
		cc.Informers.Shutdown()
	})
	cc.Informers.Start(ctx.Done())
	go func() { defer close(done); _ = gc.Run(ctx, 2) }()
	return &env{t: t, ctx: ctx, client: api.Client, meta: cc.Metadata, gc: gc}
}

func ownerRef(cm *corev1.ConfigMap, block bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID, BlockOwnerDeletion: ptr.To(block)}
}

func (e *env) configMap(ns, name string, finalizers []string, owners ...metav1.OwnerReference) *corev1.ConfigMap {
	e.t.Helper()
	cm, err := e.client.CoreV1().ConfigMaps(ns).Create(e.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: ns, OwnerReferences: owners, Finalizers: finalizers}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return cm
}

func (e *env) secret(ns, name string, owners ...metav1.OwnerReference) *corev1.Secret {
	e.t.Helper()
	s, err := e.client.CoreV1().Secrets(ns).Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: ns, OwnerReferences: owners}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) deleteCM(name string, policy metav1.DeletionPropagation) {
	e.t.Helper()
	if err := e.client.CoreV1().ConfigMaps("default").Delete(e.ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) cmGone(name string) func() (bool, error) {
	return func() (bool, error) {
		_, err := e.client.CoreV1().ConfigMaps("default").Get(e.ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	}
}

func (e *env) secretGone(name string) func() (bool, error) {
	return func() (bool, error) {
		_, err := e.client.CoreV1().Secrets("default").Get(e.ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	}
}

// waitInGraph waits until the collector has observed the object, so a test
// can order what it creates against what the graph knows.
func (e *env) waitInGraph(uid types.UID) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%s in the graph", uid), func() (bool, error) {
		e.gc.graph.mu.RLock()
		defer e.gc.graph.mu.RUnlock()
		n, ok := e.gc.graph.uidToNode[uid]
		return ok && !n.virtual, nil
	})
}

func (e *env) waitFor(what string, cond func() (bool, error)) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}

func TestBackground(t *testing.T) {
	e := startEnv(t)
	owner := e.configMap("default", "owner", nil)
	e.configMap("default", "dep-cm", nil, ownerRef(owner, false))
	e.secret("default", "dep-secret", ownerRef(owner, false))
	e.deleteCM("owner", metav1.DeletePropagationBackground)
	e.waitFor("the configmap dependent to go", e.cmGone("dep-cm"))
	e.waitFor("the secret dependent to go", e.secretGone("dep-secret"))
}

func TestForegroundWaitsForBlockingDependents(t *testing.T) {
	e := startEnv(t)
	owner := e.configMap("default", "owner", nil)
	e.configMap("default", "held", []string{"skiff.test/hold"}, ownerRef(owner, true))
	e.secret("default", "dep-secret", ownerRef(owner, true))
	e.deleteCM("owner", metav1.DeletePropagationForeground)

	e.waitFor("the free dependent to go", e.secretGone("dep-secret"))
	e.waitFor("the held dependent to be deleting", func() (bool, error) {
		cm, err := e.client.CoreV1().ConfigMaps("default").Get(e.ctx, "held", metav1.GetOptions{})
		return err == nil && cm.DeletionTimestamp != nil, err
	})
	got, err := e.client.CoreV1().ConfigMaps("default").Get(e.ctx, "owner", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("owner gone while a blocking dependent remains: %v", err)
	}
	if got.DeletionTimestamp == nil || !hasFinalizer(got, metav1.FinalizerDeleteDependents) {
		t.Fatalf("owner not waiting in the foreground: deletionTimestamp %v finalizers %v", got.DeletionTimestamp, got.Finalizers)
	}
	// Release the held dependent: then the owner goes too.
	patch := []byte(`{"metadata":{"finalizers":null}}`)
	if _, err := e.client.CoreV1().ConfigMaps("default").Patch(e.ctx, "held", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the held dependent to go", e.cmGone("held"))
	e.waitFor("the owner to go", e.cmGone("owner"))
}

func TestOrphan(t *testing.T) {
	e := startEnv(t)
	owner := e.configMap("default", "owner", nil)
	other := e.configMap("default", "other-owner", nil)
	e.configMap("default", "dep-cm", nil, ownerRef(owner, true))
	e.secret("default", "dep-secret", ownerRef(owner, false), ownerRef(other, false))
	e.waitInGraph(owner.UID)
	e.deleteCM("owner", metav1.DeletePropagationOrphan)
	e.waitFor("the owner to go", e.cmGone("owner"))

	cm, err := e.client.CoreV1().ConfigMaps("default").Get(e.ctx, "dep-cm", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("orphaned configmap: %v", err)
	}
	if len(cm.OwnerReferences) != 0 {
		t.Errorf("orphaned configmap keeps ownerReferences %v", cm.OwnerReferences)
	}
	s, err := e.client.CoreV1().Secrets("default").Get(e.ctx, "dep-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("orphaned secret: %v", err)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != other.UID {
		t.Errorf("orphaned secret's ownerReferences = %v, want only other-owner's", s.OwnerReferences)
	}
}

func TestChainOfThree(t *testing.T) {
	for _, policy := range []metav1.DeletionPropagation{metav1.DeletePropagationBackground, metav1.DeletePropagationForeground} {
		t.Run(string(policy), func(t *testing.T) {
			e := startEnv(t)
			a := e.configMap("default", "a", nil)
			b := e.configMap("default", "b", nil, ownerRef(a, true))
			e.configMap("default", "c", nil, ownerRef(b, true))
			e.secret("default", "d", ownerRef(b, true))
			e.deleteCM("a", policy)
			for _, n := range []string{"a", "b", "c"} {
				e.waitFor(n+" to go", e.cmGone(n))
			}
			e.waitFor("d to go", e.secretGone("d"))
		})
	}
}

func TestDanglingOwners(t *testing.T) {
	e := startEnv(t)
	ghost := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "never", UID: "00000000-0000-0000-0000-00000000dead"}
	e.configMap("default", "orphan-of-ghost", nil, ghost)
	live := e.configMap("default", "live", nil)
	e.secret("default", "two-owners", ghost, ownerRef(live, false))
	e.waitFor("the ghost's only dependent to go", e.cmGone("orphan-of-ghost"))
	e.waitFor("the dangling reference to be dropped", func() (bool, error) {
		s, err := e.client.CoreV1().Secrets("default").Get(e.ctx, "two-owners", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return len(s.OwnerReferences) == 1 && s.OwnerReferences[0].UID == live.UID, nil
	})
}

func TestOwnerInAnotherNamespace(t *testing.T) {
	e := startEnv(t)
	if _, err := e.client.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	owner := e.configMap("default", "owner", nil)
	e.waitInGraph(owner.UID)
	dep := e.configMap("other", "dep", nil, ownerRef(owner, false))
	e.waitFor("the cross-namespace dependent to go", func() (bool, error) {
		_, err := e.client.CoreV1().ConfigMaps("other").Get(e.ctx, "dep", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	want := fmt.Sprintf("ownerRef [v1/ConfigMap, namespace: other, name: owner, uid: %s] does not exist in namespace \"other\"", owner.UID)
	e.waitFor("an OwnerRefInvalidNamespace event", func() (bool, error) {
		evs, err := e.client.CoreV1().Events("other").List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Reason == "OwnerRefInvalidNamespace" && ev.InvolvedObject.UID == dep.UID && ev.Message == want &&
				ev.Type == corev1.EventTypeWarning && ev.Source.Component == Component {
				return true, nil
			}
		}
		return false, nil
	})
	if _, err := e.client.CoreV1().ConfigMaps("default").Get(e.ctx, "owner", metav1.GetOptions{}); err != nil {
		t.Fatalf("the real owner was touched: %v", err)
	}
}

// TestDeploymentCascade is the user-visible contract with the workload
// kinds (no workload controllers run: the objects are made by hand, with
// the owner references those controllers set).
func TestDeploymentCascade(t *testing.T) {
	for _, policy := range []metav1.DeletionPropagation{metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan} {
		t.Run(string(policy), func(t *testing.T) {
			e := startEnv(t)
			labels := map[string]string{"app": "web"}
			tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}}
			d, err := e.client.AppsV1().Deployments("default").Create(e.ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "web"},
				Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ctrl := func(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
				return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid,
					Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
			}
			rs, err := e.client.AppsV1().ReplicaSets("default").Create(e.ctx, &appsv1.ReplicaSet{
				ObjectMeta: metav1.ObjectMeta{Name: "web-1", OwnerReferences: ctrl("apps/v1", "Deployment", d.Name, d.UID)},
				Spec:       appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-1-%d", i), Labels: labels,
					OwnerReferences: ctrl("apps/v1", "ReplicaSet", rs.Name, rs.UID)}, Spec: tmpl.Spec}
				if _, err := e.client.CoreV1().Pods("default").Create(e.ctx, p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			e.waitInGraph(d.UID)
			e.waitInGraph(rs.UID)
			// Through the metadata client: the API server rejects the
			// apps/v1 DeleteOptions body the typed client sends (reported).
			deployments := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
			if err := e.meta.Resource(deployments).Namespace("default").Delete(e.ctx, "web", metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
				t.Fatal(err)
			}
			e.waitFor("the deployment to go", func() (bool, error) {
				_, err := e.client.AppsV1().Deployments("default").Get(e.ctx, "web", metav1.GetOptions{})
				return apierrors.IsNotFound(err), nil
			})
			if policy == metav1.DeletePropagationOrphan {
				got, err := e.client.AppsV1().ReplicaSets("default").Get(e.ctx, "web-1", metav1.GetOptions{})
				if err != nil {
					t.Fatalf("orphaned replicaset: %v", err)
				}
				if len(got.OwnerReferences) != 0 {
					t.Errorf("orphaned replicaset keeps ownerReferences %v", got.OwnerReferences)
				}
				pods, err := e.client.CoreV1().Pods("default").List(e.ctx, metav1.ListOptions{})
				if err != nil || len(pods.Items) != 3 {
					t.Fatalf("pods after orphaning: %d, err %v; want 3", len(pods.Items), err)
				}
				for _, p := range pods.Items {
					if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].UID != rs.UID {
						t.Errorf("pod %s ownerReferences %v, want still the replicaset", p.Name, p.OwnerReferences)
					}
				}
				return
			}
			e.waitFor("the replicaset and its pods to go", func() (bool, error) {
				rss, err := e.client.AppsV1().ReplicaSets("default").List(e.ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				pods, err := e.client.CoreV1().Pods("default").List(e.ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				return len(rss.Items) == 0 && len(pods.Items) == 0, nil
			})
		})
	}
}

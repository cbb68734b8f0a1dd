package namespace

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
	"github.com/skiff-dev/skiff/internal/controller/garbagecollector"
)

func TestConditionUpdater(t *testing.T) {
	pods := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	deps := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	tests := []struct {
		name     string
		fill     func(u *conditionUpdater)
		want     map[corev1.NamespaceConditionType]string // type -> "Status/Reason/Message"
		failures int
	}{
		{
			name: "all ok",
			fill: func(*conditionUpdater) {},
			want: map[corev1.NamespaceConditionType]string{
				corev1.NamespaceDeletionDiscoveryFailure: "False/ResourcesDiscovered/All resources successfully discovered",
				corev1.NamespaceDeletionGVParsingFailure: "False/ParsedGroupVersions/All legacy kube types successfully parsed",
				corev1.NamespaceDeletionContentFailure:   "False/ContentDeleted/All content successfully deleted, may be waiting on finalization",
				corev1.NamespaceContentRemaining:         "False/ContentRemoved/All content successfully removed",
				corev1.NamespaceFinalizersRemaining:      "False/ContentRemoved/All content successfully removed",
			},
		},
		{
			name: "content remaining",
			fill: func(u *conditionUpdater) {
				u.contentTotals(remaining{
					byResource:  map[schema.GroupVersionResource]int{pods: 2, deps: 1},
					byFinalizer: map[string]int{"example.com/x": 3},
				})
			},
			want: map[corev1.NamespaceConditionType]string{
				corev1.NamespaceContentRemaining:    "True/SomeResourcesRemain/Some resources are remaining: deployments.apps has 1 resource instances, pods. has 2 resource instances",
				corev1.NamespaceFinalizersRemaining: "True/SomeFinalizerRemain/Some finalizers are remaining: example.com/x in 3 resource instances",
			},
		},
		{
			name: "failures",
			fill: func(u *conditionUpdater) {
				u.discoveryErr(errors.New("boom"))
				u.deleteContentErr(errors.New("b failed"))
				u.deleteContentErr(errors.New("a failed"))
			},
			want: map[corev1.NamespaceConditionType]string{
				corev1.NamespaceDeletionDiscoveryFailure: "True/DiscoveryFailed/boom",
				corev1.NamespaceDeletionContentFailure:   "True/ContentDeletionFailed/Failed to delete all resource types, 2 remaining: a failed, b failed",
			},
			failures: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var u conditionUpdater
			tt.fill(&u)
			var st corev1.NamespaceStatus
			if !u.update(&st) {
				t.Fatal("first update reported no change")
			}
			if len(st.Conditions) != len(conditionTypes) {
				t.Fatalf("got %d conditions, want %d", len(st.Conditions), len(conditionTypes))
			}
			for typ, want := range tt.want {
				c := getCondition(st.Conditions, typ)
				if got := string(c.Status) + "/" + c.Reason + "/" + c.Message; got != want {
					t.Errorf("%s:\n got %q\nwant %q", typ, got, want)
				}
			}
			if len(u.failureReasons) != tt.failures {
				t.Errorf("failure events = %d, want %d", len(u.failureReasons), tt.failures)
			}
			// The same findings again change nothing.
			var again conditionUpdater
			tt.fill(&again)
			if again.update(&st) {
				t.Error("second identical update reported a change")
			}
		})
	}
}

func TestNamespaceIsEmptiedAndRemoved(t *testing.T) {
	api := controllertest.Start(t)
	cc := api.Context(t)
	c, err := New(cc, Options{DeletionDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	cc.Informers.Start(ctx.Done())
	go func() { defer close(done); _ = c.Run(ctx, 2) }()

	client := api.Client
	const ns = "doomed"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	om := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: ns} }
	for i, name := range []string{"a", "b", "c"} {
		if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: om(name)}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: om(name)}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		svc := &corev1.Service{ObjectMeta: om(name), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: int32(80 + i)}}}}
		if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, testPod(name, ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A pod bound to a node terminates gracefully: the namespace waits
	// for it and says so in its conditions.
	if _, err := client.CoreV1().Pods(ns).Create(ctx, testPod("bound", "node-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	if err := client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bound pod alone to remain, reported in the conditions", func() (bool, error) {
		got, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if got.Status.Phase != corev1.NamespaceTerminating {
			return false, nil
		}
		c := getCondition(got.Status.Conditions, corev1.NamespaceContentRemaining)
		return c != nil && c.Status == corev1.ConditionTrue &&
			c.Message == "Some resources are remaining: pods. has 1 resource instances", nil
	})
	for _, list := range []func() (int, error){
		func() (int, error) {
			l, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
	} {
		// Ordered deletion: nothing else goes while pods remain.
		if n, err := list(); err != nil || n != 3 {
			t.Fatalf("other content while pods remain: %d objects, err %v; want 3", n, err)
		}
	}
	// The "kubelet" finishes the pod.
	if err := client.CoreV1().Pods(ns).Delete(ctx, "bound", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the namespace to be removed", func() (bool, error) {
		_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	for _, kind := range []string{"configmaps", "secrets", "services", "pods"} {
		l, err := cc.Metadata.Resource(schema.GroupVersionResource{Version: "v1", Resource: kind}).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != 0 {
			t.Errorf("%d %s left in the removed namespace", len(l.Items), kind)
		}
	}
}

func testPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "c", Image: "busybox"}},
		},
	}
}

func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	msg := "timed out waiting for " + what
	if lastErr != nil {
		msg += ": " + lastErr.Error()
	}
	t.Fatal(strings.TrimSpace(msg))
}

// TestNamespaceWithGarbageCollector runs both controllers that take part in
// a namespace deletion: owned objects (a ReplicaSet's pods, a ConfigMap's
// dependents) go whichever controller reaches them first.
func TestNamespaceWithGarbageCollector(t *testing.T) {
	api := controllertest.Start(t)
	cc := api.Context(t)
	nsc, err := New(cc, Options{DeletionDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	gc, err := garbagecollector.New(cc, garbagecollector.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait(); cc.Informers.Shutdown() })
	cc.Informers.Start(ctx.Done())
	wg.Go(func() { _ = nsc.Run(ctx, 2) })
	wg.Go(func() { _ = gc.Run(ctx, 2) })

	client := api.Client
	const ns = "team"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	rs, err := client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: testPod("x", "").Spec}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p := testPod(fmt.Sprintf("web-%d", i), "")
		p.Labels = labels
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	owner, err := client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "dep",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fg := metav1.DeletePropagationForeground
	if err := client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the namespace to be removed", func() (bool, error) {
		_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

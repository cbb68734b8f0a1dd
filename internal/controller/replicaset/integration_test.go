package replicaset

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// TestAgainstAPIServer runs the controller against a real skiff API server.
func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	api := controllertest.Start(t)
	cc := api.Context(t)
	c, err := New(cc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cc.Informers.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, 2) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		cc.Informers.Shutdown()
	})
	client := api.Client
	rsClient := client.AppsV1().ReplicaSets("default")

	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](5),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
	rs, err = rsClient.Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("creates 5 owned pods", func(t *testing.T) {
		pods := waitOwned(t, client, rs.UID, 5)
		for _, p := range pods {
			ref := metav1.GetControllerOf(&p)
			if !strings.HasPrefix(p.Name, "web-") || ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" ||
				ref.Name != "web" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
				t.Errorf("pod %s: ownerReferences %+v", p.Name, p.OwnerReferences)
			}
		}
		waitStatus(t, client, "web", "replicas=5", func(st appsv1.ReplicaSetStatus) bool {
			return st.Replicas == 5 && st.FullyLabeledReplicas == 5 && st.ObservedGeneration == 1
		})
		poll(t, "SuccessfulCreate events", func() (bool, error) {
			evs, err := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
			if err != nil {
				return false, err
			}
			n := 0
			for _, e := range evs.Items {
				if e.Reason == "SuccessfulCreate" && e.Source.Component == "replicaset-controller" &&
					e.InvolvedObject.Kind == "ReplicaSet" && strings.HasPrefix(e.Message, "Created pod: web-") {
					n++
				}
			}
			return n == 5, nil
		})
	})

	t.Run("scale to 2 deletes 3", func(t *testing.T) {
		scale, err := rsClient.GetScale(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scale.Spec.Replicas = 2
		if _, err := rsClient.UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitOwned(t, client, rs.UID, 2)
		waitStatus(t, client, "web", "replicas=2", func(st appsv1.ReplicaSetStatus) bool {
			return st.Replicas == 2 && st.ObservedGeneration == 2
		})
	})

	// Bound and running, so it ranks above the unscheduled pods and
	// survives the scale-down its adoption causes.
	orphan := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orphan", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
	t.Run("adopts a matching orphan", func(t *testing.T) {
		if _, err := client.CoreV1().Pods("default").Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, "adoption", func() (bool, error) {
			p, err := client.CoreV1().Pods("default").Get(ctx, "orphan", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			ref := metav1.GetControllerOf(p)
			return ref != nil && ref.UID == rs.UID, nil
		})
		// Now three: one of the unscheduled ones goes.
		pods := waitOwned(t, client, rs.UID, 2)
		var found bool
		for _, p := range pods {
			found = found || p.Name == "orphan"
		}
		if !found {
			t.Fatalf("orphan not among the owned pods %v", names(pods))
		}
	})

	t.Run("releases and replaces a relabelled pod", func(t *testing.T) {
		pods := waitOwned(t, client, rs.UID, 2)
		var victim string
		for _, p := range pods {
			if p.Name != "orphan" {
				victim = p.Name
			}
		}
		patch := []byte(`{"metadata":{"labels":{"app":"other"}}}`)
		if _, err := client.CoreV1().Pods("default").Patch(ctx, victim, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, "release of "+victim, func() (bool, error) {
			p, err := client.CoreV1().Pods("default").Get(ctx, victim, metav1.GetOptions{})
			return err == nil && len(p.OwnerReferences) == 0, err
		})
		pods = waitOwned(t, client, rs.UID, 2)
		for _, p := range pods {
			if p.Name == victim {
				t.Fatalf("released pod still owned")
			}
		}
	})

	t.Run("readiness drives ready and available replicas", func(t *testing.T) {
		for _, p := range waitOwned(t, client, rs.UID, 2) {
			markReady(t, client, p.Name)
		}
		waitStatus(t, client, "web", "2 ready and available", func(st appsv1.ReplicaSetStatus) bool {
			return st.ReadyReplicas == 2 && st.AvailableReplicas == 2
		})
	})

	t.Run("graceful deletion counts as terminating and is replaced", func(t *testing.T) {
		// The orphan is bound: deleting it only sets deletionTimestamp.
		if err := client.CoreV1().Pods("default").Delete(ctx, "orphan", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitOwned(t, client, rs.UID, 2)
		waitStatus(t, client, "web", "1 terminating", func(st appsv1.ReplicaSetStatus) bool {
			return st.Replicas == 2 && ptr.Deref(st.TerminatingReplicas, 0) == 1
		})
		if err := client.CoreV1().Pods("default").Delete(ctx, "orphan", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, client, "web", "0 terminating", func(st appsv1.ReplicaSetStatus) bool {
			return ptr.Deref(st.TerminatingReplicas, -1) == 0
		})
	})

	t.Run("minReadySeconds delays availability", func(t *testing.T) {
		slow := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "slow"},
			Spec: appsv1.ReplicaSetSpec{
				Replicas:        ptr.To[int32](2),
				MinReadySeconds: 2,
				Selector:        &metav1.LabelSelector{MatchLabels: map[string]string{"app": "slow"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "slow"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
				},
			},
		}
		slow, err := rsClient.Create(ctx, slow, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range waitOwned(t, client, slow.UID, 2) {
			markReady(t, client, p.Name)
		}
		waitStatus(t, client, "slow", "2 ready", func(st appsv1.ReplicaSetStatus) bool { return st.ReadyReplicas == 2 })
		got, err := rsClient.Get(ctx, "slow", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.AvailableReplicas == 2 {
			t.Log("pods already available (slow machine); the requeue path was not exercised")
		}
		// No event arrives when they become available: the controller
		// must look again on its own.
		waitStatus(t, client, "slow", "2 available", func(st appsv1.ReplicaSetStatus) bool { return st.AvailableReplicas == 2 })
	})
}

func poll(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) {
			ok, err := cond()
			if err != nil {
				last = err
				return false, nil
			}
			return ok, nil
		})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error %v)", what, err, last)
	}
}

// waitOwned waits until exactly n pods not being deleted are controlled
// by the ReplicaSet with uid, and returns them.
func waitOwned(t *testing.T, client kubernetes.Interface, uid types.UID, n int) []corev1.Pod {
	t.Helper()
	var owned []corev1.Pod
	poll(t, fmt.Sprintf("%d owned pods", n), func() (bool, error) {
		list, err := client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		owned = owned[:0]
		for _, p := range list.Items {
			if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == uid && p.DeletionTimestamp == nil {
				owned = append(owned, p)
			}
		}
		return len(owned) == n, nil
	})
	return owned
}

func waitStatus(t *testing.T, client kubernetes.Interface, name, what string, ok func(appsv1.ReplicaSetStatus) bool) {
	t.Helper()
	var last appsv1.ReplicaSetStatus
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true,
		func(ctx context.Context) (bool, error) {
			rs, err := client.AppsV1().ReplicaSets("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = rs.Status
			return ok(rs.Status), nil
		})
	if err != nil {
		t.Fatalf("waiting for %s status %s: %v; last status %+v", name, what, err, last)
	}
}

func markReady(t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	ctx := context.Background()
	p, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func names(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

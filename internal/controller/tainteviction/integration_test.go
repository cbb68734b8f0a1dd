package tainteviction

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// TestEvictsAgainstAPIServer taints a node by hand on a real API server: a
// pod tolerating the taint for 1s is marked DisruptionTarget and deleted
// gracefully (it stays Terminating: no kubelet confirms), and the events
// reach the API.
func TestEvictsAgainstAPIServer(t *testing.T) {
	api := controllertest.Start(t)
	cc := api.Context(t)
	c, err := New(cc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(ctx, 2) }()
	cc.Informers.Start(ctx.Done())
	t.Cleanup(func() { cancel(); wg.Wait(); cc.Informers.Shutdown() })

	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	if _, err := api.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "nginx"}},
			Tolerations: []corev1.Toleration{{Key: "example.com/broken", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](1)}}},
	}
	if _, err := api.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err = api.Client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Taints = []corev1.Taint{{Key: "example.com/broken", Effect: corev1.TaintEffectNoExecute, TimeAdded: ptr.To(metav1.Now())}}
	if _, err := api.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err = api.Client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.DeletionTimestamp != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pod was not deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cond := controller.PodCondition(&got.Status, corev1.DisruptionTarget)
	if cond == nil || cond.Status != corev1.ConditionTrue || cond.Reason != "DeletionByTaintManager" {
		t.Fatalf("DisruptionTarget condition = %+v", cond)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		evs, err := api.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs.Items {
			if ev.Reason == "TaintManagerEviction" && ev.Message == "Marking for deletion Pod default/p" &&
				ev.Source.Component == Name && ev.InvolvedObject.Name == "p" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TaintManagerEviction event among %v", evs.Items)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

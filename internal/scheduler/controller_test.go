package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-dev/skiff/internal/controller"
)

// fakeCluster runs the scheduler over client-go's fake clientset, with
// binds answered by bindFn (nil: bind by setting spec.nodeName).
type fakeCluster struct {
	client   *fake.Clientset
	recorder *record.FakeRecorder
	binds    atomic.Int32
}

func startFake(t *testing.T, bindFn func(b *corev1.Binding) error, objs ...runtime.Object) *fakeCluster {
	t.Helper()
	// NewSimpleClientset, not NewClientset: the latter builds a
	// managed-fields type converter on first use, seconds under -race.
	fc := &fakeCluster{client: fake.NewSimpleClientset(objs...), recorder: record.NewFakeRecorder(1000)} //nolint:staticcheck
	fc.client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "binding" {
			return false, nil, nil
		}
		b := a.(k8stesting.CreateAction).GetObject().(*corev1.Binding)
		fc.binds.Add(1)
		if bindFn != nil {
			if err := bindFn(b); err != nil {
				return true, nil, err
			}
		}
		return true, nil, fc.setNode(b.Namespace, b.Name, b.Target.Name)
	})
	cc := controller.Context{
		Client:    fc.client,
		Informers: informers.NewSharedInformerFactory(fc.client, 0),
		Recorder:  func(string) record.EventRecorder { return fc.recorder },
		Log:       slog.New(slog.DiscardHandler),
	}
	s, err := New(cc, Options{PodInitialBackoff: 20 * time.Millisecond, PodMaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cc.Informers.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, 2) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
		cc.Informers.Shutdown()
	})
	return fc
}

// setNode binds a pod in the fake's tracker, bypassing the reactors.
func (fc *fakeCluster) setNode(ns, name, node string) error {
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	obj, err := fc.client.Tracker().Get(gvr, ns, name)
	if err != nil {
		return err
	}
	p := obj.(*corev1.Pod).DeepCopy()
	if p.Spec.NodeName != "" {
		return apierrors.NewConflict(schema.GroupResource{Resource: "pods/binding"}, name, errors.New("already assigned"))
	}
	p.Spec.NodeName = node
	return fc.client.Tracker().Update(gvr, p, ns)
}

func (fc *fakeCluster) waitEvent(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-fc.recorder.Events:
			if strings.HasPrefix(e, prefix) {
				return e
			}
		case <-timeout:
			t.Fatalf("no event %q", prefix)
		}
	}
}

func (fc *fakeCluster) waitNode(t *testing.T, name string) string {
	t.Helper()
	var node string
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := fc.client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		node = p.Spec.NodeName
		return node != "", nil
	})
	if err != nil {
		t.Fatalf("pod %s not bound: %v", name, err)
	}
	return node
}

// TestBindErrorRetried: a failed bind forgets the assumption, reports
// the error and retries after backoff.
func TestBindErrorRetried(t *testing.T) {
	var fails atomic.Int32
	fc := startFake(t, func(*corev1.Binding) error {
		if fails.Add(1) <= 2 {
			return apierrors.NewInternalError(errors.New("store hiccup"))
		}
		return nil
	}, testNode("a", "1", "1Gi", 110), testPod("p", "800m", ""))
	e := fc.waitEvent(t, "Warning FailedScheduling binding rejected: ")
	if !strings.Contains(e, "store hiccup") {
		t.Errorf("event %q", e)
	}
	if n := fc.waitNode(t, "p"); n != "a" {
		t.Fatalf("bound to %s", n)
	}
	fc.waitEvent(t, "Normal Scheduled Successfully assigned default/p to a")
	if got := fc.binds.Load(); got != 3 {
		t.Errorf("%d bind calls, want 3", got)
	}
}

// TestBoundElsewhereNotRetried: another scheduler won the race (409); the
// pod is not retried and its room on our chosen node is released.
func TestBoundElsewhereNotRetried(t *testing.T) {
	var once sync.Once
	var fc *fakeCluster
	fc = startFake(t, func(b *corev1.Binding) error {
		var err error
		once.Do(func() {
			if err = fc.setNode(b.Namespace, b.Name, "b"); err == nil {
				err = apierrors.NewConflict(schema.GroupResource{Resource: "pods/binding"}, b.Name, errors.New("already assigned"))
			}
		})
		return err
	}, testNode("a", "1", "1Gi", 110), testNode("b", "1", "1Gi", 110), testPod("p", "800m", ""))
	if n := fc.waitNode(t, "p"); n != "b" {
		t.Fatalf("bound to %s", n)
	}
	// A second pod of 800m must find room: whichever node the first
	// decision assumed was released and p is counted on b only.
	if _, err := fc.client.CoreV1().Pods("default").Create(context.Background(), testPod("q", "800m", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := fc.waitNode(t, "q"); n != "a" {
		t.Fatalf("q bound to %s, want a", n)
	}
	if got := fc.binds.Load(); got != 2 {
		t.Errorf("%d bind calls, want 2 (no retry of p)", got)
	}
}

// TestStatusPatchNotRepeated: an unchanged unschedulable message is not
// written again on retries.
func TestStatusPatchNotRepeated(t *testing.T) {
	fc := startFake(t, nil, testNode("a", "1", "1Gi", 110), testPod("p", "2", ""))
	fc.waitEvent(t, "Warning FailedScheduling 0/1 nodes are available: 1 Insufficient cpu.")
	patches := func() int {
		n := 0
		for _, a := range fc.client.Actions() {
			if a.GetVerb() == "patch" && a.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return patches() == 1, nil
	})
	if err != nil {
		t.Fatalf("%d status patches, want 1", patches())
	}
	// Node updates retry the pod; the message stays the same.
	for i := range 3 {
		n, err := fc.client.CoreV1().Nodes().Get(context.Background(), "a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Labels["round"] = string(rune('0' + i))
		if _, err := fc.client.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		fc.waitEvent(t, "Warning FailedScheduling 0/1 nodes are available: 1 Insufficient cpu.")
	}
	if got := patches(); got != 1 {
		t.Fatalf("%d status patches, want 1", got)
	}
	// Without events the pod is not retried (no hot loop), though its
	// backoff (50ms at most here) is long over.
	time.Sleep(300 * time.Millisecond) // negative check
	select {
	case e := <-fc.recorder.Events:
		t.Fatalf("pod retried without a cluster event: %s", e)
	default:
	}
}

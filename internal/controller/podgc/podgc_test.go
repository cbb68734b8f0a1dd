package podgc

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type harness struct {
	c      *Controller
	client *fake.Clientset
	clock  *testingclock.FakeClock
	ctx    context.Context
}

func newHarness(t *testing.T, opts Options, objs ...runtime.Object) *harness {
	t.Helper()
	client := fake.NewSimpleClientset(objs...)
	clk := testingclock.NewFakeClock(t0)
	opts.Clock = clk
	cc := controller.Context{Client: client, Informers: informers.NewSharedInformerFactory(client, 0), Log: slog.New(slog.DiscardHandler)}
	c, err := New(cc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cc.Informers.Start(ctx.Done())
	t.Cleanup(func() { cancel(); cc.Informers.Shutdown() })
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		t.Fatal("caches did not sync")
	}
	return &harness{c: c, client: client, clock: clk, ctx: ctx}
}

func pod(name, node string, phase corev1.PodPhase, created time.Time) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), CreationTimestamp: metav1.NewTime(created)},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

func node(name string, ready corev1.ConditionStatus, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}},
	}
}

// deleted returns the pods force-deleted (grace 0, UID precondition).
func (h *harness) deleted(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, a := range h.client.Actions() {
		d, ok := a.(k8stesting.DeleteAction)
		if !ok || a.GetResource().Resource != "pods" {
			continue
		}
		o := d.GetDeleteOptions()
		if o.GracePeriodSeconds == nil || *o.GracePeriodSeconds != 0 || o.Preconditions == nil || o.Preconditions.UID == nil {
			t.Fatalf("delete of %s with options %+v", d.GetName(), o)
		}
		out = append(out, d.GetName())
	}
	sort.Strings(out)
	return out
}

func statusPatch(h *harness, name string) string {
	for _, a := range h.client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && p.GetName() == name && p.GetSubresource() == "status" {
			return string(p.GetPatch())
		}
	}
	return ""
}

func TestTerminatedBeyondThresholdEvictedThenOldestFirst(t *testing.T) {
	evicted := pod("evicted", "n", corev1.PodFailed, t0.Add(time.Hour))
	evicted.Status.Reason = "Evicted"
	h := newHarness(t, Options{TerminatedPodThreshold: 2},
		node("n", corev1.ConditionTrue),
		pod("old", "n", corev1.PodSucceeded, t0),
		pod("mid", "n", corev1.PodFailed, t0.Add(time.Minute)),
		pod("new", "n", corev1.PodSucceeded, t0.Add(2*time.Minute)),
		evicted,
		pod("running", "n", corev1.PodRunning, t0.Add(-time.Hour)),
	)
	h.c.gc(h.ctx)
	if got := strings.Join(h.deleted(t), ","); got != "evicted,old" {
		t.Fatalf("deleted %s, want evicted,old", got)
	}
	if p := statusPatch(h, "old"); p != "" {
		t.Fatalf("terminated pod's status patched: %s", p)
	}
}

func TestOrphanedPodsAfterQuarantine(t *testing.T) {
	h := newHarness(t, Options{},
		node("n1", corev1.ConditionTrue),
		pod("orphan", "gone", corev1.PodRunning, t0),
		pod("fine", "n1", corev1.PodRunning, t0))
	h.c.gc(h.ctx)
	h.clock.Step(39 * time.Second)
	h.c.gc(h.ctx)
	if d := h.deleted(t); len(d) != 0 {
		t.Fatalf("deleted %v during the quarantine", d)
	}
	h.clock.Step(time.Second)
	h.c.gc(h.ctx)
	if got := strings.Join(h.deleted(t), ","); got != "orphan" {
		t.Fatalf("deleted %q", got)
	}
	var got bool
	for _, a := range h.client.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "nodes" {
			got = got || a.(k8stesting.GetAction).GetName() == "gone"
		}
	}
	if !got {
		t.Fatal("no uncached GET of the missing node")
	}
	p := statusPatch(h, "orphan")
	for _, want := range []string{`"phase":"Failed"`, `"type":"DisruptionTarget"`, `"reason":"DeletionByPodGC"`, `"message":"PodGC: node no longer exists"`, `"uid":"uid-orphan"`} {
		if !strings.Contains(p, want) {
			t.Fatalf("status patch %s lacks %s", p, want)
		}
	}
}

func TestOrphanQuarantineTrustsTheAPIOverTheCache(t *testing.T) {
	h := newHarness(t, Options{}, pod("p", "lagging", corev1.PodRunning, t0))
	// The node exists in the API; only the cache has not seen it.
	h.client.PrependReactor("get", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, node("lagging", corev1.ConditionTrue), nil
	})
	h.c.gc(h.ctx)
	h.clock.Step(time.Minute)
	h.c.gc(h.ctx)
	if d := h.deleted(t); len(d) != 0 {
		t.Fatalf("deleted %v though the node exists", d)
	}
}

func TestTerminatingPods(t *testing.T) {
	now := metav1.NewTime(t0)
	unscheduled := pod("unscheduled", "", corev1.PodPending, t0)
	unscheduled.DeletionTimestamp = &now
	unscheduled.Finalizers = []string{"example.com/hold"}
	oos := pod("oos", "dead", corev1.PodRunning, t0)
	oos.DeletionTimestamp = &now
	stuck := pod("stuck", "notready", corev1.PodRunning, t0)
	stuck.DeletionTimestamp = &now
	h := newHarness(t, Options{},
		node("dead", corev1.ConditionUnknown, corev1.Taint{Key: corev1.TaintNodeOutOfService, Effect: corev1.TaintEffectNoExecute}),
		node("notready", corev1.ConditionUnknown),
		unscheduled, oos, stuck)
	h.c.gc(h.ctx)
	if got := strings.Join(h.deleted(t), ","); got != "oos,unscheduled" {
		t.Fatalf("deleted %q", got)
	}
}

// TestCollectsAgainstAPIServer: a pod bound to a node that is deleted is
// force-deleted (gone entirely, not just Terminating).
func TestCollectsAgainstAPIServer(t *testing.T) {
	api := controllertest.Start(t)
	cc := api.Context(t)
	c, err := New(cc, Options{GCCheckPeriod: 100 * time.Millisecond, QuarantineTime: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(ctx, 1) }()
	cc.Informers.Start(ctx.Done())
	t.Cleanup(func() { cancel(); wg.Wait(); cc.Informers.Shutdown() })

	if _, err := api.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "nginx"}}, TerminationGracePeriodSeconds: ptr.To[int64](30)}}
	if _, err := api.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := api.Client.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := api.Client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphaned pod still there (err %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

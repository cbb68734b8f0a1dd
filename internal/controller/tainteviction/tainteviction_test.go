package tainteviction

import (
	"context"
	"log/slog"
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
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func unreachable(added time.Time) corev1.Taint {
	return corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: added}}
}

func tolerate(key string, secs *int64) corev1.Toleration {
	return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs}
}

func TestEvictionTime(t *testing.T) {
	created := t0.Add(time.Minute)
	custom := corev1.Taint{Key: "example.com/x", Value: "v", Effect: corev1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: t0.Add(10 * time.Second)}}
	tests := []struct {
		name        string
		taints      []corev1.Taint
		tolerations []corev1.Toleration
		want        time.Time
		forever     bool
	}{
		{"not tolerated", []corev1.Taint{unreachable(t0)}, nil, created, false},
		{"tolerated for 30s from timeAdded", []corev1.Taint{unreachable(t0)}, []corev1.Toleration{tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](30))}, t0.Add(30 * time.Second), false},
		{"timeAdded's second refined by when the taint was seen", []corev1.Taint{unreachable(created.Add(-300 * time.Millisecond))},
			[]corev1.Toleration{tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](30))}, created.Add(30 * time.Second), false},
		{"tolerated forever", []corev1.Taint{unreachable(t0)}, []corev1.Toleration{tolerate(corev1.TaintNodeUnreachable, nil)}, time.Time{}, true},
		{"zero seconds", []corev1.Taint{unreachable(t0)}, []corev1.Toleration{tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](0))}, t0, false},
		{"negative seconds", []corev1.Taint{unreachable(t0)}, []corev1.Toleration{tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](-5))}, t0, false},
		{"no timeAdded counts from created", []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}},
			[]corev1.Toleration{tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](5))}, created.Add(5 * time.Second), false},
		{"one of two taints untolerated", []corev1.Taint{unreachable(t0), custom}, []corev1.Toleration{tolerate(corev1.TaintNodeUnreachable, nil)}, created, false},
		{"earliest of two", []corev1.Taint{unreachable(t0), custom},
			[]corev1.Toleration{tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](300)), {Key: "example.com/x", Operator: corev1.TolerationOpEqual, Value: "v", TolerationSeconds: ptr.To[int64](5)}},
			t0.Add(15 * time.Second), false},
		{"first matching toleration wins", []corev1.Taint{unreachable(t0)},
			[]corev1.Toleration{tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](60)), tolerate("", nil)}, t0.Add(time.Minute), false},
		{"wildcard toleration", []corev1.Taint{unreachable(t0), custom}, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, time.Time{}, true},
		{"value mismatch", []corev1.Taint{custom}, []corev1.Toleration{{Key: "example.com/x", Value: "w", TolerationSeconds: ptr.To[int64](5)}}, created, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, forever := evictionTime(tt.taints, tt.tolerations, created)
			if forever != tt.forever || (!forever && !got.Equal(tt.want)) {
				t.Fatalf("evictionTime = %v, %v; want %v, %v", got, forever, tt.want, tt.forever)
			}
		})
	}
}

type harness struct {
	c      *Controller
	client *fake.Clientset
	clock  *testingclock.FakeClock
	rec    *record.FakeRecorder
}

func newHarness(t *testing.T, objs ...runtime.Object) *harness {
	t.Helper()
	client := fake.NewSimpleClientset(objs...)
	rec := record.NewFakeRecorder(100)
	clk := testingclock.NewFakeClock(t0)
	cc := controller.Context{
		Client:    client,
		Informers: informers.NewSharedInformerFactory(client, 0),
		Recorder:  func(string) record.EventRecorder { return rec },
		Log:       slog.New(slog.DiscardHandler),
	}
	c, err := New(cc, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(ctx, 2) }()
	cc.Informers.Start(ctx.Done())
	t.Cleanup(func() { cancel(); wg.Wait(); cc.Informers.Shutdown() })
	return &harness{c: c, client: client, clock: clk, rec: rec}
}

func pod(name, node string, tols ...corev1.Toleration) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: node, Tolerations: tols},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func node(name string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Taints: taints}}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) gone(name string) bool {
	_, err := h.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

func (h *harness) pending(key string) (time.Time, bool) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	e := h.c.evictions[key]
	if e == nil || e.state != pending {
		return time.Time{}, false
	}
	return e.fireAt, true
}

func (h *harness) expectEvent(t *testing.T, want string) {
	t.Helper()
	select {
	case ev := <-h.rec.Events:
		if ev != want {
			t.Fatalf("event %q, want %q", ev, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no event %q", want)
	}
}

func TestUntoleratedPodIsDeletedAtOnceWithDisruptionTarget(t *testing.T) {
	h := newHarness(t, node("n1", unreachable(t0)), pod("p", "n1"), pod("elsewhere", "n2"))
	eventually(t, "pod deleted", func() bool { return h.gone("p") })
	h.expectEvent(t, "Normal TaintManagerEviction Marking for deletion Pod default/p")
	var patched bool
	for _, a := range h.client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && p.GetSubresource() == "status" && p.GetName() == "p" {
			s := string(p.GetPatch())
			patched = strings.Contains(s, `"type":"DisruptionTarget"`) && strings.Contains(s, `"reason":"DeletionByTaintManager"`) &&
				strings.Contains(s, `"message":"Taint manager: deleting due to NoExecute taint"`) && strings.Contains(s, `"uid":"uid-p"`)
		}
	}
	if !patched {
		t.Fatalf("no DisruptionTarget status patch among %v", h.client.Actions())
	}
	if h.gone("elsewhere") {
		t.Fatal("pod on an untainted node was deleted")
	}
}

func TestTolerationSecondsCountFromTimeAdded(t *testing.T) {
	// The taint was added 10s ago; the pod tolerates it for 30s.
	h := newHarness(t, node("n1", unreachable(t0.Add(-10*time.Second))),
		pod("p", "n1", tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](30))))
	eventually(t, "countdown", func() bool { at, ok := h.pending("default/p"); return ok && at.Equal(t0.Add(20*time.Second)) })
	h.clock.Step(19 * time.Second)
	if h.clock.Waiters() != 1 || h.gone("p") {
		t.Fatal("evicted before its toleration ran out")
	}
	h.clock.Step(time.Second)
	eventually(t, "pod deleted", func() bool { return h.gone("p") })
	h.expectEvent(t, "Normal TaintManagerEviction Marking for deletion Pod default/p")
}

func TestTaintRemovalCancels(t *testing.T) {
	h := newHarness(t, node("n1", unreachable(t0)), pod("p", "n1", tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](30))))
	eventually(t, "countdown", func() bool { _, ok := h.pending("default/p"); return ok })
	n, _ := h.client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	n.Spec.Taints = nil
	if _, err := h.client.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.expectEvent(t, "Normal TaintManagerEviction Cancelling deletion of Pod default/p")
	if h.clock.Waiters() != 0 {
		t.Fatal("timer still running")
	}
	h.clock.Step(time.Hour)
	if h.gone("p") {
		t.Fatal("pod deleted after its node's taint went away")
	}
}

func TestPodDeletionCancels(t *testing.T) {
	h := newHarness(t, node("n1", unreachable(t0)), pod("p", "n1", tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](30))))
	eventually(t, "countdown", func() bool { _, ok := h.pending("default/p"); return ok })
	if err := h.client.CoreV1().Pods("default").Delete(context.Background(), "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.expectEvent(t, "Normal TaintManagerEviction Cancelling deletion of Pod default/p")
	eventually(t, "timer stopped", func() bool { return h.clock.Waiters() == 0 })
}

func TestForeverTolerationAndLateBinding(t *testing.T) {
	h := newHarness(t, node("n1", unreachable(t0)), pod("forever", "n1", tolerate(corev1.TaintNodeUnreachable, nil)))
	// A pod bound to the tainted node later gets its own countdown; the
	// pod that tolerates forever never gets one.
	late := pod("late", "n1", tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](5)))
	if _, err := h.client.CoreV1().Pods("default").Create(context.Background(), late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "countdown", func() bool { at, ok := h.pending("default/late"); return ok && at.Equal(t0.Add(5*time.Second)) })
	if _, ok := h.pending("default/forever"); ok {
		t.Fatal("pod tolerating forever has a countdown")
	}
	h.clock.Step(5 * time.Second)
	eventually(t, "late pod deleted", func() bool { return h.gone("late") })
	if h.gone("forever") {
		t.Fatal("pod tolerating forever was deleted")
	}
}

func TestNotReadySwapKeepsDeadlineOfNewTaint(t *testing.T) {
	// not-ready replaced by unreachable: the countdown follows the new
	// taint's timeAdded.
	notReady := corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: t0}}
	h := newHarness(t, node("n1", notReady), pod("p", "n1",
		tolerate(corev1.TaintNodeNotReady, ptr.To[int64](30)), tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](30))))
	eventually(t, "countdown", func() bool { at, ok := h.pending("default/p"); return ok && at.Equal(t0.Add(30*time.Second)) })
	n, _ := h.client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	n.Spec.Taints = []corev1.Taint{unreachable(t0.Add(10 * time.Second))}
	if _, err := h.client.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "moved countdown", func() bool { at, ok := h.pending("default/p"); return ok && at.Equal(t0.Add(40*time.Second)) })
}

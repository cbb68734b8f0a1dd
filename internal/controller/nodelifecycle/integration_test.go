package nodelifecycle_test

import (
	"context"
	"sync"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/controller/controllertest"
	"github.com/skiff-dev/skiff/internal/controller/nodelifecycle"
	"github.com/skiff-dev/skiff/internal/controller/tainteviction"
)

// kubelet fakes the heartbeats of some nodes: it renews their leases.
type kubelet struct {
	client kubernetes.Interface
	mu     sync.Mutex
	alive  map[string]bool
}

func (k *kubelet) set(name string, alive bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.alive[name] = alive
}

func (k *kubelet) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		k.mu.Lock()
		var names []string
		for n, ok := range k.alive {
			if ok {
				names = append(names, n)
			}
		}
		k.mu.Unlock()
		for _, n := range names {
			l, err := k.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				continue
			}
			l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			_, _ = k.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(ctx, l, metav1.UpdateOptions{})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func readyConditions(now time.Time) []corev1.NodeCondition {
	hb := metav1.NewTime(now)
	conds := []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: hb, LastTransitionTime: hb}}
	for _, t := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		conds = append(conds, corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse, LastHeartbeatTime: hb, LastTransitionTime: hb})
	}
	return conds
}

func poll(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func hasTaint(n *corev1.Node, key string, effect corev1.TaintEffect) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			return true
		}
	}
	return false
}

// TestNodeLifecycleAgainstAPIServer runs the node lifecycle and taint
// eviction controllers against a real API server: a node whose lease stops
// being renewed goes Unknown, gets the unreachable taints, and its pod is
// evicted after its tolerationSeconds; a node that keeps renewing stays
// Ready; the lost node coming back loses its taints.
func TestNodeLifecycleAgainstAPIServer(t *testing.T) {
	const (
		period = 200 * time.Millisecond
		grace  = 2 * time.Second
	)
	api := controllertest.Start(t)
	cc := api.Context(t)
	nlc, err := nodelifecycle.New(cc, nodelifecycle.Options{NodeMonitorPeriod: period, NodeMonitorGracePeriod: grace, NodeStartupGracePeriod: grace})
	if err != nil {
		t.Fatal(err)
	}
	tec, err := tainteviction.New(cc, tainteviction.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = nlc.Run(ctx, 2) }()
	go func() { defer wg.Done(); _ = tec.Run(ctx, 2) }()
	kl := &kubelet{client: api.Client, alive: map[string]bool{}}
	go func() { defer wg.Done(); kl.run(ctx, 300*time.Millisecond) }()
	cc.Informers.Start(ctx.Done())
	t.Cleanup(func() { cancel(); wg.Wait(); cc.Informers.Shutdown() })

	nodes := api.Client.CoreV1().Nodes()
	for _, name := range []string{"good", "bad"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: readyConditions(time.Now())}}
		if _, err := nodes.Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		l := &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
			Spec: coordv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &metav1.MicroTime{Time: time.Now()}}}
		if _, err := api.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, l, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		kl.set(name, true)
	}
	pods := api.Client.CoreV1().Pods("default")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "bad", Containers: []corev1.Container{{Name: "c", Image: "nginx"}},
			Tolerations: []corev1.Toleration{
				{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](2)},
				{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](2)},
			}},
	}
	pod, err = pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Let both nodes be seen healthy for a while, then stop "bad".
	poll(t, "RegisteredNode events", 10*time.Second, func() bool {
		evs, _ := api.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		seen := 0
		for _, e := range evs.Items {
			if e.Reason == "RegisteredNode" && e.Source.Component == "node-controller" {
				seen++
			}
		}
		return seen == 2
	})
	kl.set("bad", false)
	stopped := time.Now()

	took := poll(t, "bad node Unknown with unreachable taints", grace+5*time.Second, func() bool {
		n, err := nodes.Get(ctx, "bad", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionUnknown {
				return false
			}
		}
		return hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute) && hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule)
	})
	t.Logf("bad node tainted %s after its last heartbeat", took)
	if took < grace-300*time.Millisecond {
		t.Fatalf("tainted after %s, before the %s grace period", took, grace)
	}

	good, err := nodes.Get(ctx, "good", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range good.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			t.Fatalf("good node Ready = %s", c.Status)
		}
	}
	if len(good.Spec.Taints) != 0 {
		t.Fatalf("good node taints %+v", good.Spec.Taints)
	}

	// The pod tolerates unreachable for 2s: then it is marked and deleted
	// gracefully (no kubelet confirms, so it stays Terminating).
	var evicted *corev1.Pod
	poll(t, "pod evicted", 10*time.Second, func() bool {
		p, err := pods.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false
		}
		evicted = p
		return p.DeletionTimestamp != nil
	})
	t.Logf("pod evicted %s after its node's last heartbeat", time.Since(stopped))
	if c := controller.PodCondition(&evicted.Status, corev1.PodReady); c == nil || c.Status != corev1.ConditionFalse {
		t.Fatalf("evicted pod Ready = %+v", c)
	}
	if c := controller.PodCondition(&evicted.Status, corev1.DisruptionTarget); c == nil || c.Reason != "DeletionByTaintManager" {
		t.Fatalf("evicted pod DisruptionTarget = %+v", c)
	}

	// The node comes back: it posts Ready and renews its lease.
	bad, err := nodes.Get(ctx, "bad", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad.Status.Conditions = readyConditions(time.Now())
	if _, err := nodes.UpdateStatus(ctx, bad, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	kl.set("bad", true)
	poll(t, "bad node untainted", 10*time.Second, func() bool {
		n, err := nodes.Get(ctx, "bad", metav1.GetOptions{})
		return err == nil && len(n.Spec.Taints) == 0
	})

	evs, err := api.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"Node bad status is now: NodeNotReady": false, "Marking for deletion Pod default/web": false}
	for _, e := range evs.Items {
		if _, ok := want[e.Message]; ok {
			want[e.Message] = true
		}
	}
	for msg, ok := range want {
		if !ok {
			t.Errorf("no event %q", msg)
		}
	}
}

package scheduler

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestCacheAssumeConfirmForget(t *testing.T) {
	c := newSchedCache()
	c.setNode(testNode("a", "2", "2Gi", 10))
	p := testPod("p", "1", "1Gi")
	c.assumeLocked(NewPodInfo(p), "a")
	if !c.isAssumed(p.UID) || c.nodes["a"].Requested.MilliCPU != 1000 {
		t.Fatalf("assume: %+v", c.nodes["a"].Requested)
	}
	// Bound as assumed: confirmed, counted once.
	bound := p.DeepCopy()
	bound.Spec.NodeName = "a"
	c.setPod(bound)
	if c.isAssumed(p.UID) || c.nodes["a"].Requested.MilliCPU != 1000 || c.nodes["a"].Pods != 1 {
		t.Fatalf("confirm: assumed=%v %+v", c.isAssumed(p.UID), c.nodes["a"])
	}
	if c.forget(p.UID) {
		t.Fatal("forget dropped a confirmed pod")
	}

	// A failed bind forgets the assumption.
	q := testPod("q", "500m", "")
	c.assumeLocked(NewPodInfo(q), "a")
	if !c.forget(q.UID) || c.nodes["a"].Requested.MilliCPU != 1000 {
		t.Fatalf("forget: %+v", c.nodes["a"].Requested)
	}

	// Bound elsewhere than assumed: moved.
	c.setNode(testNode("b", "2", "2Gi", 10))
	r := testPod("r", "300m", "")
	c.assumeLocked(NewPodInfo(r), "a")
	rb := r.DeepCopy()
	rb.Spec.NodeName = "b"
	c.setPod(rb)
	if c.nodes["a"].Requested.MilliCPU != 1000 || c.nodes["b"].Requested.MilliCPU != 300 {
		t.Fatalf("moved: a=%d b=%d", c.nodes["a"].Requested.MilliCPU, c.nodes["b"].Requested.MilliCPU)
	}

	// Finishing frees the room.
	done := bound.DeepCopy()
	done.Status.Phase = corev1.PodFailed
	if !c.setPod(done) || c.nodes["a"].Requested.MilliCPU != 0 || c.nodes["a"].Pods != 0 {
		t.Fatalf("terminal: %+v", c.nodes["a"])
	}
}

func TestCacheNodeLifecycle(t *testing.T) {
	c := newSchedCache()
	for _, n := range []string{"a", "b", "c"} {
		c.setNode(testNode(n, "2", "2Gi", 10))
	}
	p := testPod("p", "1", "", on("b"))
	c.setPod(p)
	c.removeNode("b")
	if got := names(c.snapshotLocked()); got != "a,c" {
		t.Fatalf("nodes after removing b: %s", got)
	}
	if n := c.nodes["b"]; n == nil || n.Node != nil || n.Pods != 1 {
		t.Fatalf("b's pods are kept without the node: %+v", n)
	}
	// It comes back with its pod still counted.
	c.setNode(testNode("b", "2", "2Gi", 10))
	if c.nodes["b"].Requested.MilliCPU != 1000 || len(c.list) != 3 {
		t.Fatalf("b back: %+v", c.nodes["b"])
	}
	c.removeNode("b")
	c.removePod(p.UID)
	if _, ok := c.nodes["b"]; ok {
		t.Fatal("empty node entry kept")
	}
	// A pod on a node not seen yet counts from the start.
	c.setPod(testPod("early", "1", "", on("d")))
	c.setNode(testNode("d", "2", "2Gi", 10))
	if c.nodes["d"].Requested.MilliCPU != 1000 {
		t.Fatalf("d: %+v", c.nodes["d"])
	}
}

func TestNodeSchedulingChanged(t *testing.T) {
	base := testNode("a", "2", "2Gi", 10)
	heartbeat := base.DeepCopy()
	heartbeat.Status.Conditions[0].Message = "kubelet is posting ready status"
	heartbeat.ResourceVersion = "7"
	if nodeSchedulingChanged(base, heartbeat) {
		t.Error("a heartbeat counts as a scheduling change")
	}
	for name, mod := range map[string]func(*corev1.Node){
		"cordon":    func(n *corev1.Node) { n.Spec.Unschedulable = true },
		"label":     withLabel("x", "y"),
		"taint":     withTaint("k", "v", corev1.TaintEffectNoSchedule),
		"not ready": withReady(corev1.ConditionFalse),
		"allocatable": func(n *corev1.Node) {
			q := n.Status.Allocatable[corev1.ResourceCPU]
			q.Add(q)
			n.Status.Allocatable[corev1.ResourceCPU] = q
		},
	} {
		n := base.DeepCopy()
		mod(n)
		if !nodeSchedulingChanged(base, n) {
			t.Errorf("%s is not seen as a scheduling change", name)
		}
	}
}

func names(s Snapshot) string {
	out := ""
	for i, n := range s.Nodes {
		if i > 0 {
			out += ","
		}
		out += n.Node.Name
	}
	return out
}

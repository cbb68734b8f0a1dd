package scheduler

import (
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestSchedulePicks checks the node each score steers a pod to.
func TestSchedulePicks(t *testing.T) {
	tests := []struct {
		name   string
		nodes  []*corev1.Node
		placed []*corev1.Pod
		pod    *corev1.Pod
		want   string
	}{
		{name: "least allocated", pod: testPod("p", "500m", "512Mi"),
			nodes:  []*corev1.Node{testNode("busy", "4", "8Gi", 110), testNode("idle", "4", "8Gi", 110)},
			placed: []*corev1.Pod{testPod("a", "3", "6Gi", on("busy"))}, want: "idle"},
		{name: "least allocated counts request-less pods at defaults", pod: testPod("p", "", ""),
			nodes:  []*corev1.Node{testNode("busy", "1", "1Gi", 110), testNode("idle", "1", "1Gi", 110)},
			placed: []*corev1.Pod{testPod("a", "", "", on("busy")), testPod("b", "", "", on("busy"))}, want: "idle"},
		{name: "bigger node", pod: testPod("p", "1", "1Gi"),
			nodes: []*corev1.Node{testNode("small", "2", "2Gi", 110), testNode("big", "16", "64Gi", 110)}, want: "big"},
		{name: "spread same owner", pod: testPod("p", "100m", "100Mi", withOwner("rs1")),
			// "has" is emptier by resources but already runs the owner's pods.
			nodes: []*corev1.Node{testNode("has", "64", "64Gi", 110), testNode("other", "4", "4Gi", 110)},
			placed: []*corev1.Pod{
				testPod("a", "100m", "100Mi", withOwner("rs1"), on("has")),
				testPod("b", "100m", "100Mi", withOwner("rs1"), on("has")),
				testPod("c", "100m", "100Mi", withOwner("rs1"), on("has")),
			}, want: "other"},
		{name: "prefer no schedule taint", pod: testPod("p", "", ""),
			nodes: []*corev1.Node{testNode("tainted", "4", "8Gi", 110, withTaint("x", "y", corev1.TaintEffectPreferNoSchedule)), testNode("clean", "4", "8Gi", 110)},
			want:  "clean"},
		{name: "preferred affinity", pod: testPod("p", "", "", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
				Weight: 10, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpIn, Values: []string{"ssd"}}}},
			}}}}
		}), nodes: []*corev1.Node{testNode("hdd", "4", "8Gi", 110), testNode("ssd", "4", "8Gi", 110, withLabel("disk", "ssd"))}, want: "ssd"},
		{name: "only feasible node", pod: testPod("p", "3", ""),
			nodes: []*corev1.Node{testNode("small", "2", "8Gi", 110), testNode("fits", "4", "8Gi", 110)}, want: "fits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(20) {
				st := &decisionState{rnd: rand.New(rand.NewPCG(seed, 7)), start: int(seed)}
				d, err := schedule(NewPodInfo(tc.pod), snapshotOf(tc.nodes, tc.placed...), st)
				if err != nil {
					t.Fatal(err)
				}
				if d.Node != tc.want {
					t.Fatalf("seed %d: node = %s, want %s", seed, d.Node, tc.want)
				}
			}
		})
	}
}

// TestSpreadEvenly places a workload's pods one by one and expects them
// spread evenly over identical nodes.
func TestSpreadEvenly(t *testing.T) {
	c := newSchedCache()
	for _, n := range []string{"a", "b", "c", "d"} {
		c.setNode(testNode(n, "8", "16Gi", 110))
	}
	st := &decisionState{rnd: rand.New(rand.NewPCG(1, 2))}
	for i := range 40 {
		p := NewPodInfo(testPod("p"+string(rune('A'+i)), "100m", "128Mi", withOwner("rs")))
		d, err := schedule(p, c.snapshotLocked(), st)
		if err != nil {
			t.Fatal(err)
		}
		c.assumeLocked(p, d.Node)
	}
	for name, n := range c.nodes {
		if n.Pods != 10 {
			t.Errorf("node %s has %d pods, want 10", name, n.Pods)
		}
	}
}

// TestTiesAreRandom expects identical nodes to be chosen evenly.
func TestTiesAreRandom(t *testing.T) {
	snap := snapshotOf([]*corev1.Node{testNode("a", "4", "8Gi", 110), testNode("b", "4", "8Gi", 110), testNode("c", "4", "8Gi", 110)})
	st := &decisionState{rnd: rand.New(rand.NewPCG(3, 4))}
	seen := map[string]int{}
	for range 300 {
		d, err := schedule(NewPodInfo(testPod("p", "", "")), snap, st)
		if err != nil {
			t.Fatal(err)
		}
		seen[d.Node]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if seen[n] < 60 {
			t.Errorf("node %s chosen %d/300 times: %v", n, seen[n], seen)
		}
	}
}

// TestSampling checks that a large cluster is only partly filtered and
// that the start rotates.
func TestSampling(t *testing.T) {
	var nodes []*corev1.Node
	for i := range 1000 {
		nodes = append(nodes, testNode(nodeName(i), "4", "8Gi", 110))
	}
	snap := snapshotOf(nodes)
	st := &decisionState{rnd: rand.New(rand.NewPCG(1, 1))}
	d, err := schedule(NewPodInfo(testPod("p", "", "")), snap, st)
	if err != nil {
		t.Fatal(err)
	}
	if d.Evaluated != 420 || d.Feasible != 420 || st.start != 420 {
		t.Fatalf("evaluated %d feasible %d next start %d, want 420 each", d.Evaluated, d.Feasible, st.start)
	}
	// A pod that fits nowhere still hears about every node.
	_, err = schedule(NewPodInfo(testPod("big", "64", "")), snap, st)
	if fe, ok := err.(*FitError); !ok || fe.Reasons["Insufficient cpu"] != 1000 {
		t.Fatalf("err = %v", err)
	}
}

func nodeName(i int) string {
	const digits = "0123456789"
	s := ""
	for {
		s = string(digits[i%10]) + s
		i /= 10
		if i == 0 {
			return "node-" + s
		}
	}
}

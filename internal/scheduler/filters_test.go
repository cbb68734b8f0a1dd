package scheduler

import (
	"math/rand/v2"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestFilters(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name   string
		pod    *corev1.Pod
		node   *corev1.Node
		placed []*corev1.Pod
		want   []string
	}{
		{name: "fits", pod: testPod("p", "1", "1Gi"), node: testNode("n", "2", "2Gi", 10)},
		{name: "cordoned", pod: testPod("p", "", ""), node: testNode("n", "2", "2Gi", 10, func(n *corev1.Node) { n.Spec.Unschedulable = true }),
			want: []string{"node(s) were unschedulable"}},
		{name: "cordoned but tolerated", pod: testPod("p", "", "", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
		}), node: testNode("n", "2", "2Gi", 10, func(n *corev1.Node) { n.Spec.Unschedulable = true })},
		{name: "insufficient cpu and memory", pod: testPod("p", "3", "3Gi"), node: testNode("n", "2", "2Gi", 10),
			want: []string{"Insufficient cpu", "Insufficient memory"}},
		{name: "insufficient after placed pods", pod: testPod("p", "1", ""), node: testNode("n", "2", "2Gi", 10),
			placed: []*corev1.Pod{testPod("a", "1500m", "", on("n"))}, want: []string{"Insufficient cpu"}},
		{name: "terminal placed pods free their room", pod: testPod("p", "1", ""), node: testNode("n", "2", "2Gi", 10),
			placed: []*corev1.Pod{testPod("a", "1500m", "", on("n"), func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })}},
		{name: "too many pods", pod: testPod("p", "", ""), node: testNode("n", "2", "2Gi", 1),
			placed: []*corev1.Pod{testPod("a", "", "", on("n"))}, want: []string{"Too many pods"}},
		{name: "too many pods and cpu", pod: testPod("p", "3", ""), node: testNode("n", "2", "2Gi", 1),
			placed: []*corev1.Pod{testPod("a", "", "", on("n"))}, want: []string{"Too many pods", "Insufficient cpu"}},
		{name: "extended resource", pod: testPod("p", "", "", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests["example.com/gpu"] = resource.MustParse("1")
		}), node: testNode("n", "2", "2Gi", 10), want: []string{"Insufficient example.com/gpu"}},
		{name: "extended resource available", pod: testPod("p", "", "", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests["example.com/gpu"] = resource.MustParse("1")
		}), node: testNode("n", "2", "2Gi", 10, func(n *corev1.Node) { n.Status.Allocatable["example.com/gpu"] = resource.MustParse("2") })},
		{name: "init container dominates", pod: testPod("p", "500m", "", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}}
		}), node: testNode("n", "2", "2Gi", 10), want: []string{"Insufficient cpu"}},
		{name: "sidecar adds to containers", pod: testPod("p", "1500m", "", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "s", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}
		}), node: testNode("n", "2", "2Gi", 10), want: []string{"Insufficient cpu"}},
		{name: "overhead counts", pod: testPod("p", "1500m", "", func(p *corev1.Pod) {
			p.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("600m")}
		}), node: testNode("n", "2", "2Gi", 10), want: []string{"Insufficient cpu"}},
		{name: "node selector", pod: testPod("p", "", "", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }),
			node: testNode("n", "2", "2Gi", 10), want: []string{"node(s) didn't match Pod's node affinity/selector"}},
		{name: "node selector matches", pod: testPod("p", "", "", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }),
			node: testNode("n", "2", "2Gi", 10, withLabel("disk", "ssd"))},
		{name: "required affinity NotIn", pod: testPod("p", "", "", withRequiredAffinity(corev1.NodeSelectorRequirement{Key: "zone", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"a"}})),
			node: testNode("n", "2", "2Gi", 10, withLabel("zone", "a")), want: []string{"node(s) didn't match Pod's node affinity/selector"}},
		{name: "required affinity Gt", pod: testPod("p", "", "", withRequiredAffinity(corev1.NodeSelectorRequirement{Key: "gen", Operator: corev1.NodeSelectorOpGt, Values: []string{"3"}})),
			node: testNode("n", "2", "2Gi", 10, withLabel("gen", "4"))},
		{name: "untolerated taint", pod: testPod("p", "", ""), node: testNode("n", "2", "2Gi", 10, withTaint("dedicated", "db", corev1.TaintEffectNoSchedule)),
			want: []string{"node(s) had untolerated taint {dedicated: db}"}},
		{name: "NoExecute taint", pod: testPod("p", "", ""), node: testNode("n", "2", "2Gi", 10, withTaint("x", "", corev1.TaintEffectNoExecute)),
			want: []string{"node(s) had untolerated taint {x: }"}},
		{name: "PreferNoSchedule taint does not filter", pod: testPod("p", "", ""), node: testNode("n", "2", "2Gi", 10, withTaint("x", "", corev1.TaintEffectPreferNoSchedule))},
		{name: "tolerated taint", pod: testPod("p", "", "", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
		}), node: testNode("n", "2", "2Gi", 10, withTaint("dedicated", "db", corev1.TaintEffectNoSchedule))},
		{name: "not ready", pod: testPod("p", "", ""), node: testNode("n", "2", "2Gi", 10, withReady(corev1.ConditionFalse)),
			want: []string{"node(s) had untolerated taint {node.kubernetes.io/not-ready: }"}},
		{name: "unreachable", pod: testPod("p", "", ""), node: testNode("n", "2", "2Gi", 10, withReady(corev1.ConditionUnknown)),
			want: []string{"node(s) had untolerated taint {node.kubernetes.io/unreachable: }"}},
		{name: "not ready but tolerated", pod: testPod("p", "", "", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		}), node: testNode("n", "2", "2Gi", 10, withReady(corev1.ConditionFalse))},
		{name: "host port taken", pod: testPod("p", "", "", withHostPort(8080)), node: testNode("n", "2", "2Gi", 10),
			placed: []*corev1.Pod{testPod("a", "", "", withHostPort(8080), on("n"))}, want: []string{"node(s) didn't have free ports for the requested pod ports"}},
		{name: "host port other protocol", pod: testPod("p", "", "", withHostPort(8080), func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Protocol = corev1.ProtocolUDP }),
			node: testNode("n", "2", "2Gi", 10), placed: []*corev1.Pod{testPod("a", "", "", withHostPort(8080), on("n"))}},
		{name: "host port specific IPs differ", pod: testPod("p", "", "", withHostPort(8080), func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].HostIP = "10.0.0.1" }),
			node: testNode("n", "2", "2Gi", 10), placed: []*corev1.Pod{testPod("a", "", "", withHostPort(8080), on("n"), func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].HostIP = "10.0.0.2" })}},
		{name: "filter order: taint before resources", pod: testPod("p", "5", ""), node: testNode("n", "2", "2Gi", 10, withTaint("a", "b", corev1.TaintEffectNoSchedule)),
			want: []string{"node(s) had untolerated taint {a: b}"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapshotOf([]*corev1.Node{tc.node}, tc.placed...)
			got := runFilters(NewPodInfo(tc.pod), snap.Nodes[0])
			if !slices.Equal(got, tc.want) {
				t.Fatalf("reasons = %q, want %q", got, tc.want)
			}
		})
	}
}

func withRequiredAffinity(reqs ...corev1.NodeSelectorRequirement) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: reqs}},
			},
		}}
	}
}

func TestScheduleFitErrorMessage(t *testing.T) {
	tests := []struct {
		name  string
		nodes []*corev1.Node
		pod   *corev1.Pod
		want  string
	}{
		{name: "no nodes", pod: testPod("p", "", ""), want: "no nodes available to schedule pods"},
		{name: "issue example", pod: testPod("p", "3", "", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"pool": "a"} }),
			nodes: []*corev1.Node{
				testNode("n1", "2", "2Gi", 10, withLabel("pool", "a")),
				testNode("n2", "8", "2Gi", 10),
				testNode("n3", "8", "2Gi", 10),
			},
			want: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."},
		{name: "sorted as strings, several reasons per node", pod: testPod("p", "3", "3Gi"),
			nodes: func() []*corev1.Node {
				var ns []*corev1.Node
				for i := range 11 {
					ns = append(ns, testNode("n"+string(rune('a'+i)), "2", "2Gi", 10))
				}
				ns = append(ns, testNode("cordoned", "8", "8Gi", 10, func(n *corev1.Node) { n.Spec.Unschedulable = true }))
				return ns
			}(),
			want: "0/12 nodes are available: 1 node(s) were unschedulable, 11 Insufficient cpu, 11 Insufficient memory."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &decisionState{rnd: rand.New(rand.NewPCG(1, 2))}
			_, err := schedule(NewPodInfo(tc.pod), snapshotOf(tc.nodes), st)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNumFeasibleNodesToFind(t *testing.T) {
	for _, tc := range []struct {
		pct       int32
		all, want int
	}{
		{0, 10, 10}, {0, 99, 99}, {0, 100, 100}, {0, 1000, 420}, {0, 5000, 500}, {0, 10000, 500},
		{0, 200, 96 + 4}, {10, 1000, 100}, {50, 1000, 500}, {100, 1000, 1000}, {1, 500, 100},
	} {
		if got := numFeasibleNodesToFind(tc.pct, tc.all); got != tc.want {
			t.Errorf("numFeasibleNodesToFind(%d, %d) = %d, want %d", tc.pct, tc.all, got, tc.want)
		}
	}
}

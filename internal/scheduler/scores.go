package scheduler

import (
	"math"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// maxNodeScore is the top of every plugin's normalized 0..100 range.
const maxNodeScore int64 = 100

// Weights of the default profile's score plugins that skiff implements
// (ImageLocality and InterPodAffinity are not).
const (
	weightFit          = 1
	weightBalanced     = 1
	weightTopology     = 2
	weightNodeAffinity = 2
	weightTaint        = 3
)

// scoreNodes returns each feasible node's weighted total score.
func scoreNodes(p *PodInfo, nodes []*NodeInfo) []int64 {
	total := make([]int64, len(nodes))
	raw := make([]int64, len(nodes))

	for i, n := range nodes {
		total[i] += weightFit*leastAllocated(p, n) + weightBalanced*balancedAllocation(p, n)
	}

	if p.Owner != "" {
		w := math.Log(float64(len(nodes) + 2))
		for i, n := range nodes {
			raw[i] = topologySpreadRaw(n.Owners[p.Owner], w)
		}
		normalizeTopologySpread(raw)
		for i := range nodes {
			total[i] += weightTopology * raw[i]
		}
	}

	if prefs := preferredAffinity(p.Pod); len(prefs) > 0 {
		for i, n := range nodes {
			raw[i] = 0
			for j := range prefs {
				if prefs[j].Weight != 0 && matchesTerm(&prefs[j].Preference, n.Node) {
					raw[i] += int64(prefs[j].Weight)
				}
			}
		}
		defaultNormalize(raw, false)
		for i := range nodes {
			total[i] += weightNodeAffinity * raw[i]
		}
	}

	tols := preferNoScheduleTolerations(p.Pod.Spec.Tolerations)
	anyTaint := false
	for i, n := range nodes {
		raw[i] = 0
		for j := range n.Node.Spec.Taints {
			t := &n.Node.Spec.Taints[j]
			if t.Effect == corev1.TaintEffectPreferNoSchedule && !tolerates(tols, t) {
				raw[i]++
				anyTaint = true
			}
		}
	}
	if anyTaint {
		defaultNormalize(raw, true)
		for i := range nodes {
			total[i] += weightTaint * raw[i]
		}
	} else {
		// Every node scores the maximum; a constant changes no ranking
		// but keeps totals comparable with kube's.
		for i := range nodes {
			total[i] += weightTaint * maxNodeScore
		}
	}
	return total
}

// leastAllocated is NodeResourcesFit's default LeastAllocated strategy
// over cpu and memory (weight 1 each), counting containers without
// requests at the scoring defaults.
func leastAllocated(p *PodInfo, n *NodeInfo) int64 {
	var score, weights int64
	for _, r := range [2][2]int64{
		{n.NonZero.MilliCPU + p.NonZero.MilliCPU, n.Allocatable.MilliCPU},
		{n.NonZero.Memory + p.NonZero.Memory, n.Allocatable.Memory},
	} {
		req, capacity := r[0], r[1]
		if capacity == 0 {
			continue
		}
		weights++
		if req > capacity {
			continue
		}
		score += (capacity - req) * maxNodeScore / capacity
	}
	if weights == 0 {
		return 0
	}
	return score / weights
}

// balancedAllocation is NodeResourcesBalancedAllocation: nodes whose cpu
// and memory would be used in equal fractions score higher.
func balancedAllocation(p *PodInfo, n *NodeInfo) int64 {
	if n.Allocatable.MilliCPU == 0 || n.Allocatable.Memory == 0 {
		return 0
	}
	if p.Requests.MilliCPU == 0 && p.Requests.Memory == 0 {
		// Upstream skips pods that request neither.
		return 0
	}
	fc := math.Min(1, float64(n.Requested.MilliCPU+p.Requests.MilliCPU)/float64(n.Allocatable.MilliCPU))
	fm := math.Min(1, float64(n.Requested.Memory+p.Requests.Memory)/float64(n.Allocatable.Memory))
	std := math.Abs(fc-fm) / 2
	return int64((1 - std) * float64(maxNodeScore))
}

// topologySpreadRaw is PodTopologySpread's score under its system default
// constraint for hostname (maxSkew 3, ScheduleAnyway): the count of pods of
// the same owner on the node, weighted by w = log(feasible nodes + 2).
// Lower is better until normalizeTopologySpread flips it.
func topologySpreadRaw(count int, w float64) int64 {
	const maxSkew = 3
	return int64(math.Round(float64(count)*w + float64(maxSkew-1)))
}

func normalizeTopologySpread(s []int64) {
	minS, maxS := int64(math.MaxInt64), int64(0)
	for _, v := range s {
		minS, maxS = min(minS, v), max(maxS, v)
	}
	for i, v := range s {
		if maxS == 0 {
			s[i] = maxNodeScore
			continue
		}
		s[i] = maxNodeScore * (maxS + minS - v) / maxS
	}
}

// defaultNormalize scales scores to 0..100 by the largest, reversed when
// fewer is better (upstream's helper.DefaultNormalizeScore).
func defaultNormalize(s []int64, reverse bool) {
	var maxS int64
	for _, v := range s {
		maxS = max(maxS, v)
	}
	for i, v := range s {
		switch {
		case maxS == 0 && reverse:
			s[i] = maxNodeScore
		case maxS == 0:
			s[i] = 0
		default:
			v = maxNodeScore * v / maxS
			if reverse {
				v = maxNodeScore - v
			}
			s[i] = v
		}
	}
}

func preferredAffinity(pod *corev1.Pod) []corev1.PreferredSchedulingTerm {
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		return a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	}
	return nil
}

func preferNoScheduleTolerations(tols []corev1.Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range tols {
		if t.Effect == "" || t.Effect == corev1.TaintEffectPreferNoSchedule {
			out = append(out, t)
		}
	}
	return out
}

func sortedScalarNames(m map[corev1.ResourceName]int64) []corev1.ResourceName {
	if len(m) == 0 {
		return nil
	}
	names := make([]corev1.ResourceName, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

package replicaset

import (
	"math"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/internal/controller"
)

// podDeletionCostAnnotation lets users rank pods of one ReplicaSet for
// scale-down (lower cost goes first); beta and on by default upstream.
const podDeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

var podPhaseOrdinal = map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}

// rankedPods sorts pods so that the ones to delete first come first,
// as Kubernetes' ActivePodsWithRanks (with PodDeletionCost and
// LogarithmicScaleDown on, their defaults). Each rule decides only when
// the previous ones tie:
//  1. unassigned before assigned;
//  2. Pending before Unknown before Running;
//  3. not ready before ready;
//  4. lower pod-deletion-cost first;
//  5. higher rank (more related pods on the same node) first;
//  6. both ready: ready for a shorter time first;
//  7. more container restarts first;
//  8. newer first.
//
// Times in 6 and 8 compare on a log2 scale of their age, ties broken by
// UID, so equivalent pods are removed in a pseudo-random order.
type rankedPods struct {
	pods []*corev1.Pod
	rank []int
	now  metav1.Time
}

func (s rankedPods) Len() int { return len(s.pods) }

func (s rankedPods) Swap(i, j int) {
	s.pods[i], s.pods[j] = s.pods[j], s.pods[i]
	s.rank[i], s.rank[j] = s.rank[j], s.rank[i]
}

func (s rankedPods) Less(i, j int) bool {
	a, b := s.pods[i], s.pods[j]
	if a.Spec.NodeName != b.Spec.NodeName && (a.Spec.NodeName == "" || b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if pa, pb := podPhaseOrdinal[a.Status.Phase], podPhaseOrdinal[b.Status.Phase]; pa != pb {
		return pa < pb
	}
	ra, rb := controller.IsPodReady(a), controller.IsPodReady(b)
	if ra != rb {
		return !ra
	}
	if ca, cb := deletionCost(a), deletionCost(b); ca != cb {
		return ca < cb
	}
	if s.rank[i] != s.rank[j] {
		return s.rank[i] > s.rank[j]
	}
	if ra && rb {
		ta, tb := readyTime(a), readyTime(b)
		if !ta.Equal(&tb) {
			if s.now.IsZero() || ta.IsZero() || tb.IsZero() {
				return afterOrZero(ta, tb)
			}
			if d := logRankDiff(ta, tb, s.now); d != 0 {
				return d < 0
			}
			return a.UID < b.UID
		}
	}
	if ma, mb := maxRestarts(a), maxRestarts(b); ma != mb {
		return ma > mb
	}
	ta, tb := a.CreationTimestamp, b.CreationTimestamp
	if !ta.Equal(&tb) {
		if s.now.IsZero() || ta.IsZero() || tb.IsZero() {
			return afterOrZero(ta, tb)
		}
		if d := logRankDiff(ta, tb, s.now); d != 0 {
			return d < 0
		}
		return a.UID < b.UID
	}
	return false
}

// afterOrZero: a zero time sorts first, then the later time.
func afterOrZero(a, b metav1.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero()
	}
	return a.After(b.Time)
}

// logRankDiff compares the ages of a and b at now on a log2 scale of
// nanoseconds: negative when a is younger by at least a factor of two.
func logRankDiff(a, b, now metav1.Time) int64 {
	rank := func(t metav1.Time) int64 {
		if d := now.Sub(t.Time); d > 0 {
			return int64(math.Log2(float64(d)))
		}
		return -1
	}
	return rank(a) - rank(b)
}

func readyTime(pod *corev1.Pod) metav1.Time {
	if c := controller.PodCondition(&pod.Status, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
		return c.LastTransitionTime
	}
	return metav1.Time{}
}

func maxRestarts(pod *corev1.Pod) int32 {
	var n int32
	for _, c := range pod.Status.ContainerStatuses {
		n = max(n, c.RestartCount)
	}
	return n
}

// deletionCost is the pod's pod-deletion-cost annotation; missing or
// invalid (not an int32, or a leading "+" or zero) counts as 0, as
// upstream.
func deletionCost(pod *corev1.Pod) int32 {
	v, ok := pod.Annotations[podDeletionCostAnnotation]
	if !ok || v == "" {
		return 0
	}
	if c := v[0]; !(c == '-' || v == "0" || (c >= '1' && c <= '9')) {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return int32(n)
}

// podsToDelete returns the diff pods of active to delete first. related
// are the active pods of every ReplicaSet with the same controller (a
// Deployment's old and new ReplicaSets): pods on nodes crowded with them
// go first, which keeps a rollout spread.
func podsToDelete(active, related []*corev1.Pod, diff int, now metav1.Time) []*corev1.Pod {
	if diff >= len(active) {
		return active
	}
	// Sort a copy: active is the caller's.
	pods := append([]*corev1.Pod(nil), active...)
	perNode := map[string]int{}
	for _, p := range related {
		if controller.IsPodActive(p) {
			perNode[p.Spec.NodeName]++
		}
	}
	rank := make([]int, len(pods))
	for i, p := range pods {
		rank[i] = perNode[p.Spec.NodeName]
	}
	sort.Sort(rankedPods{pods: pods, rank: rank, now: now})
	return pods[:diff]
}

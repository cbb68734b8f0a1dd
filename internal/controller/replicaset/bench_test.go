package replicaset

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// BenchmarkSteadyStateSync measures one sync of a ReplicaSet of 100 ready
// pods that is at its size, with 300 such ReplicaSets (30,000 pods) in the
// namespace: the cost must follow the ReplicaSet's own pods, not the
// namespace's.
func BenchmarkSteadyStateSync(b *testing.B) {
	const sets, perSet = 300, 100
	var objs []runtime.Object
	for i := range sets {
		rs := newRS(fmt.Sprintf("rs%d", i), perSet)
		l := map[string]string{"app": "web", "set": rs.Name}
		rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: l}
		rs.Spec.Template.Labels = l
		rs.Status = appsv1.ReplicaSetStatus{Replicas: perSet, FullyLabeledReplicas: perSet, ReadyReplicas: perSet,
			AvailableReplicas: perSet, TerminatingReplicas: ptr.To[int32](0), ObservedGeneration: 1}
		objs = append(objs, rs)
		for j := range perSet {
			p := newPod(fmt.Sprintf("%s-%d", rs.Name, j), rs, onNode(fmt.Sprintf("n%d", j%1000)), readySince(t0.Add(-time.Hour)), withLabels(l))
			objs = append(objs, p)
		}
	}
	f := newFixture(b, Options{}, objs...)
	b.ResetTimer()
	for i := range b.N {
		if err := f.c.reconcile(b.Context(), fmt.Sprintf("default/rs%d", i%sets)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := len(f.writes()); n != 0 {
		b.Fatalf("%d writes in steady state", n)
	}
}

// BenchmarkRankPods sorts 500 pods (the burst) for scale-down.
func BenchmarkRankPods(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var pods []*corev1.Pod
	for i := range 500 {
		p := newPod(fmt.Sprintf("p%d", i), nil, onNode(fmt.Sprintf("n%d", r.IntN(50))),
			readySince(t0.Add(-time.Duration(r.IntN(3600))*time.Second)),
			created(t0.Add(-time.Duration(r.IntN(7200))*time.Second)), restarts(int32(r.IntN(3))))
		p.UID = types.UID(fmt.Sprint(r.Int()))
		pods = append(pods, p)
	}
	now := metav1.NewTime(t0)
	b.ResetTimer()
	for range b.N {
		podsToDelete(pods, pods, 250, now)
	}
}

package deployment

import (
	"regexp"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestComputeHash(t *testing.T) {
	d := newDeployment("web", 3, "nginx:1")
	h := ComputeHash(&d.Spec.Template, nil)
	if !regexp.MustCompile(`^[bcdfghjklmnpqrstvwxz2456789]{6,10}$`).MatchString(h) {
		t.Fatalf("hash %q is not a SafeEncodeString of a uint32", h)
	}
	if again := ComputeHash(d.Spec.Template.DeepCopy(), nil); again != h {
		t.Fatalf("hash not deterministic: %q vs %q", h, again)
	}
	if c0 := ComputeHash(&d.Spec.Template, ptr.To[int32](0)); c0 == h {
		t.Fatalf("collisionCount 0 must change the hash (it is hashed when set)")
	}
	if c1, c2 := ComputeHash(&d.Spec.Template, ptr.To[int32](1)), ComputeHash(&d.Spec.Template, ptr.To[int32](2)); c1 == c2 {
		t.Fatalf("different collision counts give the same hash %q", c1)
	}
	d2 := newDeployment("web", 3, "nginx:2")
	if ComputeHash(&d2.Spec.Template, nil) == h {
		t.Fatalf("different templates give the same hash")
	}
}

func TestResolveFenceposts(t *testing.T) {
	for _, tc := range []struct {
		name                string
		surge, unavailable  intstr.IntOrString
		desired             int32
		wantSurge, wantUnav int32
	}{
		{"defaults 25% of 10", intstr.FromString("25%"), intstr.FromString("25%"), 10, 3, 2},
		{"25% of 4", intstr.FromString("25%"), intstr.FromString("25%"), 4, 1, 1},
		{"25% of 1 rounds surge up, unavailable down", intstr.FromString("25%"), intstr.FromString("25%"), 1, 1, 0},
		{"ints", intstr.FromInt32(3), intstr.FromInt32(2), 10, 3, 2},
		{"both zero after rounding: unavailable 1", intstr.FromString("0%"), intstr.FromString("1%"), 2, 0, 1},
		{"surge 0 unavailable 1", intstr.FromInt32(0), intstr.FromInt32(1), 3, 0, 1},
		{"100% unavailable", intstr.FromInt32(0), intstr.FromString("100%"), 5, 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, u, err := resolveFenceposts(&tc.surge, &tc.unavailable, tc.desired)
			if err != nil {
				t.Fatal(err)
			}
			if s != tc.wantSurge || u != tc.wantUnav {
				t.Fatalf("got surge %d unavailable %d, want %d %d", s, u, tc.wantSurge, tc.wantUnav)
			}
		})
	}
}

func TestMaxUnavailableCappedAndRecreate(t *testing.T) {
	d := newDeployment("web", 2, "a")
	setRolling(d, intstr.FromInt32(0), intstr.FromInt32(5))
	if got := maxUnavailable(d); got != 2 {
		t.Fatalf("maxUnavailable capped at replicas: got %d", got)
	}
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if maxSurge(d) != 0 || maxUnavailable(d) != 0 {
		t.Fatalf("Recreate has no surge/unavailable")
	}
}

func rsWith(name string, spec int32, maxReplicas string) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{}
	rs.Name = name
	rs.Spec.Replicas = ptr.To(spec)
	if maxReplicas != "" {
		rs.Annotations = map[string]string{MaxReplicasAnnotation: maxReplicas}
	}
	return rs
}

func TestNewRSNewReplicas(t *testing.T) {
	for _, tc := range []struct {
		name           string
		replicas       int32
		surge          intstr.IntOrString
		oldSize, newSz int32
		want           int32
	}{
		{"surge room", 10, intstr.FromInt32(3), 10, 0, 3},
		{"no room", 10, intstr.FromInt32(3), 10, 3, 3},
		{"room after old scaled down", 10, intstr.FromInt32(3), 8, 3, 5},
		{"never above replicas", 10, intstr.FromInt32(3), 0, 9, 10},
		{"percent surge rounds up", 10, intstr.FromString("25%"), 10, 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeployment("web", tc.replicas, "a")
			setRolling(d, tc.surge, intstr.FromInt32(1))
			newRS := rsWith("new", tc.newSz, "")
			got, err := newRSNewReplicas(d, []*appsv1.ReplicaSet{rsWith("old", tc.oldSize, ""), newRS}, newRS)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestProportion(t *testing.T) {
	d := newDeployment("web", 20, "a")
	setRolling(d, intstr.FromInt32(3), intstr.FromInt32(2))
	// Was 10 (+3 surge = 13), now 20 (+3 = 23): an RS of 8 gets round(8*23/13)-8 = 6.
	if got := proportion(rsWith("a", 8, "13"), d, 10, 0); got != 6 {
		t.Fatalf("scale up: got %d want 6", got)
	}
	// Never more than what is left to add.
	if got := proportion(rsWith("a", 8, "13"), d, 10, 7); got != 3 {
		t.Fatalf("capped: got %d want 3", got)
	}
	// Scaling to zero: the whole RS goes.
	d.Spec.Replicas = ptr.To[int32](0)
	if got := proportion(rsWith("a", 8, "13"), d, -13, 0); got != -8 {
		t.Fatalf("to zero: got %d want -8", got)
	}
	// Empty RSes never grow proportionally.
	if got := proportion(rsWith("a", 0, "13"), d, 5, 0); got != 0 {
		t.Fatalf("empty rs: got %d", got)
	}
}

func TestSetNewReplicaSetAnnotations(t *testing.T) {
	d := newDeployment("web", 3, "a")
	d.Annotations = map[string]string{
		"kubernetes.io/change-cause":                       "kubectl set image",
		"kubectl.kubernetes.io/last-applied-configuration": "{}",
		RevisionAnnotation:                                 "7",
		"team":                                             "x",
	}
	rs := rsWith("web-1", 0, "")
	if !setNewReplicaSetAnnotations(d, rs, "2", false) {
		t.Fatal("expected a change")
	}
	want := map[string]string{
		"kubernetes.io/change-cause": "kubectl set image", "team": "x",
		RevisionAnnotation: "2", DesiredReplicasAnnotation: "3", MaxReplicasAnnotation: "4",
	}
	if len(rs.Annotations) != len(want) {
		t.Fatalf("annotations %v, want %v", rs.Annotations, want)
	}
	for k, v := range want {
		if rs.Annotations[k] != v {
			t.Fatalf("annotation %s=%q, want %q (all: %v)", k, rs.Annotations[k], v, rs.Annotations)
		}
	}
	// Rolling back to it later: revision 5, history keeps 2.
	if !setNewReplicaSetAnnotations(d, rs, "5", true) || rs.Annotations[RevisionAnnotation] != "5" || rs.Annotations[RevisionHistoryAnnotation] != "2" {
		t.Fatalf("rollback annotations: %v", rs.Annotations)
	}
	setNewReplicaSetAnnotations(d, rs, "9", true)
	if rs.Annotations[RevisionHistoryAnnotation] != "2,5" {
		t.Fatalf("history: %v", rs.Annotations)
	}
	// A smaller revision never lowers it.
	if setNewReplicaSetAnnotations(d, rs, "3", true) || rs.Annotations[RevisionAnnotation] != "9" {
		t.Fatalf("revision lowered: %v", rs.Annotations)
	}
}

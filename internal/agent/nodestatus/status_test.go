package nodestatus

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

func TestSetCapacity(t *testing.T) {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("8Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
		"hugepages-2Mi":                 resource.MustParse("1Gi"),
		"hugepages-1Gi":                 resource.MustParse("0"),
	}
	st := &corev1.NodeStatus{
		Capacity: corev1.ResourceList{
			"example.com/gpu": resource.MustParse("2"), // a device plugin's: kept
			"hugepages-32Mi":  resource.MustParse("0"), // no such size any more: gone
		},
		Allocatable: corev1.ResourceList{"example.com/stale": resource.MustParse("1")},
	}
	setCapacity(st, capacity, DefaultThresholds().Reservation(capacity))
	want := map[corev1.ResourceName]string{
		corev1.ResourceCPU:              "4",
		corev1.ResourceMemory:           "7068Mi", // 8Gi - 100Mi - 1Gi of hugepages
		corev1.ResourcePods:             "110",
		corev1.ResourceEphemeralStorage: "90Gi",
		"hugepages-2Mi":                 "1Gi",
		"hugepages-1Gi":                 "0",
		"example.com/gpu":               "2",
	}
	if len(st.Allocatable) != len(want) || len(st.Capacity) != len(want) {
		t.Fatalf("capacity %v\nallocatable %v", st.Capacity, st.Allocatable)
	}
	for k, v := range want {
		if q := st.Allocatable[k]; q.Cmp(resource.MustParse(v)) != 0 {
			t.Errorf("allocatable %s = %s, want %s", k, q.String(), v)
		}
	}

	// Never negative.
	tiny := corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("50Mi"), "hugepages-2Mi": resource.MustParse("10Mi")}
	st = &corev1.NodeStatus{}
	setCapacity(st, tiny, DefaultThresholds().Reservation(tiny))
	if q := st.Allocatable[corev1.ResourceMemory]; !q.IsZero() {
		t.Errorf("allocatable memory %s, want 0", q.String())
	}
}

func TestStatusChanged(t *testing.T) {
	t0, t1 := metav1.NewTime(time.Unix(1000, 0)), metav1.NewTime(time.Unix(2000, 0))
	base := corev1.NodeStatus{
		Capacity: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
		Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: t0, LastTransitionTime: t0},
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: t0, LastTransitionTime: t0},
		},
	}
	tests := []struct {
		name   string
		change func(*corev1.NodeStatus)
		want   bool
	}{
		{"same", func(*corev1.NodeStatus) {}, false},
		{"heartbeat only", func(s *corev1.NodeStatus) {
			s.Conditions[0].LastHeartbeatTime, s.Conditions[1].LastHeartbeatTime = t1, t1
		}, false},
		{"conditions reordered", func(s *corev1.NodeStatus) { s.Conditions[0], s.Conditions[1] = s.Conditions[1], s.Conditions[0] }, false},
		{"same quantity, other format", func(s *corev1.NodeStatus) {
			s.Capacity[corev1.ResourceMemory] = *resource.NewQuantity(1<<30, resource.DecimalSI)
		}, false},
		{"condition status", func(s *corev1.NodeStatus) { s.Conditions[1].Status = corev1.ConditionFalse }, true},
		{"condition transition time", func(s *corev1.NodeStatus) { s.Conditions[1].LastTransitionTime = t1 }, true},
		{"condition added", func(s *corev1.NodeStatus) {
			s.Conditions = append(s.Conditions, corev1.NodeCondition{Type: corev1.NodeDiskPressure})
		}, true},
		{"capacity", func(s *corev1.NodeStatus) { s.Capacity[corev1.ResourceMemory] = resource.MustParse("2Gi") }, true},
		{"images", func(s *corev1.NodeStatus) { s.Images = []corev1.ContainerImage{{Names: []string{"busybox"}}} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := base.DeepCopy()
			tt.change(cur)
			if got := statusChanged(&base, cur); got != tt.want {
				t.Fatalf("statusChanged = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStatusPatch applies the patch as the API server does: addresses are
// replaced whole, and the spec is never part of it.
func TestStatusPatch(t *testing.T) {
	old := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n"},
		Spec:       corev1.NodeSpec{PodCIDR: "10.42.0.0/24"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.0.0.1"},
			{Type: corev1.NodeInternalIP, Address: "10.0.0.2"},
			{Type: corev1.NodeHostName, Address: "n"},
		}},
	}
	cur := old.DeepCopy()
	cur.Spec = corev1.NodeSpec{} // as if the agent never knew the spec
	cur.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.3"}, {Type: corev1.NodeHostName, Address: "n"}}
	cur.Status.Capacity = corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")}
	patch, err := statusPatch(old, cur)
	if err != nil {
		t.Fatal(err)
	}
	oldJSON, _ := json.Marshal(old)
	out, err := strategicpatch.StrategicMergePatch(oldJSON, patch, corev1.Node{})
	if err != nil {
		t.Fatal(err)
	}
	var got corev1.Node
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(got.Status.Addresses, cur.Status.Addresses) {
		t.Errorf("addresses %+v, want %+v (patch %s)", got.Status.Addresses, cur.Status.Addresses, patch)
	}
	if got.Spec.PodCIDR != "10.42.0.0/24" {
		t.Errorf("spec changed by the status patch: %+v (patch %s)", got.Spec, patch)
	}
	if q := got.Status.Capacity[corev1.ResourcePods]; q.Value() != 110 {
		t.Errorf("capacity %v", got.Status.Capacity)
	}
}

func TestLimitImages(t *testing.T) {
	var imgs []corev1.ContainerImage
	for range 60 {
		imgs = append(imgs, corev1.ContainerImage{Names: []string{"a", "b", "c", "d", "e", "f", "g"}, SizeBytes: 1})
	}
	imgs[59].SizeBytes = 100
	imgs[58].SizeBytes = 50
	got := limitImages(imgs)
	if len(got) != 50 || len(got[0].Names) != 5 || len(imgs[0].Names) != 7 {
		t.Fatalf("limitImages: %d images, %d names (input %d names)", len(got), len(got[0].Names), len(imgs[0].Names))
	}
	if got[0].SizeBytes != 100 || got[1].SizeBytes != 50 || got[2].SizeBytes != 1 || imgs[59].SizeBytes != 100 {
		t.Fatalf("not largest first, or the input was reordered: %d %d %d", got[0].SizeBytes, got[1].SizeBytes, got[2].SizeBytes)
	}
}

func TestLabelPatch(t *testing.T) {
	if p := labelPatch(map[string]string{"a": "1", "b": "2"}, map[string]string{"a": "1"}); p != nil {
		t.Errorf("patch %s, want none", p)
	}
	p := labelPatch(map[string]string{"a": "1", "keep": "x"}, map[string]string{"a": "2", "c": ""})
	if string(p) != `{"metadata":{"labels":{"a":"2","c":""}}}` {
		t.Errorf("patch %s", p)
	}
}

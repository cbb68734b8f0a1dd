package nodestatus

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	mi = int64(1) << 20
	gi = int64(1) << 30
)

func healthySignals() Signals {
	return Signals{
		MemoryCapacity: 8 * gi, MemoryAvailable: 4 * gi,
		NodeFS: FSSignals{Capacity: 100 * gi, Available: 50 * gi, Inodes: 1000, InodesFree: 500},
		PIDMax: 32768, PIDAvailable: 32000,
	}
}

func TestPressure(t *testing.T) {
	tests := []struct {
		name   string
		th     Thresholds
		change func(*Signals)
		want   Pressure
	}{
		{"healthy", DefaultThresholds(), func(*Signals) {}, Pressure{}},
		{"memory just above 100Mi", DefaultThresholds(), func(s *Signals) { s.MemoryAvailable = 100 * mi }, Pressure{}},
		{"memory below 100Mi", DefaultThresholds(), func(s *Signals) { s.MemoryAvailable = 100*mi - 1 }, Pressure{Memory: true}},
		{"nodefs below 10%", DefaultThresholds(), func(s *Signals) { s.NodeFS.Available = 9 * gi }, Pressure{Disk: true}},
		{"nodefs at 10%", DefaultThresholds(), func(s *Signals) { s.NodeFS.Available = 10 * gi }, Pressure{}},
		{"nodefs inodes below 5%", DefaultThresholds(), func(s *Signals) { s.NodeFS.InodesFree = 49 }, Pressure{Disk: true}},
		{"nodefs without inode counts", DefaultThresholds(), func(s *Signals) { s.NodeFS.Inodes, s.NodeFS.InodesFree = 0, 0 }, Pressure{}},
		{"imagefs below 15%", DefaultThresholds(), func(s *Signals) { s.ImageFS = FSSignals{Capacity: 100, Available: 14, Inodes: 10, InodesFree: 10} }, Pressure{Disk: true}},
		{"imagefs at 15%", DefaultThresholds(), func(s *Signals) { s.ImageFS = FSSignals{Capacity: 100, Available: 15, Inodes: 10, InodesFree: 10} }, Pressure{}},
		{"imagefs not measured", DefaultThresholds(), func(s *Signals) { s.ImageFS = FSSignals{} }, Pressure{}},
		{"no default pid threshold", DefaultThresholds(), func(s *Signals) { s.PIDAvailable = 1 }, Pressure{}},
		{"pid threshold set", Thresholds{PIDAvailable: Threshold{Percentage: 0.1}}, func(s *Signals) { s.PIDAvailable = 3000 }, Pressure{PID: true}},
		{"everything", Thresholds{MemoryAvailable: Threshold{Quantity: 5 * gi}, NodeFSAvailable: Threshold{Quantity: 60 * gi}, PIDAvailable: Threshold{Quantity: 40000}},
			func(*Signals) {}, Pressure{Memory: true, Disk: true, PID: true}},
		{"disabled thresholds", Thresholds{}, func(s *Signals) {
			*s = Signals{MemoryCapacity: 1, NodeFS: FSSignals{Capacity: 1, Inodes: 1}, PIDMax: 1}
		}, Pressure{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthySignals()
			tt.change(&s)
			if got := tt.th.Pressure(s); got != tt.want {
				t.Fatalf("Pressure = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReservation(t *testing.T) {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("8Gi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	r := DefaultThresholds().Reservation(capacity)
	if len(r) != 2 {
		t.Fatalf("reservation %v: want memory and ephemeral-storage only", r)
	}
	if q := r[corev1.ResourceMemory]; q.Cmp(resource.MustParse("100Mi")) != 0 {
		t.Errorf("memory reservation %s, want 100Mi", q.String())
	}
	if q := r[corev1.ResourceEphemeralStorage]; q.Cmp(resource.MustParse("10Gi")) != 0 {
		t.Errorf("ephemeral-storage reservation %s, want 10Gi", q.String())
	}
}

func TestAllocatable(t *testing.T) {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("8Gi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("5Mi"),
	}
	a := DefaultThresholds().Allocatable(capacity)
	want := map[corev1.ResourceName]string{
		corev1.ResourceCPU:              "4",
		corev1.ResourceMemory:           "8092Mi",  // 8Gi - 100Mi
		corev1.ResourceEphemeralStorage: "4718592", // 5Mi - 10%
	}
	for k, w := range want {
		if q := a[k]; q.Cmp(resource.MustParse(w)) != 0 {
			t.Errorf("allocatable %s = %s, want %s", k, q.String(), w)
		}
	}
	// Never below zero.
	a = DefaultThresholds().Allocatable(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("50Mi")})
	if q := a[corev1.ResourceMemory]; q.Sign() != 0 {
		t.Errorf("allocatable memory of 50Mi = %s, want 0", q.String())
	}
}

func TestPressureHold(t *testing.T) {
	h := pressureHold{period: 5 * time.Minute}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at       time.Duration
		observed Pressure
		want     Pressure
	}{
		{0, Pressure{}, Pressure{}},
		{time.Second, Pressure{Memory: true}, Pressure{Memory: true}},
		{2 * time.Minute, Pressure{Disk: true}, Pressure{Memory: true, Disk: true}},
		{5*time.Minute + time.Second, Pressure{}, Pressure{Disk: true}},
		{7*time.Minute + time.Second, Pressure{}, Pressure{}},
	}
	for _, s := range steps {
		if got := h.apply(t0.Add(s.at), s.observed); got != s.want {
			t.Fatalf("at %s observed %+v: got %+v, want %+v", s.at, s.observed, got, s.want)
		}
	}
}

func TestSetPressureCondition(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(1000, 0))
	t1 := metav1.NewTime(time.Unix(2000, 0))
	tests := []struct {
		name      string
		existing  *corev1.NodeCondition
		pressure  bool
		want      corev1.NodeCondition
		wantEvent string
	}{
		{"new, no pressure", nil, false,
			corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available", LastHeartbeatTime: t1, LastTransitionTime: t1},
			EventNodeHasSufficientMemory},
		{"new, pressure", nil, true,
			corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionTrue, Reason: "KubeletHasInsufficientMemory", Message: "kubelet has insufficient memory available", LastHeartbeatTime: t1, LastTransitionTime: t1},
			EventNodeHasInsufficientMemory},
		{"unchanged keeps its transition time",
			&corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available", LastHeartbeatTime: t0, LastTransitionTime: t0},
			false,
			corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available", LastHeartbeatTime: t1, LastTransitionTime: t0},
			""},
		{"Unknown from the lifecycle controller transitions back",
			&corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown", Message: "Kubelet stopped posting node status.", LastHeartbeatTime: t0, LastTransitionTime: t0},
			false,
			corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available", LastHeartbeatTime: t1, LastTransitionTime: t1},
			EventNodeHasSufficientMemory},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}
			if tt.existing != nil {
				st.Conditions = append(st.Conditions, *tt.existing)
			}
			ev := setPressureCondition(st, memoryText, tt.pressure, t1)
			if ev != tt.wantEvent {
				t.Errorf("event %q, want %q", ev, tt.wantEvent)
			}
			if len(st.Conditions) != 2 {
				t.Fatalf("conditions %+v", st.Conditions)
			}
			if got := st.Conditions[1]; got != tt.want {
				t.Fatalf("condition\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
	// Disk and PID wording.
	st := &corev1.NodeStatus{}
	setPressureCondition(st, diskText, true, t1)
	setPressureCondition(st, pidText, false, t1)
	if c := st.Conditions[0]; c.Reason != "KubeletHasDiskPressure" || c.Message != "kubelet has disk pressure" {
		t.Errorf("disk pressure %+v", c)
	}
	if c := st.Conditions[1]; c.Reason != "KubeletHasSufficientPID" || c.Message != "kubelet has sufficient PID available" {
		t.Errorf("pid %+v", c)
	}
}

func TestSetReadyCondition(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(1000, 0))
	t1 := metav1.NewTime(time.Unix(2000, 0))
	full := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi"),
		corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceEphemeralStorage: resource.MustParse("1Gi"),
	}
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: t0, LastTransitionTime: t0}
	tests := []struct {
		name      string
		capacity  corev1.ResourceList
		existing  *corev1.NodeCondition
		errs      []error
		want      corev1.NodeCondition
		wantEvent string
	}{
		{"first report", full, nil, nil,
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: t1, LastTransitionTime: t1}, ""},
		{"still ready", full, &ready, []error{nil},
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: t1, LastTransitionTime: t0}, ""},
		{"runtime down", full, &ready, []error{errors.New("container runtime is down")},
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", Message: "container runtime is down", LastHeartbeatTime: t1, LastTransitionTime: t1}, EventNodeNotReady},
		{"two errors", full, &ready, []error{errors.New("a"), nil, errors.New("b")},
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", Message: "[a, b]", LastHeartbeatTime: t1, LastTransitionTime: t1}, EventNodeNotReady},
		{"missing capacity", corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}, nil, nil,
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", Message: "missing node capacity for resources: memory, pods, ephemeral-storage", LastHeartbeatTime: t1, LastTransitionTime: t1}, ""},
		{"back from Unknown", full,
			&corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown", Message: "Kubelet stopped posting node status.", LastHeartbeatTime: t0, LastTransitionTime: t0}, nil,
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: t1, LastTransitionTime: t1}, EventNodeReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &corev1.NodeStatus{Capacity: tt.capacity}
			if tt.existing != nil {
				st.Conditions = []corev1.NodeCondition{*tt.existing}
			}
			ev := setReadyCondition(st, tt.errs, t1)
			if ev != tt.wantEvent {
				t.Errorf("event %q, want %q", ev, tt.wantEvent)
			}
			if len(st.Conditions) != 1 || st.Conditions[0] != tt.want {
				t.Fatalf("conditions\n got %+v\nwant %+v", st.Conditions, tt.want)
			}
		})
	}
}

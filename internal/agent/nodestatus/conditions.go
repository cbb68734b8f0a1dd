package nodestatus

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FSSignals describe a filesystem: bytes and inodes, total and available
// (to unprivileged users, as statfs's f_bavail).
type FSSignals struct {
	Capacity, Available int64
	Inodes, InodesFree  int64 // Inodes 0: the filesystem does not count them
}

// Signals are the kubelet's eviction signals the pressure conditions are
// computed from (pkg/kubelet/eviction/api): memory.available,
// nodefs.available/inodesFree, imagefs.available/inodesFree (a zero
// ImageFS is not measured) and pid.available.
type Signals struct {
	MemoryCapacity, MemoryAvailable int64
	NodeFS, ImageFS                 FSSignals
	PIDMax, PIDAvailable            int64
}

// Threshold is one hard eviction threshold: the signal is under pressure
// when it is below Quantity, or below Percentage of the capacity. The zero
// Threshold is disabled.
type Threshold struct {
	Quantity   int64
	Percentage float64 // 0.1 = 10%
}

// value is the threshold in the signal's unit for a given capacity.
func (t Threshold) value(capacity int64) int64 {
	if t.Percentage > 0 {
		return int64(float64(capacity) * t.Percentage)
	}
	return t.Quantity
}

// under tells whether available is below the threshold.
func (t Threshold) under(available, capacity int64) bool {
	if t == (Threshold{}) || capacity <= 0 {
		return false
	}
	return available < t.value(capacity)
}

// Thresholds are the kubelet's --eviction-hard thresholds.
type Thresholds struct {
	MemoryAvailable   Threshold
	NodeFSAvailable   Threshold
	NodeFSInodesFree  Threshold
	ImageFSAvailable  Threshold
	ImageFSInodesFree Threshold
	PIDAvailable      Threshold
}

// DefaultThresholds are the kubelet's Linux defaults (DefaultEvictionHard):
// memory.available<100Mi, nodefs.available<10%, nodefs.inodesFree<5%,
// imagefs.available<15%, imagefs.inodesFree<5%. There is no default
// pid.available threshold, so PIDPressure stays False unless one is set.
func DefaultThresholds() Thresholds {
	return Thresholds{
		MemoryAvailable:   Threshold{Quantity: 100 << 20},
		NodeFSAvailable:   Threshold{Percentage: 0.10},
		NodeFSInodesFree:  Threshold{Percentage: 0.05},
		ImageFSAvailable:  Threshold{Percentage: 0.15},
		ImageFSInodesFree: Threshold{Percentage: 0.05},
	}
}

// Pressure is which pressure conditions hold.
type Pressure struct {
	Memory, Disk, PID bool
}

// Pressure evaluates the thresholds against the signals.
func (t Thresholds) Pressure(s Signals) Pressure {
	return Pressure{
		Memory: t.MemoryAvailable.under(s.MemoryAvailable, s.MemoryCapacity),
		Disk: t.NodeFSAvailable.under(s.NodeFS.Available, s.NodeFS.Capacity) ||
			t.NodeFSInodesFree.under(s.NodeFS.InodesFree, s.NodeFS.Inodes) ||
			t.ImageFSAvailable.under(s.ImageFS.Available, s.ImageFS.Capacity) ||
			t.ImageFSInodesFree.under(s.ImageFS.InodesFree, s.ImageFS.Inodes),
		PID: t.PIDAvailable.under(s.PIDAvailable, s.PIDMax),
	}
}

// Reservation is what the hard eviction thresholds take out of allocatable
// (hardEvictionReservation of the kubelet's container manager): the
// memory.available threshold from memory and the nodefs.available one
// from ephemeral-storage. No system or kube reservation is configured.
func (t Thresholds) Reservation(capacity corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	add := func(name corev1.ResourceName, th Threshold) {
		if th == (Threshold{}) {
			return
		}
		c, ok := capacity[name]
		if !ok {
			return
		}
		out[name] = *resource.NewQuantity(th.value(c.Value()), resource.BinarySI)
	}
	add(corev1.ResourceMemory, t.MemoryAvailable)
	add(corev1.ResourceEphemeralStorage, t.NodeFSAvailable)
	return out
}

// pressureHold keeps a pressure condition true for the eviction pressure
// transition period (--eviction-pressure-transition-period, 5m) after it
// was last observed, so that it does not flap.
type pressureHold struct {
	period time.Duration
	last   map[corev1.NodeConditionType]time.Time
}

func (h *pressureHold) apply(now time.Time, observed Pressure) Pressure {
	if h.last == nil {
		h.last = map[corev1.NodeConditionType]time.Time{}
	}
	hold := func(t corev1.NodeConditionType, v bool) bool {
		if v {
			h.last[t] = now
			return true
		}
		last, ok := h.last[t]
		return ok && now.Sub(last) < h.period
	}
	return Pressure{
		Memory: hold(corev1.NodeMemoryPressure, observed.Memory),
		Disk:   hold(corev1.NodeDiskPressure, observed.Disk),
		PID:    hold(corev1.NodePIDPressure, observed.PID),
	}
}

// Event reasons of the kubelet (pkg/kubelet/events).
const (
	EventStarting                  = "Starting"
	EventNodeReady                 = "NodeReady"
	EventNodeNotReady              = "NodeNotReady"
	EventNodeHasSufficientMemory   = "NodeHasSufficientMemory"
	EventNodeHasInsufficientMemory = "NodeHasInsufficientMemory"
	EventNodeHasNoDiskPressure     = "NodeHasNoDiskPressure"
	EventNodeHasDiskPressure       = "NodeHasDiskPressure"
	EventNodeHasSufficientPID      = "NodeHasSufficientPID"
	EventNodeHasInsufficientPID    = "NodeHasInsufficientPID"
)

// pressureText is the wording of one pressure condition's two states.
type pressureText struct {
	typ                                   corev1.NodeConditionType
	trueReason, trueMessage, trueEvent    string
	falseReason, falseMessage, falseEvent string
}

var (
	memoryText = pressureText{corev1.NodeMemoryPressure,
		"KubeletHasInsufficientMemory", "kubelet has insufficient memory available", EventNodeHasInsufficientMemory,
		"KubeletHasSufficientMemory", "kubelet has sufficient memory available", EventNodeHasSufficientMemory}
	diskText = pressureText{corev1.NodeDiskPressure,
		"KubeletHasDiskPressure", "kubelet has disk pressure", EventNodeHasDiskPressure,
		"KubeletHasNoDiskPressure", "kubelet has no disk pressure", EventNodeHasNoDiskPressure}
	pidText = pressureText{corev1.NodePIDPressure,
		"KubeletHasInsufficientPID", "kubelet has insufficient PID available", EventNodeHasInsufficientPID,
		"KubeletHasSufficientPID", "kubelet has sufficient PID available", EventNodeHasSufficientPID}
)

// setPressureCondition is the kubelet's MemoryPressureCondition /
// DiskPressureCondition / PIDPressureCondition setter: the heartbeat is
// now; status, reason, message and transition time change only when the
// status does (a condition the node lifecycle controller set Unknown
// transitions back). It returns the event reason to record, or "".
func setPressureCondition(status *corev1.NodeStatus, text pressureText, pressure bool, now metav1.Time) (event string) {
	var cond *corev1.NodeCondition
	for i := range status.Conditions {
		if status.Conditions[i].Type == text.typ {
			cond = &status.Conditions[i]
		}
	}
	if cond == nil {
		status.Conditions = append(status.Conditions, corev1.NodeCondition{Type: text.typ, Status: corev1.ConditionUnknown})
		cond = &status.Conditions[len(status.Conditions)-1]
	}
	cond.LastHeartbeatTime = now
	switch {
	case pressure && cond.Status != corev1.ConditionTrue:
		cond.Status, cond.Reason, cond.Message, cond.LastTransitionTime = corev1.ConditionTrue, text.trueReason, text.trueMessage, now
		return text.trueEvent
	case !pressure && cond.Status != corev1.ConditionFalse:
		cond.Status, cond.Reason, cond.Message, cond.LastTransitionTime = corev1.ConditionFalse, text.falseReason, text.falseMessage, now
		return text.falseEvent
	}
	return ""
}

// requiredCapacities are those the kubelet will not be Ready without.
var requiredCapacities = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage}

// setReadyCondition is the kubelet's ReadyCondition setter: Ready=True
// "KubeletReady" unless one of errs is set or a required capacity is
// missing, then Ready=False "KubeletNotReady" with the errors joined as
// the message. It returns the event reason to record, or "".
func setReadyCondition(status *corev1.NodeStatus, errs []error, now metav1.Time) (event string) {
	var missing []string
	for _, r := range requiredCapacities {
		if _, ok := status.Capacity[r]; !ok {
			missing = append(missing, string(r))
		}
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("missing node capacity for resources: %s", strings.Join(missing, ", ")))
	}
	want := corev1.NodeCondition{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "KubeletReady", Message: "kubelet is posting ready status",
		LastHeartbeatTime: now,
	}
	if msg := aggregate(errs); msg != "" {
		want.Status, want.Reason, want.Message = corev1.ConditionFalse, "KubeletNotReady", msg
	}
	for i := range status.Conditions {
		c := &status.Conditions[i]
		if c.Type != corev1.NodeReady {
			continue
		}
		changed := c.Status != want.Status
		want.LastTransitionTime = c.LastTransitionTime
		if changed {
			want.LastTransitionTime = now
		}
		*c = want
		if !changed {
			return ""
		}
		if want.Status == corev1.ConditionTrue {
			return EventNodeReady
		}
		return EventNodeNotReady
	}
	want.LastTransitionTime = now
	status.Conditions = append(status.Conditions, want)
	return ""
}

// aggregate joins non-nil errors as utilerrors.NewAggregate prints them:
// one error as itself, several as "[a, b]".
func aggregate(errs []error) string {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	switch len(msgs) {
	case 0:
		return ""
	case 1:
		return msgs[0]
	}
	return "[" + strings.Join(msgs, ", ") + "]"
}

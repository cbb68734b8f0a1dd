package podworker

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/agent/prober"
	"github.com/skiff-dev/skiff/internal/podqos"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// Waiting reasons the kubelet reports (pkg/kubelet/container/sync_result.go,
// kuberuntime and images).
const (
	ReasonContainerCreating          = "ContainerCreating"
	ReasonPodInitializing            = "PodInitializing"
	ReasonErrImagePull               = "ErrImagePull"
	ReasonImagePullBackOff           = "ImagePullBackOff"
	ReasonErrImageNeverPull          = "ErrImageNeverPull"
	ReasonCreateContainerConfigError = "CreateContainerConfigError"
	ReasonCreateContainerError       = "CreateContainerError"
	ReasonRunContainerError          = "RunContainerError"
	ReasonCrashLoopBackOff           = prober.ReasonCrashLoopBackOff
)

// containerView is what status computation knows about one container of
// the pod spec: its newest instance, the one before, and why it waits.
type containerView struct {
	Name string
	// Image and ImageID as the status shows them (normalised name, repo
	// digest); empty until an image was resolved.
	Image, ImageID string
	// Current is the newest instance (nil: none yet), Last the one before.
	Current, Last       *runtime.State
	CurrentMsg, LastMsg string // termination messages
	RestartCount        int32
	Waiting             *corev1.ContainerStateWaiting
	Ready, Started      bool
	CurrentID, LastID   string
}

// statusInput is everything computePodStatus needs; it does no I/O.
type statusInput struct {
	Pod            *corev1.Pod
	Now            time.Time
	PodIPs         []string
	HostIPs        []string
	SandboxReady   bool
	Init           []containerView // in spec order
	Containers     []containerView // in spec order
	Initialized    bool            // the init plan (or an earlier sync) says so
	ForceTerminal  bool            // the pod's containers will not run again
	StartTimeIfNew time.Time
}

// mt is a time as the API stores it (whole seconds), so that computed
// statuses compare equal to what was written before.
func mt(t time.Time) metav1.Time {
	if t.IsZero() {
		return metav1.Time{}
	}
	return metav1.NewTime(t.Truncate(time.Second))
}

func runtimeID(id string) string {
	if id == "" {
		return ""
	}
	return "runc://" + id
}

// terminatedState is the kubelet's terminated state of an exited instance.
func terminatedState(st *runtime.State, id, msg string) *corev1.ContainerStateTerminated {
	reason := "Error"
	switch {
	case st.OOMKilled:
		reason = "OOMKilled"
	case st.ExitCode == 0:
		reason = "Completed"
	}
	started := st.StartedAt
	if started.IsZero() {
		started = st.CreatedAt
	}
	return &corev1.ContainerStateTerminated{
		ExitCode: int32(st.ExitCode), Reason: reason, Message: msg,
		StartedAt: mt(started), FinishedAt: mt(st.FinishedAt), ContainerID: runtimeID(id),
	}
}

func isExited(st *runtime.State) bool {
	return st != nil && (st.Status == runtime.StatusExited || st.Status == runtime.StatusUnknown)
}

// containerStatus is the kubelet's convertToAPIContainerStatuses for one
// container.
func containerStatus(v containerView, spec *corev1.Container, initialized, hasInit bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{
		Name: v.Name, Image: v.Image, ImageID: v.ImageID, RestartCount: v.RestartCount,
		Started: ptr.To(false),
	}
	if cs.Image == "" {
		cs.Image = spec.Image
	}
	if v.Current != nil {
		cs.ContainerID = runtimeID(v.CurrentID)
	}
	switch {
	case v.Current != nil && v.Current.Status == runtime.StatusRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: mt(v.Current.StartedAt)}
		cs.Ready, cs.Started = v.Ready, ptr.To(v.Started)
		if v.Last != nil && isExited(v.Last) {
			cs.LastTerminationState.Terminated = terminatedState(v.Last, v.LastID, v.LastMsg)
		}
	case v.Waiting != nil:
		cs.State.Waiting = v.Waiting.DeepCopy()
		if isExited(v.Current) {
			cs.LastTerminationState.Terminated = terminatedState(v.Current, v.CurrentID, v.CurrentMsg)
		}
	case isExited(v.Current):
		cs.State.Terminated = terminatedState(v.Current, v.CurrentID, v.CurrentMsg)
		if v.Last != nil && isExited(v.Last) {
			cs.LastTerminationState.Terminated = terminatedState(v.Last, v.LastID, v.LastMsg)
		}
	default:
		// Upstream's default waiting state: PodInitializing while a pod
		// with init containers is not initialized, else ContainerCreating.
		reason := ReasonContainerCreating
		if hasInit && !initialized {
			reason = ReasonPodInitializing
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason}
	}
	return cs
}

func findStatus(list []corev1.ContainerStatus, name string) (*corev1.ContainerStatus, bool) {
	for i := range list {
		if list[i].Name == name {
			return &list[i], true
		}
	}
	return nil, false
}

// podPhase is upstream's getPhase (pkg/kubelet/kubelet_pods.go).
func podPhase(pod *corev1.Pod, initStatuses, statuses []corev1.ContainerStatus, podIsTerminal bool) corev1.PodPhase {
	spec := &pod.Spec
	pendingRestartableInit, pendingRegularInit, failedInit := 0, 0, 0
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if prober.IsSidecar(c) {
			continue
		}
		cs, ok := findStatus(initStatuses, c.Name)
		if !ok {
			pendingRegularInit++
			continue
		}
		switch {
		case cs.State.Running != nil:
			pendingRegularInit++
		case cs.State.Terminated != nil:
			if cs.State.Terminated.ExitCode != 0 {
				failedInit++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				if cs.LastTerminationState.Terminated.ExitCode != 0 {
					failedInit++
				}
			} else {
				pendingRegularInit++
			}
		default:
			pendingRegularInit++
		}
	}
	unknown, running, waiting, stopped, succeeded := 0, 0, 0, 0, 0
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if !prober.IsSidecar(c) {
			continue
		}
		cs, ok := findStatus(initStatuses, c.Name)
		if !ok {
			unknown++
			continue
		}
		switch {
		case cs.State.Running != nil:
			if cs.Started == nil || !*cs.Started {
				pendingRestartableInit++
			}
			running++
		case cs.State.Terminated != nil:
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated == nil {
				pendingRestartableInit++
				waiting++
			}
		default:
			pendingRestartableInit++
			unknown++
		}
	}
	anyRegularStarted := false
	for i := range spec.Containers {
		cs, ok := findStatus(statuses, spec.Containers[i].Name)
		if !ok {
			unknown++
			continue
		}
		if cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil {
			anyRegularStarted = true
		}
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	if failedInit > 0 && spec.RestartPolicy == corev1.RestartPolicyNever {
		return corev1.PodFailed
	}
	switch {
	case pendingRegularInit > 0 || (pendingRestartableInit > 0 && !anyRegularStarted):
		return corev1.PodPending
	case waiting > 0:
		return corev1.PodPending
	case running > 0 && unknown == 0:
		return corev1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if podIsTerminal {
			if stopped == succeeded {
				return corev1.PodSucceeded
			}
			return corev1.PodFailed
		}
		if spec.RestartPolicy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	default:
		return corev1.PodPending
	}
}

// kubeletConditions are the condition types the kubelet owns; others (like
// PodScheduled, DisruptionTarget, readiness gates) are kept as they are.
var kubeletConditions = map[corev1.PodConditionType]bool{
	corev1.PodReadyToStartContainers: true, corev1.PodInitialized: true,
	corev1.ContainersReady: true, corev1.PodReady: true,
}

func names(list []string) string { return "[" + strings.Join(list, " ") + "]" }

// readyConditions are upstream's GenerateContainersReadyCondition and
// GeneratePodReadyCondition (pkg/kubelet/status/generate.go).
func readyConditions(pod *corev1.Pod, st *corev1.PodStatus) (containersReady, ready corev1.PodCondition) {
	containersReady = corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionFalse}
	ready = corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse}
	switch st.Phase {
	case corev1.PodSucceeded:
		containersReady.Reason, ready.Reason = "PodCompleted", "PodCompleted"
		return
	case corev1.PodFailed:
		containersReady.Reason, ready.Reason = "PodFailed", "PodFailed"
		return
	}
	var unknown, unready []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if !prober.IsSidecar(c) {
			continue
		}
		if cs, ok := findStatus(st.InitContainerStatuses, c.Name); !ok {
			unknown = append(unknown, c.Name)
		} else if !cs.Ready {
			unready = append(unready, c.Name)
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if cs, ok := findStatus(st.ContainerStatuses, c.Name); !ok {
			unknown = append(unknown, c.Name)
		} else if !cs.Ready {
			unready = append(unready, c.Name)
		}
	}
	var msgs []string
	if len(unknown) > 0 {
		msgs = append(msgs, "containers with unknown status: "+names(unknown))
	}
	if len(unready) > 0 {
		msgs = append(msgs, "containers with unready status: "+names(unready))
	}
	if len(msgs) > 0 {
		containersReady.Reason, containersReady.Message = "ContainersNotReady", strings.Join(msgs, ", ")
		ready.Reason, ready.Message = containersReady.Reason, containersReady.Message
		return
	}
	containersReady.Status = corev1.ConditionTrue
	var gates []string
	for _, g := range pod.Spec.ReadinessGates {
		var found *corev1.PodCondition
		for i := range st.Conditions {
			if st.Conditions[i].Type == g.ConditionType {
				found = &st.Conditions[i]
			}
		}
		switch {
		case found == nil:
			gates = append(gates, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", string(g.ConditionType)))
		case found.Status != corev1.ConditionTrue:
			gates = append(gates, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", string(g.ConditionType), found.Status))
		}
	}
	if len(gates) > 0 {
		ready.Reason, ready.Message = "ReadinessGatesNotReady", strings.Join(gates, ", ")
		return
	}
	ready.Status = corev1.ConditionTrue
	return
}

// initializedCondition is upstream's GeneratePodInitializedCondition.
func initializedCondition(pod *corev1.Pod, st *corev1.PodStatus, initialized bool) corev1.PodCondition {
	c := corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}
	if len(pod.Spec.InitContainers) == 0 {
		return c
	}
	if st.Phase == corev1.PodSucceeded {
		c.Reason = "PodCompleted"
		return c
	}
	if initialized {
		return c
	}
	var incomplete []string
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		cs, ok := findStatus(st.InitContainerStatuses, ic.Name)
		switch {
		case !ok:
			incomplete = append(incomplete, ic.Name)
		case prober.IsSidecar(ic):
			if cs.Started == nil || !*cs.Started {
				incomplete = append(incomplete, ic.Name)
			}
		case cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0:
			incomplete = append(incomplete, ic.Name)
		}
	}
	if len(incomplete) == 0 {
		return c
	}
	c.Status, c.Reason = corev1.ConditionFalse, "ContainersNotInitialized"
	c.Message = "containers with incomplete status: " + names(incomplete)
	return c
}

// computePodStatus is the kubelet's generateAPIPodStatus: the pod's status
// from what the worker knows, keeping the transition times of conditions
// whose status did not change and the conditions the kubelet does not own.
func computePodStatus(in statusInput) corev1.PodStatus {
	pod := in.Pod
	old := &pod.Status
	st := corev1.PodStatus{
		QOSClass:  old.QOSClass,
		StartTime: old.StartTime,
	}
	if st.QOSClass == "" {
		st.QOSClass = podqos.Of(pod)
	}
	if st.StartTime == nil && !in.StartTimeIfNew.IsZero() {
		t := mt(in.StartTimeIfNew)
		st.StartTime = &t
	}
	for _, ip := range in.HostIPs {
		st.HostIPs = append(st.HostIPs, corev1.HostIP{IP: ip})
	}
	if len(in.HostIPs) > 0 {
		st.HostIP = in.HostIPs[0]
	}
	podIPs := in.PodIPs
	if pod.Spec.HostNetwork {
		podIPs = in.HostIPs
	}
	for _, ip := range podIPs {
		st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(podIPs) > 0 {
		st.PodIP = podIPs[0]
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		st.InitContainerStatuses = append(st.InitContainerStatuses, containerStatus(in.Init[i], c, in.Initialized, true))
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		st.ContainerStatuses = append(st.ContainerStatuses, containerStatus(in.Containers[i], c, in.Initialized, len(pod.Spec.InitContainers) > 0))
	}
	st.Phase = podPhase(pod, st.InitContainerStatuses, st.ContainerStatuses, in.ForceTerminal)
	// A pod that reached a terminal phase stays there (the kubelet never
	// moves a pod back from Succeeded/Failed).
	if old.Phase == corev1.PodSucceeded || old.Phase == corev1.PodFailed {
		st.Phase = old.Phase
	}

	// Conditions: the ones the kubelet does not own first, as they were.
	for _, c := range old.Conditions {
		if !kubeletConditions[c.Type] {
			st.Conditions = append(st.Conditions, c)
		}
	}
	sandbox := corev1.PodCondition{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse}
	if in.SandboxReady {
		sandbox.Status = corev1.ConditionTrue
	}
	initCond := initializedCondition(pod, &st, in.Initialized)
	cr, ready := readyConditions(pod, &st)
	now := mt(in.Now)
	for _, c := range []corev1.PodCondition{sandbox, initCond, ready, cr} {
		c.LastTransitionTime = now
		for _, o := range old.Conditions {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
				c.LastProbeTime = o.LastProbeTime
			}
		}
		st.Conditions = append(st.Conditions, c)
	}
	return st
}

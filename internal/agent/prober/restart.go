package prober

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"
)

// Container restart back-off, as the kubelet: 10 s doubling to 5 min per
// (pod, container spec); the entry resets when the container ran for more
// than 2×max (10 min) since the back-off was last advanced.
const (
	BackoffInitial = 10 * time.Second
	BackoffMax     = 300 * time.Second
)

// ReasonCrashLoopBackOff is the waiting reason of a container in back-off.
const ReasonCrashLoopBackOff = "CrashLoopBackOff"

// ShouldRestart reports whether an exited container is to be started again
// under the pod's restartPolicy (kubelet ShouldContainerBeRestarted for a
// dead container): Never: no; OnFailure: only for a non-zero exit code;
// Always: yes. A pod being deleted restarts nothing (the caller checks).
func ShouldRestart(policy v1.RestartPolicy, exitCode int) bool {
	switch policy {
	case v1.RestartPolicyNever:
		return false
	case v1.RestartPolicyOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// Backoff tracks restart back-off per pod container (client-go's
// flowcontrol.Backoff, as the kubelet uses it). Safe for concurrent use.
type Backoff struct {
	b   *flowcontrol.Backoff
	clk clock.Clock
}

// NewBackoff returns the kubelet's container back-off (10 s → 300 s). clk
// may be nil (real clock).
func NewBackoff(clk clock.Clock) *Backoff {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Backoff{b: flowcontrol.NewFakeBackOff(BackoffInitial, BackoffMax, clk), clk: clk}
}

// Restart is the decision of [Backoff.Restart].
type Restart struct {
	// Now: start the container now (the back-off has been advanced).
	Now bool
	// Otherwise the container waits: After is how long until the back-off
	// ends (requeue the pod then) and Waiting the state to report.
	After   time.Duration
	Waiting *v1.ContainerStateWaiting
}

// Restart decides whether container c of pod, whose last instance exited at
// finishedAt and is to be restarted (see [ShouldRestart]), may start now.
// As kuberuntime's doBackOff: while the time since finishedAt is within the
// current back-off window the container waits with reason CrashLoopBackOff
// and message "back-off 20s restarting failed container=NAME
// pod=NAME_NAMESPACE(UID)"; otherwise the window is advanced (doubled, or
// reset after a long enough run) and the container starts.
//
// Call it once per sync for an exited container about to be restarted; a
// container that never ran starts without it.
func (b *Backoff) Restart(pod *v1.Pod, c *v1.Container, finishedAt time.Time) Restart {
	key := backoffKey(pod, c)
	if b.b.IsInBackOffSince(key, finishedAt) {
		d := b.b.Get(key)
		after := d - b.clk.Since(finishedAt)
		if after < 0 {
			after = 0
		}
		return Restart{After: after, Waiting: &v1.ContainerStateWaiting{
			Reason: ReasonCrashLoopBackOff,
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
				d, c.Name, pod.Name, pod.Namespace, pod.UID),
		}}
	}
	b.b.Next(key, finishedAt)
	return Restart{Now: true}
}

// Current returns the current back-off window for the container (0 if none).
func (b *Backoff) Current(pod *v1.Pod, c *v1.Container) time.Duration {
	return b.b.Get(backoffKey(pod, c))
}

// Forget drops the container's back-off (e.g. when its pod is removed).
func (b *Backoff) Forget(pod *v1.Pod, c *v1.Container) { b.b.DeleteEntry(backoffKey(pod, c)) }

// GC drops entries not advanced for 2×max; call it periodically.
func (b *Backoff) GC() { b.b.GC() }

// backoffKey is stable per pod container and spec, as the kubelet's
// getStableKey (name_namespace_uid_container_hash): a changed container
// spec starts a fresh back-off.
func backoffKey(pod *v1.Pod, c *v1.Container) string {
	h := fnv.New32a()
	if b, err := json.Marshal(c); err == nil {
		_, _ = h.Write(b)
	}
	return fmt.Sprintf("%s_%s_%s_%s_%x", pod.Name, pod.Namespace, pod.UID, c.Name, h.Sum32())
}

// ContainerState is the last known state of a pod container (its newest
// instance) as the pod worker tracks it.
type ContainerState struct {
	// Exists: an instance was created. False: never ran (or all GC'd).
	Exists   bool
	Running  bool
	ExitCode int
	// Started: running and startup probe passed (Manager.Started); for
	// sidecar init containers this gates the next init container.
	Started bool
}

// InitPlan is what to do next with a pod's init containers.
type InitPlan struct {
	// Start lists init containers to start now (or restart: subject to
	// Backoff for those that exited), in order.
	Start []string
	// Initialized: every regular init container has succeeded and every
	// sidecar has started; the app containers may run.
	Initialized bool
	// Failed: a regular init container failed under restartPolicy Never;
	// the pod's phase becomes Failed.
	Failed bool
	// FailedContainer names it.
	FailedContainer string
}

// IsSidecar reports whether an init container is a sidecar (restartPolicy
// Always on the container).
func IsSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

// PlanInit applies the kubelet's init container ordering to the states by
// container name: init containers run one at a time in order; a regular one
// must exit 0 before the next starts, and one that fails is restarted
// (OnFailure/Always, with back-off) or fails the pod (Never); a sidecar
// (restartPolicy Always) must be running and started before the next, and is
// restarted whenever it exits, whatever the pod's restartPolicy, also after
// the pod is initialized.
//
// initialized says the pod was already initialized (its Initialized
// condition is true): regular init containers are then not looked at again,
// only sidecars are kept running.
func PlanInit(pod *v1.Pod, states map[string]ContainerState, initialized bool) InitPlan {
	var p InitPlan
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		st := states[c.Name]
		if IsSidecar(c) {
			switch {
			case !st.Exists || !st.Running:
				p.Start = append(p.Start, c.Name)
				if !initialized {
					return p
				}
			case !st.Started && !initialized:
				return p
			}
			continue
		}
		if initialized {
			continue
		}
		switch {
		case !st.Exists:
			p.Start = append(p.Start, c.Name)
			return p
		case st.Running:
			return p
		case st.ExitCode == 0:
			continue
		case pod.Spec.RestartPolicy == v1.RestartPolicyNever:
			p.Failed, p.FailedContainer = true, c.Name
			return p
		default:
			p.Start = append(p.Start, c.Name)
			return p
		}
	}
	p.Initialized = true
	return p
}

// Package scheduler assigns unbound pods to nodes, as kube-scheduler's
// default profile does for the plugins skiff supports.
//
// The shape follows CONVENTIONS' "pure scheduler": filtering and scoring
// (filters.go, scores.go, schedule.go) are functions over a read-only
// Snapshot of nodes and what is already placed on them; the only writes are
// the pods/binding call and the PodScheduled=False status of pods that fit
// nowhere (scheduler.go). Between the two sits the cache (cache.go), which
// follows the informers and "assumes" each decision at once so that
// concurrent binds never overcommit a node, and the scheduling queue
// (queue.go) with kube-scheduler's active queue, backoff queue and
// unschedulable pool.
package scheduler

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Defaults for containers that request no cpu or memory, used only for
// scoring so that such pods still spread (upstream's
// DefaultMilliCPURequest and DefaultMemoryRequest).
const (
	defaultMilliCPURequest int64 = 100
	defaultMemoryRequest   int64 = 200 * 1024 * 1024
)

// Resource is an amount of every resource the filters compare.
type Resource struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	// AllowedPodNumber is only meaningful for a node's allocatable.
	AllowedPodNumber int64
	// Scalar holds extended resources, hugepages and anything else.
	Scalar map[corev1.ResourceName]int64
}

func (r *Resource) add(o *Resource) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
	r.EphemeralStorage += o.EphemeralStorage
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[corev1.ResourceName]int64{}
		}
		r.Scalar[k] += v
	}
}

func (r *Resource) sub(o *Resource) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
	r.EphemeralStorage -= o.EphemeralStorage
	for k, v := range o.Scalar {
		if r.Scalar != nil {
			r.Scalar[k] -= v
		}
	}
}

// setMax raises every amount in r to at least o's.
func (r *Resource) setMax(o *Resource) {
	r.MilliCPU = max(r.MilliCPU, o.MilliCPU)
	r.Memory = max(r.Memory, o.Memory)
	r.EphemeralStorage = max(r.EphemeralStorage, o.EphemeralStorage)
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[corev1.ResourceName]int64{}
		}
		if v > r.Scalar[k] {
			r.Scalar[k] = v
		}
	}
}

func (r *Resource) clone() Resource {
	c := *r
	if r.Scalar != nil {
		c.Scalar = make(map[corev1.ResourceName]int64, len(r.Scalar))
		for k, v := range r.Scalar {
			c.Scalar[k] = v
		}
	}
	return c
}

func (r *Resource) isZero() bool {
	if r.MilliCPU != 0 || r.Memory != 0 || r.EphemeralStorage != 0 {
		return false
	}
	for _, v := range r.Scalar {
		if v != 0 {
			return false
		}
	}
	return true
}

// resourceFromList converts a ResourceList; pods counts only when withPods
// (a node's allocatable).
func resourceFromList(rl corev1.ResourceList, withPods bool) Resource {
	var r Resource
	for name, q := range rl {
		switch name {
		case corev1.ResourceCPU:
			r.MilliCPU = q.MilliValue()
		case corev1.ResourceMemory:
			r.Memory = q.Value()
		case corev1.ResourceEphemeralStorage:
			r.EphemeralStorage = q.Value()
		case corev1.ResourcePods:
			if withPods {
				r.AllowedPodNumber = q.Value()
			}
		default:
			if r.Scalar == nil {
				r.Scalar = map[corev1.ResourceName]int64{}
			}
			r.Scalar[name] = q.Value()
		}
	}
	return r
}

// containerRequests is one container's requests; with nonZero, missing cpu
// and memory requests count as upstream's scoring defaults.
func containerRequests(c *corev1.Container, nonZero bool) Resource {
	r := resourceFromList(c.Resources.Requests, false)
	if nonZero {
		if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
			r.MilliCPU = defaultMilliCPURequest
		}
		if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
			r.Memory = defaultMemoryRequest
		}
	}
	return r
}

// podRequests computes what a pod asks of a node as upstream's
// resourcehelper.PodRequests does: the sum of its containers (plus sidecar
// init containers, which keep running) or the largest init container step,
// whichever is larger, plus the pod overhead. Pod-level requests
// (spec.resources), when given, replace the containers' cpu and memory.
func podRequests(pod *corev1.Pod, nonZero bool) Resource {
	var reqs Resource
	for i := range pod.Spec.Containers {
		c := containerRequests(&pod.Spec.Containers[i], nonZero)
		reqs.add(&c)
	}
	var sidecars, initMax Resource
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		c := containerRequests(ic, nonZero)
		if ic.RestartPolicy != nil && *ic.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			// A sidecar runs alongside the app containers and every
			// later init container.
			reqs.add(&c)
			sidecars.add(&c)
			step := sidecars.clone()
			initMax.setMax(&step)
			continue
		}
		step := c.clone()
		step.add(&sidecars)
		initMax.setMax(&step)
	}
	reqs.setMax(&initMax)
	if pr := pod.Spec.Resources; pr != nil {
		if q, ok := pr.Requests[corev1.ResourceCPU]; ok {
			reqs.MilliCPU = q.MilliValue()
		}
		if q, ok := pr.Requests[corev1.ResourceMemory]; ok {
			reqs.Memory = q.Value()
		}
	}
	if pod.Spec.Overhead != nil {
		o := resourceFromList(pod.Spec.Overhead, false)
		reqs.add(&o)
	}
	return reqs
}

// hostPort is one (ip, protocol, port) a pod binds on its node.
type hostPort struct {
	IP       string
	Protocol corev1.Protocol
	Port     int32
}

// podHostPorts lists the host ports of a pod's init and app containers,
// with upstream's defaults (IP 0.0.0.0, protocol TCP).
func podHostPorts(pod *corev1.Pod) []hostPort {
	var out []hostPort
	add := func(cs []corev1.Container) {
		for i := range cs {
			for _, p := range cs[i].Ports {
				if p.HostPort <= 0 {
					continue
				}
				hp := hostPort{IP: p.HostIP, Protocol: p.Protocol, Port: p.HostPort}
				if hp.IP == "" {
					hp.IP = "0.0.0.0"
				}
				if hp.Protocol == "" {
					hp.Protocol = corev1.ProtocolTCP
				}
				out = append(out, hp)
			}
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	return out
}

// PodInfo is a pod with what scheduling needs precomputed once.
type PodInfo struct {
	Pod *corev1.Pod
	// Requests is what the filters compare against allocatable;
	// NonZero is the same with upstream's defaults, for scoring.
	Requests Resource
	NonZero  Resource
	Ports    []hostPort
	// Owner is the UID of the controlling owner (ReplicaSet, …), used to
	// spread a workload's pods; empty for bare pods.
	Owner types.UID
}

// NewPodInfo precomputes a pod's requests, ports and owner.
func NewPodInfo(pod *corev1.Pod) *PodInfo {
	pi := &PodInfo{
		Pod:      pod,
		Requests: podRequests(pod, false),
		NonZero:  podRequests(pod, true),
		Ports:    podHostPorts(pod),
	}
	for _, ref := range pod.OwnerReferences {
		if ref.Controller != nil && *ref.Controller {
			pi.Owner = ref.UID
			break
		}
	}
	return pi
}

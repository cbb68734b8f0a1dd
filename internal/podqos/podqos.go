// Package podqos computes a pod's quality-of-service class, which the API
// server stores at create, kubectl describe prints and the agent uses to
// place the pod's cgroup. One definition keeps the three in step.
package podqos

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Of is the pod's status.qosClass when set, else Compute(pod) (upstream's
// qos.GetPodQOS).
func Of(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	return Compute(pod)
}

// Compute is upstream's ComputePodQOS (without pod-level resources): from
// the cpu and memory requests and limits of all containers and init
// containers. Guaranteed needs every container to have cpu and memory
// limits equal to its requests; BestEffort has none at all.
func Compute(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	all := append(append([]corev1.Container(nil), pod.Spec.Containers...), pod.Spec.InitContainers...)
	supported := func(n corev1.ResourceName) bool { return n == corev1.ResourceCPU || n == corev1.ResourceMemory }
	add := func(list corev1.ResourceList, n corev1.ResourceName, q resource.Quantity) {
		d := q.DeepCopy()
		if cur, ok := list[n]; ok {
			d.Add(cur)
		}
		list[n] = d
	}
	for _, c := range all {
		for n, q := range c.Resources.Requests {
			if supported(n) && q.Sign() > 0 {
				add(requests, n, q)
			}
		}
		found := map[corev1.ResourceName]bool{}
		for n, q := range c.Resources.Limits {
			if supported(n) && q.Sign() > 0 {
				found[n] = true
				add(limits, n, q)
			}
		}
		if !found[corev1.ResourceCPU] || !found[corev1.ResourceMemory] {
			guaranteed = false
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for n, req := range requests {
			if lim, ok := limits[n]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
				break
			}
		}
	}
	if guaranteed && len(requests) == len(limits) {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

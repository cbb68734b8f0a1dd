package podconfig

import (
	"path"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// QOSClass is upstream's qos.GetPodQOS (pkg/apis/core/v1/helper/qos): the
// pod's status.qosClass when set, else computed from the cpu and memory
// requests and limits of all containers and init containers.
func QOSClass(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	requests := corev1.ResourceList{}
	limits := corev1.ResourceList{}
	zero := resource.MustParse("0")
	guaranteed := true
	all := append(append([]corev1.Container{}, pod.Spec.Containers...), pod.Spec.InitContainers...)
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
			if supported(n) && q.Cmp(zero) == 1 {
				add(requests, n, q)
			}
		}
		found := map[corev1.ResourceName]bool{}
		for n, q := range c.Resources.Limits {
			if supported(n) && q.Cmp(zero) == 1 {
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

// DefaultCgroupRoot is the kubelet's default cgroup root for pods (cgroupfs
// driver).
const DefaultCgroupRoot = "/kubepods"

// PodCgroupParent is the cgroup under which the pod's containers go, named
// as the kubelet's cgroupfs driver does: ROOT/pod<uid> for Guaranteed,
// ROOT/burstable/pod<uid>, ROOT/besteffort/pod<uid>. The runtime puts each
// container at PodCgroupParent/<container id>. root "" means
// DefaultCgroupRoot.
func PodCgroupParent(root string, pod *corev1.Pod) string {
	if root == "" {
		root = DefaultCgroupRoot
	}
	return path.Join(root, PodCgroupName(pod))
}

// PodCgroupName is the pod's cgroup relative to the pods' root:
// "pod<uid>", "burstable/pod<uid>" or "besteffort/pod<uid>". (The runtime
// today has one CgroupParent for all containers, runtime.Options; a
// per-container or per-sandbox parent is needed to use this.)
func PodCgroupName(pod *corev1.Pod) string {
	name := "pod" + string(pod.UID)
	switch QOSClass(pod) {
	case corev1.PodQOSBurstable:
		return path.Join("burstable", name)
	case corev1.PodQOSBestEffort:
		return path.Join("besteffort", name)
	}
	return name
}

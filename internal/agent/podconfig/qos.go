package podconfig

import (
	"path"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-dev/skiff/internal/podqos"
)

// QOSClass is the pod's QoS class (podqos.Of: status.qosClass, else
// computed as upstream's GetPodQOS).
func QOSClass(pod *corev1.Pod) corev1.PodQOSClass { return podqos.Of(pod) }

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
// "pod<uid>", "burstable/pod<uid>" or "besteffort/pod<uid>" — what the
// agent passes as runtime.ContainerConfig.CgroupParent (under the runtime's
// own root, prefixed with the pods' root without its leading slash).
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

package podqos

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestCompute(t *testing.T) {
	rl := func(cpu, mem string) corev1.ResourceList {
		l := corev1.ResourceList{}
		if cpu != "" {
			l[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			l[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		return l
	}
	pod := func(cs ...corev1.ResourceRequirements) *corev1.Pod {
		p := &corev1.Pod{}
		for _, r := range cs {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Resources: r})
		}
		return p
	}
	for name, tc := range map[string]struct {
		pod  *corev1.Pod
		want corev1.PodQOSClass
	}{
		"none":              {pod(corev1.ResourceRequirements{}), corev1.PodQOSBestEffort},
		"zero requests":     {pod(corev1.ResourceRequirements{Requests: rl("0", "0")}), corev1.PodQOSBestEffort},
		"limits = requests": {pod(corev1.ResourceRequirements{Requests: rl("1", "1Gi"), Limits: rl("1", "1Gi")}), corev1.PodQOSGuaranteed},
		"limits only":       {pod(corev1.ResourceRequirements{Limits: rl("1", "1Gi")}), corev1.PodQOSBurstable}, // defaulting copies limits to requests; raw, it is Burstable
		"cpu only":          {pod(corev1.ResourceRequirements{Requests: rl("1", ""), Limits: rl("1", "")}), corev1.PodQOSBurstable},
		"one of two":        {pod(corev1.ResourceRequirements{Requests: rl("1", "1Gi"), Limits: rl("1", "1Gi")}, corev1.ResourceRequirements{}), corev1.PodQOSBurstable},
		"requests below":    {pod(corev1.ResourceRequirements{Requests: rl("500m", "1Gi"), Limits: rl("1", "1Gi")}), corev1.PodQOSBurstable},
	} {
		if got := Compute(tc.pod); got != tc.want {
			t.Errorf("%s: %s, want %s", name, got, tc.want)
		}
	}
	p := pod(corev1.ResourceRequirements{})
	p.Status.QOSClass = corev1.PodQOSGuaranteed
	if Of(p) != corev1.PodQOSGuaranteed {
		t.Error("Of ignores the stored class")
	}
}

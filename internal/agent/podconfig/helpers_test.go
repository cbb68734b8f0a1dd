package podconfig

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testPod(cs ...corev1.Container) *corev1.Pod {
	if len(cs) == 0 {
		cs = []corev1.Container{{Name: "c", Image: "busybox"}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-0", Namespace: "ns1", UID: "1234-abcd",
			Labels:      map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"note": "hello"},
		},
		Spec: corev1.PodSpec{NodeName: "node1", ServiceAccountName: "sa1", Containers: cs},
	}
}

func ptr[T any](v T) *T { return &v }

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func cmSources(cms ...*corev1.ConfigMap) MapSources {
	s := MapSources{ConfigMaps: map[string]*corev1.ConfigMap{}, Secrets: map[string]*corev1.Secret{}}
	for _, c := range cms {
		s.ConfigMaps[c.Namespace+"/"+c.Name] = c
	}
	return s
}

func (s MapSources) withSecret(sec *corev1.Secret) MapSources {
	s.Secrets[sec.Namespace+"/"+sec.Name] = sec
	return s
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				m[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	return m
}

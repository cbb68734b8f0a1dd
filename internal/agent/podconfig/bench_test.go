package podconfig

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkBuild is the per-container-start cost of Build for a pod with
// env from a ConfigMap, fieldRefs and service links.
func BenchmarkBuild(b *testing.B) {
	c := corev1.Container{Name: "c", Args: []string{"$(A)"},
		EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		Env:     []corev1.EnvVar{{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}
	pod := testPod(c)
	src := cmSources(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "cfg"}, Data: map[string]string{"A": "1", "B": "2"}})
	var svcs []*corev1.Service
	for i := 0; i < 20; i++ {
		svcs = append(svcs, svc("ns1", "svc-"+itoa(int64(i)), "10.43.0."+itoa(int64(i+2)), corev1.ServicePort{Port: 80}))
	}
	img := ImageConfig{Entrypoint: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}
	for b.Loop() {
		if _, err := Build(pod, &pod.Spec.Containers[0], img, src, Options{Services: svcs}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteVolumesUnchanged is the cost of a periodic sync that finds
// the kube-api-access volume up to date.
func BenchmarkWriteVolumesUnchanged(b *testing.B) {
	podDir := b.TempDir()
	pod := testPod()
	pod.Spec.Volumes = []corev1.Volume{kubeAPIAccess()}
	src := cmSources(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": "CA"}})
	opts := VolumeOptions{Token: func(context.Context, *corev1.Pod, string, int64) ([]byte, error) { return []byte("tok"), nil }}
	for b.Loop() {
		if _, err := WriteVolumes(context.Background(), podDir, pod, src, opts); err != nil {
			b.Fatal(err)
		}
	}
}

package apiserver

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// client-go's typed clients send DeleteOptions in their own group version
// ("apps/v1" for apps); the API accepts them in every served group.
func TestDeleteOptionsInResourceGroup(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "rs", Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
			},
		},
	}
	if _, err := env.client.AppsV1().ReplicaSets("default").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Foreground first: the finalizer holds the object…
	if err := env.client.AppsV1().ReplicaSets("default").Delete(ctx, "rs", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatalf("apps/v1 DeleteOptions refused: %v", err)
	}
	got, err := env.client.AppsV1().ReplicaSets("default").Get(ctx, "rs", metav1.GetOptions{})
	if err != nil || len(got.Finalizers) != 1 || got.Finalizers[0] != metav1.FinalizerDeleteDependents {
		t.Fatalf("after foreground delete: %v %v", got, err)
	}
	// …and an explicit background delete drops it, so the object goes.
	if err := env.client.AppsV1().ReplicaSets("default").Delete(ctx, "rs", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.client.AppsV1().ReplicaSets("default").Get(ctx, "rs", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("background delete left the object: %v", err)
	}
}

package openapi

import (
	"reflect"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Types the paths refer to beyond the resources' own kinds.
var (
	metav1Status        metav1.Status
	metav1DeleteOptions metav1.DeleteOptions
	metav1Patch         metav1.Patch
	metav1WatchEvent    metav1.WatchEvent
	autoscalingScale    autoscalingv1.Scale
	coreBinding         corev1.Binding
)

// typeOf is the struct type of v (a value or a pointer to one).
func typeOf(v any) reflect.Type {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

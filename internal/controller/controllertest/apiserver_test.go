package controllertest

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStart(t *testing.T) {
	api := Start(t)
	cc := api.Context(t)
	ctx := context.Background()
	cc.EventRecorder("test").Event(&corev1.ObjectReference{Kind: "Namespace", Name: "default", APIVersion: "v1"}, corev1.EventTypeNormal, "Tested", "hello")
	if _, err := api.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

package serviceaccount

import (
	"context"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The root CA publisher (kube-controller-manager's root-ca-cert-publisher,
// pkg/controller/certificates/rootcacertpublisher): every namespace has a
// kube-root-ca.crt ConfigMap holding the cluster CA, which the projected
// kube-api-access volume of every pod mounts as ca.crt.

const (
	// RootCACertConfigMapName is the ConfigMap published in every namespace.
	RootCACertConfigMapName = "kube-root-ca.crt"
	descriptionAnnotation   = "kubernetes.io/description"
	rootCADescription       = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. " +
		"No other usage is guaranteed across distributions of Kubernetes clusters."
)

// syncRootCA makes namespace ns's kube-root-ca.crt hold the CA.
func (c *Controller) syncRootCA(ctx context.Context, ns string) error {
	data := map[string]string{corev1.ServiceAccountRootCAKey: string(c.opts.RootCA)}
	cm, err := c.cmLister.ConfigMaps(ns).Get(RootCACertConfigMapName)
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.cc.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: RootCACertConfigMapName, Annotations: map[string]string{descriptionAnnotation: rootCADescription}},
			Data:       data,
		}, metav1.CreateOptions{})
		// A namespace that is gone or terminating needs nothing more.
		if err == nil || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) || apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil
		}
		return err
	case err != nil:
		return err
	}
	if maps.Equal(cm.Data, data) && cm.Annotations[descriptionAnnotation] != "" {
		return nil
	}
	cm = cm.DeepCopy()
	cm.Data = data
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[descriptionAnnotation] = rootCADescription
	_, err = c.cc.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

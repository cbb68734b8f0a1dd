package podconfig

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Sources resolves the ConfigMaps and Secrets a pod refers to (the kubelet's
// configMapManager/secretManager). The pod worker implements it over its
// informer caches. A missing object is reported as (nil, nil) or as an error
// for which apierrors.IsNotFound is true; any other error is passed through.
type Sources interface {
	ConfigMap(namespace, name string) (*corev1.ConfigMap, error)
	Secret(namespace, name string) (*corev1.Secret, error)
}

// MapSources is a Sources over fixed objects, keyed "namespace/name".
type MapSources struct {
	ConfigMaps map[string]*corev1.ConfigMap
	Secrets    map[string]*corev1.Secret
}

var _ Sources = MapSources{}

// ConfigMap implements Sources.
func (m MapSources) ConfigMap(namespace, name string) (*corev1.ConfigMap, error) {
	return m.ConfigMaps[namespace+"/"+name], nil
}

// Secret implements Sources.
func (m MapSources) Secret(namespace, name string) (*corev1.Secret, error) {
	return m.Secrets[namespace+"/"+name], nil
}

// TokenFunc returns a service-account token for the pod (the kubelet's token
// manager: a TokenRequest for pod.Spec.ServiceAccountName bound to the pod).
// audience is empty for the API server's default audiences; expirationSeconds
// is at least 600 (defaulted to 3600). The caller caches tokens and renews
// them before they expire (the kubelet: at 80% of their TTL, or after 24h);
// WriteVolumes rewrites the file when the returned token changes.
type TokenFunc func(ctx context.Context, pod *corev1.Pod, audience string, expirationSeconds int64) ([]byte, error)

// errNotFoundKubelet builds the error the kubelet's managers return for a
// missing object: `configmap "x" not found`, `secret "x" not found`.
func errNotFoundKubelet(resource, name string) error {
	return apierrors.NewNotFound(schema.GroupResource{Resource: resource}, name)
}

// getConfigMap returns (nil, nil) when the ConfigMap does not exist and
// optional is set, and the kubelet's NotFound error when it is required.
func getConfigMap(src Sources, ns, name string, optional bool) (*corev1.ConfigMap, error) {
	if src == nil {
		return nil, errors.New("podconfig: no Sources to resolve configmap " + ns + "/" + name)
	}
	cm, err := src.ConfigMap(ns, name)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if cm == nil || err != nil {
		if optional {
			return nil, nil
		}
		return nil, errNotFoundKubelet("configmap", name)
	}
	return cm, nil
}

func getSecret(src Sources, ns, name string, optional bool) (*corev1.Secret, error) {
	if src == nil {
		return nil, errors.New("podconfig: no Sources to resolve secret " + ns + "/" + name)
	}
	s, err := src.Secret(ns, name)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if s == nil || err != nil {
		if optional {
			return nil, nil
		}
		return nil, errNotFoundKubelet("secret", name)
	}
	return s, nil
}

func isTrue(b *bool) bool { return b != nil && *b }

package registry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
)

// The ServiceAccount admission plugin of pods, after
// plugin/pkg/admission/serviceaccount/admission.go (Kubernetes 1.33): on
// create, a pod without serviceAccountName gets "default"; the service
// account must exist (403 otherwise); unless automountServiceAccountToken
// (the pod's, else the service account's) is false, every init container and
// container that does not mount anything at /var/run/secrets/kubernetes.io/
// serviceaccount gets the projected kube-api-access-XXXXX volume there; a
// pod without imagePullSecrets gets the service account's; a service
// account annotated kubernetes.io/enforce-mountable-secrets=true limits the
// secrets the pod may reference to its own. Mirror pods are not changed and
// may reference neither service accounts nor secrets.
//
// It needs the stored ServiceAccount, so it runs only when Config.Objects
// is set (skiff server); without it only the serviceAccountName default of
// corePodAdmit applies, as a kube-apiserver started with
// --disable-admission-plugins=ServiceAccount (upstream's integration tests).

const (
	// DefaultServiceAccountName is the service account of pods that name none.
	DefaultServiceAccountName = "default"
	// ServiceAccountVolumeName prefixes the projected token volume's name.
	ServiceAccountVolumeName = "kube-api-access"
	// DefaultAPITokenMountPath is where containers find token, ca.crt and namespace.
	DefaultAPITokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	// EnforceMountableSecretsAnnotation on a ServiceAccount ("true") limits
	// its pods to the secrets it lists.
	EnforceMountableSecretsAnnotation = "kubernetes.io/enforce-mountable-secrets"
	// RootCAConfigMapName is the ConfigMap the root-ca publisher keeps in
	// every namespace.
	RootCAConfigMapName = "kube-root-ca.crt"
	// warnOnlyBoundTokenExpirationSeconds is the kubelet-style token lifetime
	// of the projected volume (serviceaccount.WarnOnlyBoundTokenExpirationSeconds).
	warnOnlyBoundTokenExpirationSeconds = 60*60 + 7
)

// ObjectGetter reads one stored object; *apiserver.Server implements it.
// A missing object is an apierrors NotFound error.
type ObjectGetter interface {
	GetObject(ctx context.Context, gr schema.GroupResource, namespace, name string) (runtime.Object, error)
}

// ObjectGetterFunc adapts a function to ObjectGetter (e.g. a closure over
// an API server built after the resources).
type ObjectGetterFunc func(ctx context.Context, gr schema.GroupResource, namespace, name string) (runtime.Object, error)

// GetObject calls f.
func (f ObjectGetterFunc) GetObject(ctx context.Context, gr schema.GroupResource, namespace, name string) (runtime.Object, error) {
	return f(ctx, gr, namespace, name)
}

// TokenVolumeSource is the projected volume the ServiceAccount admission
// adds: a 3607 s bound token, the cluster CA from kube-root-ca.crt and the
// pod's namespace, mode 0644.
func TokenVolumeSource() *corev1.ProjectedVolumeSource {
	mode := corev1.ProjectedVolumeSourceDefaultMode
	exp := int64(warnOnlyBoundTokenExpirationSeconds)
	return &corev1.ProjectedVolumeSource{
		DefaultMode: &mode,
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &exp}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: RootCAConfigMapName},
				Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
				Path:     "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
			}}}},
		},
	}
}

var podsGR = schema.GroupResource{Resource: "pods"}

// Admit is the ServiceAccount admission plugin (Admit, then Validate) for
// a pod being created.
func (s podStrategy) Admit(ctx context.Context, obj runtime.Object, name string) error {
	if s.objects == nil {
		return nil
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	forbid := func(err error) error { return apierrors.NewForbidden(podsGR, name, err) }
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return podValidateMirrorReferences(pod, forbid)
	}
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = DefaultServiceAccountName
	}
	pod.Spec.DeprecatedServiceAccount = pod.Spec.ServiceAccountName
	sa, err := s.getServiceAccount(ctx, pod.Namespace, pod.Spec.ServiceAccountName)
	if err != nil {
		return forbid(fmt.Errorf("error looking up service account %s/%s: %w", pod.Namespace, pod.Spec.ServiceAccountName, err))
	}
	if podShouldAutomount(sa, pod) {
		podMountServiceAccountToken(pod)
	}
	if len(pod.Spec.ImagePullSecrets) == 0 && len(sa.ImagePullSecrets) > 0 {
		pod.Spec.ImagePullSecrets = make([]corev1.LocalObjectReference, len(sa.ImagePullSecrets))
		for i, r := range sa.ImagePullSecrets {
			pod.Spec.ImagePullSecrets[i].Name = r.Name
		}
	}
	if enforceMountableSecrets(sa) {
		if err := podLimitSecretReferences(sa, pod); err != nil {
			return forbid(err)
		}
	}
	return nil
}

// podValidateMirrorReferences: mirror pods may not reference service
// accounts, secrets or service account token projections.
func podValidateMirrorReferences(pod *corev1.Pod, forbid func(error) error) error {
	if pod.Spec.ServiceAccountName != "" {
		return forbid(fmt.Errorf("a mirror pod may not reference service accounts"))
	}
	hasSecrets := false
	podSecretNames(pod, func(string) bool { hasSecrets = true; return false })
	if hasSecrets {
		return forbid(fmt.Errorf("a mirror pod may not reference secrets"))
	}
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil {
				return forbid(fmt.Errorf("a mirror pod may not use ServiceAccountToken volume projections"))
			}
		}
	}
	return nil
}

// getServiceAccount reads the service account; "default" is retried for
// a while (10 tries, 100–200 ms apart) because the serviceaccount
// controller creates it right after its namespace, as upstream does.
func (s podStrategy) getServiceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error) {
	attempts := 1
	if name == DefaultServiceAccountName {
		attempts = 10
	}
	interval := time.Duration(100+rand.N(100)) * time.Millisecond
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		obj, err := s.objects.GetObject(ctx, schema.GroupResource{Resource: "serviceaccounts"}, namespace, name)
		if err == nil {
			if sa, ok := obj.(*corev1.ServiceAccount); ok {
				return sa, nil
			}
			return nil, fmt.Errorf("unexpected object %T", obj)
		}
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccount"}, name)
}

// podShouldAutomount: the pod's automountServiceAccountToken wins, then
// the service account's; default true.
func podShouldAutomount(sa *corev1.ServiceAccount, pod *corev1.Pod) bool {
	if pod.Spec.AutomountServiceAccountToken != nil {
		return *pod.Spec.AutomountServiceAccountToken
	}
	if sa.AutomountServiceAccountToken != nil {
		return *sa.AutomountServiceAccountToken
	}
	return true
}

func enforceMountableSecrets(sa *corev1.ServiceAccount) bool {
	v, ok := sa.Annotations[EnforceMountableSecretsAnnotation]
	if !ok {
		return false
	}
	b, _ := strconv.ParseBool(v)
	return b
}

// podMountServiceAccountToken adds the token volume (reusing an existing
// kube-api-access-* volume) and its read-only mount to every init
// container and container without a mount at DefaultAPITokenMountPath.
func podMountServiceAccountToken(pod *corev1.Pod) {
	volName, hasVolume := "", false
	for _, v := range pod.Spec.Volumes {
		if strings.HasPrefix(v.Name, ServiceAccountVolumeName+"-") {
			volName, hasVolume = v.Name, true
			break
		}
	}
	if volName == "" {
		volName = ServiceAccountVolumeName + "-" + utilrand.String(5)
	}
	mount := corev1.VolumeMount{Name: volName, ReadOnly: true, MountPath: DefaultAPITokenMountPath}
	needsVolume := false
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if !hasMountAt(cs[i].VolumeMounts, DefaultAPITokenMountPath) {
				cs[i].VolumeMounts = append(cs[i].VolumeMounts, mount)
				needsVolume = true
			}
		}
	}
	if !hasVolume && needsVolume {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
			Name: volName, VolumeSource: corev1.VolumeSource{Projected: TokenVolumeSource()}})
	}
}

func hasMountAt(mounts []corev1.VolumeMount, path string) bool {
	for _, m := range mounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}

// podLimitSecretReferences: with enforce-mountable-secrets, the pod may use
// only the secrets (volumes, env, envFrom) and image pull secrets the
// service account lists.
func podLimitSecretReferences(sa *corev1.ServiceAccount, pod *corev1.Pod) error {
	mountable := map[string]bool{}
	for _, s := range sa.Secrets {
		mountable[s.Name] = true
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil && !mountable[v.Secret.SecretName] {
			return fmt.Errorf("volume with secret.secretName=\"%s\" is not allowed because service account %s does not reference that secret", v.Secret.SecretName, sa.Name)
		}
	}
	check := func(kind string, cs []corev1.Container) error {
		for _, c := range cs {
			for _, env := range c.Env {
				if env.ValueFrom != nil && env.ValueFrom.SecretKeyRef != nil && !mountable[env.ValueFrom.SecretKeyRef.Name] {
					return fmt.Errorf("%s %s with envVar %s referencing secret.secretName=\"%s\" is not allowed because service account %s does not reference that secret", kind, c.Name, env.Name, env.ValueFrom.SecretKeyRef.Name, sa.Name)
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.SecretRef != nil && !mountable[ef.SecretRef.Name] {
					return fmt.Errorf("%s %s with envFrom referencing secret.secretName=\"%s\" is not allowed because service account %s does not reference that secret", kind, c.Name, ef.SecretRef.Name, sa.Name)
				}
			}
		}
		return nil
	}
	if err := check("init container", pod.Spec.InitContainers); err != nil {
		return err
	}
	if err := check("container", pod.Spec.Containers); err != nil {
		return err
	}
	pull := map[string]bool{}
	for _, s := range sa.ImagePullSecrets {
		pull[s.Name] = true
	}
	for i, r := range pod.Spec.ImagePullSecrets {
		if !pull[r.Name] {
			return fmt.Errorf(`imagePullSecrets[%d].name="%s" is not allowed because service account %s does not reference that imagePullSecret`, i, r.Name, sa.Name)
		}
	}
	return nil
}

// podSecretNames calls visit with the name of every Secret the pod refers
// to (upstream's podutil.VisitpodSecretNames over all containers), until
// visit returns false.
func podSecretNames(pod *corev1.Pod, visit func(name string) bool) bool {
	for _, r := range pod.Spec.ImagePullSecrets {
		if !visit(r.Name) {
			return false
		}
	}
	containers := func(cs []corev1.Container) bool {
		for _, c := range cs {
			for _, ef := range c.EnvFrom {
				if ef.SecretRef != nil && !visit(ef.SecretRef.Name) {
					return false
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !visit(e.ValueFrom.SecretKeyRef.Name) {
					return false
				}
			}
		}
		return true
	}
	if !containers(pod.Spec.InitContainers) || !containers(pod.Spec.Containers) {
		return false
	}
	for _, ec := range pod.Spec.EphemeralContainers {
		c := corev1.Container{Env: ec.Env, EnvFrom: ec.EnvFrom}
		if !containers([]corev1.Container{c}) {
			return false
		}
	}
	for _, v := range pod.Spec.Volumes {
		src := v.VolumeSource
		var names []string
		switch {
		case src.AzureFile != nil:
			names = append(names, src.AzureFile.SecretName)
		case src.CephFS != nil && src.CephFS.SecretRef != nil:
			names = append(names, src.CephFS.SecretRef.Name)
		case src.Cinder != nil && src.Cinder.SecretRef != nil:
			names = append(names, src.Cinder.SecretRef.Name)
		case src.FlexVolume != nil && src.FlexVolume.SecretRef != nil:
			names = append(names, src.FlexVolume.SecretRef.Name)
		case src.Projected != nil:
			for _, p := range src.Projected.Sources {
				if p.Secret != nil {
					names = append(names, p.Secret.Name)
				}
			}
		case src.RBD != nil && src.RBD.SecretRef != nil:
			names = append(names, src.RBD.SecretRef.Name)
		case src.Secret != nil:
			names = append(names, src.Secret.SecretName)
		case src.ScaleIO != nil && src.ScaleIO.SecretRef != nil:
			names = append(names, src.ScaleIO.SecretRef.Name)
		case src.ISCSI != nil && src.ISCSI.SecretRef != nil:
			names = append(names, src.ISCSI.SecretRef.Name)
		case src.StorageOS != nil && src.StorageOS.SecretRef != nil:
			names = append(names, src.StorageOS.SecretRef.Name)
		case src.CSI != nil && src.CSI.NodePublishSecretRef != nil:
			names = append(names, src.CSI.NodePublishSecretRef.Name)
		}
		for _, n := range names {
			if !visit(n) {
				return false
			}
		}
	}
	return true
}

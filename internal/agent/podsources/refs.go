package podsources

import corev1 "k8s.io/api/core/v1"

// Kinds of the objects a pod refers to, as OnChange names them.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
)

// ref is one object a pod refers to.
type ref struct {
	kind, namespace, name string
}

// podRefs returns the ConfigMaps and Secrets pod refers to, each once:
// volumes (configMap, secret, projected sources and the secretRefs of the
// other volume plugins), env valueFrom and envFrom of every init, regular
// and ephemeral container, and imagePullSecrets (upstream's
// podutil.VisitPodConfigmapNames / VisitPodSecretNames).
func podRefs(pod *corev1.Pod) []ref {
	seen := map[ref]bool{}
	var out []ref
	add := func(kind, name string) {
		if name == "" {
			return
		}
		r := ref{kind: kind, namespace: pod.Namespace, name: name}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	for _, s := range pod.Spec.ImagePullSecrets {
		add(KindSecret, s.Name)
	}
	envs := func(env []corev1.EnvVar, from []corev1.EnvFromSource) {
		for _, ef := range from {
			if ef.ConfigMapRef != nil {
				add(KindConfigMap, ef.ConfigMapRef.Name)
			}
			if ef.SecretRef != nil {
				add(KindSecret, ef.SecretRef.Name)
			}
		}
		for _, e := range env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add(KindConfigMap, r.Name)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add(KindSecret, r.Name)
			}
		}
	}
	for _, c := range pod.Spec.InitContainers {
		envs(c.Env, c.EnvFrom)
	}
	for _, c := range pod.Spec.Containers {
		envs(c.Env, c.EnvFrom)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		envs(c.Env, c.EnvFrom)
	}
	for _, v := range pod.Spec.Volumes {
		src := v.VolumeSource
		switch {
		case src.ConfigMap != nil:
			add(KindConfigMap, src.ConfigMap.Name)
		case src.Secret != nil:
			add(KindSecret, src.Secret.SecretName)
		case src.Projected != nil:
			for _, p := range src.Projected.Sources {
				if p.ConfigMap != nil {
					add(KindConfigMap, p.ConfigMap.Name)
				}
				if p.Secret != nil {
					add(KindSecret, p.Secret.Name)
				}
			}
		case src.AzureFile != nil:
			add(KindSecret, src.AzureFile.SecretName)
		case src.CephFS != nil && src.CephFS.SecretRef != nil:
			add(KindSecret, src.CephFS.SecretRef.Name)
		case src.Cinder != nil && src.Cinder.SecretRef != nil:
			add(KindSecret, src.Cinder.SecretRef.Name)
		case src.FlexVolume != nil && src.FlexVolume.SecretRef != nil:
			add(KindSecret, src.FlexVolume.SecretRef.Name)
		case src.RBD != nil && src.RBD.SecretRef != nil:
			add(KindSecret, src.RBD.SecretRef.Name)
		case src.ScaleIO != nil && src.ScaleIO.SecretRef != nil:
			add(KindSecret, src.ScaleIO.SecretRef.Name)
		case src.ISCSI != nil && src.ISCSI.SecretRef != nil:
			add(KindSecret, src.ISCSI.SecretRef.Name)
		case src.StorageOS != nil && src.StorageOS.SecretRef != nil:
			add(KindSecret, src.StorageOS.SecretRef.Name)
		case src.CSI != nil && src.CSI.NodePublishSecretRef != nil:
			add(KindSecret, src.CSI.NodePublishSecretRef.Name)
		}
	}
	return out
}

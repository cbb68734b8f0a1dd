package registry

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Defaults of core/v1 pod specs, as pkg/apis/core/v1/defaults.go and the
// generated defaulters apply them to every PodSpec (pods and the pod
// templates of deployments, replicasets, …). Pod-only defaults live in
// pod.go.

// defaultPodSpec applies SetDefaults_PodSpec and the defaults of everything
// nested in a PodSpec (containers, ports, probes, volumes, …).
func defaultPodSpec(spec *corev1.PodSpec) {
	if spec.DNSPolicy == "" {
		spec.DNSPolicy = corev1.DNSClusterFirst
	}
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if spec.SecurityContext == nil {
		spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	if spec.TerminationGracePeriodSeconds == nil {
		p := int64(corev1.DefaultTerminationGracePeriodSeconds)
		spec.TerminationGracePeriodSeconds = &p
	}
	if spec.SchedulerName == "" {
		spec.SchedulerName = corev1.DefaultSchedulerName
	}
	coreRoundResources(spec.Overhead)
	if spec.Resources != nil {
		coreRoundResources(spec.Resources.Limits)
		coreRoundResources(spec.Resources.Requests)
	}
	for i := range spec.Volumes {
		coreDefaultVolume(&spec.Volumes[i])
	}
	for i := range spec.InitContainers {
		coreDefaultContainer(&spec.InitContainers[i])
	}
	for i := range spec.Containers {
		coreDefaultContainer(&spec.Containers[i])
	}
	for i := range spec.EphemeralContainers {
		c := (*corev1.Container)(&spec.EphemeralContainers[i].EphemeralContainerCommon)
		coreDefaultContainer(c)
	}
}

// coreDefaultContainer is SetDefaults_Container plus the defaults of the
// container's ports, env sources and probes.
func coreDefaultContainer(c *corev1.Container) {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = coreDefaultPullPolicy(c.Image)
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	for i := range c.Env {
		if vf := c.Env[i].ValueFrom; vf != nil && vf.FieldRef != nil && vf.FieldRef.APIVersion == "" {
			vf.FieldRef.APIVersion = "v1"
		}
	}
	coreRoundResources(c.Resources.Limits)
	coreRoundResources(c.Resources.Requests)
	coreDefaultProbe(c.LivenessProbe)
	coreDefaultProbe(c.ReadinessProbe)
	coreDefaultProbe(c.StartupProbe)
	if l := c.Lifecycle; l != nil {
		coreDefaultHandler(l.PostStart)
		coreDefaultHandler(l.PreStop)
	}
}

func coreDefaultHandler(h *corev1.LifecycleHandler) {
	if h != nil {
		coreDefaultHTTPGet(h.HTTPGet)
	}
}

func coreDefaultHTTPGet(a *corev1.HTTPGetAction) {
	if a == nil {
		return
	}
	if a.Path == "" {
		a.Path = "/"
	}
	if a.Scheme == "" {
		a.Scheme = corev1.URISchemeHTTP
	}
}

// coreDefaultProbe is SetDefaults_Probe.
func coreDefaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	coreDefaultHTTPGet(p.HTTPGet)
}

// coreDefaultVolume is SetDefaults_Volume and the volume source defaults.
func coreDefaultVolume(v *corev1.Volume) {
	vs := &v.VolumeSource
	if coreVolumeSourceCount(vs) == 0 {
		vs.EmptyDir = &corev1.EmptyDirVolumeSource{}
	}
	mode := func(m **int32) {
		if *m == nil {
			d := int32(0644)
			*m = &d
		}
	}
	if vs.ConfigMap != nil {
		mode(&vs.ConfigMap.DefaultMode)
	}
	if vs.Secret != nil {
		mode(&vs.Secret.DefaultMode)
	}
	if vs.DownwardAPI != nil {
		mode(&vs.DownwardAPI.DefaultMode)
		for i := range vs.DownwardAPI.Items {
			if fr := vs.DownwardAPI.Items[i].FieldRef; fr != nil && fr.APIVersion == "" {
				fr.APIVersion = "v1"
			}
		}
	}
	if vs.Projected != nil {
		mode(&vs.Projected.DefaultMode)
		for i := range vs.Projected.Sources {
			s := &vs.Projected.Sources[i]
			if s.ServiceAccountToken != nil && s.ServiceAccountToken.ExpirationSeconds == nil {
				e := int64(3600)
				s.ServiceAccountToken.ExpirationSeconds = &e
			}
			if s.DownwardAPI != nil {
				for j := range s.DownwardAPI.Items {
					if fr := s.DownwardAPI.Items[j].FieldRef; fr != nil && fr.APIVersion == "" {
						fr.APIVersion = "v1"
					}
				}
			}
		}
	}
	if vs.HostPath != nil && vs.HostPath.Type == nil {
		t := corev1.HostPathUnset
		vs.HostPath.Type = &t
	}
	if vs.Image != nil && vs.Image.PullPolicy == "" {
		vs.Image.PullPolicy = coreDefaultPullPolicy(vs.Image.Reference)
	}
}

// coreDefaultPullPolicy: Always for ":latest" (or no tag), else
// IfNotPresent.
func coreDefaultPullPolicy(image string) corev1.PullPolicy {
	if coreImageTag(image) == "latest" {
		return corev1.PullAlways
	}
	return corev1.PullIfNotPresent
}

// coreRoundResources is SetDefaults_ResourceList: quantities are rounded
// up to milli precision.
func coreRoundResources(l corev1.ResourceList) {
	for k, v := range l {
		v.RoundUp(-3)
		l[k] = v
	}
}

// coreImageTag returns the tag of an image reference as
// k8s.io/kubernetes/pkg/util/parsers.ParseImageName would: "latest" when
// there is neither tag nor digest, "" when there is a digest.
func coreImageTag(image string) string {
	if image == "" || strings.Contains(image, "@") {
		return ""
	}
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.LastIndex(name, ":"); i >= 0 {
		return name[i+1:]
	}
	return "latest"
}

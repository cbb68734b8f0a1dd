package kubectl

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-dev/skiff/internal/podqos"
)

func describePodObject(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	pod := &corev1.Pod{}
	if err := fromUnstructured(u, pod); err != nil {
		return "", err
	}
	// Pods' events are searched without the kind (mirror pods' events
	// carry the static pod's UID).
	ref := eventRef{namespace: pod.Namespace, name: pod.Name, uid: pod.UID}
	if m, ok := pod.Annotations[corev1.MirrorPodAnnotationKey]; ok {
		ref.uid = types.UID(m)
	}
	events := d.events(ref)
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", pod.Name)
		w.Write(level0, "Namespace:\t%s\n", pod.Namespace)
		if pod.Spec.Priority != nil {
			w.Write(level0, "Priority:\t%d\n", *pod.Spec.Priority)
		}
		if pod.Spec.PriorityClassName != "" {
			w.Write(level0, "Priority Class Name:\t%s\n", pod.Spec.PriorityClassName)
		}
		if pod.Spec.RuntimeClassName != nil && *pod.Spec.RuntimeClassName != "" {
			w.Write(level0, "Runtime Class Name:\t%s\n", *pod.Spec.RuntimeClassName)
		}
		if pod.Spec.ServiceAccountName != "" {
			w.Write(level0, "Service Account:\t%s\n", pod.Spec.ServiceAccountName)
		}
		if pod.Spec.NodeName == "" {
			w.Write(level0, "Node:\t<none>\n")
		} else {
			w.Write(level0, "Node:\t%s\n", pod.Spec.NodeName+"/"+pod.Status.HostIP)
		}
		if pod.Status.StartTime != nil {
			w.Write(level0, "Start Time:\t%s\n", formatTime(*pod.Status.StartTime))
		}
		printLabelsMultiline(w, "Labels", pod.Labels)
		printAnnotationsMultiline(w, "Annotations", pod.Annotations)
		if pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodFailed && pod.Status.Phase != corev1.PodSucceeded {
			w.Write(level0, "Status:\tTerminating (lasts %s)\n", translateTimestampSince(*pod.DeletionTimestamp))
			grace := int64(0)
			if pod.DeletionGracePeriodSeconds != nil {
				grace = *pod.DeletionGracePeriodSeconds
			}
			w.Write(level0, "Termination Grace Period:\t%ds\n", grace)
		} else {
			w.Write(level0, "Status:\t%s\n", string(pod.Status.Phase))
		}
		if pod.Status.Reason != "" {
			w.Write(level0, "Reason:\t%s\n", pod.Status.Reason)
		}
		if pod.Status.Message != "" {
			w.Write(level0, "Message:\t%s\n", pod.Status.Message)
		}
		if sc := pod.Spec.SecurityContext; sc != nil && sc.SeccompProfile != nil {
			w.Write(level0, "SeccompProfile:\t%s\n", sc.SeccompProfile.Type)
			if sc.SeccompProfile.Type == corev1.SeccompProfileTypeLocalhost && sc.SeccompProfile.LocalhostProfile != nil {
				w.Write(level0, "LocalhostProfile:\t%s\n", *sc.SeccompProfile.LocalhostProfile)
			}
		}
		w.Write(level0, "IP:\t%s\n", pod.Status.PodIP)
		if len(pod.Status.PodIPs) == 0 {
			w.Write(level0, "IPs:\t<none>\n")
		} else {
			w.Write(level0, "IPs:\n")
			for _, ip := range pod.Status.PodIPs {
				w.Write(level1, "IP:\t%s\n", ip.IP)
			}
		}
		if c := printController(pod); c != "" {
			w.Write(level0, "Controlled By:\t%s\n", c)
		}
		if pod.Status.NominatedNodeName != "" {
			w.Write(level0, "NominatedNodeName:\t%s\n", pod.Status.NominatedNodeName)
		}
		if len(pod.Spec.InitContainers) > 0 {
			describeContainers("Init Containers", pod.Spec.InitContainers, pod.Status.InitContainerStatuses, pod, w, "")
		}
		describeContainers("Containers", pod.Spec.Containers, pod.Status.ContainerStatuses, pod, w, "")
		if len(pod.Spec.ReadinessGates) > 0 {
			w.Write(level0, "Readiness Gates:\n  Type\tStatus\n")
			for _, g := range pod.Spec.ReadinessGates {
				status := "<none>"
				for _, c := range pod.Status.Conditions {
					if c.Type == g.ConditionType {
						status = string(c.Status)
						break
					}
				}
				w.Write(level1, "%v \t%v \n", g.ConditionType, status)
			}
		}
		if len(pod.Status.Conditions) > 0 {
			w.Write(level0, "Conditions:\n  Type\tStatus\n")
			for _, c := range pod.Status.Conditions {
				w.Write(level1, "%v \t%v \n", c.Type, c.Status)
			}
		}
		describeVolumes(pod.Spec.Volumes, w, "")
		w.Write(level0, "QoS Class:\t%s\n", podqos.Of(pod))
		printLabelsMultiline(w, "Node-Selectors", pod.Spec.NodeSelector)
		printTolerationsMultiline(w, "", "Tolerations", pod.Spec.Tolerations)
		describeTopologySpreadConstraints(pod.Spec.TopologySpreadConstraints, w, "")
		describeEvents(events, w)
		return nil
	})
}

func describeTopologySpreadConstraints(tscs []corev1.TopologySpreadConstraint, w *prefixWriter, space string) {
	if len(tscs) == 0 {
		return
	}
	tscs = append([]corev1.TopologySpreadConstraint(nil), tscs...)
	sort.Slice(tscs, func(i, j int) bool { return tscs[i].TopologyKey < tscs[j].TopologyKey })
	w.Write(level0, "%sTopology Spread Constraints:\t", space)
	for i, tsc := range tscs {
		if i != 0 {
			w.Write(level0, "%s", space)
			w.Write(level0, "%s", "\t")
		}
		w.Write(level0, "%s:", tsc.TopologyKey)
		w.Write(level0, "%v", tsc.WhenUnsatisfiable)
		w.Write(level0, " when max skew %d is exceeded", tsc.MaxSkew)
		if tsc.LabelSelector != nil {
			w.Write(level0, " for selector %s", metav1.FormatLabelSelector(tsc.LabelSelector))
		}
		w.Write(level0, "\n")
	}
}

// describePodTemplate is kubectl's DescribePodTemplate (deployments,
// replicasets and rollout history use it).
func describePodTemplate(t *corev1.PodTemplateSpec, w *prefixWriter) {
	w.Write(level0, "Pod Template:\n")
	if t == nil {
		w.Write(level1, "<unset>")
		return
	}
	printLabelsMultiline(w, "  Labels", t.Labels)
	if len(t.Annotations) > 0 {
		printAnnotationsMultiline(w, "  Annotations", t.Annotations)
	}
	if t.Spec.ServiceAccountName != "" {
		w.Write(level1, "Service Account:\t%s\n", t.Spec.ServiceAccountName)
	}
	if len(t.Spec.InitContainers) > 0 {
		describeContainers("Init Containers", t.Spec.InitContainers, nil, nil, w, "  ")
	}
	describeContainers("Containers", t.Spec.Containers, nil, nil, w, "  ")
	describeVolumes(t.Spec.Volumes, w, "  ")
	describeTopologySpreadConstraints(t.Spec.TopologySpreadConstraints, w, "  ")
	if t.Spec.PriorityClassName != "" {
		w.Write(level1, "Priority Class Name:\t%s\n", t.Spec.PriorityClassName)
	}
	printLabelsMultiline(w, "  Node-Selectors", t.Spec.NodeSelector)
	printTolerationsMultiline(w, "  ", "Tolerations", t.Spec.Tolerations)
}

func describeContainers(label string, containers []corev1.Container, statuses []corev1.ContainerStatus, pod *corev1.Pod, w *prefixWriter, space string) {
	byName := map[string]corev1.ContainerStatus{}
	for _, s := range statuses {
		byName[s.Name] = s
	}
	none := ""
	if len(containers) == 0 {
		none = " <none>"
	}
	w.Write(level0, "%s%s:%s\n", space, label, none)
	for _, c := range containers {
		status, ok := byName[c.Name]
		nameIndent := ""
		if space != "" {
			nameIndent = " "
		}
		w.Write(level1, "%s%v:\n", nameIndent, c.Name)
		if ok {
			w.Write(level2, "Container ID:\t%s\n", status.ContainerID)
		}
		w.Write(level2, "Image:\t%s\n", c.Image)
		if ok {
			w.Write(level2, "Image ID:\t%s\n", status.ImageID)
		}
		ports := containerPorts(c.Ports, false)
		if strings.Contains(ports, ",") {
			w.Write(level2, "Ports:\t%s\n", ports)
		} else {
			w.Write(level2, "Port:\t%s\n", stringOrNone(ports))
		}
		hostPorts := containerPorts(c.Ports, true)
		if strings.Contains(hostPorts, ",") {
			w.Write(level2, "Host Ports:\t%s\n", hostPorts)
		} else {
			w.Write(level2, "Host Port:\t%s\n", stringOrNone(hostPorts))
		}
		if c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil {
			w.Write(level2, "SeccompProfile:\t%s\n", c.SecurityContext.SeccompProfile.Type)
			if c.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeLocalhost && c.SecurityContext.SeccompProfile.LocalhostProfile != nil {
				w.Write(level3, "LocalhostProfile:\t%s\n", *c.SecurityContext.SeccompProfile.LocalhostProfile)
			}
		}
		if len(c.Command) > 0 {
			w.Write(level2, "Command:\n")
			for _, s := range c.Command {
				for _, line := range strings.Split(s, "\n") {
					w.Write(level3, "%s\n", line)
				}
			}
		}
		if len(c.Args) > 0 {
			w.Write(level2, "Args:\n")
			for _, s := range c.Args {
				for _, line := range strings.Split(s, "\n") {
					w.Write(level3, "%s\n", line)
				}
			}
		}
		if ok {
			describeContainerState("State", status.State, w)
			if status.LastTerminationState.Terminated != nil {
				describeContainerState("Last State", status.LastTerminationState, w)
			}
			w.Write(level2, "Ready:\t%v\n", printBool(status.Ready))
			w.Write(level2, "Restart Count:\t%d\n", status.RestartCount)
		}
		describeResources(&c.Resources, w, level2)
		if c.LivenessProbe != nil {
			w.Write(level2, "Liveness:\t%s\n", describeProbe(c.LivenessProbe))
		}
		if c.ReadinessProbe != nil {
			w.Write(level2, "Readiness:\t%s\n", describeProbe(c.ReadinessProbe))
		}
		if c.StartupProbe != nil {
			w.Write(level2, "Startup:\t%s\n", describeProbe(c.StartupProbe))
		}
		if len(c.EnvFrom) > 0 {
			describeEnvFrom(c, w)
		}
		describeEnv(c, pod, w)
		describeMounts(c, w)
	}
}

func containerPorts(ports []corev1.ContainerPort, host bool) string {
	out := make([]string, 0, len(ports))
	for _, p := range ports {
		n := p.ContainerPort
		if host {
			n = p.HostPort
		}
		out = append(out, fmt.Sprintf("%d/%s", n, p.Protocol))
	}
	return strings.Join(out, ", ")
}

func describeContainerState(name string, s corev1.ContainerState, w *prefixWriter) {
	switch {
	case s.Running != nil:
		w.Write(level2, "%s:\tRunning\n", name)
		w.Write(level3, "Started:\t%v\n", formatTime(s.Running.StartedAt))
	case s.Waiting != nil:
		w.Write(level2, "%s:\tWaiting\n", name)
		if s.Waiting.Reason != "" {
			w.Write(level3, "Reason:\t%s\n", s.Waiting.Reason)
		}
	case s.Terminated != nil:
		w.Write(level2, "%s:\tTerminated\n", name)
		if s.Terminated.Reason != "" {
			w.Write(level3, "Reason:\t%s\n", s.Terminated.Reason)
		}
		if s.Terminated.Message != "" {
			w.Write(level3, "Message:\t%s\n", s.Terminated.Message)
		}
		w.Write(level3, "Exit Code:\t%d\n", s.Terminated.ExitCode)
		if s.Terminated.Signal > 0 {
			w.Write(level3, "Signal:\t%d\n", s.Terminated.Signal)
		}
		w.Write(level3, "Started:\t%s\n", formatTime(s.Terminated.StartedAt))
		w.Write(level3, "Finished:\t%s\n", formatTime(s.Terminated.FinishedAt))
	default:
		w.Write(level2, "%s:\tWaiting\n", name)
	}
}

func sortedResourceNames(l corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(l))
	for k := range l {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func describeResources(r *corev1.ResourceRequirements, w *prefixWriter, level int) {
	if len(r.Limits) > 0 {
		w.Write(level, "Limits:\n")
	}
	for _, n := range sortedResourceNames(r.Limits) {
		q := r.Limits[n]
		w.Write(level+1, "%s:\t%s\n", n, q.String())
	}
	if len(r.Requests) > 0 {
		w.Write(level, "Requests:\n")
	}
	for _, n := range sortedResourceNames(r.Requests) {
		q := r.Requests[n]
		w.Write(level+1, "%s:\t%s\n", n, q.String())
	}
}

func describeProbe(p *corev1.Probe) string {
	attrs := fmt.Sprintf("delay=%ds timeout=%ds period=%ds #success=%d #failure=%d", p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold)
	switch {
	case p.Exec != nil:
		return fmt.Sprintf("exec %v %s", p.Exec.Command, attrs)
	case p.HTTPGet != nil:
		u := &url.URL{Scheme: strings.ToLower(string(p.HTTPGet.Scheme)), Path: p.HTTPGet.Path}
		if len(p.HTTPGet.Port.String()) > 0 {
			u.Host = net.JoinHostPort(p.HTTPGet.Host, p.HTTPGet.Port.String())
		} else {
			u.Host = p.HTTPGet.Host
		}
		return fmt.Sprintf("http-get %s %s", u.String(), attrs)
	case p.TCPSocket != nil:
		return fmt.Sprintf("tcp-socket %s:%s %s", p.TCPSocket.Host, p.TCPSocket.Port.String(), attrs)
	case p.GRPC != nil:
		svc := ""
		if p.GRPC.Service != nil {
			svc = *p.GRPC.Service
		}
		return fmt.Sprintf("grpc <pod>:%d %s %s", p.GRPC.Port, svc, attrs)
	}
	return fmt.Sprintf("unknown %s", attrs)
}

func describeEnvFrom(c corev1.Container, w *prefixWriter) {
	w.Write(level2, "Environment Variables from:\n")
	for _, e := range c.EnvFrom {
		from, name, optional := "", "", false
		if e.ConfigMapRef != nil {
			from, name = "ConfigMap", e.ConfigMapRef.Name
			optional = e.ConfigMapRef.Optional != nil && *e.ConfigMapRef.Optional
		} else if e.SecretRef != nil {
			from, name = "Secret", e.SecretRef.Name
			optional = e.SecretRef.Optional != nil && *e.SecretRef.Optional
		}
		if e.Prefix == "" {
			w.Write(level3, "%s\t%s\tOptional: %t\n", name, from, optional)
		} else {
			w.Write(level3, "%s\t%s with prefix '%s'\tOptional: %t\n", name, from, e.Prefix, optional)
		}
	}
}

func describeEnv(c corev1.Container, pod *corev1.Pod, w *prefixWriter) {
	none := ""
	if len(c.Env) == 0 {
		none = "\t<none>"
	}
	w.Write(level2, "Environment:%s\n", none)
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			for i, s := range strings.Split(e.Value, "\n") {
				if i == 0 {
					w.Write(level3, "%s:\t%s\n", e.Name, s)
				} else {
					w.Write(level3, "\t%s\n", s)
				}
			}
			continue
		}
		switch vf := e.ValueFrom; {
		case vf.FieldRef != nil:
			val := ""
			if pod != nil {
				val = podFieldValue(pod, vf.FieldRef.FieldPath)
			}
			w.Write(level3, "%s:\t%s (%s:%s)\n", e.Name, val, vf.FieldRef.APIVersion, vf.FieldRef.FieldPath)
		case vf.ResourceFieldRef != nil:
			val := containerResourceValue(vf.ResourceFieldRef, &c)
			res := vf.ResourceFieldRef.Resource
			if val == "0" && (res == "limits.cpu" || res == "limits.memory") {
				val = "node allocatable"
			}
			w.Write(level3, "%s:\t%s (%s)\n", e.Name, val, res)
		case vf.SecretKeyRef != nil:
			opt := vf.SecretKeyRef.Optional != nil && *vf.SecretKeyRef.Optional
			w.Write(level3, "%s:\t<set to the key '%s' in secret '%s'>\tOptional: %t\n", e.Name, vf.SecretKeyRef.Key, vf.SecretKeyRef.Name, opt)
		case vf.ConfigMapKeyRef != nil:
			opt := vf.ConfigMapKeyRef.Optional != nil && *vf.ConfigMapKeyRef.Optional
			w.Write(level3, "%s:\t<set to the key '%s' of config map '%s'>\tOptional: %t\n", e.Name, vf.ConfigMapKeyRef.Key, vf.ConfigMapKeyRef.Name, opt)
		}
	}
}

// podFieldValue resolves the downward-API fields a pod's env may use.
func podFieldValue(pod *corev1.Pod, path string) string {
	switch path {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	case "metadata.uid":
		return string(pod.UID)
	case "spec.nodeName":
		return pod.Spec.NodeName
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName
	case "status.hostIP":
		return pod.Status.HostIP
	case "status.podIP":
		return pod.Status.PodIP
	case "status.podIPs":
		var ips []string
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ",")
	case "status.hostIPs":
		var ips []string
		for _, ip := range pod.Status.HostIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ",")
	}
	for _, prefix := range []string{"metadata.labels['", "metadata.annotations['"} {
		if strings.HasPrefix(path, prefix) && strings.HasSuffix(path, "']") {
			key := strings.TrimSuffix(strings.TrimPrefix(path, prefix), "']")
			if strings.HasPrefix(prefix, "metadata.labels") {
				return pod.Labels[key]
			}
			return pod.Annotations[key]
		}
	}
	return ""
}

// containerResourceValue mirrors kubectl's ExtractContainerResourceValue.
func containerResourceValue(fs *corev1.ResourceFieldSelector, c *corev1.Container) string {
	divisor := resource.Quantity{}
	if divisor.Cmp(fs.Divisor) == 0 {
		divisor = resource.MustParse("1")
	} else {
		divisor = fs.Divisor
	}
	var q resource.Quantity
	switch fs.Resource {
	case "limits.cpu":
		q = c.Resources.Limits[corev1.ResourceCPU]
		return fmt.Sprint(int64(ceilDiv(q.MilliValue(), divisor.MilliValue())))
	case "requests.cpu":
		q = c.Resources.Requests[corev1.ResourceCPU]
		return fmt.Sprint(int64(ceilDiv(q.MilliValue(), divisor.MilliValue())))
	case "limits.memory":
		q = c.Resources.Limits[corev1.ResourceMemory]
	case "requests.memory":
		q = c.Resources.Requests[corev1.ResourceMemory]
	case "limits.ephemeral-storage":
		q = c.Resources.Limits[corev1.ResourceEphemeralStorage]
	case "requests.ephemeral-storage":
		q = c.Resources.Requests[corev1.ResourceEphemeralStorage]
	default:
		return ""
	}
	return fmt.Sprint(int64(ceilDiv(q.Value(), divisor.Value())))
}

func ceilDiv(a, b int64) int64 {
	if b == 0 {
		return 0
	}
	r := a / b
	if a%b != 0 {
		r++
	}
	return r
}

func describeMounts(c corev1.Container, w *prefixWriter) {
	none := ""
	if len(c.VolumeMounts) == 0 {
		none = "\t<none>"
	}
	w.Write(level2, "Mounts:%s\n", none)
	mounts := append([]corev1.VolumeMount(nil), c.VolumeMounts...)
	sort.Sort(byMountPath(mounts))
	for _, m := range mounts {
		flags := []string{"rw"}
		if m.ReadOnly {
			flags = []string{"ro"}
		}
		if m.SubPath != "" {
			flags = append(flags, fmt.Sprintf("path=%q", m.SubPath))
		}
		w.Write(level3, "%s from %s (%s)\n", m.MountPath, m.Name, strings.Join(flags, ","))
	}
	if len(c.VolumeDevices) > 0 {
		w.Write(level2, "Devices:%s\n", none)
		devs := append([]corev1.VolumeDevice(nil), c.VolumeDevices...)
		sort.Slice(devs, func(i, j int) bool { return devs[i].DevicePath < devs[j].DevicePath })
		for _, d := range devs {
			w.Write(level3, "%s from %s\n", d.DevicePath, d.Name)
		}
	}
}

// byMountPath is sort.Sort-ed like kubectl's SortableVolumeMounts.
type byMountPath []corev1.VolumeMount

func (l byMountPath) Len() int           { return len(l) }
func (l byMountPath) Swap(i, j int)      { l[i], l[j] = l[j], l[i] }
func (l byMountPath) Less(i, j int) bool { return l[i].MountPath < l[j].MountPath }

// describeVolumes covers the volume types a skiff workload can use; others
// print as upstream prints an unknown source.
func describeVolumes(volumes []corev1.Volume, w *prefixWriter, space string) {
	if len(volumes) == 0 {
		w.Write(level0, "%sVolumes:\t<none>\n", space)
		return
	}
	w.Write(level0, "%sVolumes:\n", space)
	for _, v := range volumes {
		nameIndent := ""
		if space != "" {
			nameIndent = " "
		}
		w.Write(level1, "%s%v:\n", nameIndent, v.Name)
		src := v.VolumeSource
		switch {
		case src.HostPath != nil:
			t := "<none>"
			if src.HostPath.Type != nil {
				t = string(*src.HostPath.Type)
			}
			w.Write(level2, "Type:\tHostPath (bare host directory volume)\n    Path:\t%v\n    HostPathType:\t%v\n", src.HostPath.Path, t)
		case src.EmptyDir != nil:
			limit := "<unset>"
			if src.EmptyDir.SizeLimit != nil && src.EmptyDir.SizeLimit.Cmp(resource.Quantity{}) > 0 {
				limit = fmt.Sprintf("%v", src.EmptyDir.SizeLimit)
			}
			w.Write(level2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t%v\n    SizeLimit:\t%v\n", src.EmptyDir.Medium, limit)
		case src.Secret != nil:
			opt := src.Secret.Optional != nil && *src.Secret.Optional
			w.Write(level2, "Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t%v\n    Optional:\t%v\n", src.Secret.SecretName, opt)
		case src.ConfigMap != nil:
			opt := src.ConfigMap.Optional != nil && *src.ConfigMap.Optional
			w.Write(level2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t%v\n    Optional:\t%v\n", src.ConfigMap.Name, opt)
		case src.PersistentVolumeClaim != nil:
			w.Write(level2, "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n    ClaimName:\t%v\n    ReadOnly:\t%v\n", src.PersistentVolumeClaim.ClaimName, src.PersistentVolumeClaim.ReadOnly)
		case src.DownwardAPI != nil:
			w.Write(level2, "Type:\tDownwardAPI (a volume populated by information about the pod)\n    Items:\n")
			for _, m := range src.DownwardAPI.Items {
				if m.FieldRef != nil {
					w.Write(level3, "%v -> %v\n", m.FieldRef.FieldPath, m.Path)
				}
				if m.ResourceFieldRef != nil {
					w.Write(level3, "%v -> %v\n", m.ResourceFieldRef.Resource, m.Path)
				}
			}
		case src.Projected != nil:
			w.Write(level2, "Type:\tProjected (a volume that contains injected data from multiple sources)\n")
			for _, s := range src.Projected.Sources {
				switch {
				case s.Secret != nil:
					opt := s.Secret.Optional != nil && *s.Secret.Optional
					w.Write(level2, "SecretName:\t%v\n    Optional:\t%v\n", s.Secret.Name, opt)
				case s.DownwardAPI != nil:
					w.Write(level2, "DownwardAPI:\ttrue\n")
				case s.ConfigMap != nil:
					opt := s.ConfigMap.Optional != nil && *s.ConfigMap.Optional
					w.Write(level2, "ConfigMapName:\t%v\n    Optional:\t%v\n", s.ConfigMap.Name, opt)
				case s.ServiceAccountToken != nil:
					exp := int64(0)
					if s.ServiceAccountToken.ExpirationSeconds != nil {
						exp = *s.ServiceAccountToken.ExpirationSeconds
					}
					w.Write(level2, "TokenExpirationSeconds:\t%d\n", exp)
				}
			}
		case src.NFS != nil:
			w.Write(level2, "Type:\tNFS (an NFS mount that lasts the lifetime of a pod)\n    Server:\t%v\n    Path:\t%v\n    ReadOnly:\t%v\n", src.NFS.Server, src.NFS.Path, src.NFS.ReadOnly)
		case src.CSI != nil:
			ro := false
			if src.CSI.ReadOnly != nil {
				ro = *src.CSI.ReadOnly
			}
			w.Write(level2, "Type:\tCSI (a Container Storage Interface (CSI) volume source)\n    Driver:\t%v\n    FSType:\t%v\n    ReadOnly:\t%v\n", src.CSI.Driver, ptrOr(src.CSI.FSType, ""), ro)
			printLabelsMultilineWithIndent(w, "    ", "VolumeAttributes", "\t", src.CSI.VolumeAttributes)
		default:
			w.Write(level1, "<unknown>\n")
		}
	}
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

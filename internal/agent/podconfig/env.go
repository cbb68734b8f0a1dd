package podconfig

import (
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// EnvVar is one resolved environment variable.
type EnvVar struct {
	Name, Value string
}

// orderedEnv keeps the first position of each name; a later definition
// replaces the value in place.
type orderedEnv struct {
	list  []EnvVar
	index map[string]int
}

func (e *orderedEnv) set(name, value string) {
	if e.index == nil {
		e.index = map[string]int{}
	}
	if i, ok := e.index[name]; ok {
		e.list[i].Value = value
		return
	}
	e.index[name] = len(e.list)
	e.list = append(e.list, EnvVar{name, value})
}

func (e *orderedEnv) m() map[string]string {
	out := make(map[string]string, len(e.list))
	for _, v := range e.list {
		out[v.Name] = v.Value
	}
	return out
}

// containerEnv is upstream's Kubelet.makeEnvironmentVariables: envFrom first
// (later sources override earlier ones), then env in order ($(VAR)
// expanded against the variables defined so far and the service
// variables; valueFrom resolved), then the service-link variables not
// already defined. Upstream collects the pod's variables in a map; here the
// order is kept: envFrom keys sorted per source, env in spec order,
// service variables sorted.
//
// envFrom keys: current upstream (1.30+, RelaxedEnvironmentVariableValidation)
// passes every key on; older kubelets skipped keys failing the strict
// C_IDENTIFIER-like rule and recorded an InvalidEnvironmentVariableNames
// event. Here keys are skipped (with that event's text as a warning) only
// when they cannot be a variable name at all under the relaxed rule (empty,
// '=', non-printable or non-ASCII), which a valid ConfigMap or Secret key
// never is; "1BAD" or "my.key" are passed on as upstream does today.
func containerEnv(pod *corev1.Pod, c *corev1.Container, src Sources, opts *Options) ([]EnvVar, []string, error) {
	var warnings []string
	serviceEnv := ServiceEnv(pod.Namespace, pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks, opts.Services)
	var env orderedEnv
	cms := map[string]*corev1.ConfigMap{}
	secrets := map[string]*corev1.Secret{}

	addFrom := func(kind, name, prefix string, data map[string]string) {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var invalid []string
		for _, k := range keys {
			name := prefix + k
			if len(validation.IsRelaxedEnvVarName(name)) != 0 {
				invalid = append(invalid, name)
				continue
			}
			env.set(name, data[k])
		}
		if len(invalid) > 0 {
			// The event message of upstream's makeEnvironmentVariables
			// (InvalidEnvironmentVariableNames).
			warnings = append(warnings, fmt.Sprintf("Keys [%s] from the EnvFrom %s %s/%s were skipped since they are considered invalid environment variable names.",
				strings.Join(invalid, ", "), kind, pod.Namespace, name))
		}
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, err := getConfigMap(src, pod.Namespace, ef.ConfigMapRef.Name, isTrue(ef.ConfigMapRef.Optional))
			if err != nil {
				return nil, nil, err
			}
			if cm == nil {
				continue
			}
			cms[cm.Name] = cm
			data := make(map[string]string, len(cm.Data))
			for k, v := range cm.Data {
				data[k] = v
			}
			addFrom("configMap", cm.Name, ef.Prefix, data)
		case ef.SecretRef != nil:
			s, err := getSecret(src, pod.Namespace, ef.SecretRef.Name, isTrue(ef.SecretRef.Optional))
			if err != nil {
				return nil, nil, err
			}
			if s == nil {
				continue
			}
			secrets[s.Name] = s
			data := make(map[string]string, len(s.Data)+len(s.StringData))
			for k, v := range s.Data {
				data[k] = string(v)
			}
			addFrom("secret", s.Name, ef.Prefix, data)
		}
	}

	for i := range c.Env {
		ev := &c.Env[i]
		val := ev.Value
		if val != "" {
			val = Expand(val, mappingFuncFor(env.m(), serviceEnv))
		} else if vf := ev.ValueFrom; vf != nil {
			var err error
			switch {
			case vf.FieldRef != nil:
				val, err = podFieldValue(vf.FieldRef.FieldPath, pod, opts.PodIPs, opts.HostIPs, true)
			case vf.ResourceFieldRef != nil:
				val, err = containerResourceValue(vf.ResourceFieldRef, c, opts.NodeAllocatable)
			case vf.ConfigMapKeyRef != nil:
				ref := vf.ConfigMapKeyRef
				optional := isTrue(ref.Optional)
				cm, ok := cms[ref.Name]
				if !ok {
					cm, err = getConfigMap(src, pod.Namespace, ref.Name, optional)
					if err != nil {
						return nil, nil, err
					}
					if cm == nil {
						continue
					}
					cms[ref.Name] = cm
				}
				v, found := cm.Data[ref.Key]
				if !found {
					if optional {
						continue
					}
					return nil, nil, fmt.Errorf("couldn't find key %v in ConfigMap %v/%v", ref.Key, pod.Namespace, ref.Name)
				}
				val = v
			case vf.SecretKeyRef != nil:
				ref := vf.SecretKeyRef
				optional := isTrue(ref.Optional)
				s, ok := secrets[ref.Name]
				if !ok {
					s, err = getSecret(src, pod.Namespace, ref.Name, optional)
					if err != nil {
						return nil, nil, err
					}
					if s == nil {
						continue
					}
					secrets[ref.Name] = s
				}
				v, found := s.Data[ref.Key]
				if !found {
					if optional {
						continue
					}
					return nil, nil, fmt.Errorf("couldn't find key %v in Secret %v/%v", ref.Key, pod.Namespace, ref.Name)
				}
				val = string(v)
			default:
				err = fmt.Errorf("env %s: unsupported valueFrom", ev.Name)
			}
			if err != nil {
				return nil, nil, err
			}
		}
		env.set(ev.Name, val)
	}

	svcKeys := make([]string, 0, len(serviceEnv))
	for k := range serviceEnv {
		if _, ok := env.index[k]; !ok {
			svcKeys = append(svcKeys, k)
		}
	}
	sort.Strings(svcKeys)
	for _, k := range svcKeys {
		env.list = append(env.list, EnvVar{k, serviceEnv[k]})
	}
	return env.list, warnings, nil
}

// ServiceEnv is upstream's Kubelet.getServiceEnvVarMap + envvars.FromServices:
// the Docker-link style variables of the Services in namespace ns (when
// enableServiceLinks) and, always, of the "kubernetes" Service in "default".
// Services without a cluster IP (headless, ExternalName) are skipped.
func ServiceEnv(ns string, enableServiceLinks bool, services []*corev1.Service) map[string]string {
	chosen := map[string]*corev1.Service{}
	for _, s := range services {
		if s == nil || s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		if s.Namespace == "default" && s.Name == "kubernetes" {
			if _, ok := chosen[s.Name]; !ok {
				chosen[s.Name] = s
			}
		} else if s.Namespace == ns && enableServiceLinks {
			chosen[s.Name] = s
		}
	}
	m := map[string]string{}
	for _, s := range chosen {
		for _, e := range serviceEnvVars(s) {
			m[e.Name] = e.Value
		}
	}
	return m
}

func envVarName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

// serviceEnvVars is upstream's envvars.FromServices for one Service.
func serviceEnvVars(s *corev1.Service) []EnvVar {
	prefix := envVarName(s.Name)
	ip := s.Spec.ClusterIP
	out := []EnvVar{
		{prefix + "_SERVICE_HOST", ip},
		{prefix + "_SERVICE_PORT", strconv.Itoa(int(s.Spec.Ports[0].Port))},
	}
	for _, p := range s.Spec.Ports {
		if p.Name != "" {
			out = append(out, EnvVar{prefix + "_SERVICE_PORT_" + envVarName(p.Name), strconv.Itoa(int(p.Port))})
		}
	}
	// makeLinkVariables: Docker-compatible variables.
	for i, p := range s.Spec.Ports {
		proto := string(corev1.ProtocolTCP)
		if p.Protocol != "" {
			proto = string(p.Protocol)
		}
		lproto := strings.ToLower(proto)
		hostPort := net.JoinHostPort(ip, strconv.Itoa(int(p.Port)))
		if i == 0 {
			out = append(out, EnvVar{prefix + "_PORT", lproto + "://" + hostPort})
		}
		pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
		out = append(out,
			EnvVar{pp, lproto + "://" + hostPort},
			EnvVar{pp + "_PROTO", lproto},
			EnvVar{pp + "_PORT", strconv.Itoa(int(p.Port))},
			EnvVar{pp + "_ADDR", ip},
		)
	}
	return out
}

// podFieldValue is upstream's Kubelet.podFieldSelectorRuntimeValue (env,
// withStatus) and fieldpath.ExtractFieldPathAsString (downward API volumes:
// metadata only).
func podFieldValue(fieldPath string, pod *corev1.Pod, podIPs, hostIPs []string, withStatus bool) (string, error) {
	if withStatus {
		switch fieldPath {
		case "spec.nodeName":
			return pod.Spec.NodeName, nil
		case "spec.serviceAccountName":
			return pod.Spec.ServiceAccountName, nil
		case "status.hostIP":
			if len(hostIPs) == 0 {
				return "", fmt.Errorf("failed to get host IP: no host IPs known")
			}
			return hostIPs[0], nil
		case "status.hostIPs":
			return strings.Join(hostIPs, ","), nil
		case "status.podIP":
			if len(podIPs) == 0 {
				return "", nil
			}
			return podIPs[0], nil
		case "status.podIPs":
			return strings.Join(podIPs, ","), nil
		}
	}
	if path, sub, ok := splitSubscript(fieldPath); ok {
		switch path {
		case "metadata.annotations":
			return pod.Annotations[sub], nil
		case "metadata.labels":
			return pod.Labels[sub], nil
		}
		return "", fmt.Errorf("fieldPath %q does not support subscript", fieldPath)
	}
	switch fieldPath {
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	}
	return "", fmt.Errorf("unsupported fieldPath: %v", fieldPath)
}

// splitSubscript is upstream's fieldpath.SplitMaybeSubscriptedPath.
func splitSubscript(fieldPath string) (string, string, bool) {
	if !strings.HasSuffix(fieldPath, "']") {
		return fieldPath, "", false
	}
	s := strings.TrimSuffix(fieldPath, "']")
	parts := strings.SplitN(s, "['", 2)
	if len(parts) < 2 || len(parts[0]) == 0 {
		return fieldPath, "", false
	}
	return parts[0], parts[1], true
}

// formatMap is upstream's fieldpath.FormatMap: key="value" lines, sorted.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%v=%q", k, m[k])
	}
	return b.String()
}

// containerResourceValue is upstream's
// resource.ExtractResourceValueByContainerNameAndNodeAllocatable for one
// container: limits default to the node's allocatable
// (MergeContainerResourceLimits), then ExtractContainerResourceValue.
func containerResourceValue(fs *corev1.ResourceFieldSelector, c *corev1.Container, allocatable corev1.ResourceList) (string, error) {
	limits := corev1.ResourceList{}
	for k, v := range c.Resources.Limits {
		limits[k] = v
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if _, ok := limits[r]; !ok {
			if v, ok := allocatable[r]; ok {
				limits[r] = v
			}
		}
	}
	divisor := resource.MustParse("1")
	if !fs.Divisor.IsZero() {
		divisor = fs.Divisor
	}
	cpu := func(q resource.Quantity) string {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10)
	}
	bytes := func(q resource.Quantity) string {
		return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10)
	}
	req := c.Resources.Requests
	switch fs.Resource {
	case "limits.cpu":
		return cpu(limits[corev1.ResourceCPU]), nil
	case "limits.memory":
		return bytes(limits[corev1.ResourceMemory]), nil
	case "limits.ephemeral-storage":
		return bytes(limits[corev1.ResourceEphemeralStorage]), nil
	case "requests.cpu":
		return cpu(req[corev1.ResourceCPU]), nil
	case "requests.memory":
		return bytes(req[corev1.ResourceMemory]), nil
	case "requests.ephemeral-storage":
		return bytes(req[corev1.ResourceEphemeralStorage]), nil
	}
	if r, ok := strings.CutPrefix(fs.Resource, "requests.hugepages-"); ok {
		return bytes(req[corev1.ResourceName("hugepages-"+r)]), nil
	}
	if r, ok := strings.CutPrefix(fs.Resource, "limits.hugepages-"); ok {
		return bytes(limits[corev1.ResourceName("hugepages-"+r)]), nil
	}
	return "", fmt.Errorf("unsupported container resource : %v", fs.Resource)
}

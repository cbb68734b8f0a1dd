package endpointslice

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilnet "k8s.io/utils/net"

	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/controller/endpoints/endpointutil"
)

// podToEndpoint builds the endpoint of pod for svc's addressType. Serving
// follows readiness; ready is never true for a terminating pod unless the
// Service publishes not-ready addresses (then it is always true).
func podToEndpoint(pod *corev1.Pod, node *corev1.Node, svc *corev1.Service, at discoveryv1.AddressType) discoveryv1.Endpoint {
	serving := controller.IsPodReady(pod)
	terminating := pod.DeletionTimestamp != nil
	ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
	ep := discoveryv1.Endpoint{
		Addresses: endpointAddresses(pod, at),
		Conditions: discoveryv1.EndpointConditions{
			Ready:       &ready,
			Serving:     &serving,
			Terminating: &terminating,
		},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if pod.Spec.NodeName != "" {
		n := pod.Spec.NodeName
		ep.NodeName = &n
	}
	if node != nil && node.Labels[corev1.LabelTopologyZone] != "" {
		z := node.Labels[corev1.LabelTopologyZone]
		ep.Zone = &z
	}
	if endpointutil.ShouldSetHostname(pod, svc) {
		h := pod.Spec.Hostname
		ep.Hostname = &h
	}
	return ep
}

// endpointAddresses returns the pod's IPs of address type at, normalised.
func endpointAddresses(pod *corev1.Pod, at discoveryv1.AddressType) []string {
	var out []string
	for _, s := range endpointutil.PodIPs(pod) {
		ip := utilnet.ParseIPSloppy(s)
		if ip == nil {
			continue
		}
		if utilnet.IsIPv6(ip) == (at == discoveryv1.AddressTypeIPv6) {
			out = append(out, ip.String())
		}
	}
	return out
}

// endpointPorts resolves svc's ports on pod; ports whose (named) targetPort
// the pod lacks are left out. The result is in canonical order.
func endpointPorts(svc *corev1.Service, pod *corev1.Pod) []discoveryv1.EndpointPort {
	ports := []discoveryv1.EndpointPort{}
	if len(svc.Spec.Ports) == 0 && svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return ports
	}
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		num, err := endpointutil.FindPort(pod, sp)
		if err != nil {
			continue
		}
		name, proto := sp.Name, sp.Protocol
		ports = append(ports, discoveryv1.EndpointPort{Name: &name, Port: &num, Protocol: &proto, AppProtocol: sp.AppProtocol})
	}
	slices.SortFunc(ports, func(a, b discoveryv1.EndpointPort) int { return cmp.Compare(portString(a), portString(b)) })
	return ports
}

func strOr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func portString(p discoveryv1.EndpointPort) string {
	proto := ""
	if p.Protocol != nil {
		proto = string(*p.Protocol)
	}
	num := int32(0)
	if p.Port != nil {
		num = *p.Port
	}
	return strconv.Quote(strOr(p.Name)) + " " + strconv.Quote(proto) + " " + strconv.Itoa(int(num)) + " " + strconv.Quote(strOr(p.AppProtocol))
}

// portsKey identifies a set of endpoint ports regardless of order (and of
// nil vs empty strings, which the API treats alike): slices are grouped by
// it, as upstream groups by a port-map hash.
type portsKey string

func portsKeyOf(ports []discoveryv1.EndpointPort) portsKey {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = portString(p)
	}
	slices.Sort(s)
	return portsKey(strings.Join(s, ","))
}

// endpointKey identifies an endpoint by addresses, hostname and target pod:
// everything else (conditions, node, zone) is updated in place.
type endpointKey string

func endpointKeyOf(ep *discoveryv1.Endpoint) endpointKey {
	addrs := slices.Clone(ep.Addresses)
	slices.Sort(addrs)
	var b strings.Builder
	for _, a := range addrs {
		b.WriteString(a)
		b.WriteByte(',')
	}
	b.WriteByte('|')
	b.WriteString(strOr(ep.Hostname))
	b.WriteByte('|')
	if ep.TargetRef != nil {
		b.WriteString(ep.TargetRef.Namespace)
		b.WriteByte('/')
		b.WriteString(ep.TargetRef.Name)
	}
	return endpointKey(b.String())
}

// endpointSet is a set of desired endpoints by key.
type endpointSet map[endpointKey]*discoveryv1.Endpoint

// popSorted removes and returns up to n endpoints in key order, so what
// goes into new slices is deterministic.
func (s endpointSet) popSorted(n int) []discoveryv1.Endpoint {
	keys := make([]endpointKey, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) > n {
		keys = keys[:n]
	}
	out := make([]discoveryv1.Endpoint, 0, len(keys))
	for _, k := range keys {
		out = append(out, *s[k])
		delete(s, k)
	}
	return out
}

// endpointsEqualBeyondKey compares what endpointKey leaves out, ignoring
// the target's resourceVersion.
func endpointsEqualBeyondKey(a, b *discoveryv1.Endpoint) bool {
	return strPtrEqual(a.NodeName, b.NodeName) && strPtrEqual(a.Zone, b.Zone) &&
		boolPtrEqual(a.Conditions.Ready, b.Conditions.Ready) &&
		boolPtrEqual(a.Conditions.Serving, b.Conditions.Serving) &&
		boolPtrEqual(a.Conditions.Terminating, b.Conditions.Terminating) &&
		endpointutil.SemanticIgnoreResourceVersion.DeepEqual(a.TargetRef, b.TargetRef)
}

func strPtrEqual(a, b *string) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func boolPtrEqual(a, b *bool) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// addressTypesForService returns the address types svc's slices carry: its
// IP families, or (for an old Service without families) the cluster IP's
// family, or both for a headless one.
func addressTypesForService(svc *corev1.Service) sets.Set[discoveryv1.AddressType] {
	out := sets.New[discoveryv1.AddressType]()
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			out.Insert(discoveryv1.AddressTypeIPv4)
		case corev1.IPv6Protocol:
			out.Insert(discoveryv1.AddressTypeIPv6)
		}
	}
	if out.Len() > 0 {
		return out
	}
	if endpointutil.IsServiceIPSet(svc) {
		if utilnet.IsIPv6String(svc.Spec.ClusterIP) {
			return out.Insert(discoveryv1.AddressTypeIPv6)
		}
		return out.Insert(discoveryv1.AddressTypeIPv4)
	}
	return out.Insert(discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6)
}

// slicePrefix is the generateName of svc's slices: "<service>-" unless that
// would be too long a name.
func slicePrefix(serviceName string) string {
	prefix := serviceName + "-"
	if len(apivalidation.NameIsDNSSubdomain(prefix, true)) != 0 {
		return serviceName
	}
	return prefix
}

// newSlice returns an empty EndpointSlice of svc with the given ports.
func newSlice(svc *corev1.Service, ports []discoveryv1.EndpointPort, at discoveryv1.AddressType) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    slicePrefix(svc.Name),
			Namespace:       svc.Namespace,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(svc, corev1.SchemeGroupVersion.WithKind("Service"))},
		},
		Ports:       ports,
		AddressType: at,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	s.Labels, _ = sliceLabels(s, svc)
	return s
}

func isReservedLabel(k string) bool {
	return k == discoveryv1.LabelServiceName || k == discoveryv1.LabelManagedBy || k == corev1.IsHeadlessService
}

// sliceLabels returns the labels the slice should carry (the Service's,
// minus reserved keys, plus service-name, managed-by and headless) and
// whether its non-reserved labels differ from the Service's.
func sliceLabels(s *discoveryv1.EndpointSlice, svc *corev1.Service) (map[string]string, bool) {
	have, want := map[string]string{}, map[string]string{}
	for k, v := range s.Labels {
		if !isReservedLabel(k) {
			have[k] = v
		}
	}
	for k, v := range svc.Labels {
		if !isReservedLabel(k) {
			want[k] = v
		}
	}
	changed := len(have) != len(want)
	if !changed {
		for k, v := range want {
			if hv, ok := have[k]; !ok || hv != v {
				changed = true
				break
			}
		}
	}
	if !endpointutil.IsServiceIPSet(svc) {
		want[corev1.IsHeadlessService] = ""
	}
	want[discoveryv1.LabelServiceName] = svc.Name
	want[discoveryv1.LabelManagedBy] = managedBy
	return want, changed
}

// ownedBy reports whether svc (this very object, by UID) owns the slice.
func ownedBy(s *discoveryv1.EndpointSlice, svc *corev1.Service) bool {
	for _, o := range s.OwnerReferences {
		if o.UID == svc.UID && o.Kind == "Service" && o.APIVersion == "v1" {
			return true
		}
	}
	return false
}

// isPlaceholder reports whether an existing slice is equivalent to the
// empty placeholder want (same namespace, labels, owners and address type,
// no ports or endpoints), so it need not be replaced.
func isPlaceholder(s, want *discoveryv1.EndpointSlice) bool {
	if s.Namespace != want.Namespace || s.AddressType != want.AddressType || len(s.Ports) != 0 || len(s.Endpoints) != 0 {
		return false
	}
	if len(s.Labels) != len(want.Labels) || len(s.OwnerReferences) != len(want.OwnerReferences) {
		return false
	}
	for k, v := range want.Labels {
		if hv, ok := s.Labels[k]; !ok || hv != v {
			return false
		}
	}
	for i := range want.OwnerReferences {
		if s.OwnerReferences[i].String() != want.OwnerReferences[i].String() {
			return false
		}
	}
	return true
}

// setTriggerTime sets or clears the last-change-trigger-time annotation.
func setTriggerTime(s *discoveryv1.EndpointSlice, t time.Time) {
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	if t.IsZero() {
		delete(s.Annotations, corev1.EndpointsLastChangeTriggerTime)
		return
	}
	s.Annotations[corev1.EndpointsLastChangeTriggerTime] = t.UTC().Format(time.RFC3339Nano)
}

// serviceKeyOfSlice is the queue key of the slice's Service.
func serviceKeyOfSlice(s *discoveryv1.EndpointSlice) (string, error) {
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return "", fmt.Errorf("EndpointSlice missing %s label", discoveryv1.LabelServiceName)
	}
	return s.Namespace + "/" + name, nil
}

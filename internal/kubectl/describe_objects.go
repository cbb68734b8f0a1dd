package kubectl

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func describeDeploymentObject(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	dep := &appsv1.Deployment{}
	if err := fromUnstructured(u, dep); err != nil {
		return "", err
	}
	events := d.events(eventRef{kind: "Deployment", namespace: dep.Namespace, name: dep.Name, uid: dep.UID})
	var oldRSs, newRSs []*appsv1.ReplicaSet
	if old, n, err := deploymentReplicaSets(d.e.ctx, d.cs, dep, d.chunkSize); err == nil {
		oldRSs = old
		if n != nil {
			newRSs = append(newRSs, n)
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return "", err
	}
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", dep.Name)
		w.Write(level0, "Namespace:\t%s\n", dep.Namespace)
		w.Write(level0, "CreationTimestamp:\t%s\n", formatTime(dep.CreationTimestamp))
		printLabelsMultiline(w, "Labels", dep.Labels)
		printAnnotationsMultiline(w, "Annotations", dep.Annotations)
		w.Write(level0, "Selector:\t%s\n", sel)
		w.Write(level0, "Replicas:\t%d desired | %d updated | %d total | %d available | %d unavailable\n",
			ptrOr(dep.Spec.Replicas, 0), dep.Status.UpdatedReplicas, dep.Status.Replicas, dep.Status.AvailableReplicas, dep.Status.UnavailableReplicas)
		w.Write(level0, "StrategyType:\t%s\n", dep.Spec.Strategy.Type)
		w.Write(level0, "MinReadySeconds:\t%d\n", dep.Spec.MinReadySeconds)
		if ru := dep.Spec.Strategy.RollingUpdate; ru != nil {
			w.Write(level0, "RollingUpdateStrategy:\t%s max unavailable, %s max surge\n", intOrStringPtr(ru.MaxUnavailable), intOrStringPtr(ru.MaxSurge))
		}
		describePodTemplate(&dep.Spec.Template, w)
		if len(dep.Status.Conditions) > 0 {
			w.Write(level0, "Conditions:\n  Type\tStatus\tReason\n")
			w.Write(level1, "----\t------\t------\n")
			for _, c := range dep.Status.Conditions {
				w.Write(level1, "%v \t%v\t%v\n", c.Type, c.Status, c.Reason)
			}
		}
		if len(oldRSs) > 0 || len(newRSs) > 0 {
			w.Write(level0, "OldReplicaSets:\t%s\n", replicaSetsSummary(oldRSs))
			w.Write(level0, "NewReplicaSet:\t%s\n", replicaSetsSummary(newRSs))
		}
		describeEvents(events, w)
		return nil
	})
}

// intOrStringPtr prints a *IntOrString as kubectl's %s of it does.
func intOrStringPtr(v *intstr.IntOrString) string {
	if v == nil {
		return "<nil>"
	}
	return v.String()
}

func replicaSetsSummary(rss []*appsv1.ReplicaSet) string {
	var out []string
	for _, rs := range rss {
		out = append(out, fmt.Sprintf("%s (%d/%d replicas created)", rs.Name, rs.Status.Replicas, ptrOr(rs.Spec.Replicas, 0)))
	}
	if len(out) == 0 {
		return "<none>"
	}
	return strings.Join(out, ", ")
}

// podStatusCounts counts the phases of the pods a controller owns.
func (d *describeCtx) podStatusCounts(ns string, sel labels.Selector, uid types.UID) (running, waiting, succeeded, failed int, err error) {
	pods, err := d.listPods(ns, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return
	}
	for i := range pods {
		ref := metav1.GetControllerOf(&pods[i])
		if ref == nil || ref.UID != uid {
			continue
		}
		switch pods[i].Status.Phase {
		case corev1.PodRunning:
			running++
		case corev1.PodPending:
			waiting++
		case corev1.PodSucceeded:
			succeeded++
		case corev1.PodFailed:
			failed++
		}
	}
	return
}

func (d *describeCtx) listPods(ns string, opts metav1.ListOptions) ([]corev1.Pod, error) {
	opts.Limit = d.chunkSize
	var out []corev1.Pod
	for {
		list, err := d.cs.CoreV1().Pods(ns).List(d.e.ctx, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, list.Items...)
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}

func describeReplicaSetObject(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	rs := &appsv1.ReplicaSet{}
	if err := fromUnstructured(u, rs); err != nil {
		return "", err
	}
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		return "", err
	}
	running, waiting, succeeded, failed, podErr := d.podStatusCounts(rs.Namespace, sel, rs.UID)
	events := d.events(eventRef{kind: "ReplicaSet", namespace: rs.Namespace, name: rs.Name, uid: rs.UID})
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", rs.Name)
		w.Write(level0, "Namespace:\t%s\n", rs.Namespace)
		w.Write(level0, "Selector:\t%s\n", metav1.FormatLabelSelector(rs.Spec.Selector))
		printLabelsMultiline(w, "Labels", rs.Labels)
		printAnnotationsMultiline(w, "Annotations", rs.Annotations)
		if c := printController(rs); c != "" {
			w.Write(level0, "Controlled By:\t%s\n", c)
		}
		w.Write(level0, "Replicas:\t%d current / %d desired\n", rs.Status.Replicas, ptrOr(rs.Spec.Replicas, 0))
		w.Write(level0, "Pods Status:\t")
		if podErr != nil {
			w.Write(level0, "error in fetching pods: %s\n", podErr)
		} else {
			w.Write(level0, "%d Running / %d Waiting / %d Succeeded / %d Failed\n", running, waiting, succeeded, failed)
		}
		describePodTemplate(&rs.Spec.Template, w)
		if len(rs.Status.Conditions) > 0 {
			w.Write(level0, "Conditions:\n  Type\tStatus\tReason\n")
			w.Write(level1, "----\t------\t------\n")
			for _, c := range rs.Status.Conditions {
				w.Write(level1, "%v \t%v\t%v\n", c.Type, c.Status, c.Reason)
			}
		}
		describeEvents(events, w)
		return nil
	})
}

func describeServiceObject(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	svc := &corev1.Service{}
	if err := fromUnstructured(u, svc); err != nil {
		return "", err
	}
	var slices []discoveryv1.EndpointSlice
	if l, err := d.cs.DiscoveryV1().EndpointSlices(svc.Namespace).List(d.e.ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name,
	}); err == nil {
		slices = l.Items
	}
	events := d.events(eventRef{kind: "Service", namespace: svc.Namespace, name: svc.Name, uid: svc.UID})
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", svc.Name)
		w.Write(level0, "Namespace:\t%s\n", svc.Namespace)
		printLabelsMultiline(w, "Labels", svc.Labels)
		printAnnotationsMultiline(w, "Annotations", svc.Annotations)
		w.Write(level0, "Selector:\t%s\n", labels.FormatLabels(svc.Spec.Selector))
		w.Write(level0, "Type:\t%s\n", svc.Spec.Type)
		if svc.Spec.IPFamilyPolicy != nil {
			w.Write(level0, "IP Family Policy:\t%s\n", *svc.Spec.IPFamilyPolicy)
		}
		if len(svc.Spec.IPFamilies) > 0 {
			var fams []string
			for _, f := range svc.Spec.IPFamilies {
				fams = append(fams, string(f))
			}
			w.Write(level0, "IP Families:\t%s\n", strings.Join(fams, ","))
		} else {
			w.Write(level0, "IP Families:\t%s\n", "<none>")
		}
		w.Write(level0, "IP:\t%s\n", svc.Spec.ClusterIP)
		if len(svc.Spec.ClusterIPs) > 0 {
			w.Write(level0, "IPs:\t%s\n", strings.Join(svc.Spec.ClusterIPs, ","))
		} else {
			w.Write(level0, "IPs:\t%s\n", "<none>")
		}
		if len(svc.Spec.ExternalIPs) > 0 {
			w.Write(level0, "External IPs:\t%v\n", strings.Join(svc.Spec.ExternalIPs, ","))
		}
		if svc.Spec.LoadBalancerIP != "" {
			w.Write(level0, "Desired LoadBalancer IP:\t%s\n", svc.Spec.LoadBalancerIP)
		}
		if svc.Spec.ExternalName != "" {
			w.Write(level0, "External Name:\t%s\n", svc.Spec.ExternalName)
		}
		if len(svc.Status.LoadBalancer.Ingress) > 0 {
			var parts []string
			for _, in := range svc.Status.LoadBalancer.Ingress {
				if in.IP != "" {
					s := in.IP
					if in.IPMode != nil {
						s += fmt.Sprintf(" (%s)", *in.IPMode)
					}
					parts = append(parts, s)
				} else {
					parts = append(parts, in.Hostname)
				}
			}
			w.Write(level0, "LoadBalancer Ingress:\t%s\n", strings.Join(parts, ", "))
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			name := sp.Name
			if name == "" {
				name = "<unset>"
			}
			w.Write(level0, "Port:\t%s\t%d/%s\n", name, sp.Port, sp.Protocol)
			if sp.TargetPort.Type == intstr.Int {
				w.Write(level0, "TargetPort:\t%d/%s\n", sp.TargetPort.IntVal, sp.Protocol)
			} else {
				w.Write(level0, "TargetPort:\t%s/%s\n", sp.TargetPort.StrVal, sp.Protocol)
			}
			if sp.AppProtocol != nil {
				w.Write(level0, "AppProtocol:\t%s\n", *sp.AppProtocol)
			}
			if sp.NodePort != 0 {
				w.Write(level0, "NodePort:\t%s\t%d/%s\n", name, sp.NodePort, sp.Protocol)
			}
			w.Write(level0, "Endpoints:\t%s\n", formatEndpointSlices(slices, map[string]bool{sp.Name: true}))
		}
		w.Write(level0, "Session Affinity:\t%s\n", svc.Spec.SessionAffinity)
		if svc.Spec.ExternalTrafficPolicy != "" {
			w.Write(level0, "External Traffic Policy:\t%s\n", svc.Spec.ExternalTrafficPolicy)
		}
		if svc.Spec.InternalTrafficPolicy != nil {
			w.Write(level0, "Internal Traffic Policy:\t%s\n", *svc.Spec.InternalTrafficPolicy)
		}
		if svc.Spec.HealthCheckNodePort != 0 {
			w.Write(level0, "HealthCheck NodePort:\t%d\n", svc.Spec.HealthCheckNodePort)
		}
		if len(svc.Spec.LoadBalancerSourceRanges) > 0 {
			w.Write(level0, "LoadBalancer Source Ranges:\t%v\n", strings.Join(svc.Spec.LoadBalancerSourceRanges, ","))
		}
		if svc.Spec.TrafficDistribution != nil {
			w.Write(level0, "Traffic Distribution:\t%s\n", *svc.Spec.TrafficDistribution)
		}
		describeEvents(events, w)
		return nil
	})
}

// formatEndpointSlices lists up to three ready address:port pairs of
// the service's EndpointSlices for the given port names, then "+ N more...".
func formatEndpointSlices(slices []discoveryv1.EndpointSlice, ports map[string]bool) string {
	if len(slices) == 0 {
		return "<none>"
	}
	var list []string
	const max = 3
	more := false
	count := 0
	ready := func(ep *discoveryv1.Endpoint) bool {
		// nil means unknown, which consumers treat as ready
		return ep.Conditions.Ready == nil || *ep.Conditions.Ready
	}
	for i := range slices {
		s := &slices[i]
		if len(s.Ports) == 0 {
			for j := range s.Endpoints {
				if len(list) == max {
					more = true
				}
				if !ready(&s.Endpoints[j]) {
					continue
				}
				if !more {
					list = append(list, s.Endpoints[j].Addresses[0])
				}
				count++
			}
			continue
		}
		for j := range s.Ports {
			port := s.Ports[j]
			if ports != nil && !ports[ptrOr(port.Name, "")] {
				continue
			}
			for k := range s.Endpoints {
				if len(list) == max {
					more = true
				}
				if !ready(&s.Endpoints[k]) {
					continue
				}
				if !more {
					list = append(list, net.JoinHostPort(s.Endpoints[k].Addresses[0], strconv.Itoa(int(ptrOr(port.Port, 0)))))
				}
				count++
			}
		}
	}
	ret := strings.Join(list, ",")
	if more {
		return fmt.Sprintf("%s + %d more...", ret, count-max)
	}
	return ret
}

func describeEndpointsObject(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	ep := &corev1.Endpoints{}
	if err := fromUnstructured(u, ep); err != nil {
		return "", err
	}
	events := d.events(eventRef{kind: "Endpoints", namespace: ep.Namespace, name: ep.Name, uid: ep.UID})
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", ep.Name)
		w.Write(level0, "Namespace:\t%s\n", ep.Namespace)
		printLabelsMultiline(w, "Labels", ep.Labels)
		printAnnotationsMultiline(w, "Annotations", ep.Annotations)
		w.Write(level0, "Subsets:\n")
		for i := range ep.Subsets {
			ss := &ep.Subsets[i]
			var addrs, notReady []string
			for _, a := range ss.Addresses {
				addrs = append(addrs, a.IP)
			}
			for _, a := range ss.NotReadyAddresses {
				notReady = append(notReady, a.IP)
			}
			w.Write(level1, "Addresses:\t%s\n", stringOrNone(strings.Join(addrs, ",")))
			w.Write(level1, "NotReadyAddresses:\t%s\n", stringOrNone(strings.Join(notReady, ",")))
			if len(ss.Ports) > 0 {
				w.Write(level1, "Ports:\n")
				w.Write(level2, "Name\tPort\tProtocol\n")
				w.Write(level2, "----\t----\t--------\n")
				for _, p := range ss.Ports {
					name := p.Name
					if name == "" {
						name = "<unset>"
					}
					w.Write(level2, "%s\t%d\t%s\n", name, p.Port, p.Protocol)
				}
			}
			w.Write(level0, "\n")
		}
		describeEvents(events, w)
		return nil
	})
}

func describeNamespaceObject(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	ns := &corev1.Namespace{}
	if err := fromUnstructured(u, ns); err != nil {
		return "", err
	}
	quotas, qerr := d.cs.CoreV1().ResourceQuotas(ns.Name).List(d.e.ctx, metav1.ListOptions{Limit: d.chunkSize})
	if qerr != nil {
		if !apierrors.IsNotFound(qerr) {
			return "", qerr
		}
		quotas = nil
	}
	limits, lerr := d.cs.CoreV1().LimitRanges(ns.Name).List(d.e.ctx, metav1.ListOptions{Limit: d.chunkSize})
	if lerr != nil {
		if !apierrors.IsNotFound(lerr) {
			return "", lerr
		}
		limits = nil
	}
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", ns.Name)
		printLabelsMultiline(w, "Labels", ns.Labels)
		printAnnotationsMultiline(w, "Annotations", ns.Annotations)
		w.Write(level0, "Status:\t%s\n", string(ns.Status.Phase))
		if len(ns.Status.Conditions) > 0 {
			w.Write(level0, "Conditions:\n")
			w.Write(level1, "Type\tStatus\tLastTransitionTime\tReason\tMessage\n")
			w.Write(level1, "----\t------\t------------------\t------\t-------\n")
			for _, c := range ns.Status.Conditions {
				w.Write(level1, "%v\t%v\t%s\t%v\t%v\n", c.Type, c.Status, formatTime(c.LastTransitionTime), c.Reason, c.Message)
			}
		}
		if quotas != nil {
			w.Write(level0, "\n")
			if len(quotas.Items) == 0 {
				w.Write(level0, "No resource quota.\n")
			} else {
				describeQuotas(quotas.Items, w)
			}
		}
		if limits != nil {
			w.Write(level0, "\n")
			if len(limits.Items) == 0 {
				w.Write(level0, "No LimitRange resource.\n")
			} else {
				w.Write(level0, "Resource Limits\n Type\tResource\tMin\tMax\tDefault Request\tDefault Limit\tMax Limit/Request Ratio\n")
				w.Write(level0, " ----\t--------\t---\t---\t---------------\t-------------\t-----------------------\n")
				for _, lr := range limits.Items {
					describeLimitRangeSpec(lr.Spec, " ", w)
				}
			}
		}
		return nil
	})
}

func describeQuotas(quotas []corev1.ResourceQuota, w *prefixWriter) {
	sort.Slice(quotas, func(i, j int) bool { return quotas[i].Name < quotas[j].Name })
	w.Write(level0, "Resource Quotas\n")
	for _, q := range quotas {
		w.Write(level1, "Name:\t%s\n", q.Name)
		w.Write(level1, "Resource\tUsed\tHard\n")
		w.Write(level1, "--------\t---\t---\n")
		for _, r := range sortedResourceNames(q.Status.Hard) {
			hard, used := q.Status.Hard[r], q.Status.Used[r]
			w.Write(level1, "%s\t%s\t%s\n", string(r), used.String(), hard.String())
		}
	}
}

func describeLimitRangeSpec(spec corev1.LimitRangeSpec, prefix string, w *prefixWriter) {
	for _, item := range spec.Limits {
		set := map[corev1.ResourceName]bool{}
		for _, l := range []corev1.ResourceList{item.Max, item.Min, item.Default, item.DefaultRequest, item.MaxLimitRequestRatio} {
			for k := range l {
				set[k] = true
			}
		}
		for k := range set {
			get := func(l corev1.ResourceList) string {
				if q, ok := l[k]; ok {
					return q.String()
				}
				return "-"
			}
			w.Write(level0, "%s%s\t%v\t%v\t%v\t%v\t%v\t%v\n", prefix, item.Type, k, get(item.Min), get(item.Max), get(item.DefaultRequest), get(item.Default), get(item.MaxLimitRequestRatio))
		}
	}
}

func describeConfigMapObject(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	cm := &corev1.ConfigMap{}
	if err := fromUnstructured(u, cm); err != nil {
		return "", err
	}
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", cm.Name)
		w.Write(level0, "Namespace:\t%s\n", cm.Namespace)
		printLabelsMultiline(w, "Labels", cm.Labels)
		printAnnotationsMultiline(w, "Annotations", cm.Annotations)
		w.Write(level0, "\nData\n====\n")
		for _, k := range sortedKeys(cm.Data) {
			w.Write(level0, "%s:\n----\n", k)
			w.Write(level0, "%s\n", cm.Data[k])
			w.Write(level0, "\n")
		}
		w.Write(level0, "\nBinaryData\n====\n")
		bkeys := make([]string, 0, len(cm.BinaryData))
		for k := range cm.BinaryData {
			bkeys = append(bkeys, k)
		}
		sort.Strings(bkeys)
		for _, k := range bkeys {
			w.Write(level0, "%s: %s bytes\n", k, strconv.Itoa(len(cm.BinaryData[k])))
		}
		w.Write(level0, "\n")
		if d.showEvents {
			el, err := d.searchEvents(eventRef{kind: "ConfigMap", namespace: cm.Namespace, name: cm.Name, uid: cm.UID})
			if err != nil {
				return err
			}
			describeEvents(el, w)
		}
		return nil
	})
}

func describeNodeObject(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	node := &corev1.Node{}
	if err := fromUnstructured(u, node); err != nil {
		return "", err
	}
	sel := fields.AndSelectors(
		fields.OneTermEqualSelector("spec.nodeName", node.Name),
		fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
		fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
	)
	canViewPods := true
	pods, err := d.listPods("", metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		if !apierrors.IsForbidden(err) {
			return "", err
		}
		canViewPods = false
	}
	var events *corev1.EventList
	if d.showEvents {
		// The node controller records events with the node's UID, the
		// kubelet with its name: search both.
		events, _ = d.searchEvents(eventRef{kind: "Node", name: node.Name, uid: node.UID})
		byName, _ := d.searchEvents(eventRef{kind: "Node", name: node.Name, uid: types.UID(node.Name)})
		if events == nil {
			events = &corev1.EventList{}
		}
		if byName != nil {
			events.Items = append(events.Items, byName.Items...)
		}
	}
	lease, leaseErr := d.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(d.e.ctx, node.Name, metav1.GetOptions{})
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", node.Name)
		if roles := nodeRoles(node); len(roles) > 0 {
			w.Write(level0, "Roles:\t%s\n", strings.Join(roles, ","))
		} else {
			w.Write(level0, "Roles:\t%s\n", "<none>")
		}
		printLabelsMultiline(w, "Labels", node.Labels)
		printAnnotationsMultiline(w, "Annotations", node.Annotations)
		w.Write(level0, "CreationTimestamp:\t%s\n", formatTime(node.CreationTimestamp))
		printTaintsMultiline(w, "Taints", node.Spec.Taints)
		w.Write(level0, "Unschedulable:\t%v\n", node.Spec.Unschedulable)
		if leaseErr == nil {
			w.Write(level0, "Lease:\n")
			holder, acquire, renew := "<unset>", "<unset>", "<unset>"
			if lease.Spec.HolderIdentity != nil {
				holder = *lease.Spec.HolderIdentity
			}
			if lease.Spec.AcquireTime != nil {
				acquire = lease.Spec.AcquireTime.Time.Format("Mon, 02 Jan 2006 15:04:05 -0700")
			}
			if lease.Spec.RenewTime != nil {
				renew = lease.Spec.RenewTime.Time.Format("Mon, 02 Jan 2006 15:04:05 -0700")
			}
			w.Write(level1, "HolderIdentity:\t%s\n", holder)
			w.Write(level1, "AcquireTime:\t%s\n", acquire)
			w.Write(level1, "RenewTime:\t%s\n", renew)
		} else {
			w.Write(level0, "Lease:\tFailed to get lease: %s\n", leaseErr)
		}
		if len(node.Status.Conditions) > 0 {
			w.Write(level0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n")
			w.Write(level1, "----\t------\t-----------------\t------------------\t------\t-------\n")
			for _, c := range node.Status.Conditions {
				w.Write(level1, "%v \t%v \t%s \t%s \t%v \t%v\n", c.Type, c.Status, formatTime(c.LastHeartbeatTime), formatTime(c.LastTransitionTime), c.Reason, c.Message)
			}
		}
		w.Write(level0, "Addresses:\n")
		for _, a := range node.Status.Addresses {
			w.Write(level1, "%s:\t%s\n", a.Type, a.Address)
		}
		printList := func(l corev1.ResourceList) {
			for _, r := range sortedResourceNames(l) {
				q := l[r]
				w.Write(level0, "  %s:\t%s\n", r, q.String())
			}
		}
		if len(node.Status.Capacity) > 0 {
			w.Write(level0, "Capacity:\n")
			printList(node.Status.Capacity)
		}
		if len(node.Status.Allocatable) > 0 {
			w.Write(level0, "Allocatable:\n")
			printList(node.Status.Allocatable)
		}
		ni := node.Status.NodeInfo
		w.Write(level0, "System Info:\n")
		w.Write(level0, "  Machine ID:\t%s\n", ni.MachineID)
		w.Write(level0, "  System UUID:\t%s\n", ni.SystemUUID)
		w.Write(level0, "  Boot ID:\t%s\n", ni.BootID)
		w.Write(level0, "  Kernel Version:\t%s\n", ni.KernelVersion)
		w.Write(level0, "  OS Image:\t%s\n", ni.OSImage)
		w.Write(level0, "  Operating System:\t%s\n", ni.OperatingSystem)
		w.Write(level0, "  Architecture:\t%s\n", ni.Architecture)
		w.Write(level0, "  Container Runtime Version:\t%s\n", ni.ContainerRuntimeVersion)
		w.Write(level0, "  Kubelet Version:\t%s\n", ni.KubeletVersion)
		w.Write(level0, "  Kube-Proxy Version:\t%s\n", ni.KubeProxyVersion)
		if node.Spec.PodCIDR != "" {
			w.Write(level0, "PodCIDR:\t%s\n", node.Spec.PodCIDR)
		}
		if len(node.Spec.PodCIDRs) > 0 {
			w.Write(level0, "PodCIDRs:\t%s\n", strings.Join(node.Spec.PodCIDRs, ","))
		}
		if node.Spec.ProviderID != "" {
			w.Write(level0, "ProviderID:\t%s\n", node.Spec.ProviderID)
		}
		if canViewPods {
			describeNodeResource(pods, node, w)
		} else {
			w.Write(level0, "Pods:\tnot authorized\n")
		}
		describeEvents(events, w)
		return nil
	})
}

func nodeRoles(node *corev1.Node) []string {
	set := map[string]bool{}
	for k, v := range node.Labels {
		switch {
		case strings.HasPrefix(k, "node-role.kubernetes.io/"):
			if r := strings.TrimPrefix(k, "node-role.kubernetes.io/"); r != "" {
				set[r] = true
			}
		case k == "kubernetes.io/role" && v != "":
			set[v] = true
		}
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func describeNodeResource(pods []corev1.Pod, node *corev1.Node, w *prefixWriter) {
	w.Write(level0, "Non-terminated Pods:\t(%d in total)\n", len(pods))
	w.Write(level1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n")
	w.Write(level1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n")
	alloc := node.Status.Capacity
	if len(node.Status.Allocatable) > 0 {
		alloc = node.Status.Allocatable
	}
	pct := func(q resource.Quantity, total resource.Quantity, milli bool) int64 {
		if milli {
			return int64(float64(q.MilliValue()) / float64(total.MilliValue()) * 100)
		}
		return int64(float64(q.Value()) / float64(total.Value()) * 100)
	}
	for i := range pods {
		pod := &pods[i]
		req, lim := podRequestsAndLimits(pod)
		cpuReq, cpuLim, memReq, memLim := req[corev1.ResourceCPU], lim[corev1.ResourceCPU], req[corev1.ResourceMemory], lim[corev1.ResourceMemory]
		w.Write(level1, "%s\t%s\t\t%s (%d%%)\t%s (%d%%)\t%s (%d%%)\t%s (%d%%)\t%s\n", pod.Namespace, pod.Name,
			cpuReq.String(), pct(cpuReq, *alloc.Cpu(), true), cpuLim.String(), pct(cpuLim, *alloc.Cpu(), true),
			memReq.String(), pct(memReq, *alloc.Memory(), false), memLim.String(), pct(memLim, *alloc.Memory(), false),
			translateTimestampSince(pod.CreationTimestamp))
	}
	w.Write(level0, "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n")
	w.Write(level1, "Resource\tRequests\tLimits\n")
	w.Write(level1, "--------\t--------\t------\n")
	reqs, limits := map[corev1.ResourceName]resource.Quantity{}, map[corev1.ResourceName]resource.Quantity{}
	for i := range pods {
		r, l := podRequestsAndLimits(&pods[i])
		addInto(reqs, r)
		addInto(limits, l)
	}
	total := func(name corev1.ResourceName, milli bool) {
		r, l, a := reqs[name], limits[name], alloc[name]
		var fr, fl int64
		if (milli && a.MilliValue() != 0) || (!milli && a.Value() != 0) {
			fr, fl = pct(r, a, milli), pct(l, a, milli)
		}
		w.Write(level1, "%s\t%s (%d%%)\t%s (%d%%)\n", name, r.String(), fr, l.String(), fl)
	}
	total(corev1.ResourceCPU, true)
	total(corev1.ResourceMemory, false)
	total(corev1.ResourceEphemeralStorage, false)
	var huge, ext []string
	for r := range alloc {
		switch {
		case strings.HasPrefix(string(r), corev1.ResourceHugePagesPrefix):
			huge = append(huge, string(r))
		case !isStandardContainerResource(string(r)) && r != corev1.ResourcePods:
			ext = append(ext, string(r))
		}
	}
	sort.Strings(huge)
	sort.Strings(ext)
	for _, r := range huge {
		total(corev1.ResourceName(r), false)
	}
	for _, r := range ext {
		rq, lq := reqs[corev1.ResourceName(r)], limits[corev1.ResourceName(r)]
		w.Write(level1, "%s\t%s\t%s\n", r, rq.String(), lq.String())
	}
}

func isStandardContainerResource(name string) bool {
	switch name {
	case "cpu", "memory", "ephemeral-storage":
		return true
	}
	return strings.HasPrefix(name, corev1.ResourceHugePagesPrefix)
}

func addInto(dst map[corev1.ResourceName]resource.Quantity, src corev1.ResourceList) {
	for k, v := range src {
		if cur, ok := dst[k]; ok {
			cur.Add(v)
			dst[k] = cur
		} else {
			dst[k] = v.DeepCopy()
		}
	}
}

// podRequestsAndLimits is component-helpers' PodRequests/PodLimits:
// containers summed, restartable (sidecar) init containers added, other
// init containers as a floor, plus the pod overhead.
func podRequestsAndLimits(pod *corev1.Pod) (reqs, limits corev1.ResourceList) {
	return podResources(pod, func(c *corev1.Container) corev1.ResourceList { return c.Resources.Requests }, pod.Spec.Resources != nil && len(pod.Spec.Resources.Requests) > 0, func() corev1.ResourceList { return pod.Spec.Resources.Requests }),
		podResources(pod, func(c *corev1.Container) corev1.ResourceList { return c.Resources.Limits }, pod.Spec.Resources != nil && len(pod.Spec.Resources.Limits) > 0, func() corev1.ResourceList { return pod.Spec.Resources.Limits })
}

func podResources(pod *corev1.Pod, get func(*corev1.Container) corev1.ResourceList, podLevel bool, podLevelList func() corev1.ResourceList) corev1.ResourceList {
	sum := map[corev1.ResourceName]resource.Quantity{}
	for i := range pod.Spec.Containers {
		addInto(sum, get(&pod.Spec.Containers[i]))
	}
	sidecars := map[corev1.ResourceName]resource.Quantity{}
	initMax := map[corev1.ResourceName]resource.Quantity{}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		l := get(c)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			addInto(sum, l)
			addInto(sidecars, l)
			addInto(initMax, corev1.ResourceList{}) // keep types aligned
			continue
		}
		tmp := map[corev1.ResourceName]resource.Quantity{}
		addInto(tmp, l)
		addInto(tmp, sidecars)
		for k, v := range tmp {
			if cur, ok := initMax[k]; !ok || v.Cmp(cur) > 0 {
				initMax[k] = v
			}
		}
	}
	for k, v := range initMax {
		if cur, ok := sum[k]; !ok || v.Cmp(cur) > 0 {
			sum[k] = v
		}
	}
	if podLevel {
		for k, v := range podLevelList() {
			if k == corev1.ResourceCPU || k == corev1.ResourceMemory {
				sum[k] = v.DeepCopy()
			}
		}
	}
	if pod.Spec.Overhead != nil {
		addInto(sum, pod.Spec.Overhead)
	}
	out := corev1.ResourceList{}
	for k, v := range sum {
		out[k] = v
	}
	return out
}

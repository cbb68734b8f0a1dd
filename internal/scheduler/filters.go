package scheduler

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Filter reasons, worded exactly as kube-scheduler's plugins word them
// (pkg/scheduler/framework/plugins/...): they end up in users' events and
// pod conditions.
const (
	ReasonUnschedulable   = "node(s) were unschedulable"
	ReasonNodeName        = "node(s) didn't match the requested node name"
	ReasonNodeAffinity    = "node(s) didn't match Pod's node affinity/selector"
	ReasonNodePorts       = "node(s) didn't have free ports for the requested pod ports"
	ReasonTooManyPods     = "Too many pods"
	reasonInsufficientFmt = "Insufficient %s"
	reasonTaintFmt        = "node(s) had untolerated taint {%s: %s}"
)

// filter is one of the default profile's Filter plugins: it returns the
// reasons a pod cannot go to a node, nil when it can.
type filter func(p *PodInfo, n *NodeInfo) []string

// filters run in the default profile's plugin order; a node's first
// failing filter gives its reasons.
var filters = []filter{
	filterNodeUnschedulable,
	filterNodeName,
	filterTaintToleration,
	filterNodeAffinity,
	filterNodePorts,
	filterNodeResourcesFit,
}

// runFilters returns nil when the pod fits the node.
func runFilters(p *PodInfo, n *NodeInfo) []string {
	for _, f := range filters {
		if r := f(p, n); r != nil {
			return r
		}
	}
	return nil
}

// filterNodeUnschedulable rejects cordoned nodes unless the pod tolerates
// the node.kubernetes.io/unschedulable:NoSchedule taint.
func filterNodeUnschedulable(p *PodInfo, n *NodeInfo) []string {
	if !n.Node.Spec.Unschedulable {
		return nil
	}
	taint := corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}
	if tolerates(p.Pod.Spec.Tolerations, &taint) {
		return nil
	}
	return []string{ReasonUnschedulable}
}

func filterNodeName(p *PodInfo, n *NodeInfo) []string {
	if p.Pod.Spec.NodeName == "" || p.Pod.Spec.NodeName == n.Node.Name {
		return nil
	}
	return []string{ReasonNodeName}
}

// filterTaintToleration reports the node's first NoSchedule or NoExecute
// taint the pod does not tolerate; a node that is not Ready counts as
// carrying the lifecycle controller's not-ready/unreachable taint.
func filterTaintToleration(p *PodInfo, n *NodeInfo) []string {
	tols := p.Pod.Spec.Tolerations
	for i := range n.Node.Spec.Taints {
		t := &n.Node.Spec.Taints[i]
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !tolerates(tols, t) {
			return []string{fmt.Sprintf(reasonTaintFmt, t.Key, t.Value)}
		}
	}
	if t := n.notReady; t != nil && !tolerates(tols, t) {
		return []string{fmt.Sprintf(reasonTaintFmt, t.Key, t.Value)}
	}
	return nil
}

// tolerates reports whether any toleration tolerates the taint (the
// comparison operators Lt/Gt are alpha upstream and stay disabled).
func tolerates(tols []corev1.Toleration, t *corev1.Taint) bool {
	for i := range tols {
		tol := &tols[i]
		if tol.Effect != "" && tol.Effect != t.Effect {
			continue
		}
		if tol.Key != "" && tol.Key != t.Key {
			continue
		}
		switch tol.Operator {
		case "", corev1.TolerationOpEqual:
			if tol.Value == t.Value {
				return true
			}
		case corev1.TolerationOpExists:
			return true
		}
	}
	return false
}

// filterNodeAffinity checks spec.nodeSelector and the required node
// affinity terms.
func filterNodeAffinity(p *PodInfo, n *NodeInfo) []string {
	if matchesNodeSelectorAndAffinity(p.Pod, n.Node) {
		return nil
	}
	return []string{ReasonNodeAffinity}
}

func matchesNodeSelectorAndAffinity(pod *corev1.Pod, node *corev1.Node) bool {
	for k, v := range pod.Spec.NodeSelector {
		if lv, ok := node.Labels[k]; !ok || lv != v {
			return false
		}
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	// Terms are ORed; a selector with no terms matches nothing.
	for i := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if matchesTerm(&a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[i], node) {
			return true
		}
	}
	return false
}

// matchesTerm ANDs a term's expressions and fields; an empty term matches
// nothing, as upstream.
func matchesTerm(t *corev1.NodeSelectorTerm, node *corev1.Node) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false
	}
	for i := range t.MatchExpressions {
		r := &t.MatchExpressions[i]
		v, ok := node.Labels[r.Key]
		if !matchesRequirement(r, v, ok) {
			return false
		}
	}
	for i := range t.MatchFields {
		r := &t.MatchFields[i]
		if r.Key != "metadata.name" {
			return false
		}
		if !matchesRequirement(r, node.Name, true) {
			return false
		}
	}
	return true
}

func matchesRequirement(r *corev1.NodeSelectorRequirement, v string, present bool) bool {
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return present && contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !present || !contains(r.Values, v)
	case corev1.NodeSelectorOpExists:
		return present
	case corev1.NodeSelectorOpDoesNotExist:
		return !present
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !present || len(r.Values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// filterNodePorts rejects a node where a requested host port is taken; a
// port on 0.0.0.0 conflicts with the same port on any IP.
func filterNodePorts(p *PodInfo, n *NodeInfo) []string {
	if len(p.Ports) == 0 || len(n.Ports) == 0 {
		return nil
	}
	for _, want := range p.Ports {
		for used := range n.Ports {
			if used.Port != want.Port || used.Protocol != want.Protocol {
				continue
			}
			if used.IP == want.IP || used.IP == "0.0.0.0" || want.IP == "0.0.0.0" {
				return []string{ReasonNodePorts}
			}
		}
	}
	return nil
}

// filterNodeResourcesFit compares the pod's requests with what is left of
// the node's allocatable; every insufficient resource is one reason.
func filterNodeResourcesFit(p *PodInfo, n *NodeInfo) []string {
	var reasons []string
	if int64(n.Pods)+1 > n.Allocatable.AllowedPodNumber {
		reasons = append(reasons, ReasonTooManyPods)
	}
	r := &p.Requests
	if r.isZero() {
		return reasons
	}
	a, u := &n.Allocatable, &n.Requested
	if r.MilliCPU > 0 && r.MilliCPU > a.MilliCPU-u.MilliCPU {
		reasons = append(reasons, fmt.Sprintf(reasonInsufficientFmt, corev1.ResourceCPU))
	}
	if r.Memory > 0 && r.Memory > a.Memory-u.Memory {
		reasons = append(reasons, fmt.Sprintf(reasonInsufficientFmt, corev1.ResourceMemory))
	}
	if r.EphemeralStorage > 0 && r.EphemeralStorage > a.EphemeralStorage-u.EphemeralStorage {
		reasons = append(reasons, fmt.Sprintf(reasonInsufficientFmt, corev1.ResourceEphemeralStorage))
	}
	for _, name := range sortedScalarNames(r.Scalar) {
		v := r.Scalar[name]
		if v > 0 && v > a.Scalar[name]-u.Scalar[name] {
			reasons = append(reasons, fmt.Sprintf(reasonInsufficientFmt, name))
		}
	}
	return reasons
}

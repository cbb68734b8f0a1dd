package scheduler

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeInfo is a node and the sum of what the pods placed on it (bound or
// assumed) take. The scheduler's filters and scores only read it; the cache
// is its one writer.
type NodeInfo struct {
	// Node is nil while pods are known on a node the informer has not
	// shown yet; such an entry is never offered to the filters.
	Node        *corev1.Node
	Allocatable Resource
	// Requested sums the pods' requests; NonZero the same with the
	// scoring defaults for containers without requests.
	Requested Resource
	NonZero   Resource
	Pods      int
	// Ports counts the host ports in use, by (ip, protocol, port).
	Ports map[hostPort]int
	// Owners counts the pods per controlling owner, for spreading.
	Owners map[types.UID]int
	// notReady is the node.kubernetes.io taint implied by the node's
	// Ready condition when the node lifecycle controller has not put it
	// on the node yet (kube relies on that controller alone).
	notReady *corev1.Taint
}

// NewNodeInfo returns an empty NodeInfo for node.
func NewNodeInfo(node *corev1.Node) *NodeInfo {
	n := &NodeInfo{}
	n.SetNode(node)
	return n
}

// SetNode replaces the node object, keeping the placed pods.
func (n *NodeInfo) SetNode(node *corev1.Node) {
	n.Node = node
	n.notReady = nil
	if node == nil {
		n.Allocatable = Resource{}
		return
	}
	n.Allocatable = resourceFromList(node.Status.Allocatable, true)
	n.notReady = impliedReadinessTaint(node)
}

// impliedReadinessTaint is the NoSchedule taint the node lifecycle
// controller puts on a node whose Ready condition is False or missing
// (not-ready) or Unknown (unreachable), unless the node already has it.
func impliedReadinessTaint(node *corev1.Node) *corev1.Taint {
	key := corev1.TaintNodeNotReady
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		switch c.Status {
		case corev1.ConditionTrue:
			return nil
		case corev1.ConditionUnknown:
			key = corev1.TaintNodeUnreachable
		}
	}
	for _, t := range node.Spec.Taints {
		if t.Key == key && t.Effect == corev1.TaintEffectNoSchedule {
			return nil
		}
	}
	return &corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule}
}

// AddPod accounts for a pod placed on the node.
func (n *NodeInfo) AddPod(p *PodInfo) { n.update(p, 1) }

// RemovePod undoes AddPod.
func (n *NodeInfo) RemovePod(p *PodInfo) { n.update(p, -1) }

func (n *NodeInfo) update(p *PodInfo, sign int) {
	if sign > 0 {
		n.Requested.add(&p.Requests)
		n.NonZero.add(&p.NonZero)
	} else {
		n.Requested.sub(&p.Requests)
		n.NonZero.sub(&p.NonZero)
	}
	n.Pods += sign
	for _, hp := range p.Ports {
		if n.Ports == nil {
			n.Ports = map[hostPort]int{}
		}
		n.Ports[hp] += sign
		if n.Ports[hp] <= 0 {
			delete(n.Ports, hp)
		}
	}
	if p.Owner != "" {
		if n.Owners == nil {
			n.Owners = map[types.UID]int{}
		}
		n.Owners[p.Owner] += sign
		if n.Owners[p.Owner] <= 0 {
			delete(n.Owners, p.Owner)
		}
	}
}

// Snapshot is the read-only view one scheduling decision works on. Nodes
// is in a stable order so that the rotating start index is meaningful.
type Snapshot struct {
	Nodes []*NodeInfo
}

package scheduler

import (
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
)

// podState is one pod the cache counts on a node.
type podState struct {
	info *PodInfo
	node string
	// assumed is set from the decision until the informer shows the pod
	// bound; a failed bind forgets it.
	assumed bool
}

// schedCache follows nodes and placed pods (from the informers) plus the
// scheduler's own assumptions, and is the one writer of the NodeInfos the
// pure scheduling functions read. Callers hold mu around a decision and
// the assumption that follows it, so no two decisions see the same room.
type schedCache struct {
	mu    sync.Mutex
	nodes map[string]*NodeInfo
	// list holds the NodeInfos that have a node, in a stable order (a
	// removed node's slot is filled by the last one).
	list  []*NodeInfo
	index map[string]int
	pods  map[types.UID]*podState
}

func newSchedCache() *schedCache {
	return &schedCache{
		nodes: map[string]*NodeInfo{},
		index: map[string]int{},
		pods:  map[types.UID]*podState{},
	}
}

// snapshotLocked is the read-only view for one decision; valid while mu
// is held.
func (c *schedCache) snapshotLocked() Snapshot { return Snapshot{Nodes: c.list} }

// setNode adds or updates a node.
func (c *schedCache) setNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[node.Name]
	if !ok {
		n = &NodeInfo{}
		c.nodes[node.Name] = n
	}
	n.SetNode(node)
	if _, listed := c.index[node.Name]; !listed {
		c.index[node.Name] = len(c.list)
		c.list = append(c.list, n)
	}
}

// removeNode stops offering a node. Pods still counted on it keep their
// entry (without a node) until they go, as upstream's cache does.
func (c *schedCache) removeNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[name]
	if !ok {
		return
	}
	if i, listed := c.index[name]; listed {
		last := len(c.list) - 1
		c.list[i] = c.list[last]
		c.index[c.list[i].Node.Name] = i
		c.list[last] = nil
		c.list = c.list[:last]
		delete(c.index, name)
	}
	n.SetNode(nil)
	if n.Pods == 0 {
		delete(c.nodes, name)
	}
}

// assumeLocked counts a pod on the node it was just given.
func (c *schedCache) assumeLocked(p *PodInfo, node string) {
	c.placeLocked(p, node, true)
}

// forget drops an assumption after its bind failed; it reports whether
// one was dropped.
func (c *schedCache) forget(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps, ok := c.pods[uid]
	if !ok || !ps.assumed {
		return false
	}
	c.unplaceLocked(uid, ps)
	return true
}

// isAssumed reports whether a pod is assumed and not yet seen bound.
func (c *schedCache) isAssumed(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps, ok := c.pods[uid]
	return ok && ps.assumed
}

// setPod records a bound pod the informer shows, confirming an assumption
// of it. A pod in a terminal phase uses nothing any more and is removed;
// setPod reports whether that freed room.
func (c *schedCache) setPod(pod *corev1.Pod) (freed bool) {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return c.removePod(pod.UID)
	}
	p := NewPodInfo(pod)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.placeLocked(p, pod.Spec.NodeName, false)
	return false
}

// removePod forgets a pod however it was counted; it reports whether the
// pod was counted.
func (c *schedCache) removePod(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps, ok := c.pods[uid]
	if !ok {
		return false
	}
	c.unplaceLocked(uid, ps)
	return true
}

func (c *schedCache) placeLocked(p *PodInfo, node string, assumed bool) {
	uid := p.Pod.UID
	if ps, ok := c.pods[uid]; ok {
		c.unplaceLocked(uid, ps)
	}
	n, ok := c.nodes[node]
	if !ok {
		// A pod on a node not seen yet: keep the count for when it
		// comes.
		n = &NodeInfo{}
		c.nodes[node] = n
	}
	n.AddPod(p)
	c.pods[uid] = &podState{info: p, node: node, assumed: assumed}
}

func (c *schedCache) unplaceLocked(uid types.UID, ps *podState) {
	delete(c.pods, uid)
	n, ok := c.nodes[ps.node]
	if !ok {
		return
	}
	n.RemovePod(ps.info)
	if n.Node == nil && n.Pods == 0 {
		delete(c.nodes, ps.node)
	}
}

// nodeSchedulingChanged reports whether a node update can change a
// scheduling decision (heartbeats and image lists cannot), so that only
// such updates retry unschedulable pods.
func nodeSchedulingChanged(old, cur *corev1.Node) bool {
	if old.Spec.Unschedulable != cur.Spec.Unschedulable ||
		!maps.Equal(old.Labels, cur.Labels) ||
		!apiequality.Semantic.DeepEqual(old.Spec.Taints, cur.Spec.Taints) ||
		!apiequality.Semantic.DeepEqual(old.Status.Allocatable, cur.Status.Allocatable) {
		return true
	}
	a, b := impliedReadinessTaint(old), impliedReadinessTaint(cur)
	return (a == nil) != (b == nil) || (a != nil && a.Key != b.Key)
}

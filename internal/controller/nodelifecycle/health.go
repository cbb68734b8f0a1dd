package nodelifecycle

import (
	"context"
	"sync"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/workqueue"
)

// nodeHealth is what the controller last saw of a node, with its own
// timestamps of when it saw it.
type nodeHealth struct {
	probeTimestamp           metav1.Time
	readyTransitionTimestamp metav1.Time
	status                   *corev1.NodeStatus
	lease                    *coordv1.Lease
}

func (h *nodeHealth) deepCopy() *nodeHealth {
	if h == nil {
		return nil
	}
	return &nodeHealth{
		probeTimestamp:           h.probeTimestamp,
		readyTransitionTimestamp: h.readyTransitionTimestamp,
		status:                   h.status.DeepCopy(),
		lease:                    h.lease.DeepCopy(),
	}
}

type healthMap struct {
	mu sync.RWMutex
	m  map[string]*nodeHealth
}

func (m *healthMap) get(name string) *nodeHealth {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.m[name].deepCopy()
}

func (m *healthMap) set(name string, h *nodeHealth) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[name] = h
}

func (m *healthMap) delete(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, name)
}

// monitorNodeHealth is one health pass over all nodes: new and removed
// nodes are noted, stale nodes marked Unknown, unhealthy nodes queued for
// NoExecute taints, their pods marked not ready, and the zones' tainting
// rates adjusted.
func (c *Controller) monitorNodeHealth(ctx context.Context) error {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	added, deleted, newZoneNodes := c.classifyNodes(nodes)
	for _, n := range newZoneNodes {
		c.addZone(n)
	}
	for _, n := range added {
		c.log.Debug("observed a new node", "node", n.Name)
		c.recordNodeEvent(n, "RegisteredNode", "Registered Node "+n.Name+" in Controller")
		c.knownNodes[n.Name] = n
		c.addZone(n)
		if _, err := c.markNodeAsReachable(ctx, n); err != nil {
			c.log.Warn("failed to remove NoExecute taints from node", "node", n.Name, "err", err)
		}
	}
	for _, n := range deleted {
		c.log.Debug("observed a node deletion", "node", n.Name)
		c.recordNodeEvent(n, "RemovingNode", "Removing Node "+n.Name+" from Controller")
		delete(c.knownNodes, n.Name)
		c.health.delete(n.Name)
	}

	var zoneMu sync.Mutex
	zoneConditions := map[string][]*corev1.NodeCondition{}
	workqueue.ParallelizeUntil(ctx, monitorWorkers, len(nodes), func(i int) {
		node := nodes[i].DeepCopy()
		var observed corev1.NodeCondition
		var current *corev1.NodeCondition
		var err error
		for try := 0; ; try++ {
			observed, current, err = c.tryUpdateNodeHealth(ctx, node)
			if err == nil {
				break
			}
			if try+1 >= healthUpdateRetries {
				c.log.Error("updating node health failed, skipping: no pods will be evicted", "node", node.Name, "err", err)
				return
			}
			node, err = c.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
			if err != nil {
				c.log.Error("failed to get node to retry its health update; probably deleted", "node", nodes[i].Name, "err", err)
				return
			}
		}
		if _, excluded := node.Labels[labelNodeDisruptionExclusion]; !excluded {
			zoneMu.Lock()
			zoneConditions[zoneKey(node)] = append(zoneConditions[zoneKey(node)], current)
			zoneMu.Unlock()
		}
		if current == nil {
			return
		}
		c.processTaintBaseEviction(ctx, node, &observed)
		_, retry := c.nodesToRetry.Load(node.Name)
		switch {
		case current.Status != corev1.ConditionTrue && observed.Status == corev1.ConditionTrue:
			// Once, when the status changed.
			c.recordNodeStatusChange(node, "NodeNotReady")
			fallthrough
		case retry && observed.Status != corev1.ConditionTrue:
			// The pods are only looked up when needed (upstream lists
			// them for every node on every pass).
			pods, err := c.podsOnNode(node.Name)
			if err == nil {
				err = c.markPodsNotReady(ctx, pods, node.Name)
			}
			if err != nil {
				c.log.Warn("unable to mark all pods not ready, will retry", "node", node.Name, "err", err)
				c.nodesToRetry.Store(node.Name, struct{}{})
				return
			}
		}
		c.nodesToRetry.Delete(node.Name)
	})
	c.handleDisruption(ctx, zoneConditions, nodes)
	return nil
}

// labelNodeDisruptionExclusion excludes a node from zone health.
const labelNodeDisruptionExclusion = "node.kubernetes.io/exclude-disruption"

// tryUpdateNodeHealth notes the node's heartbeats and, when none came for
// the grace period, sets its conditions Unknown. It returns the Ready
// condition as observed and as it is now.
func (c *Controller) tryUpdateNodeHealth(ctx context.Context, node *corev1.Node) (corev1.NodeCondition, *corev1.NodeCondition, error) {
	h := c.health.get(node.Name)
	defer func() { c.health.set(node.Name, h) }()

	var grace time.Duration
	var observed corev1.NodeCondition
	current := nodeCondition(&node.Status, corev1.NodeReady)
	if current == nil {
		// Never posted a status: pretend an Unknown condition as old as
		// the node, and give it the startup grace.
		observed = corev1.NodeCondition{
			Type:               corev1.NodeReady,
			Status:             corev1.ConditionUnknown,
			LastHeartbeatTime:  node.CreationTimestamp,
			LastTransitionTime: node.CreationTimestamp,
		}
		grace = c.opts.NodeStartupGracePeriod
		if h != nil {
			h.status = &node.Status
		} else {
			h = &nodeHealth{status: &node.Status, probeTimestamp: node.CreationTimestamp, readyTransitionTimestamp: node.CreationTimestamp}
		}
	} else {
		observed = *current
		grace = c.opts.NodeMonitorGracePeriod
	}

	var saved *corev1.NodeCondition
	var savedLease *coordv1.Lease
	if h != nil {
		saved = nodeCondition(h.status, corev1.NodeReady)
		savedLease = h.lease
	}
	now := c.now()
	switch {
	case h == nil:
		c.log.Debug("missing timestamp for node, assuming now", "node", node.Name)
		h = &nodeHealth{status: &node.Status, probeTimestamp: now, readyTransitionTimestamp: now}
	case saved == nil && current != nil:
		h = &nodeHealth{status: &node.Status, probeTimestamp: now, readyTransitionTimestamp: now}
	case saved != nil && current == nil:
		c.log.Warn("Ready condition was removed from node status", "node", node.Name)
		h = &nodeHealth{status: &node.Status, probeTimestamp: now, readyTransitionTimestamp: now}
	case saved != nil && current != nil && !saved.LastHeartbeatTime.Equal(&current.LastHeartbeatTime):
		transition := h.readyTransitionTimestamp
		if !saved.LastTransitionTime.Equal(&current.LastTransitionTime) {
			transition = now
		}
		h = &nodeHealth{status: &node.Status, probeTimestamp: now, readyTransitionTimestamp: transition}
	}
	// A renewed lease is a heartbeat too. (A node that renews its lease
	// but never posted a status is taken as healthy, as upstream.)
	lease, _ := c.leases.Leases(corev1.NamespaceNodeLease).Get(node.Name)
	if lease != nil && (savedLease == nil || savedLease.Spec.RenewTime.Before(lease.Spec.RenewTime)) {
		h.lease = lease
		h.probeTimestamp = now
	}

	if !now.After(h.probeTimestamp.Add(grace)) {
		return observed, current, nil
	}
	// No heartbeat for the grace period: every condition the kubelet
	// owns goes Unknown. NetworkUnavailable is the network plugin's.
	for _, t := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		cond := nodeCondition(&node.Status, t)
		if cond == nil {
			node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{
				Type:               t,
				Status:             corev1.ConditionUnknown,
				Reason:             "NodeStatusNeverUpdated",
				Message:            "Kubelet never posted node status.",
				LastHeartbeatTime:  node.CreationTimestamp,
				LastTransitionTime: now,
			})
			continue
		}
		if cond.Status != corev1.ConditionUnknown {
			c.log.Debug("node hasn't been updated", "node", node.Name, "for", now.Sub(h.probeTimestamp.Time), "condition", t)
			cond.Status = corev1.ConditionUnknown
			cond.Reason = "NodeStatusUnknown"
			cond.Message = "Kubelet stopped posting node status."
			cond.LastTransitionTime = now
		}
	}
	current = nodeCondition(&node.Status, corev1.NodeReady)
	if apiequality.Semantic.DeepEqual(current, &observed) {
		return observed, current, nil
	}
	if _, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return observed, current, err
	}
	h = &nodeHealth{status: &node.Status, probeTimestamp: h.probeTimestamp, readyTransitionTimestamp: now, lease: lease}
	return observed, current, nil
}

// processTaintBaseEviction queues unhealthy nodes for their NoExecute
// taint (swapping not-ready and unreachable at once when the node already
// has the other) and untaints healthy ones.
func (c *Controller) processTaintBaseEviction(ctx context.Context, node *corev1.Node, observed *corev1.NodeCondition) {
	switch observed.Status {
	case corev1.ConditionFalse:
		if taintExists(node.Spec.Taints, &unreachableTaint) {
			if err := c.swapTaints(ctx, node, []corev1.Taint{notReadyTaint}, []corev1.Taint{unreachableTaint}); err != nil {
				c.log.Warn("failed to swap unreachable taint for not-ready, will retry", "node", node.Name, "err", err)
			}
		} else if c.markNodeForTainting(node, corev1.ConditionFalse) {
			c.log.Debug("node is not ready, queued for tainting", "node", node.Name)
		}
	case corev1.ConditionUnknown:
		if taintExists(node.Spec.Taints, &notReadyTaint) {
			if err := c.swapTaints(ctx, node, []corev1.Taint{unreachableTaint}, []corev1.Taint{notReadyTaint}); err != nil {
				c.log.Warn("failed to swap not-ready taint for unreachable, will retry", "node", node.Name, "err", err)
			}
		} else if c.markNodeForTainting(node, corev1.ConditionUnknown) {
			c.log.Debug("node is unresponsive, queued for tainting", "node", node.Name)
		}
	case corev1.ConditionTrue:
		removed, err := c.markNodeAsReachable(ctx, node)
		if err != nil {
			c.log.Warn("failed to remove NoExecute taints from node, will retry", "node", node.Name, "err", err)
		}
		if removed {
			c.log.Debug("node is healthy again, removed its NoExecute taints", "node", node.Name)
		}
	}
}

func (c *Controller) markNodeForTainting(node *corev1.Node, status corev1.ConditionStatus) bool {
	c.evictorMu.Lock()
	defer c.evictorMu.Unlock()
	q := c.zoneTainters[zoneKey(node)]
	if q == nil {
		return false
	}
	if (status == corev1.ConditionFalse && !taintExists(node.Spec.Taints, &notReadyTaint)) ||
		(status == corev1.ConditionUnknown && !taintExists(node.Spec.Taints, &unreachableTaint)) {
		// Not (or no longer) tainted: make sure it is queued afresh.
		q.remove(node.Name)
	}
	return q.add(node.Name)
}

// markNodeAsReachable removes both NoExecute taints and takes the node out
// of its zone's queue.
func (c *Controller) markNodeAsReachable(ctx context.Context, node *corev1.Node) (bool, error) {
	if err := c.swapTaints(ctx, node, nil, []corev1.Taint{unreachableTaint, notReadyTaint}); err != nil {
		return false, err
	}
	c.evictorMu.Lock()
	defer c.evictorMu.Unlock()
	if q := c.zoneTainters[zoneKey(node)]; q != nil {
		return q.remove(node.Name), nil
	}
	return false, nil
}

// doNoExecuteTaintingPass taints the queued nodes, at each zone's rate.
func (c *Controller) doNoExecuteTaintingPass(ctx context.Context) {
	c.evictorMu.Lock()
	queues := make([]*taintQueue, 0, len(c.zoneTainters))
	for _, q := range c.zoneTainters {
		queues = append(queues, q)
	}
	c.evictorMu.Unlock()
	for _, q := range queues {
		q.try(func(name string) (bool, time.Duration) {
			node, err := c.nodes.Get(name)
			if apierrors.IsNotFound(err) {
				return true, 0
			}
			if err != nil {
				return false, 50 * time.Millisecond
			}
			ready := nodeCondition(&node.Status, corev1.NodeReady)
			if ready == nil {
				return false, 50 * time.Millisecond
			}
			// not-ready and unreachable mirror Ready, so they exclude
			// each other.
			var add, opposite corev1.Taint
			switch ready.Status {
			case corev1.ConditionFalse:
				add, opposite = notReadyTaint, unreachableTaint
			case corev1.ConditionUnknown:
				add, opposite = unreachableTaint, notReadyTaint
			default:
				return true, 0 // ready again
			}
			if err := c.swapTaints(ctx, node, []corev1.Taint{add}, []corev1.Taint{opposite}); err != nil {
				c.log.Warn("failed to taint node", "node", name, "err", err)
				return false, 0
			}
			return true, 0
		})
	}
}

// classifyNodes splits nodes into those not seen before, those gone, and
// known ones in a zone without state yet.
func (c *Controller) classifyNodes(all []*corev1.Node) (added, deleted, newZone []*corev1.Node) {
	seen := make(map[string]bool, len(all))
	for _, n := range all {
		seen[n.Name] = true
		if _, ok := c.knownNodes[n.Name]; !ok {
			added = append(added, n)
		} else if _, ok := c.zoneStates[zoneKey(n)]; !ok {
			newZone = append(newZone, n)
		}
	}
	if len(c.knownNodes)+len(added) != len(all) {
		for name, n := range c.knownNodes {
			if !seen[name] {
				deleted = append(deleted, n)
			}
		}
	}
	return added, deleted, newZone
}

// addZone starts tracking the node's zone if it is new.
func (c *Controller) addZone(node *corev1.Node) {
	c.evictorMu.Lock()
	defer c.evictorMu.Unlock()
	zone := zoneKey(node)
	if _, ok := c.zoneStates[zone]; !ok {
		c.zoneStates[zone] = stateInitial
		c.zoneTainters[zone] = newTaintQueue(c.opts.Clock, c.opts.NodeEvictionRate)
		c.log.Info("initializing eviction for zone", "zone", zone)
	}
}

// computeZoneState counts a zone's not-ready nodes and classifies it.
func (c *Controller) computeZoneState(conds []*corev1.NodeCondition) (int, zoneState) {
	ready, notReady := 0, 0
	for _, cond := range conds {
		if cond != nil && cond.Status == corev1.ConditionTrue {
			ready++
		} else {
			notReady++
		}
	}
	switch {
	case ready == 0 && notReady > 0:
		return notReady, stateFullDisruption
	case notReady > 2 && float32(notReady)/float32(notReady+ready) >= c.opts.UnhealthyZoneThreshold:
		return notReady, statePartialDisruption
	default:
		return notReady, stateNormal
	}
}

// handleDisruption moves zones between states and sets their tainting
// rates. When every zone is fully disrupted, all NoExecute taints go and
// tainting stops.
func (c *Controller) handleDisruption(ctx context.Context, zoneConditions map[string][]*corev1.NodeCondition, nodes []*corev1.Node) {
	c.evictorMu.Lock()
	defer c.evictorMu.Unlock()
	newStates := map[string]zoneState{}
	allAreFully := true
	for zone, conds := range zoneConditions {
		_, st := c.computeZoneState(conds)
		if st != stateFullDisruption {
			allAreFully = false
		}
		newStates[zone] = st
		if _, ok := c.zoneStates[zone]; !ok {
			c.zoneStates[zone] = stateInitial
			if c.zoneTainters[zone] == nil {
				c.zoneTainters[zone] = newTaintQueue(c.opts.Clock, c.opts.NodeEvictionRate)
			}
		}
	}
	allWasFully := true
	for zone, st := range c.zoneStates {
		if _, ok := zoneConditions[zone]; !ok {
			delete(c.zoneStates, zone)
			continue
		}
		if st != stateFullDisruption {
			allWasFully = false
			break
		}
	}
	if allAreFully && allWasFully {
		return
	}
	switch {
	case allAreFully:
		c.log.Info("all nodes are not ready: entering master disruption mode, no NoExecute taints")
		c.evictorMu.Unlock()
		for _, n := range nodes {
			if _, err := c.markNodeAsReachable(ctx, n); err != nil {
				c.log.Warn("failed to remove NoExecute taints from node", "node", n.Name, "err", err)
			}
		}
		c.evictorMu.Lock()
		for zone := range c.zoneStates {
			c.zoneTainters[zone].swapLimiter(0)
			c.zoneStates[zone] = stateFullDisruption
		}
	case allWasFully:
		c.log.Info("some nodes are ready: exiting master disruption mode")
		// Heartbeats were probably not getting through; start every
		// node's grace period afresh.
		now := c.now()
		for _, n := range nodes {
			if h := c.health.get(n.Name); h != nil {
				h.probeTimestamp, h.readyTransitionTimestamp = now, now
				c.health.set(n.Name, h)
			}
		}
		for zone := range c.zoneStates {
			c.setZoneRate(zone, len(zoneConditions[zone]), newStates[zone])
			c.zoneStates[zone] = newStates[zone]
		}
	default:
		for zone, st := range c.zoneStates {
			if st == newStates[zone] {
				continue
			}
			c.log.Info("zone is in a new state", "zone", zone, "state", newStates[zone])
			c.setZoneRate(zone, len(zoneConditions[zone]), newStates[zone])
			c.zoneStates[zone] = newStates[zone]
		}
	}
}

func (c *Controller) setZoneRate(zone string, size int, st zoneState) {
	q := c.zoneTainters[zone]
	switch st {
	case stateNormal:
		q.swapLimiter(c.opts.NodeEvictionRate)
	case statePartialDisruption:
		if int32(size) > c.opts.LargeClusterSizeThreshold {
			q.swapLimiter(c.opts.SecondaryNodeEvictionRate)
		} else {
			q.swapLimiter(0)
		}
	case stateFullDisruption:
		q.swapLimiter(c.opts.NodeEvictionRate)
	}
}

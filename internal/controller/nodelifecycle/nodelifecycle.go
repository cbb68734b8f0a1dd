// Package nodelifecycle watches node heartbeats and reacts to nodes that
// stop sending them, as kube-controller-manager's node-lifecycle-controller
// does (pkg/controller/nodelifecycle/node_lifecycle_controller.go):
//
//   - a node whose Lease in kube-node-lease and Ready condition heartbeat
//     have not moved for NodeMonitorGracePeriod (NodeStartupGracePeriod if
//     it never posted a status) gets every condition set to Unknown, a
//     NodeNotReady event, and its pods marked not ready;
//   - nodes with Ready=False/Unknown get the not-ready/unreachable
//     NoExecute taint (rate limited per zone; none at all when every node
//     is down), which the taint-eviction controller turns into evictions;
//   - node conditions and spec.unschedulable are mirrored into NoSchedule
//     taints (TaintNodesByCondition) for the scheduler.
//
// The heartbeat clock is this controller's own: it notes when it saw a
// heartbeat change, never comparing the node's timestamps with its clock,
// so clock skew between nodes and server does not matter.
package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Name is the controller's name in logs and the workqueue.
const Name = "node-lifecycle-controller"

// eventComponent is the source of the controller's events, as upstream.
const eventComponent = "node-controller"

// podsByNodeIndex indexes the shared pod informer by spec.nodeName.
const podsByNodeIndex = "nodelifecycle:nodeName"

const (
	// noExecuteTaintingPeriod is how often the zone queues are drained
	// (upstream NodeEvictionPeriod).
	noExecuteTaintingPeriod = 100 * time.Millisecond
	// healthUpdateRetries bounds the status update retries per pass.
	healthUpdateRetries = 5
	// monitorWorkers is how many nodes a health pass handles at once.
	monitorWorkers = 8

	nodePrefix = "node/"
	podPrefix  = "pod/"
)

// Options configure the controller; zero fields get kube-controller-manager's
// defaults.
type Options struct {
	// NodeMonitorPeriod is how often node health is checked. Default 5s.
	NodeMonitorPeriod time.Duration
	// NodeMonitorGracePeriod is how long a node may go without a
	// heartbeat before it is marked Unknown (skiff server
	// --node-monitor-grace-period). Default 40s.
	NodeMonitorGracePeriod time.Duration
	// NodeStartupGracePeriod replaces the grace period for a node that
	// never posted a Ready condition. Default 60s.
	NodeStartupGracePeriod time.Duration
	// NodeEvictionRate is how many nodes per second a healthy zone's
	// nodes get NoExecute taints at (--node-eviction-rate). Default 0.1.
	NodeEvictionRate float32
	// SecondaryNodeEvictionRate applies to partially disrupted zones of
	// large clusters (--secondary-node-eviction-rate). Default 0.01.
	SecondaryNodeEvictionRate float32
	// LargeClusterSizeThreshold is the zone size above which partial
	// disruption slows tainting instead of stopping it. Default 50.
	LargeClusterSizeThreshold int32
	// UnhealthyZoneThreshold is the fraction of not-ready nodes (at
	// least 3) that makes a zone partially disrupted. Default 0.55.
	UnhealthyZoneThreshold float32
	// Clock is the controller's clock; tests use a fake one.
	Clock clock.PassiveClock
}

func (o *Options) setDefaults() error {
	if o.NodeMonitorPeriod == 0 {
		o.NodeMonitorPeriod = 5 * time.Second
	}
	if o.NodeMonitorGracePeriod == 0 {
		o.NodeMonitorGracePeriod = 40 * time.Second
	}
	if o.NodeStartupGracePeriod == 0 {
		o.NodeStartupGracePeriod = 60 * time.Second
	}
	if o.NodeEvictionRate == 0 {
		o.NodeEvictionRate = 0.1
	}
	if o.SecondaryNodeEvictionRate == 0 {
		o.SecondaryNodeEvictionRate = 0.01
	}
	if o.LargeClusterSizeThreshold == 0 {
		o.LargeClusterSizeThreshold = 50
	}
	if o.UnhealthyZoneThreshold == 0 {
		o.UnhealthyZoneThreshold = 0.55
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	switch {
	case o.NodeMonitorPeriod < 0 || o.NodeMonitorGracePeriod < 0 || o.NodeStartupGracePeriod < 0:
		return errors.New("node monitor periods must be positive")
	case o.NodeEvictionRate < 0 || o.SecondaryNodeEvictionRate < 0:
		return errors.New("node eviction rates must not be negative")
	case o.UnhealthyZoneThreshold < 0 || o.UnhealthyZoneThreshold > 1:
		return errors.New("unhealthy zone threshold must be between 0 and 1")
	}
	return nil
}

// Controller is the node lifecycle controller.
type Controller struct {
	opts     Options
	client   kubernetes.Interface
	nodes    corelisters.NodeLister
	leases   coordlisters.LeaseLister
	pods     corelisters.PodLister
	podIndex cache.Indexer
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	log      *slog.Logger

	health *healthMap

	// knownNodes and zoneStates belong to the monitor pass.
	knownNodes map[string]*corev1.Node
	zoneStates map[string]zoneState

	// evictorMu guards zoneTainters.
	evictorMu    sync.Mutex
	zoneTainters map[string]*taintQueue

	// nodesToRetry are nodes whose pods must still be marked not ready.
	nodesToRetry sync.Map
}

// New registers the controller's handlers on the shared node, pod and lease
// informers.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if opts.NodeMonitorPeriod >= opts.NodeMonitorGracePeriod {
		cc.Logger(Name).Warn("node monitor period should be shorter than the grace period",
			"period", opts.NodeMonitorPeriod, "grace", opts.NodeMonitorGracePeriod)
	}
	nodeInf := cc.Informers.Core().V1().Nodes()
	podInf := cc.Informers.Core().V1().Pods()
	leaseInf := cc.Informers.Coordination().V1().Leases()
	c := &Controller{
		opts:         opts,
		client:       cc.Client,
		nodes:        nodeInf.Lister(),
		leases:       leaseInf.Lister(),
		pods:         podInf.Lister(),
		podIndex:     podInf.Informer().GetIndexer(),
		synced:       []cache.InformerSynced{nodeInf.Informer().HasSynced, podInf.Informer().HasSynced, leaseInf.Informer().HasSynced},
		queue:        controller.NewQueue(Name),
		recorder:     cc.EventRecorder(eventComponent),
		log:          cc.Logger(Name),
		health:       &healthMap{m: map[string]*nodeHealth{}},
		knownNodes:   map[string]*corev1.Node{},
		zoneStates:   map[string]zoneState{},
		zoneTainters: map[string]*taintQueue{},
	}
	if err := podInf.Informer().AddIndexers(cache.Indexers{podsByNodeIndex: func(obj any) ([]string, error) {
		if pod, ok := obj.(*corev1.Pod); ok && pod.Spec.NodeName != "" {
			return []string{pod.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	_, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.podUpdated(nil, obj.(*corev1.Pod)) },
		UpdateFunc: func(old, cur any) {
			c.podUpdated(old.(*corev1.Pod), cur.(*corev1.Pod))
		},
	})
	if err != nil {
		return nil, err
	}
	enqueueNode := func(obj any) {
		if key, ok := controller.KeyOf(obj); ok {
			c.queue.Add(nodePrefix + key)
		}
	}
	_, err = nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueNode,
		UpdateFunc: func(_, cur any) { enqueueNode(cur) },
		DeleteFunc: func(obj any) {
			if key, ok := controller.KeyOf(obj); ok {
				c.nodesToRetry.Delete(key)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// podUpdated queues pods that land on a node, so they are marked not ready
// at once if the node is not (processPod).
func (c *Controller) podUpdated(old, cur *corev1.Pod) {
	if cur.Spec.NodeName != "" && (old == nil || old.Spec.NodeName != cur.Spec.NodeName) {
		if key, ok := controller.KeyOf(cur); ok {
			c.queue.Add(podPrefix + key)
		}
	}
}

// Run monitors node health until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !cache.WaitForNamedCacheSync(Name, ctx.Done(), c.synced...) {
		c.queue.ShutDown()
		return ctx.Err()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		wait.UntilWithContext(ctx, c.doNoExecuteTaintingPass, noExecuteTaintingPeriod)
	}()
	go func() {
		defer wg.Done()
		wait.UntilWithContext(ctx, func(ctx context.Context) {
			if err := c.monitorNodeHealth(ctx); err != nil {
				c.log.Error("monitoring node health", "err", err)
			}
		}, c.opts.NodeMonitorPeriod)
	}()
	err := controller.RunWorkers(ctx, Name, c.queue, workers, c.reconcile, c.log, c.synced...)
	wg.Wait()
	return err
}

func (c *Controller) reconcile(ctx context.Context, key string) error {
	switch {
	case strings.HasPrefix(key, nodePrefix):
		node, err := c.nodes.Get(strings.TrimPrefix(key, nodePrefix))
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return errors.Join(c.syncNoScheduleTaints(ctx, node), c.reconcileLabels(ctx, node))
	case strings.HasPrefix(key, podPrefix):
		return c.processPod(ctx, strings.TrimPrefix(key, podPrefix))
	}
	return nil
}

// processPod marks a pod just bound to a not-ready node not ready.
func (c *Controller) processPod(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	h := c.health.get(pod.Spec.NodeName)
	if h == nil {
		return nil // not seen yet; the next health pass handles it
	}
	if _, err := c.nodes.Get(pod.Spec.NodeName); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	ready := nodeCondition(h.status, corev1.NodeReady)
	if ready == nil || ready.Status == corev1.ConditionTrue {
		return nil
	}
	return c.markPodsNotReady(ctx, []*corev1.Pod{pod}, pod.Spec.NodeName)
}

func (c *Controller) now() metav1.Time { return metav1.NewTime(c.opts.Clock.Now()) }

// podsOnNode lists the pods bound to the node from the shared cache.
func (c *Controller) podsOnNode(name string) ([]*corev1.Pod, error) {
	objs, err := c.podIndex.ByIndex(podsByNodeIndex, name)
	if err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// markPodsNotReady sets the Ready condition of the node's pods to False,
// with a NodeNotReady event each (upstream MarkPodsNotReady).
func (c *Controller) markPodsNotReady(ctx context.Context, pods []*corev1.Pod, nodeName string) error {
	var errs []error
	for _, p := range pods {
		if p.Spec.NodeName != nodeName {
			continue
		}
		cond := controller.PodCondition(&p.Status, corev1.PodReady)
		if cond == nil || cond.Status == corev1.ConditionFalse {
			continue
		}
		pod := p.DeepCopy()
		cond = controller.PodCondition(&pod.Status, corev1.PodReady)
		cond.Status = corev1.ConditionFalse
		cond.LastTransitionTime = c.now()
		if _, err := c.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			c.log.Info("failed to update status for pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			errs = append(errs, err)
			continue
		}
		c.recorder.Event(pod, corev1.EventTypeWarning, "NodeNotReady", "Node is not ready")
	}
	return errors.Join(errs...)
}

// recordNodeEvent is upstream's RecordNodeEvent ("Node x event: ...").
func (c *Controller) recordNodeEvent(node *corev1.Node, reason, event string) {
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}
	c.recorder.Eventf(ref, corev1.EventTypeNormal, reason, "Node %s event: %s", node.Name, event)
}

// recordNodeStatusChange is upstream's RecordNodeStatusChange
// ("Node x status is now: ...").
func (c *Controller) recordNodeStatusChange(node *corev1.Node, status string) {
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}
	c.recorder.Eventf(ref, corev1.EventTypeNormal, status, "Node %s status is now: %s", node.Name, status)
}

func nodeCondition(status *corev1.NodeStatus, t corev1.NodeConditionType) *corev1.NodeCondition {
	if status == nil {
		return nil
	}
	for i := range status.Conditions {
		if status.Conditions[i].Type == t {
			return &status.Conditions[i]
		}
	}
	return nil
}

// Package tainteviction deletes pods from nodes with NoExecute taints, as
// kube-controller-manager's taint-eviction-controller does
// (pkg/controller/tainteviction/taint_eviction.go): a pod that does not
// tolerate every NoExecute taint of its node is deleted at once; a pod that
// tolerates them with tolerationSeconds is deleted when the shortest of
// those runs out, unless the taints go away first.
//
// Unlike upstream, the toleration runs from each taint's timeAdded (the
// node-lifecycle controller stamps it) rather than from when this
// controller happened to notice the taint, so a restart of the server does
// not restart every countdown. Taints without timeAdded count from when
// they were first seen, and so does a taint first seen within the second
// its timeAdded (whole seconds) names, so no pod goes early.
package tainteviction

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Name is the controller's name and its events' source component.
const Name = "taint-eviction-controller"

// podsByNodeIndex indexes the shared pod informer by spec.nodeName.
const podsByNodeIndex = "tainteviction:nodeName"

// Queue keys are "node/<name>", "pod/<ns>/<name>" (re-check a pod) and
// "evict/<ns>/<name>" (a countdown ran out).
const (
	nodePrefix  = "node/"
	podPrefix   = "pod/"
	evictPrefix = "evict/"
)

// Options configure the controller.
type Options struct {
	// Clock runs the toleration countdowns; tests use a fake one.
	// Default: the real clock.
	Clock clock.WithDelayedExecution
}

// Controller evicts pods from NoExecute-tainted nodes.
type Controller struct {
	client   kubernetes.Interface
	pods     corelisters.PodLister
	podIndex cache.Indexer
	nodes    corelisters.NodeLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	log      *slog.Logger
	clock    clock.WithDelayedExecution

	mu sync.Mutex
	// tainted holds each node's NoExecute taints (nodes without any are
	// absent).
	tainted map[string][]corev1.Taint
	// evictions are the pods with a countdown running, or whose deletion
	// was issued (kept so it is not issued again), by "ns/name".
	evictions map[string]*eviction
}

type evictionState int

const (
	pending  evictionState = iota // countdown running
	deleting                      // countdown ran out, deletion in flight
	done                          // deleted; kept to not delete twice
)

type eviction struct {
	uid     types.UID
	created time.Time // when the countdown started (for taints without timeAdded)
	fireAt  time.Time
	timer   clock.Timer
	state   evictionState
	// announced is set once the TaintManagerEviction event went out.
	announced bool
}

// New registers the controller's handlers on the shared pod and node
// informers.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	podInf := cc.Informers.Core().V1().Pods()
	nodeInf := cc.Informers.Core().V1().Nodes()
	c := &Controller{
		client:    cc.Client,
		pods:      podInf.Lister(),
		podIndex:  podInf.Informer().GetIndexer(),
		nodes:     nodeInf.Lister(),
		synced:    []cache.InformerSynced{podInf.Informer().HasSynced, nodeInf.Informer().HasSynced},
		queue:     controller.NewQueue(Name),
		recorder:  cc.EventRecorder(Name),
		log:       cc.Logger(Name),
		clock:     opts.Clock,
		tainted:   map[string][]corev1.Taint{},
		evictions: map[string]*eviction{},
	}
	if err := podInf.Informer().AddIndexers(cache.Indexers{podsByNodeIndex: indexByNode}); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	_, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueuePod,
		UpdateFunc: func(old, cur any) {
			o, n := old.(*corev1.Pod), cur.(*corev1.Pod)
			// Only the node and the tolerations matter (status updates
			// are the bulk of pod events).
			if o.Spec.NodeName != n.Spec.NodeName || o.UID != n.UID ||
				!apiequality.Semantic.DeepEqual(o.Spec.Tolerations, n.Spec.Tolerations) {
				c.enqueuePod(cur)
			}
		},
		DeleteFunc: c.enqueuePod,
	})
	if err != nil {
		return nil, err
	}
	_, err = nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueNode,
		UpdateFunc: func(old, cur any) {
			o, n := old.(*corev1.Node), cur.(*corev1.Node)
			if !apiequality.Semantic.DeepEqual(noExecuteTaints(o.Spec.Taints), noExecuteTaints(n.Spec.Taints)) {
				c.enqueueNode(cur)
			}
		},
		DeleteFunc: c.enqueueNode,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func indexByNode(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return nil, nil
	}
	return []string{pod.Spec.NodeName}, nil
}

func (c *Controller) enqueuePod(obj any) {
	if key, ok := controller.KeyOf(obj); ok {
		c.queue.Add(podPrefix + key)
	}
}

func (c *Controller) enqueueNode(obj any) {
	if key, ok := controller.KeyOf(obj); ok {
		c.queue.Add(nodePrefix + key)
	}
}

// Run processes node, pod and eviction keys until ctx ends, then stops
// every countdown.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer c.stopTimers()
	return controller.RunWorkers(ctx, Name, c.queue, workers, c.reconcile, c.log, c.synced...)
}

func (c *Controller) stopTimers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.evictions {
		if e.timer != nil {
			e.timer.Stop()
		}
	}
}

func (c *Controller) reconcile(ctx context.Context, key string) error {
	switch {
	case strings.HasPrefix(key, nodePrefix):
		return c.syncNode(strings.TrimPrefix(key, nodePrefix))
	case strings.HasPrefix(key, podPrefix):
		return c.syncPodKey(strings.TrimPrefix(key, podPrefix))
	case strings.HasPrefix(key, evictPrefix):
		return c.evict(ctx, strings.TrimPrefix(key, evictPrefix))
	}
	return nil
}

// syncNode records the node's NoExecute taints and re-evaluates its pods.
func (c *Controller) syncNode(name string) error {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		// As upstream, countdowns of its pods keep running; the pods go
		// with the node (pod GC) or their countdown.
		c.mu.Lock()
		delete(c.tainted, name)
		c.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	taints := noExecuteTaints(node.Spec.Taints)
	c.mu.Lock()
	if len(taints) == 0 {
		delete(c.tainted, name)
	} else {
		c.tainted[name] = taints
	}
	c.mu.Unlock()
	// The taints are recorded before the pods are listed: a pod bound
	// later is handled by its own event against these taints.
	objs, err := c.podIndex.ByIndex(podsByNodeIndex, name)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		c.syncPod(obj.(*corev1.Pod))
	}
	return nil
}

func (c *Controller) syncPodKey(key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		c.cancelLocked(key)
		c.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	c.syncPod(pod)
	return nil
}

// syncPod starts, keeps, moves or cancels the pod's countdown from its
// node's current taints and its tolerations.
func (c *Controller) syncPod(pod *corev1.Pod) {
	key := pod.Namespace + "/" + pod.Name
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.evictions[key]
	if e != nil && e.uid != pod.UID {
		// A new pod under an old name.
		c.cancelLocked(key)
		e = nil
	}
	taints := c.tainted[pod.Spec.NodeName]
	if pod.Spec.NodeName == "" || len(taints) == 0 {
		c.cancelLocked(key)
		return
	}
	now := c.clock.Now()
	created := now
	if e != nil {
		created = e.created
	}
	fireAt, forever := evictionTime(taints, pod.Spec.Tolerations, created)
	if forever {
		c.cancelLocked(key)
		return
	}
	if e != nil {
		if e.state != pending || e.fireAt.Equal(fireAt) {
			return // already evicted, or nothing changed
		}
		// The deadline moved (taints or tolerations changed).
		c.cancelLocked(key)
	}
	e = &eviction{uid: pod.UID, created: created, fireAt: fireAt}
	c.evictions[key] = e
	if d := fireAt.Sub(now); d > 0 {
		c.log.Debug("pod tolerates the node's taints for now, scheduling its deletion", "pod", key, "node", pod.Spec.NodeName, "at", fireAt)
		// The callback runs on the clock's goroutine (under a fake
		// clock's lock): only enqueue.
		e.timer = c.clock.AfterFunc(d, func() { c.queue.Add(evictPrefix + key) })
		return
	}
	c.queue.Add(evictPrefix + key)
}

// cancelLocked forgets the pod's eviction; a countdown still running is
// announced as cancelled.
func (c *Controller) cancelLocked(key string) {
	e, ok := c.evictions[key]
	if !ok {
		return
	}
	delete(c.evictions, key)
	if e.timer != nil {
		e.timer.Stop()
	}
	if e.state == pending {
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		c.recorder.Eventf(podRef(ns, name), corev1.EventTypeNormal, "TaintManagerEviction", "Cancelling deletion of Pod %s", key)
	}
}

// evict deletes a pod whose countdown ran out.
func (c *Controller) evict(ctx context.Context, key string) error {
	c.mu.Lock()
	e := c.evictions[key]
	if e == nil || e.state != pending || c.clock.Now().Before(e.fireAt) {
		c.mu.Unlock()
		return nil // cancelled, moved, or already done
	}
	e.state = deleting
	announce := !e.announced
	e.announced = true
	uid := e.uid
	c.mu.Unlock()

	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	if announce {
		c.log.Info("deleting pod", "pod", key)
		c.recorder.Eventf(podRef(ns, name), corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s", key)
	}
	err := c.addConditionAndDeletePod(ctx, ns, name, uid)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.evictions[key] != e {
		return nil // cancelled meanwhile
	}
	if err != nil && !apierrors.IsNotFound(err) {
		e.state = pending // retried with backoff
		return fmt.Errorf("evict pod %s: %w", key, err)
	}
	e.state = done
	return nil
}

// addConditionAndDeletePod marks the pod DisruptionTarget and deletes it
// (gracefully), as upstream; both guarded by the pod's UID.
func (c *Controller) addConditionAndDeletePod(ctx context.Context, ns, name string, uid types.UID) error {
	pods := c.client.CoreV1().Pods(ns)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if pod.UID != uid {
		return apierrors.NewNotFound(corev1.Resource("pods"), name)
	}
	status := pod.Status.DeepCopy()
	if controller.UpdatePodCondition(status, &corev1.PodCondition{
		Type:    corev1.DisruptionTarget,
		Status:  corev1.ConditionTrue,
		Reason:  "DeletionByTaintManager",
		Message: "Taint manager: deleting due to NoExecute taint",
	}, metav1.NewTime(c.clock.Now())) {
		if err := controller.PatchPodStatus(ctx, c.client, pod, *status); err != nil {
			return err
		}
	}
	return pods.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
}

// evictionTime is when a pod with tolerations must leave a node with the
// NoExecute taints: now (created) if a taint is not tolerated; otherwise
// the earliest timeAdded+tolerationSeconds over the taints, where the
// tolerating toleration is the first that matches (upstream
// GetMatchingTolerations). forever means every taint is tolerated without
// a limit.
func evictionTime(taints []corev1.Taint, tolerations []corev1.Toleration, created time.Time) (at time.Time, forever bool) {
	forever = true
	for i := range taints {
		taint := &taints[i]
		var tol *corev1.Toleration
		for j := range tolerations {
			if tolerations[j].ToleratesTaint(logr.Discard(), taint, false) {
				tol = &tolerations[j]
				break
			}
		}
		if tol == nil {
			return created, false
		}
		if tol.TolerationSeconds == nil {
			continue
		}
		start := created
		if t := taint.TimeAdded; t != nil {
			start = t.Time
			// timeAdded is stored in whole seconds: when we saw the taint
			// within that second, our own time is the finer one (and an
			// eviction never comes early).
			if created.After(start) && created.Before(start.Add(time.Second)) {
				start = created
			}
		}
		t := start
		if s := *tol.TolerationSeconds; s > 0 {
			t = start.Add(time.Duration(s) * time.Second)
		}
		if forever || t.Before(at) {
			at, forever = t, false
		}
	}
	return at, forever
}

func noExecuteTaints(taints []corev1.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, t)
		}
	}
	return out
}

func podRef(ns, name string) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: name}
}

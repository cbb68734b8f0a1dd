package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Options configure the scheduler; zero values take kube-scheduler's
// defaults.
type Options struct {
	// SchedulerName selects the pods this scheduler handles by their
	// spec.schedulerName. Default "default-scheduler".
	SchedulerName string
	// PodInitialBackoff and PodMaxBackoff bound the retry backoff of a
	// pod that failed (kube's podInitialBackoffSeconds=1,
	// podMaxBackoffSeconds=10).
	PodInitialBackoff time.Duration
	PodMaxBackoff     time.Duration
	// PodMaxInUnschedulablePodsDuration is how long an unschedulable pod
	// waits at most for a cluster event before it is retried anyway.
	// Default 5m.
	PodMaxInUnschedulablePodsDuration time.Duration
	// PercentageOfNodesToScore (1..100) is the share of a large cluster
	// (100+ nodes) a decision filters before it stops looking for more
	// feasible nodes. 0 is kube's adaptive default: 50% - nodes/125, at
	// least 5% (420 of 1,000 nodes).
	PercentageOfNodesToScore int32
	// Clock is for tests; default the real clock.
	Clock clock.Clock
}

// Controller is the scheduler.
type Controller struct {
	opts      Options
	client    kubernetes.Interface
	recorder  record.EventRecorder
	log       *slog.Logger
	pods      corelisters.PodLister
	synced    []cache.InformerSynced
	cache     *schedCache
	queue     *schedulingQueue
	decisions decisionState // used by the one scheduling loop only
	work      chan func(context.Context)
}

// New builds the scheduler on cc's shared pod and node informers.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("scheduler: Client and Informers are required")
	}
	if opts.SchedulerName == "" {
		opts.SchedulerName = corev1.DefaultSchedulerName
	}
	if opts.PodInitialBackoff <= 0 {
		opts.PodInitialBackoff = time.Second
	}
	if opts.PodMaxBackoff <= 0 {
		opts.PodMaxBackoff = 10 * time.Second
	}
	if opts.PodMaxBackoff < opts.PodInitialBackoff {
		return nil, fmt.Errorf("scheduler: PodMaxBackoff %v is shorter than PodInitialBackoff %v", opts.PodMaxBackoff, opts.PodInitialBackoff)
	}
	if opts.PodMaxInUnschedulablePodsDuration <= 0 {
		opts.PodMaxInUnschedulablePodsDuration = 5 * time.Minute
	}
	if opts.PercentageOfNodesToScore < 0 || opts.PercentageOfNodesToScore > 100 {
		return nil, fmt.Errorf("scheduler: PercentageOfNodesToScore %d is not in 0..100", opts.PercentageOfNodesToScore)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	podInf := cc.Informers.Core().V1().Pods()
	nodeInf := cc.Informers.Core().V1().Nodes()
	c := &Controller{
		opts:     opts,
		client:   cc.Client,
		recorder: cc.EventRecorder(opts.SchedulerName),
		log:      cc.Logger("scheduler"),
		pods:     podInf.Lister(),
		synced:   []cache.InformerSynced{podInf.Informer().HasSynced, nodeInf.Informer().HasSynced},
		cache:    newSchedCache(),
		queue:    newSchedulingQueue(opts.Clock, opts.PodInitialBackoff, opts.PodMaxBackoff, opts.PodMaxInUnschedulablePodsDuration),
		decisions: decisionState{
			percentage: opts.PercentageOfNodesToScore,
			rnd:        rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		},
	}
	// One handler per informer, so that a pod's "pending" and "bound"
	// states reach queue and cache in order.
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.onPodAdd,
		UpdateFunc: c.onPodUpdate,
		DeleteFunc: c.onPodDelete,
	}); err != nil {
		return nil, err
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.onNodeAdd,
		UpdateFunc: c.onNodeUpdate,
		DeleteFunc: c.onNodeDelete,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Run schedules until ctx ends: one loop makes the decisions (they are
// cheap and must see each other's assumptions), workers goroutines bind and
// write statuses.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !cache.WaitForNamedCacheSync("scheduler", ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	if workers < 1 {
		workers = 1
	}
	c.work = make(chan func(context.Context), workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for fn := range c.work {
				fn(ctx)
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		// kube flushes every second; shorter backoffs (tests) flush sooner.
		wait.UntilWithContext(ctx, func(context.Context) { c.queue.flushBackoff() }, min(time.Second, c.opts.PodInitialBackoff))
	}()
	go func() {
		defer wg.Done()
		wait.UntilWithContext(ctx, func(context.Context) { c.queue.flushUnschedulable() }, 30*time.Second)
	}()
	go func() {
		<-ctx.Done()
		c.queue.close()
	}()
	c.log.Info("scheduler started", "workers", workers, "schedulerName", c.opts.SchedulerName)
	for {
		qp, ok := c.queue.pop()
		if !ok {
			break
		}
		c.scheduleOne(ctx, qp)
	}
	close(c.work)
	wg.Wait()
	return nil
}

// scheduleOne makes one decision and hands the write to a worker.
func (c *Controller) scheduleOne(ctx context.Context, qp *queuedPod) {
	pod := qp.info.Pod
	if cur, err := c.pods.Pods(pod.Namespace).Get(pod.Name); err != nil || cur.UID != pod.UID || cur.Spec.NodeName != "" || cur.DeletionTimestamp != nil {
		// Gone, replaced, bound already or terminating.
		c.queue.delete(pod.UID)
		return
	}
	if c.cache.isAssumed(pod.UID) {
		c.queue.done(qp)
		return
	}
	c.log.Debug("scheduling", "pod", klogKey(pod), "attempt", qp.attempts)
	c.cache.mu.Lock()
	d, err := schedule(qp.info, c.cache.snapshotLocked(), &c.decisions)
	if err == nil {
		c.cache.assumeLocked(qp.info, d.Node)
	}
	c.cache.mu.Unlock()
	if err != nil {
		c.unschedulable(ctx, qp, err)
		return
	}
	c.submit(ctx, func(ctx context.Context) { c.bind(ctx, qp, d.Node) })
}

func (c *Controller) submit(ctx context.Context, fn func(context.Context)) {
	select {
	case c.work <- fn:
	case <-ctx.Done():
	}
}

// bind is the write path of a decision: the pods/binding subresource.
func (c *Controller) bind(ctx context.Context, qp *queuedPod, node string) {
	pod := qp.info.Pod
	err := c.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if err == nil {
		c.log.Debug("bound", "pod", klogKey(pod), "node", node)
		c.queue.done(qp)
		c.recorder.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %v/%v to %v", pod.Namespace, pod.Name, node)
		return
	}
	if ctx.Err() != nil {
		return
	}
	// The room is free again, for this pod and any other.
	if c.cache.forget(pod.UID) {
		c.queue.moveAll()
	}
	cur, gerr := c.pods.Pods(pod.Namespace).Get(pod.Name)
	if apierrors.IsNotFound(err) || gerr != nil || cur.UID != pod.UID || cur.Spec.NodeName != "" {
		// Deleted, or bound by someone else: nothing to retry.
		c.queue.delete(pod.UID)
		return
	}
	c.queue.retry(qp)
	if apierrors.IsConflict(err) {
		// Already bound or being deleted, and the informer has not shown
		// it yet; the retry will find out. PodScheduled may already be
		// True, so leave the status alone.
		c.log.Debug("binding conflict, retrying", "pod", klogKey(pod), "node", node, "err", err)
		return
	}
	c.log.Warn("binding failed, retrying", "pod", klogKey(pod), "node", node, "err", err)
	msg := fmt.Sprintf("binding rejected: %v", err)
	c.recorder.Event(pod, corev1.EventTypeWarning, "FailedScheduling", truncateMessage(msg))
	c.setUnschedulableCondition(ctx, cur, corev1.PodReasonSchedulerError, msg)
}

// unschedulable reports a pod that fits nowhere and parks it until a
// cluster event (or its backoff) lets it try again.
func (c *Controller) unschedulable(ctx context.Context, qp *queuedPod, err error) {
	pod := qp.info.Pod
	msg := err.Error()
	c.log.Debug("pod is unschedulable", "pod", klogKey(pod), "reason", msg)
	c.recorder.Event(pod, corev1.EventTypeWarning, "FailedScheduling", truncateMessage(msg))
	c.queue.unschedulableAgain(qp)
	cur, gerr := c.pods.Pods(pod.Namespace).Get(pod.Name)
	if gerr != nil || cur.UID != pod.UID || !conditionDiffers(cur, corev1.PodReasonUnschedulable, msg) {
		return
	}
	c.submit(ctx, func(ctx context.Context) {
		c.setUnschedulableCondition(ctx, cur, corev1.PodReasonUnschedulable, msg)
	})
}

// conditionDiffers reports whether pod's PodScheduled condition is not
// already False with this reason and message.
func conditionDiffers(pod *corev1.Pod, reason, msg string) bool {
	cond := controller.PodCondition(&pod.Status, corev1.PodScheduled)
	return cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != reason || cond.Message != msg
}

// setUnschedulableCondition patches PodScheduled=False onto the pod's
// status (a strategic merge on the conditions list, guarded by the UID, as
// upstream's PatchPodStatus), unless it already says so.
func (c *Controller) setUnschedulableCondition(ctx context.Context, pod *corev1.Pod, reason, msg string) {
	if !conditionDiffers(pod, reason, msg) {
		return
	}
	transition := metav1.NewTime(c.opts.Clock.Now())
	if old := controller.PodCondition(&pod.Status, corev1.PodScheduled); old != nil && old.Status == corev1.ConditionFalse {
		transition = old.LastTransitionTime
	}
	patch := map[string]any{
		"metadata": map[string]any{"uid": pod.UID},
		"status": map[string]any{
			"conditions": []corev1.PodCondition{{
				Type:               corev1.PodScheduled,
				Status:             corev1.ConditionFalse,
				Reason:             reason,
				Message:            msg,
				LastTransitionTime: transition,
			}},
		},
	}
	data, err := json.Marshal(patch)
	if err != nil {
		c.log.Error("encoding status patch", "err", err)
		return
	}
	_, err = c.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{}, "status")
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
		c.log.Warn("updating PodScheduled condition", "pod", klogKey(pod), "err", err)
	}
}

// truncateMessage keeps events under upstream's 1024-byte message limit.
func truncateMessage(msg string) string {
	const max = 1024
	if len(msg) <= max {
		return msg
	}
	const suffix = " ..."
	return msg[:max-len(suffix)] + suffix
}

func klogKey(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }

// responsible reports whether a pending pod is this scheduler's to place:
// its schedulerName, not terminating or finished, no scheduling gates.
func (c *Controller) responsible(pod *corev1.Pod) bool {
	return pod.Spec.SchedulerName == c.opts.SchedulerName &&
		pod.DeletionTimestamp == nil &&
		len(pod.Spec.SchedulingGates) == 0 &&
		!controller.IsPodTerminal(pod)
}

func assigned(pod *corev1.Pod) bool { return pod.Spec.NodeName != "" }

func (c *Controller) onPodAdd(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if assigned(pod) {
		c.cache.setPod(pod)
		return
	}
	if c.responsible(pod) {
		c.queue.add(NewPodInfo(pod))
	}
}

func (c *Controller) onPodUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*corev1.Pod)
	pod, ok2 := newObj.(*corev1.Pod)
	if !ok1 || !ok2 {
		return
	}
	switch {
	case assigned(pod):
		if !assigned(old) {
			// Bound: the assumption (if ours) is confirmed.
			c.queue.delete(pod.UID)
		}
		if c.cache.setPod(pod) {
			c.queue.moveAll()
		}
	case c.responsible(pod):
		c.queue.update(NewPodInfo(pod), podSpecChanged(old, pod))
	default:
		c.queue.delete(pod.UID)
		if c.cache.forget(pod.UID) {
			c.queue.moveAll()
		}
	}
}

func (c *Controller) onPodDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	c.queue.delete(pod.UID)
	if c.cache.removePod(pod.UID) {
		c.queue.moveAll()
	}
}

// podSpecChanged is upstream's isPodUpdated: a change beyond status and
// bookkeeping fields (e.g. tolerations, affinity, requests, labels).
func podSpecChanged(old, cur *corev1.Pod) bool {
	strip := func(p *corev1.Pod) corev1.Pod {
		s := *p
		s.ObjectMeta = *p.ObjectMeta.DeepCopy()
		s.ResourceVersion = ""
		s.Generation = 0
		s.ManagedFields = nil
		s.Finalizers = nil
		s.Status = corev1.PodStatus{}
		return s
	}
	a, b := strip(old), strip(cur)
	return !reflect.DeepEqual(a, b)
}

func (c *Controller) onNodeAdd(obj any) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	c.cache.setNode(node)
	c.queue.moveAll()
}

func (c *Controller) onNodeUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*corev1.Node)
	node, ok2 := newObj.(*corev1.Node)
	if !ok1 || !ok2 {
		return
	}
	c.cache.setNode(node)
	if nodeSchedulingChanged(old, node) {
		c.queue.moveAll()
	}
}

func (c *Controller) onNodeDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	c.cache.removeNode(node.Name)
}

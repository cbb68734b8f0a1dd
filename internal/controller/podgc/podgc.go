// Package podgc force-deletes pods nothing else will clean up, as
// kube-controller-manager's pod-garbage-collector does
// (pkg/controller/podgc/gc_controller.go), every 20 seconds:
//
//   - pods bound to nodes that no longer exist (after a quarantine and an
//     uncached read of the node, so a slow informer never costs pods);
//   - terminating pods that were never scheduled;
//   - terminating pods on not-ready nodes tainted
//     node.kubernetes.io/out-of-service;
//   - terminated (Succeeded/Failed) pods beyond TerminatedPodThreshold,
//     evicted and oldest first.
//
// Each is first moved to phase Failed (orphans also get a DisruptionTarget
// condition), then deleted with grace period 0.
package podgc

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Name is the controller's name in logs.
const Name = "pod-garbage-collector"

// deleteWorkers bounds concurrent deletions in one pass.
const deleteWorkers = 8

// Options configure the collector; zero fields get kube-controller-manager's
// defaults.
type Options struct {
	// TerminatedPodThreshold is how many terminated pods may exist before
	// the oldest are deleted (--terminated-pod-gc-threshold). Default
	// 12500; negative disables it.
	TerminatedPodThreshold int
	// GCCheckPeriod is how often the collector runs. Default 20s.
	GCCheckPeriod time.Duration
	// QuarantineTime is how long a missing node must stay missing from
	// the cache before its pods are collected. Default 40s.
	QuarantineTime time.Duration
	// Clock times the quarantine; tests use a fake one.
	Clock clock.PassiveClock
}

// Controller is the pod garbage collector.
type Controller struct {
	opts   Options
	client kubernetes.Interface
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister
	synced []cache.InformerSynced
	log    *slog.Logger

	// missingSince is when each node pods are bound to was first found
	// missing from the cache. Only the gc pass touches it.
	missingSince map[string]time.Time
}

// New registers the pod and node informers.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if opts.TerminatedPodThreshold == 0 {
		opts.TerminatedPodThreshold = 12500
	}
	if opts.GCCheckPeriod == 0 {
		opts.GCCheckPeriod = 20 * time.Second
	}
	if opts.QuarantineTime == 0 {
		opts.QuarantineTime = 40 * time.Second
	}
	if opts.GCCheckPeriod < 0 || opts.QuarantineTime < 0 {
		return nil, fmt.Errorf("%s: periods must be positive", Name)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	podInf := cc.Informers.Core().V1().Pods()
	nodeInf := cc.Informers.Core().V1().Nodes()
	return &Controller{
		opts:         opts,
		client:       cc.Client,
		pods:         podInf.Lister(),
		nodes:        nodeInf.Lister(),
		synced:       []cache.InformerSynced{podInf.Informer().HasSynced, nodeInf.Informer().HasSynced},
		log:          cc.Logger(Name),
		missingSince: map[string]time.Time{},
	}, nil
}

// Run collects every GCCheckPeriod until ctx ends; workers is unused (one
// pass at a time, as upstream).
func (c *Controller) Run(ctx context.Context, _ int) error {
	if !cache.WaitForNamedCacheSync(Name, ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	wait.UntilWithContext(ctx, c.gc, c.opts.GCCheckPeriod)
	return nil
}

func (c *Controller) gc(ctx context.Context) {
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		c.log.Error("listing pods", "err", err)
		return
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		c.log.Error("listing nodes", "err", err)
		return
	}
	if c.opts.TerminatedPodThreshold > 0 {
		c.gcTerminated(ctx, pods)
	}
	c.gcTerminating(ctx, pods)
	c.gcOrphaned(ctx, pods, nodes)
	c.gcUnscheduledTerminating(ctx, pods)
}

// isPodTerminated is upstream's: any phase but Pending, Running, Unknown.
func isPodTerminated(pod *corev1.Pod) bool {
	p := pod.Status.Phase
	return p != corev1.PodPending && p != corev1.PodRunning && p != corev1.PodUnknown
}

func (c *Controller) gcTerminated(ctx context.Context, pods []*corev1.Pod) {
	var terminated []*corev1.Pod
	for _, p := range pods {
		if isPodTerminated(p) {
			terminated = append(terminated, p)
		}
	}
	n := len(terminated) - c.opts.TerminatedPodThreshold
	if n <= 0 {
		return
	}
	c.log.Info("garbage collecting terminated pods", "count", n)
	sort.Sort(byEvictionAndCreationTimestamp(terminated))
	c.deleteAll(ctx, terminated[:n], nil)
}

// gcTerminating collects terminating pods on not-ready nodes tainted
// out-of-service (the administrator declared the node dead).
func (c *Controller) gcTerminating(ctx context.Context, pods []*corev1.Pod) {
	var terminating []*corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil || p.Spec.NodeName == "" {
			continue
		}
		node, err := c.nodes.Get(p.Spec.NodeName)
		if err != nil {
			continue // gone nodes are gcOrphaned's
		}
		if !isNodeReady(node) && hasTaintKey(node, corev1.TaintNodeOutOfService) {
			terminating = append(terminating, p)
		}
	}
	if len(terminating) == 0 {
		return
	}
	c.log.Info("garbage collecting terminating pods on out-of-service nodes", "count", len(terminating))
	sort.Sort(byEvictionAndCreationTimestamp(terminating))
	c.deleteAll(ctx, terminating, nil)
}

// gcOrphaned collects pods bound to nodes that do not exist. A node must
// be missing from the cache for the quarantine time and then be confirmed
// gone by an uncached read.
func (c *Controller) gcOrphaned(ctx context.Context, pods []*corev1.Pod, nodes []*corev1.Node) {
	existing := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		existing[n.Name] = true
	}
	now := c.opts.Clock.Now()
	referenced := map[string]bool{}
	for _, p := range pods {
		if p.Spec.NodeName == "" || existing[p.Spec.NodeName] {
			continue
		}
		referenced[p.Spec.NodeName] = true
		if _, ok := c.missingSince[p.Spec.NodeName]; !ok {
			c.missingSince[p.Spec.NodeName] = now
		}
	}
	deleted := map[string]bool{}
	for name, since := range c.missingSince {
		if !referenced[name] {
			delete(c.missingSince, name) // the node is back, or its pods are gone
			continue
		}
		if now.Sub(since) < c.opts.QuarantineTime {
			continue
		}
		_, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			deleted[name] = true
		case err != nil:
			c.log.Warn("error while getting node", "node", name, "err", err)
		default:
			delete(c.missingSince, name) // exists after all; the cache lags
		}
	}
	if len(deleted) == 0 {
		return
	}
	var orphans []*corev1.Pod
	for _, p := range pods {
		if deleted[p.Spec.NodeName] {
			c.log.Info("found orphaned pod assigned to a deleted node, deleting", "pod", p.Namespace+"/"+p.Name, "node", p.Spec.NodeName)
			orphans = append(orphans, p)
		}
	}
	c.deleteAll(ctx, orphans, &corev1.PodCondition{
		Type:    corev1.DisruptionTarget,
		Status:  corev1.ConditionTrue,
		Reason:  "DeletionByPodGC",
		Message: "PodGC: node no longer exists",
	})
	for name := range deleted {
		delete(c.missingSince, name)
	}
}

// gcUnscheduledTerminating collects terminating pods never bound to a
// node: no kubelet will ever confirm their deletion.
func (c *Controller) gcUnscheduledTerminating(ctx context.Context, pods []*corev1.Pod) {
	var unscheduled []*corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp != nil && p.Spec.NodeName == "" {
			c.log.Info("found unscheduled terminating pod not assigned to any node, deleting", "pod", p.Namespace+"/"+p.Name)
			unscheduled = append(unscheduled, p)
		}
	}
	c.deleteAll(ctx, unscheduled, nil)
}

func (c *Controller) deleteAll(ctx context.Context, pods []*corev1.Pod, cond *corev1.PodCondition) {
	var mu sync.Mutex
	var failed int
	workqueue.ParallelizeUntil(ctx, deleteWorkers, len(pods), func(i int) {
		if err := c.markFailedAndDelete(ctx, pods[i], cond); err != nil && !apierrors.IsNotFound(err) {
			c.log.Warn("failed to force delete pod", "pod", pods[i].Namespace+"/"+pods[i].Name, "err", err)
			mu.Lock()
			failed++
			mu.Unlock()
		}
	})
	if failed > 0 {
		c.log.Warn("some pods were not collected; retrying next pass", "failed", failed)
	}
}

// markFailedAndDelete moves the pod to phase Failed (so nothing keeps
// counting it as running), then deletes it with grace period 0.
func (c *Controller) markFailedAndDelete(ctx context.Context, pod *corev1.Pod, cond *corev1.PodCondition) error {
	c.log.Info("force deleting pod", "pod", pod.Namespace+"/"+pod.Name)
	if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		status := pod.Status.DeepCopy()
		status.Phase = corev1.PodFailed
		if cond != nil {
			c2 := *cond
			controller.UpdatePodCondition(status, &c2, metav1.NewTime(c.opts.Clock.Now()))
		}
		if err := controller.PatchPodStatus(ctx, c.client, pod, *status); err != nil {
			return err
		}
	}
	return c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
}

// byEvictionAndCreationTimestamp puts evicted pods first, then the oldest,
// then by name.
type byEvictionAndCreationTimestamp []*corev1.Pod

func (o byEvictionAndCreationTimestamp) Len() int      { return len(o) }
func (o byEvictionAndCreationTimestamp) Swap(i, j int) { o[i], o[j] = o[j], o[i] }
func (o byEvictionAndCreationTimestamp) Less(i, j int) bool {
	ei, ej := isEvicted(o[i]), isEvicted(o[j])
	if ei != ej {
		return ei
	}
	if o[i].CreationTimestamp.Equal(&o[j].CreationTimestamp) {
		return o[i].Name < o[j].Name
	}
	return o[i].CreationTimestamp.Before(&o[j].CreationTimestamp)
}

// isEvicted is the kubelet's eviction.PodIsEvicted.
func isEvicted(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed && p.Status.Reason == "Evicted"
}

func isNodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasTaintKey(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

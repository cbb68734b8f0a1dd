// Package replicaset is skiff's ReplicaSet controller, after Kubernetes'
// pkg/controller/replicaset: it keeps each ReplicaSet's number of active
// pods at spec.replicas, owns them through controller ownerReferences
// (adopting matching orphans, releasing pods that stop matching), and
// reports replicas, fullyLabeledReplicas, readyReplicas,
// availableReplicas, terminatingReplicas and the ReplicaFailure condition
// in its status.
//
// Reconcile is level-triggered per ReplicaSet key. Pod events wake the
// owning ReplicaSet (or, for orphans, every ReplicaSet whose selector
// matches), and expectations keep a ReplicaSet from scaling again until
// the cache has seen the pods it just created or deleted.
package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Name is the controller's name in logs and the workqueue; events come
// from the upstream component name.
const (
	Name      = "replicaset"
	component = "replicaset-controller"
)

// DefaultBurstReplicas is upstream's BurstReplicas: at most this many pods
// are created or deleted by one sync.
const DefaultBurstReplicas = 500

// Informer index names; prefixed with the package as shared informers are
// shared.
const (
	// podOwnerIndex maps a pod to its controller's UID, or an orphan to
	// orphanKey(namespace).
	podOwnerIndex = "replicaset:podOwner"
	// rsOwnerIndex maps a ReplicaSet to its controller's UID.
	rsOwnerIndex = "replicaset:rsOwner"
)

func orphanKey(namespace string) string { return "orphan/" + namespace }

var rsKind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")

// Options tune the controller; the zero value is upstream's behaviour.
type Options struct {
	// BurstReplicas caps the pods created or deleted per sync
	// (default DefaultBurstReplicas).
	BurstReplicas int
	// DisableTerminatingReplicas leaves status.terminatingReplicas unset,
	// as with the DeploymentReplicaSetTerminatingReplicas feature off
	// (it is on by default since Kubernetes 1.35).
	DisableTerminatingReplicas bool
	// Clock decides pod availability (minReadySeconds) and expectation
	// expiry; default the real clock.
	Clock clock.PassiveClock
}

// Controller is the ReplicaSet controller.
type Controller struct {
	client    kubernetes.Interface
	rsLister  appslisters.ReplicaSetLister
	rsIndex   cache.Indexer
	podLister corelisters.PodLister
	podIndex  cache.Indexer
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
	recorder  record.EventRecorder
	log       *slog.Logger
	exp       *expectations

	burst       int
	terminating bool
	clock       clock.PassiveClock
}

// New builds the controller and registers its handlers and indexes on the
// shared pod and ReplicaSet informers of cc. It starts nothing.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("replicaset: Context needs Client and Informers")
	}
	if opts.BurstReplicas < 0 {
		return nil, fmt.Errorf("replicaset: BurstReplicas must not be negative, got %d", opts.BurstReplicas)
	}
	if opts.BurstReplicas == 0 {
		opts.BurstReplicas = DefaultBurstReplicas
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	rsInf := cc.Informers.Apps().V1().ReplicaSets()
	podInf := cc.Informers.Core().V1().Pods()
	c := &Controller{
		client:      cc.Client,
		rsLister:    rsInf.Lister(),
		rsIndex:     rsInf.Informer().GetIndexer(),
		podLister:   podInf.Lister(),
		podIndex:    podInf.Informer().GetIndexer(),
		queue:       controller.NewQueue(Name),
		recorder:    cc.EventRecorder(component),
		log:         cc.Logger(component),
		exp:         newExpectations(opts.Clock.Now),
		burst:       opts.BurstReplicas,
		terminating: !opts.DisableTerminatingReplicas,
		clock:       opts.Clock,
	}
	if err := addIndexer(rsInf.Informer(), rsOwnerIndex, indexByController); err != nil {
		return nil, err
	}
	if err := addIndexer(podInf.Informer(), podOwnerIndex, indexPodByController); err != nil {
		return nil, err
	}
	rsReg, err := rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addRS,
		UpdateFunc: c.updateRS,
		DeleteFunc: c.deleteRS,
	})
	if err != nil {
		return nil, fmt.Errorf("replicaset: %w", err)
	}
	podReg, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addPod,
		UpdateFunc: c.updatePod,
		DeleteFunc: c.deletePod,
	})
	if err != nil {
		return nil, fmt.Errorf("replicaset: %w", err)
	}
	c.synced = []cache.InformerSynced{rsReg.HasSynced, podReg.HasSynced}
	return c, nil
}

// Run syncs ReplicaSets with workers goroutines until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	c.log.Info("starting controller", "workers", workers)
	defer c.log.Info("stopped controller")
	return controller.RunWorkers(ctx, Name, c.queue, workers, c.reconcile, c.log, c.synced...)
}

// addIndexer adds an index unless a previous controller on the same
// informer already did (same name, same function).
func addIndexer(inf cache.SharedIndexInformer, name string, fn cache.IndexFunc) error {
	if _, ok := inf.GetIndexer().GetIndexers()[name]; ok {
		return nil
	}
	if err := inf.AddIndexers(cache.Indexers{name: fn}); err != nil {
		return fmt.Errorf("replicaset: add index %s: %w", name, err)
	}
	return nil
}

func indexByController(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return []string{string(ref.UID)}, nil
	}
	return nil, nil
}

func indexPodByController(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		return []string{string(ref.UID)}, nil
	}
	return []string{orphanKey(pod.Namespace)}, nil
}

// --- event handlers: they only map events to ReplicaSet keys ---

func (c *Controller) enqueue(rs *appsv1.ReplicaSet) {
	if key, ok := controller.KeyOf(rs); ok {
		c.queue.Add(key)
	}
}

func (c *Controller) addRS(obj any) {
	if rs, ok := obj.(*appsv1.ReplicaSet); ok {
		c.enqueue(rs)
	}
}

func (c *Controller) updateRS(oldObj, curObj any) {
	old, ok1 := oldObj.(*appsv1.ReplicaSet)
	cur, ok2 := curObj.(*appsv1.ReplicaSet)
	if !ok1 || !ok2 {
		return
	}
	if old.UID != cur.UID {
		// Deleted and recreated between two watch events: the old one's
		// expectations must not hold up the new one.
		if key, ok := controller.KeyOf(old); ok {
			c.exp.forget(key)
		}
	}
	// Enqueue on every update, not only spec changes, so a resync retries
	// ReplicaSets whose last creates failed.
	c.enqueue(cur)
}

func (c *Controller) deleteRS(obj any) {
	key, ok := controller.KeyOf(obj)
	if !ok {
		return
	}
	c.exp.forget(key)
	c.queue.Add(key)
}

// resolveControllerRef returns the ReplicaSet a controller reference
// points at, or nil when it is not one we know (wrong kind, or a different
// object of the same name).
func (c *Controller) resolveControllerRef(namespace string, ref *metav1.OwnerReference) *appsv1.ReplicaSet {
	if ref.Kind != rsKind.Kind {
		return nil
	}
	rs, err := c.rsLister.ReplicaSets(namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return nil
	}
	return rs
}

// podReplicaSets returns the ReplicaSets whose selector matches an
// (orphan) pod, so they can adopt it.
func (c *Controller) podReplicaSets(pod *corev1.Pod) []*appsv1.ReplicaSet {
	rss, err := c.rsLister.GetPodReplicaSets(pod)
	if err != nil {
		return nil
	}
	if len(rss) > 1 {
		// ControllerRef keeps this safe, but it is a user error.
		c.log.Warn("more than one ReplicaSet selects pod", "pod", pod.Namespace+"/"+pod.Name, "labels", pod.Labels)
	}
	return rss
}

func (c *Controller) addPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.DeletionTimestamp != nil {
		// Seen for the first time already being deleted (e.g. after a
		// restart): that is a deletion, not a creation.
		c.deletePod(pod)
		return
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		rs := c.resolveControllerRef(pod.Namespace, ref)
		if rs == nil {
			return
		}
		key, ok := controller.KeyOf(rs)
		if !ok {
			return
		}
		c.exp.creationObserved(key)
		c.queue.Add(key)
		return
	}
	// An orphan: wake every ReplicaSet that might adopt it. No creation is
	// observed; nobody expects orphans.
	for _, rs := range c.podReplicaSets(pod) {
		c.enqueue(rs)
	}
}

func (c *Controller) updatePod(oldObj, curObj any) {
	old, ok1 := oldObj.(*corev1.Pod)
	cur, ok2 := curObj.(*corev1.Pod)
	if !ok1 || !ok2 || old.ResourceVersion == cur.ResourceVersion {
		return // a resync: nothing changed
	}
	labelsChanged := !reflect.DeepEqual(old.Labels, cur.Labels)
	if cur.DeletionTimestamp != nil {
		// A graceful delete started: act now rather than when the pod is
		// finally gone, so replacements are created at once.
		c.deletePod(cur)
		if labelsChanged {
			c.deletePod(old)
		}
		return
	}
	curRef := metav1.GetControllerOfNoCopy(cur)
	oldRef := metav1.GetControllerOfNoCopy(old)
	refChanged := !reflect.DeepEqual(curRef, oldRef)
	if refChanged && oldRef != nil {
		if rs := c.resolveControllerRef(old.Namespace, oldRef); rs != nil {
			c.enqueue(rs)
		}
	}
	if curRef != nil {
		// Status changes (readiness) matter to status; availability after
		// minReadySeconds is rechecked by the sync's RequeueAfter.
		if rs := c.resolveControllerRef(cur.Namespace, curRef); rs != nil {
			c.enqueue(rs)
		}
		return
	}
	if labelsChanged || refChanged {
		for _, rs := range c.podReplicaSets(cur) {
			c.enqueue(rs)
		}
	}
}

func (c *Controller) deletePod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if pod, ok = tomb.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return // nobody cares about orphans going away
	}
	rs := c.resolveControllerRef(pod.Namespace, ref)
	if rs == nil {
		return
	}
	key, ok := controller.KeyOf(rs)
	if !ok {
		return
	}
	c.exp.deletionObserved(key, podKey(pod))
	c.queue.Add(key)
}

func podKey(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }

// --- reconcile ---

func (c *Controller) reconcile(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		c.log.Error("bad key", "key", key, "err", err)
		return nil
	}
	rs, err := c.rsLister.ReplicaSets(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	needsSync := c.exp.satisfied(key)
	selector, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		// Invalid selectors are rejected by validation; nothing to retry.
		c.log.Error("invalid selector", "replicaset", key, "err", err)
		return nil
	}

	pods, err := c.candidatePods(rs)
	if err != nil {
		return err
	}
	var active, terminating []*corev1.Pod
	for _, p := range pods {
		switch {
		case controller.IsPodActive(p):
			active = append(active, p)
		case c.terminating && p.DeletionTimestamp != nil && !controller.IsPodTerminal(p):
			// Terminating pods are counted, never claimed: only those
			// already ours and still matching.
			if ref := metav1.GetControllerOfNoCopy(p); ref != nil && ref.UID == rs.UID && selector.Matches(labels.Set(p.Labels)) {
				terminating = append(terminating, p)
			}
		}
	}
	active, err = c.claimPods(ctx, rs, selector, active)
	if err != nil {
		return err
	}

	var manageErr error
	if needsSync && rs.DeletionTimestamp == nil {
		manageErr = c.manageReplicas(ctx, active, rs)
	}
	now := c.clock.Now()
	st := calculateStatus(rs, active, terminating, manageErr, c.terminating, now)
	updated, err := updateStatus(ctx, c.client.AppsV1().ReplicaSets(rs.Namespace), rs, st)
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile; its delete event cleans up
	}
	if err != nil {
		return err
	}

	// Pods that are ready but not yet available become available with
	// no event of their own: look again when the first one does.
	var recheck time.Duration
	if m := updated.Spec.MinReadySeconds; m > 0 && updated.Status.ReadyReplicas != updated.Status.AvailableReplicas {
		recheck = time.Duration(m) * time.Second
		if next := nextAvailabilityCheck(active, m, now); next != nil {
			recheck = *next
		}
	}
	if manageErr != nil {
		if recheck > 0 {
			c.queue.AddAfter(key, recheck)
		}
		return manageErr
	}
	if recheck > 0 {
		return controller.RequeueAfter(recheck)
	}
	return nil
}

// candidatePods returns the pods a ReplicaSet might own: those it
// controls already and the orphans of its namespace (from the index, so a
// sync costs its own pods, not the namespace's).
func (c *Controller) candidatePods(rs *appsv1.ReplicaSet) ([]*corev1.Pod, error) {
	owned, err := c.podIndex.ByIndex(podOwnerIndex, string(rs.UID))
	if err != nil {
		return nil, err
	}
	orphans, err := c.podIndex.ByIndex(podOwnerIndex, orphanKey(rs.Namespace))
	if err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, 0, len(owned)+len(orphans))
	for _, list := range [][]any{owned, orphans} {
		for _, obj := range list {
			if p, ok := obj.(*corev1.Pod); ok && p.Namespace == rs.Namespace {
				pods = append(pods, p)
			}
		}
	}
	return pods, nil
}

// claimPods adopts matching orphans and releases owned pods that stopped
// matching, returning the pods the ReplicaSet controls afterwards.
func (c *Controller) claimPods(ctx context.Context, rs *appsv1.ReplicaSet, selector labels.Selector, pods []*corev1.Pod) ([]*corev1.Pod, error) {
	podsClient := c.client.CoreV1().Pods(rs.Namespace)
	m := &controller.RefManager{
		Owner:    rs,
		OwnerGVK: rsKind,
		Selector: selector,
		Patch: func(ctx context.Context, name string, data []byte) error {
			_, err := podsClient.Patch(ctx, name, controller.PatchType, data, metav1.PatchOptions{})
			return err
		},
		// Before adopting, make sure with an uncached read that the
		// ReplicaSet is not being deleted (upstream #42639).
		CanAdopt: controller.RecheckDeletion(rs, func(ctx context.Context) (metav1.Object, error) {
			return c.client.AppsV1().ReplicaSets(rs.Namespace).Get(ctx, rs.Name, metav1.GetOptions{})
		}),
	}
	objs := make([]metav1.Object, len(pods))
	for i, p := range pods {
		objs[i] = p
	}
	claimed, err := m.Claim(ctx, objs)
	out := make([]*corev1.Pod, len(claimed))
	for i, o := range claimed {
		out[i] = o.(*corev1.Pod)
	}
	return out, err
}

// Package deployment is skiff's Deployment controller, a rewrite of
// Kubernetes' pkg/controller/deployment: one ReplicaSet per pod template
// (named "<deployment>-<pod-template-hash>"), RollingUpdate within
// maxSurge/maxUnavailable, Recreate, proportional scaling during a
// rollout, revision annotations and history cleanup, pause/resume and the
// Progressing/Available conditions with progressDeadlineSeconds.
//
// It only writes Deployments (status, revision annotation) and ReplicaSets
// (create, scale, annotate, delete) through the API; the ReplicaSet
// controller turns ReplicaSets into pods. `kubectl rollout undo|restart|
// history|status` and `kubectl scale` work on top of this behaviour.
package deployment

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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-dev/skiff/internal/controller"
)

const (
	// Name is the controller's name (queue, logs).
	Name = "deployment"
	// Component is the event source, as in Kubernetes.
	Component = "deployment-controller"

	// podsByOwnerIndex indexes pods by their controller's UID, so that a
	// Recreate rollout finds its old pods without scanning the namespace.
	podsByOwnerIndex = "deployment:controller-uid"
)

var controllerKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

// Options tune the controller. The zero value is ready to use.
type Options struct {
	// Now is the clock for conditions and progress deadlines (tests);
	// default time.Now.
	Now func() time.Time
}

// Controller reconciles Deployments into ReplicaSets.
type Controller struct {
	client   kubernetes.Interface
	recorder record.EventRecorder
	log      *slog.Logger
	now      func() time.Time

	dLister   appslisters.DeploymentLister
	rsLister  appslisters.ReplicaSetLister
	podLister corelisters.PodLister
	podIndex  cache.Indexer
	synced    []cache.InformerSynced

	queue workqueue.TypedRateLimitingInterface[string]
}

// New builds the controller and registers its handlers on the shared
// Deployment, ReplicaSet and Pod informers of cc.Informers.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("deployment controller: Client and Informers are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dInf := cc.Informers.Apps().V1().Deployments()
	rsInf := cc.Informers.Apps().V1().ReplicaSets()
	podInf := cc.Informers.Core().V1().Pods()
	c := &Controller{
		client:    cc.Client,
		recorder:  cc.EventRecorder(Component),
		log:       cc.Logger(Component),
		now:       opts.Now,
		dLister:   dInf.Lister(),
		rsLister:  rsInf.Lister(),
		podLister: podInf.Lister(),
		podIndex:  podInf.Informer().GetIndexer(),
		queue:     controller.NewQueue(Name),
	}
	if err := podInf.Informer().AddIndexers(cache.Indexers{podsByOwnerIndex: podOwnerUID}); err != nil {
		return nil, fmt.Errorf("deployment controller: pod index: %w", err)
	}
	if _, err := dInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, cur any) { c.enqueue(cur) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, err
	}
	if _, err := rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addReplicaSet,
		UpdateFunc: c.updateReplicaSet,
		DeleteFunc: c.deleteReplicaSet,
	}); err != nil {
		return nil, err
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, cur any) {
			if p, ok := cur.(*corev1.Pod); ok && controller.IsPodTerminal(p) {
				c.podGone(cur)
			}
		},
		DeleteFunc: c.podGone,
	}); err != nil {
		return nil, err
	}
	c.synced = []cache.InformerSynced{dInf.Informer().HasSynced, rsInf.Informer().HasSynced, podInf.Informer().HasSynced}
	return c, nil
}

// Run works the queue with workers goroutines until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	c.log.Info("starting controller", "workers", workers)
	defer c.log.Info("stopped controller")
	return controller.RunWorkers(ctx, Name, c.queue, workers, c.reconcile, c.log, c.synced...)
}

func podOwnerUID(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		return []string{string(ref.UID)}, nil
	}
	return nil, nil
}

func (c *Controller) enqueue(obj any) {
	if key, ok := controller.KeyOf(obj); ok {
		c.queue.Add(key)
	}
}

// resolve returns the deployment a controller reference points to, if it
// still exists with that UID.
func (c *Controller) resolve(ns string, ref *metav1.OwnerReference) *appsv1.Deployment {
	if ref == nil || ref.Kind != controllerKind.Kind {
		return nil
	}
	d, err := c.dLister.Deployments(ns).Get(ref.Name)
	if err != nil || d.UID != ref.UID {
		return nil
	}
	return d
}

// deploymentsSelecting lists the deployments whose selector matches an
// orphan ReplicaSet (candidates for adoption).
func (c *Controller) deploymentsSelecting(rs *appsv1.ReplicaSet) []*appsv1.Deployment {
	if len(rs.Labels) == 0 {
		return nil
	}
	ds, err := c.dLister.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*appsv1.Deployment
	for _, d := range ds {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(rs.Labels)) {
			continue
		}
		out = append(out, d)
	}
	return out
}

func (c *Controller) addReplicaSet(obj any) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	if rs.DeletionTimestamp != nil {
		c.deleteReplicaSet(rs)
		return
	}
	if ref := metav1.GetControllerOfNoCopy(rs); ref != nil {
		if d := c.resolve(rs.Namespace, ref); d != nil {
			c.enqueue(d)
		}
		return
	}
	for _, d := range c.deploymentsSelecting(rs) {
		c.enqueue(d)
	}
}

func (c *Controller) updateReplicaSet(old, cur any) {
	oldRS, ok1 := old.(*appsv1.ReplicaSet)
	curRS, ok2 := cur.(*appsv1.ReplicaSet)
	if !ok1 || !ok2 || oldRS.ResourceVersion == curRS.ResourceVersion {
		return
	}
	curRef, oldRef := metav1.GetControllerOfNoCopy(curRS), metav1.GetControllerOfNoCopy(oldRS)
	refChanged := !reflect.DeepEqual(curRef, oldRef)
	if refChanged && oldRef != nil {
		if d := c.resolve(oldRS.Namespace, oldRef); d != nil {
			c.enqueue(d)
		}
	}
	if curRef != nil {
		if d := c.resolve(curRS.Namespace, curRef); d != nil {
			c.enqueue(d)
		}
		return
	}
	if refChanged || !reflect.DeepEqual(curRS.Labels, oldRS.Labels) {
		for _, d := range c.deploymentsSelecting(curRS) {
			c.enqueue(d)
		}
	}
}

func (c *Controller) deleteReplicaSet(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	if d := c.resolve(rs.Namespace, metav1.GetControllerOfNoCopy(rs)); d != nil {
		c.enqueue(d)
	}
}

// podGone wakes a Recreate deployment whose old pods are going away, so
// it creates the new ReplicaSet once the last one is gone.
func (c *Controller) podGone(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	rs, err := c.rsLister.ReplicaSets(pod.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return
	}
	if d := c.resolve(rs.Namespace, metav1.GetControllerOfNoCopy(rs)); d != nil &&
		d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		c.enqueue(d)
	}
}

// reconcile is Kubernetes' syncDeployment. Like upstream's handleErr, it
// does not retry writes refused because the namespace is terminating: the
// namespace controller is about to delete the deployment anyway.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	err := c.syncDeployment(ctx, key)
	if err != nil && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		return nil
	}
	return err
}

func (c *Controller) syncDeployment(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.dLister.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	d := cached.DeepCopy()

	if reflect.DeepEqual(d.Spec.Selector, &metav1.LabelSelector{}) {
		c.recorder.Eventf(d, corev1.EventTypeWarning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			_ = c.updateStatus(ctx, d)
		}
		return nil
	}

	rsList, err := c.replicaSetsFor(ctx, d)
	if err != nil {
		return err
	}
	if d.DeletionTimestamp != nil {
		return c.syncStatusOnly(ctx, d, rsList)
	}
	// An Unknown Progressing condition on pause/resume keeps a resumed
	// deployment from timing out at once.
	if err := c.checkPausedConditions(ctx, d); err != nil {
		return err
	}
	if d.Spec.Paused {
		return c.sync(ctx, d, rsList)
	}
	scaling, err := c.isScalingEvent(ctx, d, rsList)
	if err != nil {
		return err
	}
	if scaling {
		return c.sync(ctx, d, rsList)
	}
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		return c.rolloutRecreate(ctx, d, rsList)
	case appsv1.RollingUpdateDeploymentStrategyType:
		return c.rolloutRolling(ctx, d, rsList)
	}
	return fmt.Errorf("unexpected deployment strategy type: %s", d.Spec.Strategy.Type)
}

// replicaSetsFor lists the namespace's ReplicaSets and claims those the
// deployment should control: adopting matching orphans, releasing owned
// ones that stopped matching.
func (c *Controller) replicaSetsFor(ctx context.Context, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	all, err := c.rsLister.ReplicaSets(d.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s/%s has invalid label selector: %w", d.Namespace, d.Name, err)
	}
	rsClient := c.client.AppsV1().ReplicaSets(d.Namespace)
	// Adopted RSes continue with the patched object, so this sync's later
	// writes do not conflict with the adoption.
	patched := map[string]*appsv1.ReplicaSet{}
	m := &controller.RefManager{
		Owner:    d,
		OwnerGVK: controllerKind,
		Selector: sel,
		Patch: func(ctx context.Context, name string, data []byte) error {
			rs, err := rsClient.Patch(ctx, name, controller.PatchType, data, metav1.PatchOptions{})
			if err == nil {
				patched[name] = rs
			}
			return err
		},
		CanAdopt: controller.RecheckDeletion(d, func(ctx context.Context) (metav1.Object, error) {
			return c.client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		}),
	}
	byObj := make(map[metav1.Object]*appsv1.ReplicaSet, len(all))
	candidates := make([]metav1.Object, 0, len(all))
	for _, rs := range all {
		byObj[rs] = rs
		candidates = append(candidates, rs)
	}
	claimed, err := m.Claim(ctx, candidates)
	out := make([]*appsv1.ReplicaSet, 0, len(claimed))
	for _, o := range claimed {
		rs := byObj[o]
		if p, ok := patched[rs.Name]; ok && p.UID == rs.UID {
			rs = p
		}
		out = append(out, rs)
	}
	return out, err
}

// podsByReplicaSet groups the pods controlled by the given ReplicaSets
// (terminal ones included: Recreate checks them itself).
func (c *Controller) podsByReplicaSet(rsList []*appsv1.ReplicaSet) (map[types.UID][]*corev1.Pod, error) {
	out := make(map[types.UID][]*corev1.Pod, len(rsList))
	for _, rs := range rsList {
		objs, err := c.podIndex.ByIndex(podsByOwnerIndex, string(rs.UID))
		if err != nil {
			return nil, err
		}
		pods := make([]*corev1.Pod, 0, len(objs))
		for _, o := range objs {
			if p, ok := o.(*corev1.Pod); ok && p.Namespace == rs.Namespace {
				pods = append(pods, p)
			}
		}
		out[rs.UID] = pods
	}
	return out, nil
}

// updateStatus writes d's status (and annotations, as upstream does) and
// keeps d's resourceVersion current so later writes in the same sync do
// not conflict with our own.
func (c *Controller) updateStatus(ctx context.Context, d *appsv1.Deployment) error {
	out, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err == nil {
		d.ResourceVersion = out.ResourceVersion
	}
	return err
}

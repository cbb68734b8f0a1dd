// Package endpointslice is the EndpointSlice controller (Kubernetes'
// pkg/controller/endpointslice with the k8s.io/endpointslice reconciler):
// for every Service with a selector it keeps discovery.k8s.io/v1
// EndpointSlices (at most MaxEndpointsPerSlice endpoints each, one set per
// address type and distinct port set) listing the matching pods with their
// ready/serving/terminating conditions. These slices are what the node
// proxy, cluster DNS and the ingress controller read.
package endpointslice

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/controller/endpoints/endpointutil"
)

const (
	name      = "endpointslice-controller"
	component = "endpoint-slice-controller"
	// managedBy is the endpointslice.kubernetes.io/managed-by value of the
	// slices this controller owns.
	managedBy = "endpointslice-controller.k8s.io"

	// DefaultMaxEndpointsPerSlice is kube-controller-manager's
	// --max-endpoints-per-slice default; 1000 is its upper bound.
	DefaultMaxEndpointsPerSlice = 100
	maxMaxEndpointsPerSlice     = 1000

	// sliceChangeMinSyncDelay batches the syncs that changes to our slices
	// by someone else cause.
	sliceChangeMinSyncDelay = time.Second
)

// Options tune the controller.
type Options struct {
	// MaxEndpointsPerSlice caps the endpoints in one slice (1..1000).
	// Default DefaultMaxEndpointsPerSlice.
	MaxEndpointsPerSlice int
	// EndpointUpdatesBatchPeriod delays syncs caused by pod changes so that
	// several changes go out in one write (--endpoint-updates-batch-period).
	// Default 0: no delay.
	EndpointUpdatesBatchPeriod time.Duration
}

// Controller keeps EndpointSlices in step with Services and pods.
type Controller struct {
	opts     Options
	log      *slog.Logger
	recorder record.EventRecorder
	queue    workqueue.TypedRateLimitingInterface[string]
	// podEvents queues the Services a pod event touches.
	podEvents endpointutil.PodEvents

	services corelisters.ServiceLister
	pods     endpointutil.PodSelector
	slices   discoverylisters.EndpointSliceLister
	synced   []cache.InformerSynced

	rec          *reconciler
	tracker      *sliceTracker
	triggerTimes *endpointutil.TriggerTimeTracker
	staleRetry   endpointutil.StaleBackoff
}

// New registers the controller's handlers on cc's shared pod, service, node
// and endpointslice informers. It starts nothing.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, fmt.Errorf("endpointslice: Client and Informers are required")
	}
	if opts.MaxEndpointsPerSlice == 0 {
		opts.MaxEndpointsPerSlice = DefaultMaxEndpointsPerSlice
	}
	if opts.MaxEndpointsPerSlice < 1 || opts.MaxEndpointsPerSlice > maxMaxEndpointsPerSlice {
		return nil, fmt.Errorf("endpointslice: MaxEndpointsPerSlice must be between 1 and %d, got %d", maxMaxEndpointsPerSlice, opts.MaxEndpointsPerSlice)
	}
	if opts.EndpointUpdatesBatchPeriod < 0 {
		return nil, fmt.Errorf("endpointslice: EndpointUpdatesBatchPeriod must not be negative")
	}
	c := &Controller{
		opts:     opts,
		log:      cc.Logger(name),
		recorder: cc.EventRecorder(component),
		// Upstream backs off from 1s (not 5ms): a failing sync can mean
		// many slice writes, which should not hammer the API server.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 1000*time.Second),
				&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
			),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "endpoint_slice"}),
		tracker:      newSliceTracker(),
		triggerTimes: endpointutil.NewTriggerTimeTracker(),
	}
	svcInf := cc.Informers.Core().V1().Services()
	podInf := cc.Informers.Core().V1().Pods()
	nodeInf := cc.Informers.Core().V1().Nodes()
	sliceInf := cc.Informers.Discovery().V1().EndpointSlices()
	if err := endpointutil.EnsurePodLabelIndex(podInf.Informer()); err != nil {
		return nil, fmt.Errorf("endpointslice: pod index: %w", err)
	}
	c.services = svcInf.Lister()
	c.pods = endpointutil.PodSelector{Indexer: podInf.Informer().GetIndexer(), Lister: podInf.Lister()}
	c.slices = sliceInf.Lister()
	c.synced = []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced,
		nodeInf.Informer().HasSynced, sliceInf.Informer().HasSynced}
	c.rec = &reconciler{client: cc.Client, nodes: nodeInf.Lister(), maxEndpoints: opts.MaxEndpointsPerSlice, tracker: c.tracker}

	enqueue := func(obj any) {
		if key, ok := controller.KeyOf(obj); ok {
			c.queue.Add(key)
		}
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, cur any) { enqueue(cur) },
		DeleteFunc: enqueue,
	}); err != nil {
		return nil, err
	}
	c.podEvents = endpointutil.PodEvents{Services: c.services, Queue: c.queue, BatchPeriod: opts.EndpointUpdatesBatchPeriod, Log: c.log}
	if _, err := podInf.Informer().AddEventHandler(c.podEvents); err != nil {
		return nil, err
	}
	if _, err := sliceInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.onSliceAdd,
		UpdateFunc: c.onSliceUpdate,
		DeleteFunc: c.onSliceDelete,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Run syncs until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	c.log.Info("starting controller")
	defer c.log.Info("shutting down controller")
	return controller.RunWorkers(ctx, name, c.queue, workers, c.sync, c.log, c.synced...)
}

func isManaged(s *discoveryv1.EndpointSlice) bool {
	return s.Labels[discoveryv1.LabelManagedBy] == managedBy
}

// queueForSlice queues the slice's Service after a short delay, so changes
// to several of its slices end in one sync.
func (c *Controller) queueForSlice(s *discoveryv1.EndpointSlice) {
	key, err := serviceKeyOfSlice(s)
	if err != nil {
		c.log.Debug("endpointslice without a service", "slice", s.Namespace+"/"+s.Name, "err", err)
		return
	}
	c.queue.AddAfter(key, max(sliceChangeMinSyncDelay, c.opts.EndpointUpdatesBatchPeriod))
}

// Our own writes echo back with the generation we recorded and are ignored;
// anything newer was someone else, and the Service is looked at again.
func (c *Controller) onSliceAdd(obj any) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if ok && isManaged(s) && c.tracker.shouldSync(s) {
		c.queueForSlice(s)
	}
}

func (c *Controller) onSliceUpdate(oldObj, curObj any) {
	prev, ok1 := oldObj.(*discoveryv1.EndpointSlice)
	cur, ok2 := curObj.(*discoveryv1.EndpointSlice)
	if !ok1 || !ok2 {
		return
	}
	// Labels do not bump the generation; a slice moved to another Service
	// concerns both.
	if prev.Labels[discoveryv1.LabelServiceName] != cur.Labels[discoveryv1.LabelServiceName] {
		c.queueForSlice(cur)
		c.queueForSlice(prev)
		return
	}
	if isManaged(prev) != isManaged(cur) || (isManaged(cur) && c.tracker.shouldSync(cur)) {
		c.queueForSlice(cur)
	}
}

func (c *Controller) onSliceDelete(obj any) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		if t, isT := obj.(cache.DeletedFinalStateUnknown); isT {
			s, ok = t.Obj.(*discoveryv1.EndpointSlice)
		}
	}
	if ok && isManaged(s) && c.tracker.has(s) && !c.tracker.handleDeletion(s) {
		c.queueForSlice(s)
	}
}

// sync reconciles the slices of one Service.
func (c *Controller) sync(ctx context.Context, key string) error {
	namespace, svcName, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(namespace).Get(svcName)
	if apierrors.IsNotFound(err) {
		// Its slices are owned by it and go with the garbage collector.
		c.triggerTimes.DeleteService(namespace, svcName)
		c.tracker.deleteService(namespace, svcName)
		c.staleRetry.Reset(key)
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.Selector == nil {
		return nil
	}

	pods, err := c.pods.Pods(svc.Namespace, svc.Spec.Selector)
	if err != nil {
		c.recorder.Eventf(svc, corev1.EventTypeWarning, "FailedToListPods", "Error listing Pods for Service %s/%s: %v", svc.Namespace, svc.Name, err)
		return err
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: managedBy})
	cached, err := c.slices.EndpointSlices(svc.Namespace).List(sel)
	if err != nil {
		c.recorder.Eventf(svc, corev1.EventTypeWarning, "FailedToListEndpointSlices", "Error listing Endpoint Slices for Service %s/%s: %v", svc.Namespace, svc.Name, err)
		return err
	}
	// Slices already being deleted are out of the picture.
	existing := make([]*discoveryv1.EndpointSlice, 0, len(cached))
	for _, s := range cached {
		if s.DeletionTimestamp == nil {
			existing = append(existing, s)
		}
	}
	if c.tracker.stale(svc, existing) {
		// Our last write has not reached the cache yet; acting now would
		// undo or duplicate it.
		c.log.Debug("EndpointSlice informer cache is out of date", "service", key)
		return controller.RequeueAfter(c.staleRetry.Next(key))
	}
	c.staleRetry.Reset(key)
	triggerTime := c.triggerTimes.Compute(svc, pods)
	if err := c.rec.reconcile(ctx, svc, pods, existing, triggerTime); err != nil {
		if !apierrors.IsConflict(err) {
			c.recorder.Eventf(svc, corev1.EventTypeWarning, "FailedToUpdateEndpointSlices", "Error updating Endpoint Slices for Service %s/%s: %v", svc.Namespace, svc.Name, err)
		}
		return err
	}
	return nil
}

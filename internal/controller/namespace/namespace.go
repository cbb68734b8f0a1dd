// Package namespace empties namespaces that are being deleted, as
// kube-controller-manager's namespace controller does: the API marks a
// deleted namespace Terminating and keeps it while spec.finalizers holds
// "kubernetes"; this controller deletes every namespaced object in it (pods
// first), waits for graceful terminations and finalizers, keeps the
// namespace's deletion conditions current, and finally removes its
// finalizer through namespaces/NAME/finalize, after which the API removes
// the namespace.
package namespace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Component is the event source and logger name (upstream's).
const Component = "namespace-controller"

// finalizerEstimateSeconds is how long upstream assumes objects held by a
// finalizer need before they go.
const finalizerEstimateSeconds = int64(15)

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// Options tune the controller; zero values take the defaults.
type Options struct {
	// FinalizerToken is the spec.finalizers entry this controller removes
	// (default "kubernetes").
	FinalizerToken corev1.FinalizerName
	// DeletionDelay is how long a namespace event waits before it is
	// processed (default 5s, upstream's namespaceDeletionGracePeriod: lets
	// last-moment creations land so they are cleaned up too).
	DeletionDelay time.Duration
	// DiscoveryTTL is how long a discovery answer is reused (default 30s).
	DiscoveryTTL time.Duration
	// Discover replaces discovery (tests); default
	// cc.Client.Discovery().ServerPreferredNamespacedResources.
	Discover func() ([]*metav1.APIResourceList, error)
}

// Controller is the namespace controller.
type Controller struct {
	client   kubernetes.Interface
	metadata metadata.Interface
	lister   corelisters.NamespaceLister
	synced   cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	log      *slog.Logger
	opts     Options

	discMu   sync.Mutex
	discAt   time.Time
	discList []*metav1.APIResourceList

	opMu         sync.Mutex
	notSupported map[opKey]bool
}

type opKey struct {
	op  string // "list" or "deletecollection"
	gvr schema.GroupVersionResource
}

// New builds the controller and registers its namespace informer handlers.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if cc.Client == nil || cc.Metadata == nil || cc.Informers == nil {
		return nil, errors.New("namespace controller: Client, Metadata and Informers are required")
	}
	if opts.FinalizerToken == "" {
		opts.FinalizerToken = corev1.FinalizerKubernetes
	}
	if opts.DeletionDelay == 0 {
		opts.DeletionDelay = 5 * time.Second
	}
	if opts.DiscoveryTTL == 0 {
		opts.DiscoveryTTL = 30 * time.Second
	}
	if opts.Discover == nil {
		disc := cc.Client.Discovery()
		opts.Discover = disc.ServerPreferredNamespacedResources
	}
	inf := cc.Informers.Core().V1().Namespaces()
	c := &Controller{
		client:   cc.Client,
		metadata: cc.Metadata,
		lister:   inf.Lister(),
		synced:   inf.Informer().HasSynced,
		// Upstream's namespace rate limiter: retries at least every minute.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](5*time.Millisecond, 60*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "namespace"}),
		recorder:     cc.EventRecorder(Component),
		log:          cc.Logger(Component),
		opts:         opts,
		notSupported: map[opKey]bool{},
	}
	enqueue := func(obj any) {
		ns, ok := obj.(*corev1.Namespace)
		if !ok || ns.DeletionTimestamp == nil {
			return
		}
		c.queue.AddAfter(ns.Name, c.opts.DeletionDelay)
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Run processes terminating namespaces until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	c.log.Info("starting")
	defer c.log.Info("stopped")
	return controller.RunWorkers(ctx, Component, c.queue, workers, c.reconcile, c.log, c.synced)
}

func (c *Controller) reconcile(ctx context.Context, name string) error {
	if _, err := c.lister.Get(name); apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	estimate, err := c.deleteNamespace(ctx, name)
	if err != nil {
		return fmt.Errorf("deletion of namespace %s failed: %w", name, err)
	}
	if estimate > 0 {
		c.log.Debug("content remaining in namespace", "namespace", name, "estimate", estimate)
		return controller.RequeueAfter(time.Duration(estimate/2+1) * time.Second)
	}
	return nil
}

// deleteNamespace is one pass of the deletion: it returns a positive
// estimate (seconds) while content is still going away.
func (c *Controller) deleteNamespace(ctx context.Context, name string) (int64, error) {
	nsClient := c.client.CoreV1().Namespaces()
	// Uncached: several writers touch a terminating namespace.
	ns, err := nsClient.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	if ns.DeletionTimestamp == nil {
		return 0, nil
	}
	ns, err = c.retryOnConflict(ctx, ns, func(ns *corev1.Namespace) (*corev1.Namespace, error) {
		if ns.Status.Phase == corev1.NamespaceTerminating {
			return ns, nil
		}
		ns = ns.DeepCopy()
		ns.Status.Phase = corev1.NamespaceTerminating
		return nsClient.UpdateStatus(ctx, ns, metav1.UpdateOptions{})
	})
	if apierrors.IsNotFound(err) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	if ns.DeletionTimestamp == nil || len(ns.Spec.Finalizers) == 0 {
		return 0, nil
	}
	estimate, ns, err := c.deleteAllContent(ctx, ns)
	if err != nil {
		return 0, err
	}
	if estimate > 0 {
		return estimate, nil
	}
	_, err = c.retryOnConflict(ctx, ns, func(ns *corev1.Namespace) (*corev1.Namespace, error) {
		if !slices.Contains(ns.Spec.Finalizers, c.opts.FinalizerToken) {
			return ns, nil
		}
		fin := ns.DeepCopy()
		fin.Spec.Finalizers = nil
		for _, f := range ns.Spec.Finalizers {
			if f != c.opts.FinalizerToken {
				fin.Spec.Finalizers = append(fin.Spec.Finalizers, f)
			}
		}
		// With no finalizers left the API removes the namespace now.
		return nsClient.Finalize(ctx, fin, metav1.UpdateOptions{})
	})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err == nil {
		c.log.Info("namespace finalized", "namespace", name)
	}
	return 0, err
}

// retryOnConflict runs fn, re-reading the namespace after conflicts; a
// namespace whose UID changed meanwhile is someone else's.
func (c *Controller) retryOnConflict(ctx context.Context, ns *corev1.Namespace, fn func(*corev1.Namespace) (*corev1.Namespace, error)) (*corev1.Namespace, error) {
	latest := ns
	for {
		out, err := fn(latest)
		if err == nil {
			return out, nil
		}
		if !apierrors.IsConflict(err) {
			return nil, err
		}
		prev := latest
		latest, err = c.client.CoreV1().Namespaces().Get(ctx, prev.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if latest.UID != prev.UID {
			return nil, errors.New("namespace uid has changed across retries")
		}
	}
}

// discover returns the namespaced resources, reusing an answer younger
// than DiscoveryTTL. A partial answer is returned with its error.
func (c *Controller) discover() ([]*metav1.APIResourceList, error) {
	c.discMu.Lock()
	defer c.discMu.Unlock()
	if c.discList != nil && time.Since(c.discAt) < c.opts.DiscoveryTTL {
		return c.discList, nil
	}
	list, err := c.opts.Discover()
	if err != nil {
		return list, err
	}
	c.discList, c.discAt = list, time.Now()
	return list, nil
}

// deleteAllContent deletes everything in the namespace (pods first) and
// returns an estimate of the seconds until what remains is gone, plus the
// namespace with updated conditions.
func (c *Controller) deleteAllContent(ctx context.Context, ns *corev1.Namespace) (int64, *corev1.Namespace, error) {
	var errs []error
	var cond conditionUpdater
	resources, err := c.discover()
	if err != nil {
		// Not fatal: work with what was discovered.
		errs = append(errs, err)
		cond.discoveryErr(err)
	}
	deletable := discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{"delete"}}, resources)
	gvrs, err := discovery.GroupVersionResources(deletable)
	if err != nil {
		errs = append(errs, err)
		cond.groupVersionErr(err)
	}
	c.fillOpCache(deletable)

	totals := remaining{byResource: map[schema.GroupVersionResource]int{}, byFinalizer: map[string]int{}}
	estimate := int64(0)
	deletedAt := ns.DeletionTimestamp.Time
	one := func(gvr schema.GroupVersionResource) {
		res, err := c.deleteAllOf(ctx, gvr, ns.Name, deletedAt)
		if err != nil {
			errs = append(errs, err)
			cond.deleteContentErr(err)
		}
		estimate = max(estimate, res.estimate)
		if res.remaining > 0 {
			totals.byResource[gvr] = res.remaining
			for f, n := range res.finalizers {
				totals.byFinalizer[f] += n
			}
		}
	}
	// Pods go first so that nothing they use (secrets, service accounts)
	// disappears under them (upstream's OrderedNamespaceDeletion).
	if _, ok := gvrs[podsGVR]; ok {
		one(podsGVR)
		if totals.byResource[podsGVR] == 0 {
			for gvr := range gvrs {
				if gvr != podsGVR {
					one(gvr)
				}
			}
		}
	} else {
		for gvr := range gvrs {
			one(gvr)
		}
	}
	cond.contentTotals(totals)
	// Always write a change: a condition that went back to "ok" matters as
	// much as a new failure.
	if updated := ns.DeepCopy(); cond.update(&updated.Status) {
		out, err := c.client.CoreV1().Namespaces().UpdateStatus(ctx, updated, metav1.UpdateOptions{})
		if err != nil {
			c.log.Warn("couldn't update status condition for namespace", "namespace", ns.Name, "err", err)
		} else {
			ns = out
		}
		for _, fc := range cond.failureReasons {
			c.recorder.Event(ns, corev1.EventTypeWarning, fc.Reason, fc.Message)
		}
	}
	return estimate, ns, errors.Join(errs...)
}

// fillOpCache remembers which operations discovery says a resource lacks.
func (c *Controller) fillOpCache(lists []*metav1.APIResourceList) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	for _, rl := range lists {
		gv, err := schema.ParseGroupVersion(rl.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range rl.APIResources {
			gvr := gv.WithResource(r.Name)
			for _, op := range []string{"list", "deletecollection"} {
				if !slices.Contains(r.Verbs, op) {
					c.notSupported[opKey{op, gvr}] = true
				}
			}
		}
	}
}

func (c *Controller) supported(op string, gvr schema.GroupVersionResource) bool {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	return !c.notSupported[opKey{op, gvr}]
}

func (c *Controller) setNotSupported(op string, gvr schema.GroupVersionResource) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.notSupported[opKey{op, gvr}] = true
}

type gvrResult struct {
	estimate   int64
	remaining  int
	finalizers map[string]int
}

// deleteAllOf deletes every object of one resource in the namespace and
// reports what is left.
func (c *Controller) deleteAllOf(ctx context.Context, gvr schema.GroupVersionResource, ns string, deletedAt time.Time) (gvrResult, error) {
	estimate, err := c.estimateGracefulTermination(ctx, gvr, ns, deletedAt)
	if err != nil {
		return gvrResult{}, err
	}
	rc := c.metadata.Resource(gvr).Namespace(ns)
	// Background: the namespace controller removes dependents itself and
	// must not make the GC orphan them.
	background := metav1.DeletePropagationBackground
	delOpts := metav1.DeleteOptions{PropagationPolicy: &background}
	collected := false
	if c.supported("deletecollection", gvr) {
		err := rc.DeleteCollection(ctx, delOpts, metav1.ListOptions{})
		switch {
		case err == nil:
			collected = true
		case apierrors.IsMethodNotSupported(err) || apierrors.IsNotFound(err):
			c.setNotSupported("deletecollection", gvr)
		default:
			return gvrResult{estimate: estimate}, err
		}
	}
	if !c.supported("list", gvr) {
		return gvrResult{estimate: estimate}, nil
	}
	if !collected {
		list, err := rc.List(ctx, metav1.ListOptions{})
		if apierrors.IsMethodNotSupported(err) || apierrors.IsNotFound(err) {
			c.setNotSupported("list", gvr)
			return gvrResult{estimate: estimate}, nil
		} else if err != nil {
			return gvrResult{estimate: estimate}, err
		}
		for _, item := range list.Items {
			err := rc.Delete(ctx, item.Name, delOpts)
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsMethodNotSupported(err) {
				return gvrResult{estimate: estimate}, err
			}
		}
	}
	// What is left?
	list, err := rc.List(ctx, metav1.ListOptions{})
	if apierrors.IsMethodNotSupported(err) || apierrors.IsNotFound(err) {
		c.setNotSupported("list", gvr)
		return gvrResult{estimate: estimate}, nil
	} else if err != nil {
		return gvrResult{estimate: estimate}, err
	}
	if len(list.Items) == 0 {
		return gvrResult{}, nil
	}
	fins := map[string]int{}
	for _, item := range list.Items {
		for _, f := range item.Finalizers {
			fins[f]++
		}
	}
	res := gvrResult{estimate: estimate, remaining: len(list.Items), finalizers: fins}
	switch {
	case estimate != 0:
		return res, nil
	case len(fins) > 0:
		// Finalizers are normal: give their owners time.
		res.estimate = finalizerEstimateSeconds
		return res, nil
	}
	return res, fmt.Errorf("unexpected items still remain in namespace: %s for gvr: %v", ns, gvr)
}

// estimateGracefulTermination is the longest grace period of the live
// pods in the namespace, or 0 once that much time passed since the
// namespace's deletion (then they are simply waited for).
func (c *Controller) estimateGracefulTermination(ctx context.Context, gvr schema.GroupVersionResource, ns string, deletedAt time.Time) (int64, error) {
	if gvr.GroupResource() != podsGVR.GroupResource() {
		return 0, nil
	}
	pods, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	estimate := int64(0)
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if g := p.Spec.TerminationGracePeriodSeconds; g != nil && *g > estimate {
			estimate = *g
		}
	}
	if time.Since(deletedAt) >= time.Duration(estimate)*time.Second {
		return 0, nil
	}
	return estimate, nil
}

// Package garbagecollector deletes objects whose owners are gone and
// carries out foreground and orphan deletions, as kube-controller-manager's
// garbage collector does.
//
// Informers over every resource that supports list, watch and delete feed
// one graph builder goroutine, which keeps a graph of ownerReferences
// (uid → node, node → dependents) and queues the UIDs that need a look:
// attemptToDelete (dependents whose owners may be gone, owners deleting
// their dependents in the foreground) and attemptToOrphan (owners deleted
// with the orphan finalizer). Workers decide on the live objects, read from
// the API (never a cache), and act with UID-guarded deletes and patches.
package garbagecollector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Component is the event source and logger name (upstream's).
const Component = "garbage-collector-controller"

// Options tune the collector; zero values take the defaults.
type Options struct {
	// ResyncPeriod is how often discovery is read again to watch resources
	// that appeared (default 30s).
	ResyncPeriod time.Duration
	// InitialSyncTimeout bounds how long Run waits for the informers to
	// fill before collecting anyway (default 30s; decisions are checked
	// against the API, so a partial graph only delays work).
	InitialSyncTimeout time.Duration
	// IgnoredResources are never watched (default: events and
	// events.events.k8s.io, as upstream).
	IgnoredResources map[schema.GroupResource]bool
	// Discovery defaults to cc.Client.Discovery().
	Discovery discovery.DiscoveryInterface
}

// Controller is the garbage collector.
type Controller struct {
	metadata      metadata.Interface
	informers     informers.SharedInformerFactory
	metaInformers metadatainformer.SharedInformerFactory
	discovery     discovery.DiscoveryInterface
	mapper        *restmapper.DeferredDiscoveryRESTMapper
	recorder      record.EventRecorder
	log           *slog.Logger
	opts          Options

	graph           *graph
	absent          *absentCache
	graphChanges    workqueue.TypedInterface[*event]
	attemptToDelete workqueue.TypedRateLimitingInterface[types.UID]
	attemptToOrphan workqueue.TypedRateLimitingInterface[types.UID]

	monMu    sync.Mutex
	monitors map[schema.GroupVersionResource]*monitor
}

type monitor struct {
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
}

var (
	errVirtualDeleteEnqueued          = errors.New("enqueued virtual delete event")
	errNamespacedOwnerOfClusterScoped = errors.New("cluster-scoped objects cannot refer to namespaced owners")
)

// New builds the collector. It watches nothing until Run discovers the
// resources.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if cc.Metadata == nil || cc.Informers == nil || (cc.Client == nil && opts.Discovery == nil) {
		return nil, errors.New("garbage collector: Metadata, Informers and Client (or Options.Discovery) are required")
	}
	if opts.ResyncPeriod <= 0 {
		opts.ResyncPeriod = 30 * time.Second
	}
	if opts.InitialSyncTimeout <= 0 {
		opts.InitialSyncTimeout = 30 * time.Second
	}
	if opts.IgnoredResources == nil {
		opts.IgnoredResources = map[schema.GroupResource]bool{
			{Resource: "events"}:                         true,
			{Group: "events.k8s.io", Resource: "events"}: true,
		}
	}
	if opts.Discovery == nil {
		opts.Discovery = cc.Client.Discovery()
	}
	return &Controller{
		metadata:      cc.Metadata,
		informers:     cc.Informers,
		metaInformers: metadatainformer.NewSharedInformerFactory(cc.Metadata, 0),
		discovery:     opts.Discovery,
		// The mapper has its own cached discovery, reset when the set of
		// resources changes.
		mapper:   restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(opts.Discovery)),
		recorder: cc.EventRecorder(Component),
		log:      cc.Logger(Component),
		opts:     opts,
		graph:    newGraph(),
		absent:   newAbsentCache(500),
		graphChanges: workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[*event]{
			Name: "garbage_collector_graph_changes"}),
		attemptToDelete: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[types.UID](),
			workqueue.TypedRateLimitingQueueConfig[types.UID]{Name: "garbage_collector_attempt_to_delete"}),
		attemptToOrphan: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[types.UID](),
			workqueue.TypedRateLimitingQueueConfig[types.UID]{Name: "garbage_collector_attempt_to_orphan"}),
		monitors: map[schema.GroupVersionResource]*monitor{},
	}, nil
}

// Run collects garbage until ctx ends. It starts the informers it adds to
// the shared factory with ctx, so pass the manager's context.
func (gc *Controller) Run(ctx context.Context, workers int) error {
	if workers < 1 {
		workers = 1
	}
	gc.log.Info("starting")
	var wg sync.WaitGroup
	defer func() {
		gc.graphChanges.ShutDown()
		gc.attemptToDelete.ShutDown()
		gc.attemptToOrphan.ShutDown()
		wg.Wait()
		gc.removeHandlers()
		gc.metaInformers.Shutdown()
		gc.log.Info("stopped")
	}()
	wg.Go(func() {
		for gc.processNextGraphChange() {
		}
	})

	gc.resync(ctx)
	syncCtx, cancel := context.WithTimeout(ctx, gc.opts.InitialSyncTimeout)
	if cache.WaitForNamedCacheSyncWithContext(syncCtx, gc.synced) {
		gc.log.Info("all resource monitors have synced")
	} else if ctx.Err() == nil {
		gc.log.Warn("not all resource monitors could be synced, proceeding anyways")
	}
	cancel()
	if ctx.Err() != nil {
		return nil
	}
	for range workers {
		wg.Go(func() {
			for gc.processAttemptToDelete(ctx) {
			}
		})
		wg.Go(func() {
			for gc.processAttemptToOrphan(ctx) {
			}
		})
	}
	wg.Go(func() {
		wait.UntilWithContext(ctx, gc.resync, gc.opts.ResyncPeriod)
	})
	<-ctx.Done()
	return nil
}

// synced: every monitor's handler has seen its informer's initial list.
func (gc *Controller) synced() bool {
	gc.monMu.Lock()
	defer gc.monMu.Unlock()
	if len(gc.monitors) == 0 {
		return false
	}
	for _, m := range gc.monitors {
		if !m.reg.HasSynced() {
			return false
		}
	}
	return true
}

func (gc *Controller) removeHandlers() {
	gc.monMu.Lock()
	defer gc.monMu.Unlock()
	for gvr, m := range gc.monitors {
		_ = m.informer.RemoveEventHandler(m.reg)
		delete(gc.monitors, gvr)
	}
}

// resync watches the deletable resources discovery reports that are not
// watched yet. Resources are never unwatched: skiff serves a fixed set.
func (gc *Controller) resync(ctx context.Context) {
	lists, err := gc.discovery.ServerPreferredResources()
	if err != nil {
		// Partial answers are normal while an aggregated group is down.
		gc.log.Info("failed to discover some resources", "err", err)
	}
	resources := deletableResources(lists, gc.opts.IgnoredResources)
	gc.monMu.Lock()
	defer gc.monMu.Unlock()
	var fresh []schema.GroupVersionResource
	for gvr := range resources {
		if _, ok := gc.monitors[gvr]; !ok {
			fresh = append(fresh, gvr)
		}
	}
	if len(fresh) == 0 {
		return
	}
	gc.mapper.Reset()
	for _, gvr := range fresh {
		kind, err := gc.mapper.KindFor(gvr)
		if err != nil {
			gc.log.Warn("couldn't look up resource", "resource", gvr.String(), "err", err)
			continue
		}
		inf := gc.informerFor(gvr)
		reg, err := inf.AddEventHandler(gc.handlers(kind))
		if err != nil {
			gc.log.Warn("couldn't start monitor for resource", "resource", gvr.String(), "err", err)
			continue
		}
		gc.monitors[gvr] = &monitor{informer: inf, reg: reg}
	}
	gc.log.Info("synced monitors", "added", len(fresh), "current", len(gc.monitors))
	gc.informers.Start(ctx.Done())
	gc.metaInformers.Start(ctx.Done())
}

// informerFor shares the typed informer other controllers use when there
// is one (one cache for pods, not two); other resources get a metadata
// informer.
func (gc *Controller) informerFor(gvr schema.GroupVersionResource) cache.SharedIndexInformer {
	if gi, err := gc.informers.ForResource(gvr); err == nil {
		return gi.Informer()
	}
	return gc.metaInformers.ForResource(gvr).Informer()
}

// deletableResources are the preferred versions of every resource that
// supports delete, list and watch.
func deletableResources(lists []*metav1.APIResourceList, ignored map[schema.GroupResource]bool) map[schema.GroupVersionResource]struct{} {
	out := map[schema.GroupVersionResource]struct{}{}
	for _, rl := range discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{"delete", "list", "watch"}}, lists) {
		gv, perr := schema.ParseGroupVersion(rl.GroupVersion)
		if perr != nil {
			continue
		}
		for _, r := range rl.APIResources {
			gvr := gv.WithResource(r.Name)
			if !ignored[gvr.GroupResource()] {
				out[gvr] = struct{}{}
			}
		}
	}
	return out
}

func (gc *Controller) processNextGraphChange() bool {
	ev, quit := gc.graphChanges.Get()
	if quit {
		return false
	}
	defer gc.graphChanges.Done(ev)
	gc.processGraphChange(ev)
	return true
}

func (gc *Controller) processAttemptToDelete(ctx context.Context) bool {
	uid, quit := gc.attemptToDelete.Get()
	if quit {
		return false
	}
	defer gc.attemptToDelete.Done(uid)
	requeue, err := gc.attemptToDeleteItem(ctx, uid)
	switch {
	case errors.Is(err, errVirtualDeleteEnqueued), errors.Is(err, errNamespacedOwnerOfClusterScoped):
		gc.attemptToDelete.Forget(uid)
	case err != nil:
		if ctx.Err() == nil {
			gc.log.Warn("error syncing item", "uid", string(uid), "err", err)
		}
		gc.attemptToDelete.AddRateLimited(uid)
	case requeue:
		// A virtual node whose object exists but no informer showed it
		// yet: look again until one does.
		gc.attemptToDelete.AddRateLimited(uid)
	default:
		gc.attemptToDelete.Forget(uid)
	}
	return true
}

// attemptToDeleteItem looks at one object: it deletes it when every owner
// is gone, drops dangling references when some owner lives, carries on a
// foreground deletion it is part of, and finishes its own foreground
// deletion when no blocking dependent is left. requeue asks for another
// look at a virtual node.
func (gc *Controller) attemptToDeleteItem(ctx context.Context, uid types.UID) (requeue bool, err error) {
	item, ok := gc.graph.view(uid)
	if !ok {
		return false, nil
	}
	// Being deleted is a one-way trip: its dependents are handled when the
	// deletion is observed.
	if item.beingDeleted && !item.deletingDependents {
		return false, nil
	}
	latest, err := gc.getObject(ctx, item.identity)
	switch {
	case apierrors.IsNotFound(err):
		gc.enqueueVirtualDelete(item.identity)
		return false, errVirtualDeleteEnqueued
	case err != nil:
		return false, err
	case latest.UID != item.identity.UID:
		gc.enqueueVirtualDelete(item.identity)
		return false, errVirtualDeleteEnqueued
	}
	if item.deletingDependents {
		return false, gc.processDeletingDependents(ctx, item)
	}
	refs := latest.OwnerReferences
	if len(refs) == 0 {
		return item.virtual, nil
	}
	solid, dangling, waiting, err := gc.classifyReferences(ctx, item.identity, refs)
	if err != nil {
		return false, err
	}
	switch {
	case len(solid) > 0:
		if len(dangling) == 0 && len(waiting) == 0 {
			return item.virtual, nil
		}
		// Drop the dangling references, and those to owners waiting for
		// their dependents (or they would wait forever).
		uids := append(refUIDs(dangling), refUIDs(waiting)...)
		gc.log.Debug("remove dangling references and waiting references for item", "item", item.identity.String(), "owners", uids)
		err := gc.patch(ctx, item.identity, deleteOwnerRefsSMP(uid, uids), func(live *metav1.PartialObjectMetadata) ([]byte, error) {
			return deleteOwnerRefsJMP(live, uids...)
		})
		return false, err
	case len(waiting) > 0 && len(item.dependents) > 0:
		for _, dep := range item.dependents {
			if dep.deletingDependents {
				// A dependent is deleting its own dependents too: to avoid
				// a cycle of owners waiting for each other, stop blocking
				// ours (upstream's heuristic).
				gc.log.Info("processing item, some of its owners and its dependent have FinalizerDeletingDependents, to prevent potential cycle, its ownerReferences are going to be modified to be non-blocking, then the item is going to be deleted with Foreground",
					"item", item.identity.String(), "dependent", dep.identity.String())
				if err := gc.patch(ctx, item.identity, unblockOwnerRefsSMP(uid, refs), unblockOwnerRefsJMP); err != nil {
					return false, err
				}
				break
			}
		}
		// Its owner waits in the foreground, so it does too.
		err := gc.deleteObject(ctx, item.identity, latest.ResourceVersion, latest.OwnerReferences, metav1.DeletePropagationForeground)
		if apierrors.IsNotFound(err) {
			gc.enqueueVirtualDelete(item.identity)
			return false, errVirtualDeleteEnqueued
		}
		return false, err
	default:
		// No owner lives: collect it, honouring a policy it already has.
		policy := metav1.DeletePropagationBackground
		switch {
		case hasFinalizer(latest, metav1.FinalizerOrphanDependents):
			policy = metav1.DeletePropagationOrphan
		case hasFinalizer(latest, metav1.FinalizerDeleteDependents):
			policy = metav1.DeletePropagationForeground
		}
		gc.log.Debug("deleting item", "item", item.identity.String(), "propagationPolicy", policy)
		err := gc.deleteObject(ctx, item.identity, latest.ResourceVersion, latest.OwnerReferences, policy)
		if apierrors.IsNotFound(err) {
			gc.enqueueVirtualDelete(item.identity)
			return false, errVirtualDeleteEnqueued
		}
		return false, err
	}
}

// processDeletingDependents finishes a foreground deletion when no
// blocking dependent is left, and otherwise makes sure each is on its way.
func (gc *Controller) processDeletingDependents(ctx context.Context, item nodeView) error {
	var blocking []depView
	for _, d := range item.dependents {
		if d.blocking {
			blocking = append(blocking, d)
		}
	}
	if len(blocking) == 0 {
		gc.log.Debug("remove DeleteDependents finalizer for item", "item", item.identity.String())
		return gc.removeFinalizer(ctx, item.identity, metav1.FinalizerDeleteDependents)
	}
	for _, d := range blocking {
		if !d.deletingDependents {
			gc.attemptToDelete.Add(d.identity.UID)
		}
	}
	return nil
}

// classifyReferences sorts an object's owner references: solid (the owner
// exists and is not deleting its dependents), dangling (the owner does not
// exist), waiting (the owner is being deleted in the foreground).
func (gc *Controller) classifyReferences(ctx context.Context, item objectReference, refs []metav1.OwnerReference) (solid, dangling, waiting []metav1.OwnerReference, err error) {
	for _, ref := range refs {
		isDangling, owner, err := gc.isDangling(ctx, ref, item)
		if err != nil {
			return nil, nil, nil, err
		}
		switch {
		case isDangling:
			dangling = append(dangling, ref)
		case owner.DeletionTimestamp != nil && hasFinalizer(owner, metav1.FinalizerDeleteDependents):
			waiting = append(waiting, ref)
		default:
			solid = append(solid, ref)
		}
	}
	return solid, dangling, waiting, nil
}

// isDangling reports whether ref names an owner that does not exist:
// NotFound, or found with another UID. A namespaced owner is looked up in
// the dependent's namespace — references across namespaces dangle.
func (gc *Controller) isDangling(ctx context.Context, ref metav1.OwnerReference, item objectReference) (bool, *metav1.PartialObjectMetadata, error) {
	key := refToOwner(ref, "")
	if gc.absent.has(key) {
		return true, nil, nil
	}
	key.Namespace = item.Namespace
	if gc.absent.has(key) {
		return true, nil, nil
	}
	gvr, namespaced, err := gc.apiResource(ref.APIVersion, ref.Kind)
	if err != nil {
		return false, nil, err
	}
	if !namespaced {
		key.Namespace = ""
	}
	if item.Namespace == "" && namespaced {
		gc.log.Info("item is cluster-scoped, but refers to a namespaced owner", "item", item.String(), "owner", ref.Name)
		return false, nil, errNamespacedOwnerOfClusterScoped
	}
	owner, err := gc.metadata.Resource(gvr).Namespace(namespaceFor(namespaced, item.Namespace)).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		gc.absent.add(key)
		return true, nil, nil
	case err != nil:
		return false, nil, err
	case owner.UID != ref.UID:
		gc.absent.add(key)
		return true, nil, nil
	}
	return false, owner, nil
}

func refUIDs(refs []metav1.OwnerReference) []types.UID {
	out := make([]types.UID, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.UID)
	}
	return out
}

func (gc *Controller) processAttemptToOrphan(ctx context.Context) bool {
	uid, quit := gc.attemptToOrphan.Get()
	if quit {
		return false
	}
	defer gc.attemptToOrphan.Done(uid)
	if err := gc.orphan(ctx, uid); err != nil {
		if ctx.Err() == nil {
			gc.log.Warn("orphaning dependents failed", "uid", string(uid), "err", err)
		}
		gc.attemptToOrphan.AddRateLimited(uid)
		return true
	}
	gc.attemptToOrphan.Forget(uid)
	return true
}

// orphan removes the owner's reference from each of its dependents, then
// the owner's orphan finalizer (which lets the API delete it).
func (gc *Controller) orphan(ctx context.Context, uid types.UID) error {
	owner, ok := gc.graph.view(uid)
	if !ok {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, dep := range owner.dependents {
		g.Go(func() error {
			err := gc.patch(gctx, dep.identity, deleteOwnerRefsSMP(dep.identity.UID, []types.UID{uid}),
				func(live *metav1.PartialObjectMetadata) ([]byte, error) { return deleteOwnerRefsJMP(live, uid) })
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("orphaning %s failed, %w", dep.identity, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("failed to orphan dependents of owner %s: %w", owner.identity, err)
	}
	return gc.removeFinalizer(ctx, owner.identity, metav1.FinalizerOrphanDependents)
}

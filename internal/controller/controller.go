// Package controller holds what every skiff controller shares: the Context it
// is built from (clients, shared informers, event recorders) and the worker
// loop that drains a rate-limited workqueue into a reconcile function.
//
// Each controller lives in its own package under internal/controller/ and
// follows kubernetes/sample-controller: event handlers only enqueue keys,
// one reconcile(ctx, key) reads the informer cache, treats NotFound as done,
// never mutates cached objects, and returns an error to be retried with
// backoff.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Context is what every controller is built from. The manager (in
// internal/server) fills it once; controllers register their informers on
// Informers in their constructor, and the manager starts the factory after
// all constructors ran.
type Context struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	// Metadata and Dynamic reach every served resource generically (the
	// garbage collector and the namespace controller need them).
	Metadata metadata.Interface
	Dynamic  dynamic.Interface
	// Recorder returns an event recorder whose events carry source
	// component (e.g. "deployment-controller", "default-scheduler").
	Recorder func(component string) record.EventRecorder
	Log      *slog.Logger
}

// Logger returns the context's logger tagged with the controller's name.
func (c Context) Logger(name string) *slog.Logger {
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	return log.With("component", name)
}

// EventRecorder returns c.Recorder(component), or a recorder that drops
// events when the context has none (unit tests).
func (c Context) EventRecorder(component string) record.EventRecorder {
	if c.Recorder == nil {
		return &record.FakeRecorder{}
	}
	return c.Recorder(component)
}

// Events fans events from every controller out to the API. One per process.
type Events struct {
	broadcaster record.EventBroadcaster
	mu          sync.Mutex
	recorders   map[string]record.EventRecorder
}

// StartEvents starts recording events to the API through client; Shutdown
// stops it.
func StartEvents(ctx context.Context, client kubernetes.Interface) *Events {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return &Events{broadcaster: b, recorders: map[string]record.EventRecorder{}}
}

// Recorder returns the (cached) recorder for a component.
func (e *Events) Recorder(component string) record.EventRecorder {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.recorders[component]
	if !ok {
		r = e.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component})
		e.recorders[component] = r
	}
	return r
}

// Shutdown flushes and stops the broadcaster.
func (e *Events) Shutdown() { e.broadcaster.Shutdown() }

// NewQueue returns the rate-limited workqueue every controller uses: per-key
// exponential backoff (5ms … 1000s) and an overall token bucket, as
// kube-controller-manager's DefaultTypedControllerRateLimiter.
func NewQueue(name string) workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: name})
}

// KeyOf is the queue key of an informer object ("ns/name" or "name"),
// including tombstones of deleted objects.
func KeyOf(obj any) (string, bool) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return "", false
	}
	return key, true
}

// EnqueueHandler is an event handler that adds every object's key to q.
func EnqueueHandler(q workqueue.TypedInterface[string]) cache.ResourceEventHandlerFuncs {
	add := func(obj any) {
		if key, ok := KeyOf(obj); ok {
			q.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    add,
		UpdateFunc: func(_, obj any) { add(obj) },
		DeleteFunc: add,
	}
}

// RequeueAfter is an error a reconcile returns to be looked at again after
// a delay without counting as a failure (e.g. minReadySeconds, a
// toleration that has not expired yet).
type RequeueAfter time.Duration

func (r RequeueAfter) Error() string { return fmt.Sprintf("requeue after %s", time.Duration(r)) }

// Reconciler handles one key. Returning nil forgets the key's backoff;
// RequeueAfter schedules another look; any other error retries with backoff.
type Reconciler func(ctx context.Context, key string) error

// RunWorkers waits for the informers in synced to fill, then runs workers
// goroutines that feed q's keys into reconcile until ctx ends. It shuts q
// down on return.
func RunWorkers(ctx context.Context, name string, q workqueue.TypedRateLimitingInterface[string], workers int, reconcile Reconciler, log *slog.Logger, synced ...cache.InformerSynced) error {
	defer q.ShutDown()
	if !cache.WaitForNamedCacheSync(name, ctx.Done(), synced...) {
		return ctx.Err()
	}
	if workers < 1 {
		workers = 1
	}
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for processNext(ctx, q, reconcile, log) {
			}
		}()
	}
	wg.Wait()
	return nil
}

func processNext(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], reconcile Reconciler, log *slog.Logger) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	err := reconcile(ctx, key)
	var after RequeueAfter
	switch {
	case err == nil:
		q.Forget(key)
	case errors.As(err, &after):
		q.Forget(key)
		q.AddAfter(key, time.Duration(after))
	case ctx.Err() != nil:
		// Shutting down; the error is the cancellation's echo.
	default:
		if apierrors.IsConflict(err) {
			// A stale cache; the informer will catch up, so retry soon
			// without logging it as a failure.
			log.Debug("conflict, retrying", "key", key, "err", err)
		} else {
			log.Warn("reconcile failed, retrying", "key", key, "err", err)
		}
		q.AddRateLimited(key)
	}
	return true
}

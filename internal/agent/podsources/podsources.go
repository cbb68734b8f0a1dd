// Package podsources gives the pod worker the API objects its pods refer
// to: ConfigMaps and Secrets (podconfig.Sources), and Services for the
// service-link environment variables.
//
// ConfigMaps and Secrets follow the kubelet's watch-based managers
// (pkg/kubelet/util/manager/watch_based_manager.go): RegisterPod collects
// the objects a pod refers to (volumes, projected sources, env, envFrom,
// imagePullSecrets, of every container kind) and keeps one watch per
// referenced object (list+watch with fieldSelector metadata.name=NAME), with
// a reference count per pod; UnregisterPod drops the pod's references and a
// watch ends with its last reference. The getters answer from those caches,
// waiting up to Config.SyncTimeout (1 s, as the kubelet) for the first list
// of a just-registered object; a missing object is apierrors NotFound
// (`configmap "x" not found`, as the kubelet words it). OnChange tells the
// pod worker when a watched object is created, changed or deleted, so it can
// resync the pods using it (PodsUsing).
//
// Services come from one informer over all namespaces: Services(ns) is
// the namespace's Services plus default/kubernetes.
//
// Wiring (the agent):
//
//	src, err := podsources.New(podsources.Config{Client: nodeClient, Logger: log})
//	go src.Run(ctx)
//	src.OnChange(func(ns, kind, name string) {
//		for _, uid := range src.PodsUsing(kind, ns, name) { worker.Resync(uid) }
//	})
//	// per pod sync, before podconfig.WriteVolumes / Build:
//	src.RegisterPod(pod)            // also on every pod update (references may change)
//	podconfig.WriteVolumes(ctx, podDir, pod, src, …)
//	podconfig.Build(pod, c, img, src, podconfig.Options{Services: src.Services(pod.Namespace), …})
//	// once the pod is gone:
//	src.UnregisterPod(pod)
//
// Objects returned by the getters are shared with the cache: read-only.
package podsources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-dev/skiff/internal/agent/podconfig"
)

// DefaultSyncTimeout is how long a getter waits for the first list of a
// just-registered object (the kubelet's GetObject waits one second).
const DefaultSyncTimeout = time.Second

// Config configures a Manager.
type Config struct {
	// Client reads the objects (the node's credentials). Required.
	Client kubernetes.Interface
	Logger *slog.Logger
	// SyncTimeout: see DefaultSyncTimeout.
	SyncTimeout time.Duration
}

// Manager keeps the objects of registered pods. It is safe for concurrent use.
type Manager struct {
	client      kubernetes.Interface
	log         *slog.Logger
	syncTimeout time.Duration

	base       context.Context // parent of the watches; cancelled when Run ends
	cancelBase context.CancelFunc

	services   cache.SharedIndexInformer
	svcLister  corelisters.ServiceLister
	svcFactory informers.SharedInformerFactory

	mu       sync.Mutex
	items    map[ref]*item
	pods     map[types.UID][]ref
	handlers []func(namespace, kind, name string)
}

// item is the watch of one referenced object.
type item struct {
	refs     int
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
}

var _ podconfig.Sources = (*Manager)(nil)

// New checks cfg and builds a Manager; it starts nothing (Run does; watches
// start as pods are registered).
func New(cfg Config) (*Manager, error) {
	if cfg.Client == nil {
		return nil, errors.New("podsources: Config.Client is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = DefaultSyncTimeout
	}
	base, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactory(cfg.Client, 0)
	svc := f.Core().V1().Services()
	m := &Manager{
		client:      cfg.Client,
		log:         cfg.Logger.With("component", "podsources"),
		syncTimeout: cfg.SyncTimeout,
		base:        base,
		cancelBase:  cancel,
		services:    svc.Informer(),
		svcLister:   svc.Lister(),
		svcFactory:  f,
		items:       map[ref]*item{},
		pods:        map[types.UID][]ref{},
	}
	return m, nil
}

// Run runs the Services informer until ctx ends, then stops every watch.
// It returns nil.
func (m *Manager) Run(ctx context.Context) error {
	m.svcFactory.Start(ctx.Done())
	<-ctx.Done()
	m.cancelBase()
	m.svcFactory.Shutdown()
	m.mu.Lock()
	for r, it := range m.items {
		it.cancel()
		delete(m.items, r)
	}
	m.mu.Unlock()
	return nil
}

// OnChange adds a function called when a watched ConfigMap or Secret is
// created, updated or deleted after its first list (kind is KindConfigMap
// or KindSecret). It runs on the watch's goroutine: keep it short (enqueue).
func (m *Manager) OnChange(fn func(namespace, kind, name string)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handlers = append(m.handlers, fn)
}

// RegisterPod starts watching the objects pod refers to (or updates the
// pod's references when it was registered before).
func (m *Manager) RegisterPod(pod *corev1.Pod) {
	refs := podRefs(pod)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.base.Err() != nil {
		return
	}
	prev := m.pods[pod.UID]
	for _, r := range refs {
		it := m.items[r]
		if it == nil {
			it = m.startWatch(r)
			m.items[r] = it
		}
		it.refs++
	}
	m.pods[pod.UID] = refs
	m.release(prev)
}

// UnregisterPod drops pod's references; watches nobody needs stop.
func (m *Manager) UnregisterPod(pod *corev1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, ok := m.pods[pod.UID]
	if !ok {
		return
	}
	delete(m.pods, pod.UID)
	m.release(prev)
}

// release drops one reference of each of refs; m.mu is held.
func (m *Manager) release(refs []ref) {
	for _, r := range refs {
		it := m.items[r]
		if it == nil {
			continue
		}
		if it.refs--; it.refs <= 0 {
			it.cancel()
			delete(m.items, r)
		}
	}
}

// PodsUsing returns the registered pods that refer to the object.
func (m *Manager) PodsUsing(kind, namespace, name string) []types.UID {
	want := ref{kind: kind, namespace: namespace, name: name}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []types.UID
	for uid, refs := range m.pods {
		for _, r := range refs {
			if r == want {
				out = append(out, uid)
				break
			}
		}
	}
	return out
}

// Watching reports how many objects are watched (tests, metrics).
func (m *Manager) Watching() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

// startWatch starts the informer of one object; m.mu is held.
func (m *Manager) startWatch(r ref) *item {
	sel := fields.OneTermEqualSelector("metadata.name", r.name).String()
	var lw *cache.ListWatch
	var example runtime.Object
	switch r.kind {
	case KindConfigMap:
		c := m.client.CoreV1().ConfigMaps(r.namespace)
		example = &corev1.ConfigMap{}
		lw = &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = sel
				return c.List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = sel
				return c.Watch(ctx, o)
			},
		}
	default:
		c := m.client.CoreV1().Secrets(r.namespace)
		example = &corev1.Secret{}
		lw = &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = sel
				return c.List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = sel
				return c.Watch(ctx, o)
			},
		}
	}
	inf := cache.NewSharedIndexInformer(lw, example, 0, cache.Indexers{})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(_ interface{}, initial bool) {
			if !initial {
				m.notify(r)
			}
		},
		UpdateFunc: func(oldObj, newObj interface{}) {
			o, ok1 := oldObj.(metav1.Object)
			n, ok2 := newObj.(metav1.Object)
			if ok1 && ok2 && o.GetResourceVersion() == n.GetResourceVersion() {
				return
			}
			m.notify(r)
		},
		DeleteFunc: func(interface{}) { m.notify(r) },
	})
	ctx, cancel := context.WithCancel(m.base)
	go inf.RunWithContext(ctx)
	m.log.Debug("watching", "kind", r.kind, "namespace", r.namespace, "name", r.name)
	return &item{informer: inf, cancel: cancel}
}

func (m *Manager) notify(r ref) {
	m.mu.Lock()
	hs := append([]func(string, string, string){}, m.handlers...)
	m.mu.Unlock()
	for _, h := range hs {
		h(r.namespace, r.kind, r.name)
	}
}

// ConfigMap implements podconfig.Sources.
func (m *Manager) ConfigMap(namespace, name string) (*corev1.ConfigMap, error) {
	obj, err := m.get(ref{kind: KindConfigMap, namespace: namespace, name: name})
	if err != nil {
		return nil, err
	}
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return nil, fmt.Errorf("unexpected object %T in the configmap cache", obj)
	}
	return cm, nil
}

// Secret implements podconfig.Sources.
func (m *Manager) Secret(namespace, name string) (*corev1.Secret, error) {
	obj, err := m.get(ref{kind: KindSecret, namespace: namespace, name: name})
	if err != nil {
		return nil, err
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return nil, fmt.Errorf("unexpected object %T in the secret cache", obj)
	}
	return s, nil
}

// groupResource is how the kubelet's managers name the kinds in errors.
func groupResource(kind string) schema.GroupResource {
	if kind == KindConfigMap {
		return schema.GroupResource{Resource: "configmap"}
	}
	return schema.GroupResource{Resource: "secret"}
}

// get is the kubelet's objectCache.Get: the object must be registered; the
// first list is awaited; absence is NotFound.
func (m *Manager) get(r ref) (interface{}, error) {
	m.mu.Lock()
	it := m.items[r]
	m.mu.Unlock()
	if it == nil {
		return nil, fmt.Errorf("object %q/%q not registered", r.namespace, r.name)
	}
	if !waitFor(it.informer.HasSynced, m.syncTimeout) {
		return nil, fmt.Errorf("failed to sync %s cache: timed out waiting for the condition", groupResource(r.kind))
	}
	obj, exists, err := it.informer.GetStore().GetByKey(r.namespace + "/" + r.name)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, apierrors.NewNotFound(groupResource(r.kind), r.name)
	}
	return obj, nil
}

// waitFor polls cond every 10 ms for up to timeout.
func waitFor(cond func() bool, timeout time.Duration) bool {
	if cond() {
		return true
	}
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for range t.C {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
	return false
}

// ServicesSynced reports whether the Services informer has listed once.
func (m *Manager) ServicesSynced() bool { return m.services.HasSynced() }

// Services returns the Services of namespace plus default/kubernetes (for
// podconfig.Options.Services), waiting up to the sync timeout for the
// first list. Upstream's kubelet refuses to start containers with service
// links before that; callers that want the same check ServicesSynced.
func (m *Manager) Services(namespace string) []*corev1.Service {
	waitFor(m.services.HasSynced, m.syncTimeout)
	out, err := m.svcLister.Services(namespace).List(labels.Everything())
	if err != nil {
		out = nil
	}
	if namespace != metav1.NamespaceDefault {
		if k, err := m.svcLister.Services(metav1.NamespaceDefault).Get("kubernetes"); err == nil {
			out = append(out, k)
		}
	}
	return out
}

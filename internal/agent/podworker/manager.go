package podworker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/skiff-dev/skiff/internal/agent/podconfig"
	"github.com/skiff-dev/skiff/internal/agent/prober"
	"github.com/skiff-dev/skiff/internal/image"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// Network plugs pod networking into the pod worker (issue 5 implements it).
// SetUp is called once a pod's sandbox (network namespace) exists and
// returns the pod's IPs; TearDown before the sandbox is removed. Both must
// be idempotent: after an agent restart SetUp may be called again for a
// sandbox whose pod status shows no IP yet.
type Network interface {
	SetUp(ctx context.Context, pod *corev1.Pod, netnsPath string) (podIPs []string, err error)
	TearDown(ctx context.Context, pod *corev1.Pod, netnsPath string) error
}

// Config configures a Manager.
type Config struct {
	// Client uses the node's credentials: pods get/list/watch, pods/status
	// patch, pod delete, events, serviceaccounts/token.
	Client   kubernetes.Interface
	NodeName string
	Runtime  *runtime.Runtime
	Images   *image.Store
	// PodsDir holds one directory per pod UID (DATA/agent/pods); RunDir the
	// containers' output FIFOs (DATA/agent/run).
	PodsDir, RunDir string
	// Sources resolves ConfigMaps and Secrets (env, volumes,
	// imagePullSecrets). When it is also a PodRegistrar (podsources), each
	// pod is registered on every sync where the pod object changed and
	// unregistered once the pod is cleaned up.
	Sources podconfig.Sources
	// Services lists the Services whose service-link env vars a pod of the
	// namespace gets: the namespace's plus default/kubernetes
	// (podsources.Manager.Services); nil: none.
	Services func(namespace string) []*corev1.Service
	// PodRemoved is called once everything of a pod is removed from the
	// node (e.g. token.Manager.Forget); may be nil.
	PodRemoved func(uid types.UID)
	// Token issues service-account tokens for projected volumes; nil makes
	// such volumes fail.
	Token podconfig.TokenFunc
	// Network sets up pod networking; nil: loopback only and no pod IP
	// (hostNetwork pods get the node's IPs).
	Network Network
	// NodeIPs are the node's addresses (status.hostIPs), primary first.
	NodeIPs []string
	// ClusterDNS, ClusterDomain and HostResolvConf (content of the node's
	// resolv.conf) shape the pods' resolv.conf; HostEtcHosts the
	// hostNetwork pods' /etc/hosts (default: read /etc/hosts).
	ClusterDNS     []string
	ClusterDomain  string
	HostResolvConf []byte
	HostEtcHosts   []byte
	// NodeHostname is the node's hostname for hostNetwork pods (default
	// NodeName).
	NodeHostname string
	// NodeAllocatable returns the node's allocatable resources (defaults of
	// resourceFieldRef and memory-backed volume sizes); may be nil.
	NodeAllocatable func() corev1.ResourceList
	// CgroupRoot is the pods' cgroup under the runtime's cgroup parent
	// (default "kubepods"): a pod's containers go to
	// CgroupRoot/[burstable|besteffort/]pod<uid>/<container id>.
	CgroupRoot string
	// Recorder records core/v1 events (source component "kubelet", host
	// the node name); nil: no events.
	Recorder record.EventRecorder
	// ResyncPeriod is how often every pod is synced without a trigger
	// (default 10 s).
	ResyncPeriod time.Duration
	// MaxParallelStarts, when > 0, bounds the containers being created and
	// started at once (runtime Create+Start, mostly CPU in libcontainer's
	// init). Default unbounded: on a loaded 2-core box the 50-pod benchmark
	// did not show a clear difference either way.
	MaxParallelStarts int
	Logger            *slog.Logger
}

// PodRegistrar is implemented by Sources that track the objects each pod
// refers to (internal/agent/podsources).
type PodRegistrar interface {
	RegisterPod(pod *corev1.Pod)
	UnregisterPod(pod *corev1.Pod)
}

// Manager runs the node's pods.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	rt      *runtime.Runtime
	pm      *prober.Manager
	backoff *prober.Backoff
	pullBO  *flowcontrol.Backoff
	lister  corelisters.PodLister

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	byName  map[string]types.UID // namespace/name → uid of the worker
	adopted map[types.UID]*adoption
	// finished are pods whose deletion we confirmed (or that left the
	// API): late events for them start no worker. Pruned after 5 min.
	finished map[types.UID]time.Time
	ctx      context.Context // Run's; nil before
	wg       sync.WaitGroup
	started  chan struct{}

	usedMu sync.Mutex
	used   map[string]time.Time // image ID → last MarkUsed

	startSem chan struct{} // nil: unbounded
}

// New validates cfg. It starts nothing.
func New(cfg Config) (*Manager, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("podworker: Client is required")
	case cfg.NodeName == "":
		return nil, errors.New("podworker: NodeName is required")
	case cfg.Runtime == nil:
		return nil, errors.New("podworker: Runtime is required")
	case cfg.Images == nil:
		return nil, errors.New("podworker: Images is required")
	case cfg.PodsDir == "" || cfg.RunDir == "":
		return nil, errors.New("podworker: PodsDir and RunDir are required")
	}
	if cfg.Sources == nil {
		cfg.Sources = podconfig.MapSources{}
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "kubepods"
	}
	if cfg.ResyncPeriod <= 0 {
		cfg.ResyncPeriod = 10 * time.Second
	}
	if cfg.NodeHostname == "" {
		cfg.NodeHostname = cfg.NodeName
	}
	if cfg.HostEtcHosts == nil {
		cfg.HostEtcHosts, _ = os.ReadFile("/etc/hosts")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "podworker"),
		rt:       cfg.Runtime,
		backoff:  prober.NewBackoff(nil),
		pullBO:   flowcontrol.NewBackOff(10*time.Second, 300*time.Second),
		workers:  map[types.UID]*podWorker{},
		byName:   map[string]types.UID{},
		finished: map[types.UID]time.Time{},
		used:     map[string]time.Time{},
		started:  make(chan struct{}),
	}
	if n := cfg.MaxParallelStarts; n > 0 {
		m.startSem = make(chan struct{}, n)
	}
	pm, err := prober.New(prober.Config{
		Exec: func(ctx context.Context, id string, args []string, out, errw io.Writer) (int, error) {
			return m.rt.Exec(ctx, id, runtime.ExecConfig{Args: args, Stdout: out, Stderr: errw})
		},
		Logger:  cfg.Logger,
		OnEvent: m.probeEvent,
	})
	if err != nil {
		return nil, err
	}
	m.pm = pm
	return m, nil
}

// Started is closed once Run has re-adopted the runtime's containers and
// the pod informer has synced; never, if Run returns first (select on both).
func (m *Manager) Started() <-chan struct{} { return m.started }

// Run watches the node's pods and runs them until ctx ends. It then
// returns, leaving containers running: a later Run (after an agent
// restart, on a freshly opened Runtime) re-adopts them.
func (m *Manager) Run(ctx context.Context) error {
	for _, d := range []string{m.cfg.PodsDir, m.cfg.RunDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	adopted, err := m.scanRuntime()
	if err != nil {
		return fmt.Errorf("podworker: reading runtime state: %w", err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(m.cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", m.cfg.NodeName).String()
		}))
	inf := factory.Core().V1().Pods()
	m.lister = inf.Lister()
	m.mu.Lock()
	m.ctx, m.adopted = ctx, adopted
	m.mu.Unlock()
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.podChanged(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { m.podChanged(obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				m.podGone(pod)
			}
		},
	}); err != nil {
		return err
	}

	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); _ = m.pm.Run(ctx) }()
	go func() { defer bg.Done(); m.probeUpdates(ctx) }()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		cancel()
		factory.Shutdown()
		bg.Wait()
		m.shutdown()
		return ctx.Err()
	}
	m.cleanupOrphans(ctx)
	close(m.started)
	m.log.Info("pod worker started", "node", m.cfg.NodeName)

	gc := time.NewTicker(time.Minute)
	defer gc.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-gc.C:
			m.backoff.GC()
			m.pullBO.GC()
			m.mu.Lock()
			for uid, t := range m.finished {
				if time.Since(t) > 5*time.Minute {
					delete(m.finished, uid)
				}
			}
			m.mu.Unlock()
		}
	}
	factory.Shutdown()
	bg.Wait()
	m.shutdown()
	return nil
}

// shutdown waits for the pod workers and closes their log writers; the
// containers keep running.
func (m *Manager) shutdown() {
	m.wg.Wait()
	m.mu.Lock()
	ws := make([]*podWorker, 0, len(m.workers))
	for _, w := range m.workers {
		ws = append(ws, w)
	}
	m.mu.Unlock()
	for _, w := range ws {
		w.closeWriters()
	}
	m.pm.Close()
}

func podKey(ns, name string) string { return ns + "/" + name }

// podChanged hands the newest pod object to its worker, starting one.
func (m *Manager) podChanged(pod *corev1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		return
	}
	w := m.workers[pod.UID]
	if _, done := m.finished[pod.UID]; done && w == nil {
		return
	}
	if w == nil {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			if _, ok := m.adopted[pod.UID]; !ok && pod.DeletionTimestamp == nil {
				// A finished pod we know nothing of (its containers are
				// gone): nothing to run or report.
				return
			}
		}
		w = newPodWorker(m, pod, m.adopted[pod.UID])
		delete(m.adopted, pod.UID)
		m.workers[pod.UID] = w
		m.byName[podKey(pod.Namespace, pod.Name)] = pod.UID
		m.wg.Add(1)
		go func() { defer m.wg.Done(); w.run(m.ctx) }()
	}
	if w.ownEcho(pod) {
		w.mu.Lock()
		w.pod = pod
		w.mu.Unlock()
		return // our own status patch coming back: nothing to do
	}
	w.update(pod)
}

// podGone tells the worker its pod left the API (force-deleted, or deleted
// once we confirmed it): everything left is cleaned up.
func (m *Manager) podGone(pod *corev1.Pod) {
	m.mu.Lock()
	w := m.workers[pod.UID]
	m.mu.Unlock()
	if w != nil {
		w.markGone()
	}
}

// workerDone forgets a worker that finished its pod.
func (m *Manager) workerDone(w *podWorker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return // shutting down: shutdown closes the workers' log writers
	}
	if m.workers[w.uid] == w {
		delete(m.workers, w.uid)
		m.finished[w.uid] = time.Now()
	}
	if k := podKey(w.ns, w.name); m.byName[k] == w.uid {
		delete(m.byName, k)
	}
}

func (m *Manager) worker(uid types.UID) *podWorker {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.workers[uid]
}

func (m *Manager) workerByName(ns, name string) *podWorker {
	m.mu.Lock()
	defer m.mu.Unlock()
	if uid, ok := m.byName[podKey(ns, name)]; ok {
		return m.workers[uid]
	}
	return nil
}

// Resync re-syncs every pod of namespace now (all pods when namespace is
// empty): the agent calls it when a ConfigMap or Secret changes so that
// volumes are refreshed.
func (m *Manager) Resync(namespace string) {
	m.mu.Lock()
	ws := make([]*podWorker, 0, len(m.workers))
	for _, w := range m.workers {
		if namespace == "" || w.ns == namespace {
			ws = append(ws, w)
		}
	}
	m.mu.Unlock()
	for _, w := range ws {
		w.poke()
	}
}

// ResyncPod re-syncs one pod now (podsources.OnChange → PodsUsing).
func (m *Manager) ResyncPod(uid types.UID) {
	if w := m.worker(uid); w != nil {
		w.poke()
	}
}

func (m *Manager) probeUpdates(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-m.pm.Updates():
			if w := m.worker(u.PodUID); w != nil {
				w.probeUpdate(u)
				w.poke()
			}
		}
	}
}

func (m *Manager) probeEvent(e prober.Event) {
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: e.Namespace, Name: e.PodName, UID: e.PodUID}
	if e.ContainerName != "" {
		ref.FieldPath = m.fieldPath(e.PodUID, e.ContainerName)
	}
	m.event(ref, e.Type, e.Reason, e.Message)
}

func (m *Manager) fieldPath(uid types.UID, container string) string {
	if w := m.worker(uid); w != nil {
		if pod := w.currentPod(); pod != nil {
			return fieldPathOf(pod, container)
		}
	}
	return "spec.containers{" + container + "}"
}

func fieldPathOf(pod *corev1.Pod, container string) string {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == container {
			return "spec.initContainers{" + container + "}"
		}
	}
	return "spec.containers{" + container + "}"
}

func (m *Manager) event(ref *corev1.ObjectReference, typ, reason, msg string) {
	if m.cfg.Recorder != nil {
		m.cfg.Recorder.Event(ref, typ, reason, msg)
	}
}

func podRef(pod *corev1.Pod, container string) *corev1.ObjectReference {
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	if container != "" {
		ref.FieldPath = fieldPathOf(pod, container)
	}
	return ref
}

func (m *Manager) podDir(uid types.UID) string { return filepath.Join(m.cfg.PodsDir, string(uid)) }

// notFoundPod is the API's NotFound for a pod.
func notFoundPod(name string) error {
	return apierrors.NewNotFound(corev1.Resource("pods"), name)
}

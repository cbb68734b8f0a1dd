// Package nodestatus is the node half of the kubelet: it registers the
// Node, keeps its Lease in kube-node-lease fresh and reports its status
// (after upstream pkg/kubelet/kubelet_node_status.go, pkg/kubelet/nodestatus
// and the node lease controller).
//
// Run does three things:
//
//   - Registration: it creates the Node with its labels
//     (kubernetes.io/hostname, kubernetes.io/os, kubernetes.io/arch and
//     their beta twins, node.kubernetes.io/instance-type=skiff, plus
//     Config.Labels), the register-with-taints and a full status. When a Node of that name exists (a restarted
//     agent, or a node the lifecycle controller marked Unknown), it is
//     adopted: the default labels and Config.Labels are patched in (other
//     labels stay) and the status is reported at once. The spec — podCIDR
//     assigned by node IPAM, taints of the lifecycle controller or of
//     users, unschedulable — is never written after creation.
//   - Lease: every RenewInterval (10s) the Lease named after the node in
//     kube-node-lease is renewed (holderIdentity the node name,
//     leaseDurationSeconds 40, an ownerReference to the Node so it goes
//     with it), created when missing, re-read on conflict.
//   - Status: every StatusUpdateFrequency (10s) the status is computed —
//     capacity and allocatable, addresses, nodeInfo, daemonEndpoints,
//     images, and the MemoryPressure, DiskPressure, PIDPressure and Ready
//     conditions — and PATCHed (strategic merge on nodes/status, no
//     resourceVersion precondition, so never conflicting with controllers'
//     spec writes) only when it differs from the Node's, heartbeat times
//     aside, or StatusReportFrequency (5m) has passed since the last report
//     (the kubelet's nodeStatusReportFrequency). Conditions keep their
//     lastTransitionTime while their status stays, and get a new one when
//     it changes — including from the Unknown the node lifecycle controller
//     sets when the lease expired, after which the controller takes its
//     not-ready/unreachable taints away.
//
// Allocatable is capacity minus the hard eviction thresholds, as the
// kubelet without system/kube reservations: memory minus 100Mi
// (memory.available), ephemeral-storage minus 10% (nodefs.available),
// memory also minus the hugepages. Pressure conditions come from the same
// thresholds (memory.available<100Mi, nodefs.available<10%,
// nodefs.inodesFree<5%, and imagefs.available<15%, imagefs.inodesFree<5%
// when Config.ImageDir is given; no default pid.available threshold, as
// the kubelet) and stay True for 5m after the last observation (the
// eviction pressure transition period).
//
// Differences from the kubelet: a Node deleted while the agent runs is
// registered again at the next status update (the kubelet only registers
// once per process); there is no jitter on the loops; runtimeHandlers,
// features, volumesInUse and config are not reported.
package nodestatus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// Labels the agent sets on its Node (k3s sets instance-type "k3s").
const (
	LabelInstanceTypeValue = "skiff"
	// Control-plane labels the server's own node carries (pass them in
	// Config.Labels), as k3s.
	LabelControlPlane = "node-role.kubernetes.io/control-plane"
	LabelMaster       = "node-role.kubernetes.io/master"
)

// Limits of node.status.images, as the kubelet's defaults.
const (
	maxImages         = 50
	maxNamesPerImage  = 5
	maxBackoff        = 7 * time.Second
	maxLeaseUpdates   = 5
	initialBackoff    = 100 * time.Millisecond
	evictionHoldRange = 5 * time.Minute
)

// Config describes the node.
type Config struct {
	// Client talks to the API server with the node's own credentials.
	Client kubernetes.Interface
	// NodeName is the Node's name; default the host's name
	// (os.Hostname, lowercased).
	NodeName string
	// NodeIP is the InternalIP address; nil: DefaultNodeIP().
	NodeIP net.IP
	// Hostname is the Hostname address and kubernetes.io/hostname label;
	// default NodeName (as k3s, whose --node-name is the kubelet's
	// --hostname-override), else os.Hostname(); lowercased.
	Hostname string
	// Labels are added to the default ones (--node-labels).
	Labels map[string]string
	// Taints are set when the Node is created (--register-with-taints).
	Taints []corev1.Taint
	// KubeletPort goes to status.daemonEndpoints; default 10250.
	KubeletPort int32
	// DataDir's filesystem is the nodefs: ephemeral-storage capacity and
	// DiskPressure. Default "/".
	DataDir string
	// ImageDir, when set, is the imagefs: its filesystem is also watched
	// for DiskPressure (imagefs.available<15%, inodesFree<5%), as the
	// kubelet does with the runtime's image filesystem.
	ImageDir string
	// RuntimeVersion is nodeInfo.containerRuntimeVersion
	// (runtime.Version(): "runc://1.4.4"); KubeletVersion is
	// nodeInfo.kubeletVersion and, as Kubernetes 1.32 still does,
	// kubeProxyVersion. Both required.
	RuntimeVersion, KubeletVersion string
	// MaxPods is the pods capacity; default 110.
	MaxPods int64
	// Images lists the node's images for status.images (optional): names
	// are the repo digests then the repo tags, as the kubelet. The 50
	// largest are reported, with at most 5 names each.
	Images func() []corev1.ContainerImage
	// RuntimeReady and NetworkReady (optional) make the node Ready=False
	// "KubeletNotReady" with their error as the message while they fail
	// (word it as the kubelet: "container runtime is down",
	// "container runtime network not ready: …").
	RuntimeReady, NetworkReady func() error
	// Kick (optional) asks for the status to be computed now rather than
	// at the next tick: the agent sends when the network becomes ready, as
	// the kubelet updates the node fast while it is not yet Ready.
	Kick <-chan struct{}
	// Thresholds are the hard eviction thresholds; zero value:
	// DefaultThresholds().
	Thresholds *Thresholds
	// LeaseDuration is the Lease's leaseDurationSeconds (40s);
	// RenewInterval how often it is renewed (10s).
	LeaseDuration, RenewInterval time.Duration
	// StatusUpdateFrequency is how often the status is computed (10s);
	// StatusReportFrequency how often it is written when unchanged (5m).
	StatusUpdateFrequency, StatusReportFrequency time.Duration
	// Clock drives the loops and timestamps; default the real clock.
	Clock clock.WithTicker
	// Recorder, when set, receives the kubelet's node events ("Starting
	// kubelet.", NodeReady, NodeHasSufficientMemory, …).
	Recorder record.EventRecorder
	Logger   *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Client == nil {
		return errors.New("nodestatus: a client is required")
	}
	if c.KubeletVersion == "" || c.RuntimeVersion == "" {
		return errors.New("nodestatus: kubelet and runtime versions are required")
	}
	if c.Hostname == "" {
		c.Hostname = c.NodeName // k3s passes --node-name as the kubelet's --hostname-override
	}
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("nodestatus: hostname: %w", err)
		}
		c.Hostname = h
	}
	c.Hostname = strings.ToLower(strings.TrimSpace(c.Hostname))
	if c.NodeName == "" {
		c.NodeName = c.Hostname
	}
	if errs := validation.IsDNS1123Subdomain(c.NodeName); len(errs) > 0 {
		return fmt.Errorf("nodestatus: node name %q: %s", c.NodeName, strings.Join(errs, "; "))
	}
	for k, v := range c.Labels {
		errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...)
		if len(errs) > 0 {
			return fmt.Errorf("nodestatus: node label %s=%s: %s", k, v, strings.Join(errs, "; "))
		}
	}
	if errs := validation.IsValidLabelValue(c.Hostname); len(errs) > 0 {
		return fmt.Errorf("nodestatus: hostname %q is not a valid label value: %s", c.Hostname, strings.Join(errs, "; "))
	}
	if c.NodeIP == nil {
		ip, err := DefaultNodeIP()
		if err != nil {
			return fmt.Errorf("nodestatus: %w", err)
		}
		c.NodeIP = ip
	}
	if c.NodeIP.IsUnspecified() {
		return fmt.Errorf("nodestatus: node IP %s is not usable", c.NodeIP)
	}
	if c.KubeletPort == 0 {
		c.KubeletPort = 10250
	}
	if c.DataDir == "" {
		c.DataDir = "/"
	}
	if c.MaxPods == 0 {
		c.MaxPods = defaultMaxPods
	}
	if c.MaxPods < 0 {
		return errors.New("nodestatus: max pods must not be negative")
	}
	if c.Thresholds == nil {
		c.Thresholds = ptr.To(DefaultThresholds())
	}
	for _, d := range []*time.Duration{&c.LeaseDuration, &c.RenewInterval, &c.StatusUpdateFrequency, &c.StatusReportFrequency} {
		if *d < 0 {
			return errors.New("nodestatus: durations must not be negative")
		}
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 40 * time.Second
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = 10 * time.Second
	}
	if c.StatusUpdateFrequency == 0 {
		c.StatusUpdateFrequency = 10 * time.Second
	}
	if c.StatusReportFrequency == 0 {
		c.StatusReportFrequency = 5 * time.Minute
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Run registers the node and keeps its lease and status up to date until
// ctx ends (then it returns nil; the Node stays, and goes Unknown once its
// lease expires). It returns an error only for a bad Config, or when the
// API server rejects the Node as invalid; other registration errors are
// retried with back-off (100ms doubling to 7s), as the kubelet.
func Run(ctx context.Context, cfg Config) error {
	a, err := newAgent(cfg)
	if err != nil {
		return err
	}
	return a.run(ctx)
}

// agent is the state of one Run.
type agent struct {
	cfg     Config
	log     *slog.Logger
	clock   clock.WithTicker
	nodeRef *corev1.ObjectReference

	// Host probes, replaced in tests.
	capacity func() (corev1.ResourceList, error)
	signals  func() (Signals, error)
	info     corev1.NodeSystemInfo

	// The status loop's state (one goroutine).
	hold         pressureHold
	lastPressure Pressure
	lastReport   time.Time

	// The lease loop's state (one goroutine).
	lease *coordinationv1.Lease
}

func newAgent(cfg Config) (*agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	a := &agent{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "nodestatus", "node", cfg.NodeName),
		clock:   cfg.Clock,
		nodeRef: &corev1.ObjectReference{Kind: "Node", Name: cfg.NodeName, UID: types.UID(cfg.NodeName)},
		capacity: func() (corev1.ResourceList, error) {
			return HostCapacity(cfg.DataDir)
		},
		signals: func() (Signals, error) { return readSignals(cfg.DataDir, cfg.ImageDir) },
		info:    systemInfo(),
		hold:    pressureHold{period: evictionHoldRange},
	}
	a.info.ContainerRuntimeVersion = cfg.RuntimeVersion
	a.info.KubeletVersion = cfg.KubeletVersion
	a.info.KubeProxyVersion = cfg.KubeletVersion
	return a, nil
}

func (a *agent) run(ctx context.Context) error {
	a.event(corev1.EventTypeNormal, EventStarting, "Starting kubelet.")
	if err := a.registerWithBackoff(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	a.log.Info("node registered", "ip", a.cfg.NodeIP.String())
	var wg sync.WaitGroup
	wg.Go(func() { a.every(ctx, a.cfg.RenewInterval, a.renewLease) })
	wg.Go(func() {
		a.everyOrKick(ctx, a.cfg.StatusUpdateFrequency, a.cfg.Kick, func(ctx context.Context) {
			if err := a.syncStatus(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("updating node status, will retry", "err", err)
			}
		})
	})
	wg.Wait()
	return nil
}

// every runs f now and then every period until ctx ends.
func (a *agent) every(ctx context.Context, period time.Duration, f func(context.Context)) {
	a.everyOrKick(ctx, period, nil, f) // a nil channel never receives
}

// everyOrKick runs f now, then every period and whenever kick receives,
// until ctx ends.
func (a *agent) everyOrKick(ctx context.Context, period time.Duration, kick <-chan struct{}, f func(context.Context)) {
	t := a.clock.NewTicker(period)
	defer t.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-kick:
		}
	}
}

// sleep waits d on the agent's clock; false when ctx ended first.
func (a *agent) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-a.clock.After(d):
		return true
	}
}

func (a *agent) event(typ, reason, message string) {
	if a.cfg.Recorder != nil {
		a.cfg.Recorder.Event(a.nodeRef, typ, reason, message)
	}
}

// registerWithBackoff registers the node, retrying with the kubelet's
// back-off (100ms doubling to 7s) until it succeeds or ctx ends.
func (a *agent) registerWithBackoff(ctx context.Context) error {
	step := initialBackoff
	for {
		err := a.register(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if apierrors.IsInvalid(err) {
			return fmt.Errorf("registering node %s: %w", a.cfg.NodeName, err)
		}
		a.log.Warn("unable to register node with the API server, will retry", "err", err, "in", step)
		if !a.sleep(ctx, step) {
			return ctx.Err()
		}
		step = min(2*step, maxBackoff)
	}
}

// defaultLabels are the labels the kubelet owns on its node.
func (a *agent) defaultLabels() map[string]string {
	return map[string]string{
		corev1.LabelHostname:           a.cfg.Hostname,
		corev1.LabelOSStable:           goruntime.GOOS,
		corev1.LabelArchStable:         goruntime.GOARCH,
		"beta.kubernetes.io/os":        goruntime.GOOS,
		"beta.kubernetes.io/arch":      goruntime.GOARCH,
		corev1.LabelInstanceTypeStable: LabelInstanceTypeValue,
		corev1.LabelInstanceType:       LabelInstanceTypeValue,
	}
}

// wantLabels are the default labels and Config.Labels (which win).
func (a *agent) wantLabels() map[string]string {
	l := a.defaultLabels()
	maps.Copy(l, a.cfg.Labels)
	return l
}

// register creates the Node, or adopts the existing one of that name.
func (a *agent) register(ctx context.Context) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: a.wantLabels()},
		Spec:       corev1.NodeSpec{Taints: append([]corev1.Taint(nil), a.cfg.Taints...)},
	}
	now := a.clock.Now()
	events := a.setNodeStatus(&node.Status, now)
	_, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if err == nil {
		a.lastReport = now
		a.recordEvents(events)
		return nil
	}
	// As the kubelet, Forbidden too may mean the node exists (a node
	// authorizer may let it read and update its Node but not create it).
	if !apierrors.IsAlreadyExists(err) && !apierrors.IsForbidden(err) {
		return err
	}
	existing, gerr := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if gerr != nil {
		if apierrors.IsForbidden(err) {
			return err
		}
		return gerr
	}
	if patch := labelPatch(existing.Labels, a.wantLabels()); patch != nil {
		if _, err := nodes.Patch(ctx, a.cfg.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("updating the labels of existing node: %w", err)
		}
	}
	a.log.Info("adopting existing node", "uid", existing.UID)
	// Report the status at once, whatever the report frequency says.
	a.lastReport = time.Time{}
	return a.patchStatus(ctx, existing, now)
}

// syncStatus computes the node's status and writes it when it changed or
// is due.
func (a *agent) syncStatus(ctx context.Context) error {
	// The kubelet's first try reads from the API server's cache.
	node, err := a.cfg.Client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{ResourceVersion: "0"})
	if apierrors.IsNotFound(err) {
		a.log.Warn("node was deleted: registering it again")
		return a.register(ctx)
	}
	if err != nil {
		return fmt.Errorf("getting node: %w", err)
	}
	return a.patchStatus(ctx, node, a.clock.Now())
}

// patchStatus writes node's status if it changed or the report is due.
func (a *agent) patchStatus(ctx context.Context, node *corev1.Node, now time.Time) error {
	updated := node.DeepCopy()
	events := a.setNodeStatus(&updated.Status, now)
	if now.Before(a.lastReport.Add(a.cfg.StatusReportFrequency)) && !statusChanged(&node.Status, &updated.Status) {
		return nil
	}
	patch, err := statusPatch(node, updated)
	if err != nil {
		return err
	}
	if _, err := a.cfg.Client.CoreV1().Nodes().Patch(ctx, a.cfg.NodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("patching node status: %w", err)
	}
	a.lastReport = now
	a.recordEvents(events)
	return nil
}

func (a *agent) recordEvents(reasons []string) {
	for _, r := range reasons {
		a.log.Info("node condition changed", "event", r)
		a.event(corev1.EventTypeNormal, r, fmt.Sprintf("Node %s status is now: %s", a.cfg.NodeName, r))
	}
}

// renewLease is one run of the node lease controller: update the lease
// last written, else make sure it exists and update it.
func (a *agent) renewLease(ctx context.Context) {
	if a.lease != nil {
		if err := a.updateLease(ctx, a.lease); err == nil {
			return
		}
	}
	lease, created := a.ensureLeaseWithBackoff(ctx)
	if lease == nil || created {
		return
	}
	if err := a.updateLease(ctx, lease); err != nil && ctx.Err() == nil {
		a.log.Warn("renewing node lease, will retry", "err", err, "in", a.cfg.RenewInterval)
	}
}

// ensureLeaseWithBackoff gets the lease or creates it, retrying with
// back-off until it succeeds (nil when ctx ended).
func (a *agent) ensureLeaseWithBackoff(ctx context.Context) (*coordinationv1.Lease, bool) {
	step := initialBackoff
	leases := a.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	for {
		lease, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			lease, err = leases.Create(ctx, a.newLease(ctx, nil), metav1.CreateOptions{})
			if err == nil {
				a.lease = lease
				return lease, true
			}
		}
		if err == nil {
			return lease, false
		}
		if ctx.Err() != nil {
			return nil, false
		}
		step = min(2*step, maxBackoff)
		a.log.Warn("failed to ensure the node lease exists, will retry", "err", err, "in", step)
		if !a.sleep(ctx, step) {
			return nil, false
		}
	}
}

// updateLease renews base, re-reading it on conflicts.
func (a *agent) updateLease(ctx context.Context, base *coordinationv1.Lease) error {
	leases := a.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	var err error
	for range maxLeaseUpdates {
		var lease *coordinationv1.Lease
		lease, err = leases.Update(ctx, a.newLease(ctx, base), metav1.UpdateOptions{})
		if err == nil {
			a.lease = lease
			return nil
		}
		if apierrors.IsNotFound(err) || ctx.Err() != nil {
			break
		}
		if apierrors.IsConflict(err) {
			if base, _ = a.ensureLeaseWithBackoff(ctx); base == nil {
				break
			}
		}
	}
	a.lease = nil
	return err
}

// newLease is base (or a new lease) renewed now, held by this node and
// owned by its Node when the Node exists.
func (a *agent) newLease(ctx context.Context, base *coordinationv1.Lease) *coordinationv1.Lease {
	var l *coordinationv1.Lease
	if base == nil {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: corev1.NamespaceNodeLease}}
	} else {
		l = base.DeepCopy()
	}
	l.Spec.HolderIdentity = ptr.To(a.cfg.NodeName)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(a.cfg.LeaseDuration / time.Second))
	l.Spec.RenewTime = &metav1.MicroTime{Time: a.clock.Now()}
	if len(l.OwnerReferences) == 0 {
		node, err := a.cfg.Client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err == nil {
			l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
		} else {
			a.log.Warn("node lease without owner: failed to get the node", "err", err)
		}
	}
	return l
}

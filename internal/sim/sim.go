// Package sim runs hollow nodes: Node objects that register, keep their
// Leases fresh and move the pods bound to them to Running/Ready at once
// with a pod IP from the node's podCIDR — no containers. It is how skiff's
// controllers are tested at scale and how users test their own controllers
// without machines (the job kwok does for Kubernetes).
//
// One Sim drives all its nodes from one process: one pod informer over the
// pods bound to any node, one lease loop, and a small worker pool for pod
// status writes.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// KubeletVersion is what sim nodes report as their kubelet version.
var KubeletVersion = "v1.32.0-skiff-sim"

// Config describes the simulated nodes.
type Config struct {
	Nodes       int    // how many nodes; required
	Prefix      string // node names are Prefix-0 … Prefix-(N-1); default "sim"
	PodsPerNode int    // pods capacity; default 110
	CPU         resource.Quantity
	Memory      resource.Quantity
	// Fail lists nodes that stop heartbeating (and stop tending their
	// pods) after FailAfter, to exercise node-lifecycle eviction.
	Fail      []string
	FailAfter time.Duration
	// LeaseDuration is written to the leases (40 s as the kubelet);
	// RenewInterval is how often they are renewed (10 s).
	LeaseDuration time.Duration
	RenewInterval time.Duration
	// Workers write pod statuses concurrently (default 16).
	Workers int
}

func (c *Config) setDefaults() error {
	if c.Nodes < 1 {
		return errors.New("sim: --nodes must be at least 1")
	}
	if c.Prefix == "" {
		c.Prefix = "sim"
	}
	if c.PodsPerNode == 0 {
		c.PodsPerNode = 110
	}
	if c.PodsPerNode < 0 {
		return errors.New("sim: --pods-per-node must not be negative")
	}
	if c.CPU.IsZero() {
		c.CPU = resource.MustParse("4")
	}
	if c.Memory.IsZero() {
		c.Memory = resource.MustParse("16Gi")
	}
	if c.CPU.Sign() < 0 || c.Memory.Sign() < 0 {
		return errors.New("sim: --cpu and --memory must not be negative")
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 40 * time.Second
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = 10 * time.Second
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	names := map[string]bool{}
	for i := range c.Nodes {
		names[c.nodeName(i)] = true
	}
	for _, f := range c.Fail {
		if !names[f] {
			return fmt.Errorf("sim: --fail %s: no such simulated node (they are %s … %s)", f, c.nodeName(0), c.nodeName(c.Nodes-1))
		}
	}
	return nil
}

func (c *Config) nodeName(i int) string { return fmt.Sprintf("%s-%d", c.Prefix, i) }

// Sim is a set of hollow nodes. Build it with New, then Run.
type Sim struct {
	cfg    Config
	client kubernetes.Interface
	log    *slog.Logger

	mu    sync.Mutex
	nodes map[string]*simNode
	ready chan struct{}
}

// simNode is the state of one hollow node.
type simNode struct {
	name   string
	uid    types.UID
	ip     string
	failed bool
	lease  *coordinationv1.Lease
	ipam   *ipam // nil until the node has a podCIDR
}

// New checks cfg and fills defaults; it starts nothing.
func New(client kubernetes.Interface, cfg Config, log *slog.Logger) (*Sim, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Sim{cfg: cfg, client: client, log: log.With("component", "sim"), nodes: map[string]*simNode{}, ready: make(chan struct{})}
	for i := range cfg.Nodes {
		name := cfg.nodeName(i)
		s.nodes[name] = &simNode{name: name, ip: nodeIP(i)}
	}
	return s, nil
}

// Ready is closed once every node is registered with a fresh lease.
func (s *Sim) Ready() <-chan struct{} { return s.ready }

// nodeIP gives node i an address from 198.18.0.0/15, the range set aside
// for benchmarking: it is never routed, and no traffic is sent to it.
func nodeIP(i int) string {
	return fmt.Sprintf("198.%d.%d.%d", 18+(i/62500)%2, (i/250)%250, i%250+1)
}

// Run registers the nodes and tends them until ctx ends. The nodes stay
// registered afterwards and go NotReady once their leases expire, as a
// kubelet that stopped.
func (s *Sim) Run(ctx context.Context) error {
	if err := s.registerAll(ctx); err != nil {
		return err
	}
	if err := s.renewAll(ctx); err != nil {
		return err
	}
	s.log.Info("simulated nodes registered", "nodes", s.cfg.Nodes, "first", s.cfg.nodeName(0))
	close(s.ready)

	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
		}))
	pods := newPodTender(s, factory.Core().V1().Pods())
	nodeInformer := informers.NewSharedInformerFactory(s.client, 0).Core().V1().Nodes()
	nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.nodeSeen(obj.(*corev1.Node), pods) },
		UpdateFunc: func(_, obj any) { s.nodeSeen(obj.(*corev1.Node), pods) },
	})
	go nodeInformer.Informer().Run(ctx.Done())
	factory.Start(ctx.Done())

	if len(s.cfg.Fail) > 0 {
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.FailAfter):
			}
			s.mu.Lock()
			for _, name := range s.cfg.Fail {
				s.nodes[name].failed = true
			}
			s.mu.Unlock()
			s.log.Info("simulated nodes failed: no more heartbeats", "nodes", s.cfg.Fail)
		}()
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := s.renewAll(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("renewing leases", "err", err)
		}
	}, s.cfg.RenewInterval)
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := s.heartbeatAll(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("posting node status", "err", err)
		}
	}, time.Minute)

	err := pods.run(ctx, s.cfg.Workers, nodeInformer.Informer().HasSynced)
	factory.Shutdown()
	return err
}

// nodeSeen learns a node's podCIDR (assigned by the server's node IPAM
// controller after registration) and releases pods waiting for it.
func (s *Sim) nodeSeen(node *corev1.Node, pods *podTender) {
	s.mu.Lock()
	n, ok := s.nodes[node.Name]
	if !ok || n.ipam != nil || node.Spec.PodCIDR == "" {
		s.mu.Unlock()
		return
	}
	prefix, err := netip.ParsePrefix(node.Spec.PodCIDR)
	if err != nil {
		s.mu.Unlock()
		s.log.Warn("node has an unusable podCIDR", "node", node.Name, "podCIDR", node.Spec.PodCIDR)
		return
	}
	n.ipam = newIPAM(prefix)
	s.mu.Unlock()
	pods.nodeReady(node.Name)
}

// node returns the live (not failed) sim node called name.
func (s *Sim) node(name string) (*simNode, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nodes[name]
	if !ok || n.failed {
		return nil, false
	}
	return n, true
}

func (s *Sim) nodeNames() []string {
	names := make([]string, 0, s.cfg.Nodes)
	for i := range s.cfg.Nodes {
		names = append(names, s.cfg.nodeName(i))
	}
	return names
}

// forEachNode runs fn for every live node with bounded concurrency and
// returns the first error.
func (s *Sim) forEachNode(ctx context.Context, fn func(ctx context.Context, n *simNode) error) error {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, name := range s.nodeNames() {
		n, ok := s.node(name)
		if !ok {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, n); err != nil {
				once.Do(func() { first = fmt.Errorf("%s: %w", n.name, err) })
			}
		}()
	}
	wg.Wait()
	return first
}

func (s *Sim) registerAll(ctx context.Context) error {
	return s.forEachNode(ctx, s.register)
}

// register creates the node, or takes over an existing one of that name
// (a restarted sim), and posts a Ready status.
func (s *Sim) register(ctx context.Context, n *simNode) error {
	want := s.nodeObject(n)
	node, err := s.client.CoreV1().Nodes().Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		node, err = s.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	n.uid = node.UID
	s.mu.Unlock()
	return s.postStatusRetrying(ctx, node)
}

// postStatusRetrying posts the status, re-reading the node when the server's
// controllers (pod CIDR, taints) changed it meanwhile.
func (s *Sim) postStatusRetrying(ctx context.Context, node *corev1.Node) error {
	first := true
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		if !first {
			fresh, err := s.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			node = fresh
		}
		first = false
		return s.postStatus(ctx, node)
	})
}

func (s *Sim) heartbeatAll(ctx context.Context) error {
	return s.forEachNode(ctx, func(ctx context.Context, n *simNode) error {
		node, err := s.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return s.register(ctx, n) // someone deleted it: register again, as a kubelet does
		}
		if err != nil {
			return err
		}
		return s.postStatusRetrying(ctx, node)
	})
}

// postStatus writes the node's status: capacity, addresses, node info and
// the kubelet's conditions, all healthy.
func (s *Sim) postStatus(ctx context.Context, node *corev1.Node) error {
	n, ok := s.node(node.Name)
	if !ok {
		return nil
	}
	old := node.Status.Conditions
	node = node.DeepCopy()
	node.Status = s.nodeObject(n).Status
	now := metav1.Now()
	node.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
	}
	for i := range node.Status.Conditions {
		c := &node.Status.Conditions[i]
		c.LastHeartbeatTime, c.LastTransitionTime = now, now
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	_, err := s.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

func (s *Sim) nodeObject(n *simNode) *corev1.Node {
	res := corev1.ResourceList{
		corev1.ResourceCPU:              s.cfg.CPU,
		corev1.ResourceMemory:           s.cfg.Memory,
		corev1.ResourcePods:             *resource.NewQuantity(int64(s.cfg.PodsPerNode), resource.DecimalSI),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.name,
			Labels: map[string]string{
				corev1.LabelHostname:   n.name,
				corev1.LabelOSStable:   "linux",
				corev1.LabelArchStable: "amd64",
				"type":                 "skiff-sim",
			},
			Annotations: map[string]string{"skiff.dev/simulated": "true"},
		},
		Status: corev1.NodeStatus{
			Capacity:    res,
			Allocatable: res,
			Phase:       corev1.NodeRunning,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: n.ip},
				{Type: corev1.NodeHostName, Address: n.name},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID: n.name, SystemUUID: n.name, BootID: n.name,
				KernelVersion: "simulated", OSImage: "skiff sim", OperatingSystem: "linux", Architecture: "amd64",
				ContainerRuntimeVersion: "sim://1.0", KubeletVersion: KubeletVersion, KubeProxyVersion: KubeletVersion,
			},
		},
	}
}

// renewAll renews every live node's lease in kube-node-lease.
func (s *Sim) renewAll(ctx context.Context) error {
	return s.forEachNode(ctx, s.renew)
}

func (s *Sim) renew(ctx context.Context, n *simNode) error {
	leases := s.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	s.mu.Lock()
	lease := n.lease
	s.mu.Unlock()
	var err error
	if lease != nil {
		l := lease.DeepCopy()
		l.Spec.RenewTime = &now
		lease, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			lease = nil // re-read below
		} else if err != nil {
			return err
		}
	}
	if lease == nil {
		lease, err = leases.Get(ctx, n.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			lease, err = leases.Create(ctx, s.leaseObject(n, now), metav1.CreateOptions{})
		case err == nil:
			l := lease.DeepCopy()
			l.Spec.RenewTime = &now
			l.Spec.HolderIdentity = ptr.To(n.name)
			l.Spec.LeaseDurationSeconds = ptr.To(int32(s.cfg.LeaseDuration / time.Second))
			lease, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		}
		if err != nil {
			return err
		}
	}
	s.mu.Lock()
	n.lease = lease
	s.mu.Unlock()
	return nil
}

func (s *Sim) leaseObject(n *simNode, now metav1.MicroTime) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.name, Namespace: corev1.NamespaceNodeLease,
			// As the kubelet: the lease goes when its node is deleted.
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.name, UID: n.uid}},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(n.name),
			LeaseDurationSeconds: ptr.To(int32(s.cfg.LeaseDuration / time.Second)),
			RenewTime:            &now,
		},
	}
}

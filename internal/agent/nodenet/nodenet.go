// Package nodenet is the agent's networking: it ties the pod network
// (internal/network: bridge, veths, IPAM, routes to the other nodes) and the
// Service proxy (internal/proxy: nftables) to the cluster.
//
// Run reads the cluster's settings (clusterinfo: cluster CIDR, pod-network
// backend), waits for the node's spec.podCIDR, sets the sysctls, creates the
// bridge (and the VXLAN device), publishes the node's VTEP address as
// annotations, and then keeps routes to every other node's podCIDR in step
// with the Node objects. Until then SetUp waits and NetworkReady reports the
// node not ready, as the kubelet does before its CNI is up.
package nodenet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-dev/skiff/internal/clusterinfo"
	"github.com/skiff-dev/skiff/internal/network"
	"github.com/skiff-dev/skiff/internal/proxy"
)

// Config of the node's networking.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	NodeIP   netip.Addr
	// StateDir holds the IPAM state (DATA/agent/network).
	StateDir string
	// LiveSandboxes lists the pod UIDs that have a sandbox on the node; IPs
	// held by anything else are released by the periodic reconcile.
	LiveSandboxes func() ([]types.UID, error)
	// DisableProxy leaves Services to someone else (no nftables table).
	DisableProxy bool
	// Ready is signalled (non-blocking) when the network becomes ready.
	Ready  chan<- struct{}
	Logger *slog.Logger
}

// Network implements podworker.Network once Run has set the node up.
type Network struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{} // closed when mgr is set

	// podMu orders SetUp/TearDown (shared) against the IP reconcile
	// (exclusive): a sandbox exists before its SetUp starts, so a reconcile
	// that lists sandboxes under the exclusive lock never frees an address
	// a SetUp is handing out.
	podMu sync.RWMutex

	mu      sync.Mutex
	mgr     *network.Manager
	why     string // why the network is not ready yet
	proxier *proxy.Proxier
}

// New returns the node's network, not yet set up: call Run.
func New(cfg Config) *Network {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Network{cfg: cfg, log: cfg.Logger.With("component", "nodenet"), ready: make(chan struct{}), why: "network not set up yet"}
}

// NetworkReady is nodestatus's check: nil once pods can get IPs.
func (n *Network) NetworkReady() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mgr == nil {
		return fmt.Errorf("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:%s", n.why)
	}
	return nil
}

func (n *Network) notReady(why string) {
	n.mu.Lock()
	n.why = why
	n.mu.Unlock()
}

// manager waits until the network is set up (or ctx ends).
func (n *Network) manager(ctx context.Context) (*network.Manager, error) {
	select {
	case <-n.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("pod network not ready: %w", n.NetworkReady())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mgr, nil
}

// SetUp gives the pod its veth and IP (podworker.Network).
func (n *Network) SetUp(ctx context.Context, pod *corev1.Pod, netnsPath string) ([]string, error) {
	m, err := n.manager(ctx)
	if err != nil {
		return nil, err
	}
	n.podMu.RLock()
	defer n.podMu.RUnlock()
	return m.SetUp(ctx, pod, netnsPath)
}

// TearDown removes the pod's veth and releases its IP (podworker.Network).
func (n *Network) TearDown(ctx context.Context, pod *corev1.Pod, netnsPath string) error {
	m, err := n.manager(ctx)
	if err != nil {
		return err
	}
	n.podMu.RLock()
	defer n.podMu.RUnlock()
	return m.TearDown(ctx, pod, netnsPath)
}

// Proxier returns the Service proxy once running (nil before, or disabled).
func (n *Network) Proxier() *proxy.Proxier {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proxier
}

// Run sets the node's network up and keeps it in step until ctx ends. What
// it made stays in place when it returns: pods keep their network across an
// agent restart (`skiff killall` removes it).
func (n *Network) Run(ctx context.Context) error {
	info, err := n.clusterInfo(ctx)
	if err != nil {
		return nil // ctx ended
	}
	factory := informers.NewSharedInformerFactoryWithOptions(n.cfg.Client, 30*time.Minute)
	nodes := factory.Core().V1().Nodes()
	changed := make(chan struct{}, 1)
	kick := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { kick() },
		UpdateFunc: func(o, nw any) { kick() },
		DeleteFunc: func(any) { kick() },
	})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced) {
		return nil
	}

	var proxyErr chan error
	if !n.cfg.DisableProxy {
		p, err := proxy.NewProxier(proxy.ProxierConfig{
			Client:  n.cfg.Client,
			Options: proxy.Options{NodeName: n.cfg.NodeName, ClusterCIDR: info.ClusterCIDR},
			Logger:  n.cfg.Logger,
		})
		if err != nil {
			return err
		}
		n.mu.Lock()
		n.proxier = p
		n.mu.Unlock()
		proxyErr = make(chan error, 1)
		go func() { proxyErr <- p.Run(ctx) }()
	}

	// The node's podCIDR comes from the server's node IPAM controller once
	// the node has registered.
	var podCIDR netip.Prefix
	for podCIDR.Bits() <= 0 {
		if node, err := nodes.Lister().Get(n.cfg.NodeName); err == nil && node.Spec.PodCIDR != "" {
			p, err := netip.ParsePrefix(node.Spec.PodCIDR)
			if err != nil || !p.Addr().Is4() {
				n.notReady(fmt.Sprintf("node has an unusable podCIDR %q", node.Spec.PodCIDR))
			} else {
				podCIDR = p.Masked()
				break
			}
		} else {
			n.notReady("waiting for the node's podCIDR")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-time.After(time.Second):
		}
	}

	routes, mgr, err := n.setUp(ctx, info, podCIDR)
	for err != nil {
		n.notReady(err.Error())
		n.log.Error("setting up the pod network, will retry", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
		routes, mgr, err = n.setUp(ctx, info, podCIDR)
	}
	defer routes.Close()
	n.mu.Lock()
	n.mgr = mgr
	n.mu.Unlock()
	close(n.ready)
	if n.cfg.Ready != nil {
		select {
		case n.cfg.Ready <- struct{}{}:
		default:
		}
	}
	n.log.Info("pod network ready", "backend", info.PodNetwork, "podCIDR", podCIDR.String(), "clusterCIDR", info.ClusterCIDR.String())

	resync := time.NewTicker(time.Minute)
	defer resync.Stop()
	lastReconcile := time.Time{}
	for {
		if err := n.annotate(ctx, routes, info); err != nil && ctx.Err() == nil {
			n.log.Warn("annotating the node", "err", err)
		}
		all, err := nodes.Lister().List(labels.Everything())
		if err == nil {
			if err := routes.Sync(network.PeersFromNodes(all, n.cfg.NodeName)); err != nil {
				n.log.Warn("syncing routes to other nodes, will retry", "err", err)
			}
		}
		if time.Since(lastReconcile) > 5*time.Minute {
			n.reconcileIPs(ctx, mgr)
			lastReconcile = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-proxyErr:
			return fmt.Errorf("service proxy: %w", err)
		case <-changed:
			// Debounce a burst of node updates (every node's status).
			time.Sleep(50 * time.Millisecond)
		case <-resync.C:
		}
	}
}

func (n *Network) clusterInfo(ctx context.Context) (clusterinfo.Info, error) {
	var info clusterinfo.Info
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		i, err := clusterinfo.Get(ctx, n.cfg.Client)
		if err != nil {
			n.notReady("reading the cluster's network settings: " + err.Error())
			return false, nil
		}
		info = i
		return true, nil
	})
	return info, err
}

// setUp makes the node's side of the pod network: sysctls, the VXLAN device
// (vxlan), the bridge.
func (n *Network) setUp(ctx context.Context, info clusterinfo.Info, podCIDR netip.Prefix) (*network.Routes, *network.Manager, error) {
	if err := network.EnsureSysctls(""); err != nil {
		return nil, nil, err
	}
	routes, err := network.NewRoutes(network.RoutesConfig{
		Backend: info.PodNetwork, NodeIP: n.cfg.NodeIP, PodCIDR: podCIDR, Logger: n.cfg.Logger,
	})
	if err != nil {
		return nil, nil, err
	}
	if err := routes.Ensure(); err != nil {
		routes.Close()
		return nil, nil, err
	}
	mtu, err := routes.PodMTU()
	if err != nil {
		routes.Close()
		return nil, nil, err
	}
	mgr, err := network.New(network.Config{
		PodCIDR: podCIDR, StateDir: filepath.Join(n.cfg.StateDir, "ipam"), MTU: mtu, Logger: n.cfg.Logger,
	})
	if err != nil {
		routes.Close()
		return nil, nil, err
	}
	if err := mgr.EnsureBridge(ctx); err != nil {
		mgr.Close()
		routes.Close()
		return nil, nil, err
	}
	return routes, mgr, nil
}

// annotate publishes what other nodes need to reach this node's pods.
func (n *Network) annotate(ctx context.Context, routes *network.Routes, info clusterinfo.Info) error {
	want := map[string]string{network.AnnotationBackend: info.PodNetwork}
	if info.PodNetwork == network.BackendVXLAN {
		want[network.AnnotationVTEPMAC] = routes.VTEPMAC().String()
	}
	node, err := n.cfg.Client.CoreV1().Nodes().Get(ctx, n.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	same := true
	for k, v := range want {
		if node.Annotations[k] != v {
			same = false
		}
	}
	if same {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": want}})
	_, err = n.cfg.Client.CoreV1().Nodes().Patch(ctx, n.cfg.NodeName, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// reconcileIPs releases addresses (and veths) of pods that no longer have a
// sandbox here: a safety net behind TearDown (an agent killed mid-teardown).
func (n *Network) reconcileIPs(ctx context.Context, mgr *network.Manager) {
	if n.cfg.LiveSandboxes == nil {
		return
	}
	n.podMu.Lock()
	defer n.podMu.Unlock()
	live, err := n.cfg.LiveSandboxes()
	if err != nil {
		n.log.Warn("listing sandboxes for IP reconcile", "err", err)
		return
	}
	freed, err := mgr.Reconcile(ctx, live)
	if err != nil {
		n.log.Warn("reconciling pod IPs", "err", err)
	}
	if len(freed) > 0 {
		n.log.Info("released IPs of pods gone from the node", "ips", freed)
	}
}

// Cleanup removes the node's network: the proxy's table, the bridge, the
// veths, the VXLAN device and skiff's routes (`skiff killall`).
func Cleanup() error {
	return errors.Join(proxy.Cleanup(""), network.Cleanup(""))
}

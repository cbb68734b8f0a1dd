// Package nodeipam hands every node a pod CIDR (spec.podCIDR and
// spec.podCIDRs) cut from the cluster CIDR, as kube-controller-manager's
// node-ipam-controller does with its range allocator
// (pkg/controller/nodeipam/ipam/range_allocator.go).
//
// The allocator's bitmap lives in memory: Run rebuilds it from every node's
// podCIDRs before it allocates anything, so a restart never hands out a
// subnet twice. A podCIDR outside the cluster CIDR (set by hand, or left
// from another --cluster-cidr) is left alone and does not block anything.
package nodeipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Name is the controller's name in logs and the workqueue.
const Name = "node-ipam-controller"

// eventComponent is the source of the allocator's events, as upstream.
const eventComponent = "cidrAllocator"

// Options configure the allocator.
type Options struct {
	// ClusterCIDR is the range node pod CIDRs are cut from (skiff server
	// --cluster-cidr). Default 10.42.0.0/16.
	ClusterCIDR netip.Prefix
	// NodeCIDRMaskSize is the prefix length of each node's CIDR
	// (--node-cidr-mask-size). Default 24 for IPv4, 64 for IPv6.
	NodeCIDRMaskSize int
	// ServiceCIDR, when set, is never handed to nodes where it overlaps
	// the cluster CIDR (upstream filterOutServiceRange).
	ServiceCIDR netip.Prefix
}

// Controller allocates node pod CIDRs.
type Controller struct {
	client   kubernetes.Interface
	nodes    corelisters.NodeLister
	synced   cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	log      *slog.Logger
	opts     Options

	mu  sync.Mutex
	set *cidrSet
	// owned is the subnet of the set each node holds (allocated by us or
	// found on the node), so deletes release only what a node really had.
	owned map[string]netip.Prefix
}

// New validates opts, fills defaults and registers the node handlers.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if !opts.ClusterCIDR.IsValid() {
		opts.ClusterCIDR = netip.MustParsePrefix("10.42.0.0/16")
	}
	opts.ClusterCIDR = opts.ClusterCIDR.Masked()
	if opts.NodeCIDRMaskSize == 0 {
		opts.NodeCIDRMaskSize = 24
		if opts.ClusterCIDR.Addr().Is6() {
			opts.NodeCIDRMaskSize = 64
		}
	}
	set, err := newCIDRSet(opts.ClusterCIDR, opts.NodeCIDRMaskSize)
	if err != nil {
		return nil, fmt.Errorf("nodeipam: %w", err)
	}
	if opts.ServiceCIDR.IsValid() && opts.ServiceCIDR.Overlaps(opts.ClusterCIDR) {
		_ = set.occupy(opts.ServiceCIDR) // overlaps, so in range
	}
	c := &Controller{
		client:   cc.Client,
		queue:    controller.NewQueue(Name),
		recorder: cc.EventRecorder(eventComponent),
		log:      cc.Logger(Name),
		opts:     opts,
		set:      set,
		owned:    map[string]netip.Prefix{},
	}
	inf := cc.Informers.Core().V1().Nodes()
	c.nodes = inf.Lister()
	c.synced = inf.Informer().HasSynced
	enqueue := func(obj any) {
		if key, ok := controller.KeyOf(obj); ok {
			c.queue.Add(key)
		}
	}
	_, err = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(old, cur any) {
			// Only nodes without a CIDR, or whose CIDR changed, need work;
			// heartbeats do not.
			o, n := old.(*corev1.Node), cur.(*corev1.Node)
			if len(n.Spec.PodCIDRs) == 0 || !equalStrings(o.Spec.PodCIDRs, n.Spec.PodCIDRs) {
				enqueue(cur)
			}
		},
		DeleteFunc: enqueue,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Run rebuilds the allocation map from all nodes, then allocates until ctx
// ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !cache.WaitForNamedCacheSync(Name, ctx.Done(), c.synced) {
		c.queue.ShutDown()
		return ctx.Err()
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		c.queue.ShutDown()
		return err
	}
	c.mu.Lock()
	for _, n := range nodes {
		c.occupyLocked(n)
	}
	c.mu.Unlock()
	return controller.RunWorkers(ctx, Name, c.queue, workers, c.reconcile, c.log, c.synced)
}

// occupyLocked marks the node's podCIDR of the cluster's family as used.
func (c *Controller) occupyLocked(n *corev1.Node) {
	p, ok := c.nodePrefix(n)
	if !ok {
		return
	}
	if had, ok := c.owned[n.Name]; ok {
		if had == p {
			return
		}
		// The node's CIDR is not the one we reserved for it (another
		// writer won); free ours.
		_ = c.set.release(had)
		delete(c.owned, n.Name)
	}
	if !c.opts.ClusterCIDR.Overlaps(p) {
		c.log.Debug("node podCIDR outside the cluster CIDR, leaving it alone", "node", n.Name, "podCIDR", p)
		return
	}
	if err := c.set.occupy(p); err != nil {
		c.log.Warn("cannot mark node podCIDR as used", "node", n.Name, "podCIDR", p, "err", err)
		return
	}
	c.owned[n.Name] = p
}

// nodePrefix is the node's podCIDR of the cluster CIDR's IP family.
func (c *Controller) nodePrefix(n *corev1.Node) (netip.Prefix, bool) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			c.log.Warn("node has an unparsable podCIDR", "node", n.Name, "podCIDR", s)
			continue
		}
		if p.Addr().Is4() == c.opts.ClusterCIDR.Addr().Is4() {
			return p.Masked(), true
		}
	}
	return netip.Prefix{}, false
}

func (c *Controller) reconcile(ctx context.Context, name string) error {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		c.release(name)
		return nil
	}
	if err != nil {
		return err
	}
	if len(node.Spec.PodCIDRs) > 0 || node.Spec.PodCIDR != "" {
		c.mu.Lock()
		c.occupyLocked(node)
		c.mu.Unlock()
		return nil
	}
	cidr, err := c.reserve(name)
	if err != nil {
		if errors.Is(err, errCIDRRangeNoCIDRsRemaining) {
			recordNodeStatusChange(c.recorder, node, "CIDRNotAvailable")
		}
		return fmt.Errorf("failed to allocate cidr from cluster cidr %s: %w", c.opts.ClusterCIDR, err)
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{
		"podCIDR": cidr.String(), "podCIDRs": []string{cidr.String()}}})
	_, err = c.client.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			c.release(name)
			return nil
		}
		// Keep the reservation: the retry reuses it, and a delete
		// releases it.
		return fmt.Errorf("set node %s podCIDR %s: %w", name, cidr, err)
	}
	c.log.Info("set node PodCIDR", "node", name, "podCIDRs", []string{cidr.String()})
	return nil
}

// reserve returns the subnet reserved for the node, allocating one.
func (c *Controller) reserve(name string) (netip.Prefix, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.owned[name]; ok {
		return p, nil
	}
	p, err := c.set.allocateNext()
	if err != nil {
		return netip.Prefix{}, err
	}
	c.owned[name] = p
	return p, nil
}

func (c *Controller) release(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.owned[name]; ok {
		_ = c.set.release(p)
		delete(c.owned, name)
		c.log.Debug("released node podCIDR", "node", name, "podCIDR", p)
	}
}

// recordNodeStatusChange is upstream's nodeutil.RecordNodeStatusChange.
func recordNodeStatusChange(r record.EventRecorder, node *corev1.Node, status string) {
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}
	r.Eventf(ref, corev1.EventTypeNormal, status, "Node %s status is now: %s", node.Name, status)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Package servicelb gives Services of type LoadBalancer their addresses,
// as k3s's ServiceLB (klipper-lb, pkg/cloudprovider/servicelb.go) does, but
// without svclb pods: every skiff agent's nftables proxy answers on a
// service's LoadBalancer ingress IPs itself, so writing
// status.loadBalancer.ingress is all there is to do.
//
// Services with spec.loadBalancerClass set belong to another
// implementation and are left alone.
//
// Two modes:
//
//   - Node addresses (the default, as k3s): every LoadBalancer service gets
//     the addresses of every Ready, schedulable node not labelled
//     node.kubernetes.io/exclude-from-external-load-balancers — their
//     ExternalIPs when at least one such node has one, else their
//     InternalIPs (k3s's rule) — kept up to date as nodes come, go and change
//     readiness. A service with externalTrafficPolicy Local gets only the
//     nodes with a ready endpoint of it (as k3s). As the services share the
//     nodes' addresses, two of them cannot both use one port and protocol:
//     as klipper-lb's pod would stay pending on the taken host port, the
//     later service gets no address and a Warning event until the port is
//     free. "Later": a service already serving keeps its ports; among the
//     others the older (creation time, then namespace/name) wins.
//   - A pool (skiff server --lb-ip-pool CIDR): one VIP per service, the
//     lowest free address unless spec.loadBalancerIP asks for a free one in
//     the pool. The allocation lives only in the services' statuses: Run
//     rebuilds it from them before it hands anything out, so addresses are
//     stable across restarts. An exhausted pool, or a requested address that
//     is taken or outside the pool, leaves the service pending with a
//     Warning event; a delete or a change away from type LoadBalancer frees
//     the address and pending services are retried.
//
// Ingress entries carry ipMode VIP: traffic to them is handled by the
// proxy on every node, with the destination address kept.
package servicelb

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Name is the controller's name in logs, the workqueue and its events.
const Name = "service-lb-controller"

// LabelExcludeNode keeps a node's addresses out of LoadBalancer ingress
// (the upstream service controller's label).
const LabelExcludeNode = "node.kubernetes.io/exclude-from-external-load-balancers"

// Event reasons.
const (
	reasonUpdated     = "UpdatedLoadBalancer"     // k3s's
	reasonNoNodes     = "UnAvailableLoadBalancer" // k3s's
	reasonPortInUse   = "PortConflict"
	reasonExhausted   = "PoolExhausted"
	reasonIPNotUsable = "LoadBalancerIPNotAvailable"
)

// Options configure the controller.
type Options struct {
	// Pool, when valid, is the IPv4 range VIPs come from; otherwise
	// services get the nodes' addresses.
	Pool netip.Prefix
}

// Controller writes LoadBalancer services' ingress addresses.
type Controller struct {
	client   kubernetes.Interface
	services corelisters.ServiceLister
	nodes    corelisters.NodeLister               // nil in pool mode
	slices   discoverylisters.EndpointSliceLister // nil in pool mode
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	log      *slog.Logger

	mu      sync.Mutex
	pool    *pool             // nil in node-address mode
	pending map[string]bool   // pool mode: services waiting for an address
	warned  map[string]string // key → the last Warning sent, so it is sent once
}

// New validates opts and registers the informer handlers.
func New(cc controller.Context, opts Options) (*Controller, error) {
	c := &Controller{
		client:   cc.Client,
		queue:    controller.NewQueue(Name),
		recorder: cc.EventRecorder(Name),
		log:      cc.Logger(Name),
		pending:  map[string]bool{},
		warned:   map[string]string{},
	}
	if opts.Pool.IsValid() {
		p, err := newPool(opts.Pool)
		if err != nil {
			return nil, fmt.Errorf("servicelb: %w", err)
		}
		c.pool = p
	}
	svcs := cc.Informers.Core().V1().Services()
	c.services = svcs.Lister()
	c.synced = append(c.synced, svcs.Informer().HasSynced)
	if _, err := svcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.serviceChanged(nil, obj) },
		UpdateFunc: c.serviceChanged,
		DeleteFunc: func(obj any) { c.serviceChanged(obj, nil) },
	}); err != nil {
		return nil, err
	}
	if c.pool == nil {
		nodes := cc.Informers.Core().V1().Nodes()
		c.nodes = nodes.Lister()
		c.synced = append(c.synced, nodes.Informer().HasSynced)
		if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { c.enqueueAll() },
			UpdateFunc: func(old, cur any) {
				o, n := old.(*corev1.Node), cur.(*corev1.Node)
				// Heartbeats change neither; only these move ingress.
				if nodeUsable(o) != nodeUsable(n) || !apiequality.Semantic.DeepEqual(o.Status.Addresses, n.Status.Addresses) {
					c.enqueueAll()
				}
			},
			DeleteFunc: func(any) { c.enqueueAll() },
		}); err != nil {
			return nil, err
		}
		eps := cc.Informers.Discovery().V1().EndpointSlices()
		c.slices = eps.Lister()
		c.synced = append(c.synced, eps.Informer().HasSynced)
		if _, err := eps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    c.sliceChanged,
			UpdateFunc: func(_, cur any) { c.sliceChanged(cur) },
			DeleteFunc: c.sliceChanged,
		}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run rebuilds the pool's allocation from the services' statuses (pool
// mode), then reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !cache.WaitForNamedCacheSync(Name, ctx.Done(), c.synced...) {
		c.queue.ShutDown()
		return ctx.Err()
	}
	if c.pool != nil {
		if err := c.rebuild(); err != nil {
			c.queue.ShutDown()
			return err
		}
	}
	return controller.RunWorkers(ctx, Name, c.queue, workers, c.reconcile, c.log, c.synced...)
}

// managed reports whether the service is ours to give addresses.
func managed(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}

// serviceChanged enqueues the service and, in node-address mode, every
// other managed service when the set of ports in use may have changed.
func (c *Controller) serviceChanged(old, cur any) {
	obj := cur
	if obj == nil {
		obj = old
	}
	key, ok := controller.KeyOf(obj)
	if !ok {
		return
	}
	c.queue.Add(key)
	if c.pool != nil {
		return
	}
	o, _ := asService(old)
	n, _ := asService(cur)
	if portsInUse(o) != portsInUse(n) {
		c.enqueueAll()
	}
}

func asService(obj any) (*corev1.Service, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	svc, ok := obj.(*corev1.Service)
	return svc, ok && svc != nil
}

// portsInUse summarises what a service claims on the nodes' addresses
// ("" for none), to tell which updates can change a port conflict: its
// ports, and what orders it among the others (see portHolder).
func portsInUse(svc *corev1.Service) string {
	if svc == nil || !managed(svc) {
		return ""
	}
	parts := []string{svc.CreationTimestamp.String(), fmt.Sprint(len(svc.Status.LoadBalancer.Ingress) > 0)}
	for _, p := range svc.Spec.Ports {
		parts = append(parts, portKey(p))
	}
	return strings.Join(parts, ",")
}

func portKey(p corev1.ServicePort) string {
	proto := p.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	return fmt.Sprintf("%d/%s", p.Port, proto)
}

// sliceChanged queues the slice's service when its ingress depends on
// where its endpoints are (externalTrafficPolicy Local); slices change
// with every pod, so others are not looked at.
func (c *Controller) sliceChanged(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	eps, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	name := eps.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return
	}
	svc, err := c.services.Services(eps.Namespace).Get(name)
	if err == nil && managed(svc) && localOnly(svc) {
		c.queue.Add(eps.Namespace + "/" + name)
	}
}

// localOnly is whether external traffic must stay on the node it arrives
// at (externalTrafficPolicy Local): then only nodes with a ready endpoint
// of the service are its ingress, as in k3s.
func localOnly(svc *corev1.Service) bool {
	return svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// enqueueAll queues every managed service.
func (c *Controller) enqueueAll() {
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range svcs {
		if managed(s) {
			if key, ok := controller.KeyOf(s); ok {
				c.queue.Add(key)
			}
		}
	}
}

func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if !managed(svc) {
		c.forget(key)
		// The API server clears the status of a service that stops
		// being a LoadBalancer; this only catches one that slipped by.
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer && len(svc.Status.LoadBalancer.Ingress) > 0 {
			return c.writeIngress(ctx, svc, nil)
		}
		return nil
	}
	var ips []string
	if c.pool != nil {
		ips = c.poolAddress(svc, key)
	} else {
		ips, err = c.nodeAddresses(svc, key)
		if err != nil {
			return err
		}
	}
	return c.writeIngress(ctx, svc, ips)
}

// forget drops what the controller keeps for a service that is gone or
// not a managed LoadBalancer any more, freeing its pool address.
func (c *Controller) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.warned, key)
	delete(c.pending, key)
	if c.pool != nil && c.pool.release(key) {
		c.log.Debug("released load balancer address", "service", key)
		for k := range c.pending {
			c.queue.Add(k)
		}
	}
}

// warn sends a Warning event for the service unless the same one was the
// last sent.
func (c *Controller) warn(svc *corev1.Service, key, reason, msg string) {
	c.mu.Lock()
	again := c.warned[key] == reason+msg
	c.warned[key] = reason + msg
	c.mu.Unlock()
	c.log.Debug("load balancer pending", "service", key, "reason", reason, "message", msg)
	if !again {
		c.recorder.Event(svc, corev1.EventTypeWarning, reason, msg)
	}
}

func (c *Controller) clearWarning(key string) {
	c.mu.Lock()
	delete(c.warned, key)
	c.mu.Unlock()
}

// writeIngress sets the service's ingress to ips (ipMode VIP) when it
// differs.
func (c *Controller) writeIngress(ctx context.Context, svc *corev1.Service, ips []string) error {
	var want []corev1.LoadBalancerIngress
	for _, ip := range ips {
		want = append(want, corev1.LoadBalancerIngress{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)})
	}
	cur := svc.Status.LoadBalancer.Ingress
	if len(cur) == 0 && len(want) == 0 || apiequality.Semantic.DeepEqual(cur, want) {
		return nil
	}
	upd := svc.DeepCopy()
	upd.Status.LoadBalancer.Ingress = want
	if _, err := c.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("update status of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	before := make([]string, 0, len(cur))
	for _, in := range cur {
		before = append(before, in.IP)
	}
	if len(ips) > 0 {
		c.recorder.Eventf(svc, corev1.EventTypeNormal, reasonUpdated, "Updated LoadBalancer with new IPs: %v -> %v", before, ips)
	}
	c.log.Info("updated load balancer ingress", "service", svc.Namespace+"/"+svc.Name, "from", before, "to", ips)
	return nil
}

// ---- node-address mode ----

// nodeUsable is whether a node's addresses serve LoadBalancer traffic:
// Ready, schedulable and not excluded.
func nodeUsable(n *corev1.Node) bool {
	if n.Spec.Unschedulable {
		return false
	}
	if _, excluded := n.Labels[LabelExcludeNode]; excluded {
		return false
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// nodeAddresses is the ingress of a managed service in node-address mode,
// or none (with a Warning event) when an older service holds one of its
// ports or no node is usable.
func (c *Controller) nodeAddresses(svc *corev1.Service, key string) ([]string, error) {
	if holder, port, err := c.portHolder(svc); err != nil {
		return nil, err
	} else if holder != "" {
		c.warn(svc, key, reasonPortInUse, fmt.Sprintf(
			"port %s is already served on the nodes' addresses for LoadBalancer service %s; this service stays pending until it is free", port, holder))
		return nil, nil
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var withEndpoints map[string]bool
	if localOnly(svc) {
		if withEndpoints, err = c.endpointNodes(svc); err != nil {
			return nil, err
		}
	}
	var internal, external []netip.Addr
	for _, n := range nodes {
		if !nodeUsable(n) || (withEndpoints != nil && !withEndpoints[n.Name]) {
			continue
		}
		for _, a := range n.Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			switch a.Type {
			case corev1.NodeExternalIP:
				external = append(external, ip)
			case corev1.NodeInternalIP:
				internal = append(internal, ip)
			}
		}
	}
	// k3s: the ExternalIPs when any node has one, else the InternalIPs.
	addrs := internal
	if len(external) > 0 {
		addrs = external
	}
	ips := byFamily(addrs, svc.Spec.IPFamilies)
	if len(ips) == 0 {
		c.warn(svc, key, reasonNoNodes, "There are no available nodes for LoadBalancer")
		return nil, nil
	}
	c.clearWarning(key)
	return ips, nil
}

// endpointNodes are the nodes with a ready pod endpoint of the service.
func (c *Controller) endpointNodes(svc *corev1.Service) (map[string]bool, error) {
	list, err := c.slices.EndpointSlices(svc.Namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name}))
	if err != nil {
		return nil, err
	}
	nodes := map[string]bool{}
	for _, eps := range list {
		for _, ep := range eps.Endpoints {
			isPod := ep.TargetRef != nil && ep.TargetRef.Kind == "Pod"
			ready := ep.Conditions.Ready != nil && *ep.Conditions.Ready
			if isPod && ready && ep.NodeName != nil {
				nodes[*ep.NodeName] = true
			}
		}
	}
	return nodes, nil
}

// byFamily orders addresses as the service's IP families (IPv4 when it
// has none), each family sorted, without duplicates.
func byFamily(addrs []netip.Addr, families []corev1.IPFamily) []string {
	if len(families) == 0 {
		families = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	addrs = slices.Compact(addrs)
	var out []string
	for _, f := range families {
		for _, a := range addrs {
			if (f == corev1.IPv4Protocol && a.Is4()) || (f == corev1.IPv6Protocol && a.Is6() && !a.Is4In6()) {
				out = append(out, a.String())
			}
		}
	}
	return out
}

// portHolder returns the service (and port) that keeps svc from the nodes'
// addresses, or "". Services are admitted in order — those already
// serving (with an ingress) first, as klipper-lb's running pods keep their
// host ports, then oldest first (creation time, then namespace/name); one
// is admitted when none of its ports is held by an admitted one, so a
// pending service holds no port, as a pending pod holds no host port.
// Every worker orders the same way, so decisions agree; a write the cache
// has not shown yet can admit two for a moment, and the next look (the
// status update is an event) clears the younger.
func (c *Controller) portHolder(svc *corev1.Service) (string, string, error) {
	all, err := c.services.List(labels.Everything())
	if err != nil {
		return "", "", err
	}
	var lbs []*corev1.Service
	for _, s := range all {
		if managed(s) {
			lbs = append(lbs, s)
		}
	}
	slices.SortFunc(lbs, func(a, b *corev1.Service) int {
		sa, sb := len(a.Status.LoadBalancer.Ingress) > 0, len(b.Status.LoadBalancer.Ingress) > 0
		if sa != sb {
			if sa {
				return -1
			}
			return 1
		}
		return olderFirst(a, b)
	})
	held := map[string]string{} // port → service
	for _, s := range lbs {
		if s.Namespace == svc.Namespace && s.Name == svc.Name {
			for _, p := range s.Spec.Ports {
				if h, taken := held[portKey(p)]; taken {
					return h, portKey(p), nil
				}
			}
			return "", "", nil
		}
		free := true
		for _, p := range s.Spec.Ports {
			if _, taken := held[portKey(p)]; taken {
				free = false
				break
			}
		}
		if free {
			for _, p := range s.Spec.Ports {
				held[portKey(p)] = s.Namespace + "/" + s.Name
			}
		}
	}
	return "", "", nil
}

func olderFirst(a, b *corev1.Service) int {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		if a.CreationTimestamp.Before(&b.CreationTimestamp) {
			return -1
		}
		return 1
	}
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// ---- pool mode ----

// rebuild marks the pool addresses the services already have as theirs,
// oldest service first, so a duplicate goes to the older one.
func (c *Controller) rebuild() error {
	all, err := c.services.List(labels.Everything())
	if err != nil {
		return err
	}
	slices.SortFunc(all, olderFirst)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range all {
		if !managed(s) {
			continue
		}
		key := s.Namespace + "/" + s.Name
		for _, in := range s.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(in.IP)
			if err != nil || !c.pool.contains(ip) || c.pool.owner(ip) != "" {
				continue
			}
			_ = c.pool.take(key, ip)
			break
		}
	}
	return nil
}

// poolAddress is the service's VIP, allocating one when it has none; nil
// (with a Warning event) leaves it pending.
func (c *Controller) poolAddress(svc *corev1.Service, key string) []string {
	c.mu.Lock()
	ip, reason, msg := c.assignLocked(svc, key)
	if ip.IsValid() {
		delete(c.pending, key)
	} else {
		c.pending[key] = true
	}
	c.mu.Unlock()
	if !ip.IsValid() {
		c.warn(svc, key, reason, msg)
		return nil
	}
	c.clearWarning(key)
	return []string{ip.String()}
}

func (c *Controller) assignLocked(svc *corev1.Service, key string) (netip.Addr, string, string) {
	var requested netip.Addr
	if s := svc.Spec.LoadBalancerIP; s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, reasonIPNotUsable, fmt.Sprintf("spec.loadBalancerIP %q is not an IP address", s)
		}
		requested = ip
	}
	if held, ok := c.pool.held(key); ok {
		if !requested.IsValid() || requested == held {
			return held, "", ""
		}
		// The requested address changed: give the old one back.
		c.pool.release(key)
	}
	if requested.IsValid() {
		if err := c.pool.take(key, requested); err != nil {
			return netip.Addr{}, reasonIPNotUsable, fmt.Sprintf("spec.loadBalancerIP: %v", err)
		}
		return requested, "", ""
	}
	// An address the status already shows (set before a restart that
	// rebuild could not see, or by hand) is kept when it is free.
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil && c.pool.contains(ip) && c.pool.owner(ip) == "" {
			_ = c.pool.take(key, ip)
			return ip, "", ""
		}
	}
	ip, err := c.pool.next(key)
	if err != nil {
		return netip.Addr{}, reasonExhausted, fmt.Sprintf("no address left in the LoadBalancer pool %s; this service stays pending until one is free", c.pool.prefix)
	}
	return ip, "", ""
}

// Package proxy is skiff's Service proxy: it programs one nftables table
// ("skiff", family ip) the way kube-proxy's nftables mode does (KEP-3866),
// except that a service chain picks its endpoint with a short cascade of
// rules rather than a map of its own (see pickEndpoint: per-service maps
// make a full sync quadratic in the kernel).
//
// Build turns Services and EndpointSlices into a desired Ruleset (pure, no
// kernel); a Syncer applies a Ruleset to the kernel, the first time (and on
// FullSync) by rebuilding the table, afterwards by changing only the map
// elements, sets and chains that differ, in one netlink batch. Check compares
// the kernel's table with what was applied (drift → FullSync).
//
// Table layout (static chains and maps are created by the Syncer; the
// per-service chains and affinity sets come from the Ruleset):
//
//	map service-ips           ipv4_addr . inet_proto . inet_service : verdict   VIP → goto service-/local-…; external IP → goto external-…
//	map service-nodeports     inet_proto . inet_service : verdict               node port → goto external-…
//	map no-endpoint-services  ipv4_addr . inet_proto . inet_service : verdict   → goto reject-chain | drop
//	map no-endpoint-nodeports inet_proto . inet_service : verdict               → goto reject-chain | drop
//
//	chain nat-prerouting  (nat, prerouting, -100)  jump services
//	chain nat-output      (nat, output, -100)      jump services
//	chain nat-postrouting (nat, postrouting, 100)  jump masquerading; jump cluster-egress
//	chain filter-input / filter-forward / filter-output (filter, -110) jump filter-services
//	chain services          ip daddr . meta l4proto . th dport vmap @service-ips
//	                        fib daddr type local meta l4proto . th dport vmap @service-nodeports
//	chain filter-services   the same two lookups in the no-endpoint maps
//	chain reject-chain      meta l4proto tcp reject with tcp reset; reject (icmp port-unreachable)
//	chain mark-for-masquerade  meta mark set meta mark | 0x4000
//	chain masquerading      return unless marked; clear the mark; masquerade fully-random
//	chain cluster-egress    (with a cluster CIDR C, flannel's rule)
//	                        ip saddr C ip daddr C return
//	                        ip saddr C ip daddr != 224.0.0.0/4 masquerade fully-random
//
//	chain service-<h>-ns/name/proto/port    (all usable endpoints: "Cluster" policy)
//	                        [ip daddr VIP … ip saddr != C jump mark-for-masquerade]   (if the VIP uses this chain)
//	                        [ip saddr @affinity-… goto endpoint-…]…                   (ClientIP affinity)
//	                        numgen random mod N == 0 goto endpoint-…; …; goto endpoint-…   (see pickEndpoint)
//	chain local-<h>-…       the same over this node's endpoints ("Local" policies)
//	chain external-<h>-…    eTP Cluster: jump mark-for-masquerade; goto service-…
//	                        eTP Local:   ip saddr C goto service-… (pods short-circuit);
//	                                     fib saddr type local jump mark-for-masquerade;
//	                                     fib saddr type local goto service-… (the node);
//	                                     goto local-… (only if there are local endpoints)
//	chain endpoint-<h>-ns/name/proto/port__ip/port
//	                        ip saddr ip jump mark-for-masquerade (hairpin)
//	                        [update @affinity-… { ip saddr }]
//	                        dnat to ip:port
//	set affinity-<h>-…__ip/port  ipv4_addr, dynamic, timeout (sessionAffinityConfig, default 10800 s)
//
// Endpoints, as kube-proxy's CategorizeEndpoints (no topology hints): ready
// (unset = ready) ones, or if there are none, serving+terminating ones —
// separately for the cluster-wide and the node-local list. An endpoint is
// local when its nodeName is Options.NodeName. A service port with no usable
// endpoint anywhere has no chains: its keys are in the no-endpoint maps with
// reject (refused at once). With endpoints elsewhere only, traffic a Local
// policy would send is dropped (internalTrafficPolicy Local: the ClusterIP;
// externalTrafficPolicy Local: external IPs and the node port, except
// pods' and the node's own traffic, which the external chain sends to all
// endpoints first). Services labelled service.kubernetes.io/service-proxy-name
// belong to another proxy and are skipped.
//
// NodePorts are served on the node's addresses (fib daddr type local) but not
// on 127.0.0.1, as in kube-proxy's nftables mode (that would need
// route_localnet). Not handled: topology hints / trafficDistribution,
// loadBalancerSourceRanges, IPv6 (family inet).
package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Names of the maps of the table.
const (
	MapServiceIPs          = "service-ips"
	MapServiceNodePorts    = "service-nodeports"
	MapNoEndpointServices  = "no-endpoint-services"
	MapNoEndpointNodePorts = "no-endpoint-nodeports"

	chainRejectName = "reject-chain"
	chainMarkMasq   = "mark-for-masquerade"

	// MasqueradeMark is the packet mark bit that asks postrouting to masquerade.
	MasqueradeMark = 0x4000
)

// Protocol numbers (inet_proto).
const (
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// MapKey is the key of a map element. Addr is invalid (zero) for node ports.
type MapKey struct {
	Addr  netip.Addr
	Proto uint8
	Port  uint16
}

func (k MapKey) String() string {
	if k.Addr.IsValid() {
		return fmt.Sprintf("%s . %s . %d", k.Addr, protoName(k.Proto), k.Port)
	}
	return fmt.Sprintf("%s . %d", protoName(k.Proto), k.Port)
}

// Chain is a regular (non-base) chain owned by one service port.
type Chain struct {
	Name  string
	Rules []Rule
	sig   string // rendered rules, set by Build so that Apply compares cheaply
}

func newChain(name string, rules ...Rule) Chain {
	c := Chain{Name: name, Rules: rules}
	c.sig = c.String()
	return c
}

func (c Chain) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chain %s {\n", c.Name)
	for _, r := range c.Rules {
		fmt.Fprintf(&b, "\t%s\n", r)
	}
	b.WriteString("}\n")
	return b.String()
}

// Ruleset is the desired per-service content of the table: map elements
// (key → name of the chain to goto, or VerdictDrop), the service, local,
// external and endpoint chains, and the ClientIP affinity sets (name →
// timeout in seconds). Static chains are not part of it.
type Ruleset struct {
	Maps   map[string]map[MapKey]string
	Chains map[string]Chain
	Sets   map[string]uint32
}

func newRuleset() *Ruleset {
	return &Ruleset{
		Maps: map[string]map[MapKey]string{
			MapServiceIPs: {}, MapServiceNodePorts: {}, MapNoEndpointServices: {}, MapNoEndpointNodePorts: {},
		},
		Chains: map[string]Chain{},
		Sets:   map[string]uint32{},
	}
}

func verdictString(v string) string {
	if v == VerdictDrop {
		return v
	}
	return "goto " + v
}

// String renders the ruleset in a stable nft-like text (for golden tests and logs).
func (rs *Ruleset) String() string {
	var b strings.Builder
	for _, m := range []string{MapServiceIPs, MapServiceNodePorts, MapNoEndpointServices, MapNoEndpointNodePorts} {
		var lines []string
		for k, v := range rs.Maps[m] {
			lines = append(lines, fmt.Sprintf("\t%s : %s\n", k, verdictString(v)))
		}
		sort.Strings(lines)
		fmt.Fprintf(&b, "map %s {\n%s}\n", m, strings.Join(lines, ""))
	}
	setNames := make([]string, 0, len(rs.Sets))
	for n := range rs.Sets {
		setNames = append(setNames, n)
	}
	sort.Strings(setNames)
	for _, n := range setNames {
		fmt.Fprintf(&b, "set %s { type ipv4_addr; flags dynamic,timeout; timeout %ds; }\n", n, rs.Sets[n])
	}
	names := make([]string, 0, len(rs.Chains))
	for n := range rs.Chains {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.WriteString(rs.Chains[n].String())
	}
	return b.String()
}

// Endpoint is one backend of a service port.
type Endpoint struct {
	Addr netip.Addr
	Port uint16
}

// Options describe the node a ruleset is built for.
type Options struct {
	// NodeName selects the local endpoints for externalTrafficPolicy and
	// internalTrafficPolicy Local.
	NodeName string
	// ClusterCIDR is the pod network of the whole cluster: pod traffic leaving
	// it is masqueraded, traffic from outside it to a ClusterIP is
	// masqueraded, and pods reaching an externalTrafficPolicy Local
	// service's external address use all endpoints (kube-proxy's "local
	// detector"). Invalid (zero) or IPv6 = none of these.
	ClusterCIDR netip.Prefix
	// NetNS, if > 0, is a file descriptor of the network namespace the
	// table is in (the one the Conn passed to Check works in). Check then
	// counts all rules in one netlink dump instead of one per chain. Only
	// Check uses it.
	NetNS int
}

// clusterCIDR4 returns the cluster CIDR if it is a valid IPv4 prefix (others
// are ignored: the table is IPv4 only).
func (o Options) clusterCIDR4() (netip.Prefix, bool) {
	if !o.ClusterCIDR.IsValid() || !o.ClusterCIDR.Addr().Is4() {
		return netip.Prefix{}, false
	}
	return o.ClusterCIDR.Masked(), true
}

// LabelServiceProxyName marks services that another proxy handles: skiff,
// like kube-proxy, ignores them.
const LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"

// VerdictDrop as a map value drops the packet instead of jumping to a chain
// (no-endpoint maps, traffic policy Local without local endpoints).
const VerdictDrop = "drop"

// epInfo is an endpoint with its conditions, as kube-proxy sees them:
// ready and serving default to true when unset, terminating to false.
type epInfo struct {
	Endpoint
	ready, serving, terminating, local bool
}

// Build computes the desired ruleset from Services and their EndpointSlices,
// with the semantics of kube-proxy's nftables mode. Only IPv4 is handled.
// Headless and ExternalName services, and services labelled
// service.kubernetes.io/service-proxy-name, get nothing.
func Build(services []*corev1.Service, slices []*discoveryv1.EndpointSlice, opts Options) *Ruleset {
	rs := newRuleset()
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		key := s.Namespace + "/" + name
		bySvc[key] = append(bySvc[key], s)
	}
	for _, svc := range services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		if _, ok := svc.Labels[LabelServiceProxyName]; ok {
			continue
		}
		vip, ok := clusterIPv4(svc)
		if !ok {
			continue // headless: no VIP, nothing to program
		}
		var external []netip.Addr
		for _, s := range svc.Spec.ExternalIPs {
			if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
				external = append(external, a)
			}
		}
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			for _, in := range svc.Status.LoadBalancer.Ingress {
				if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
					external = append(external, a)
				}
			}
		}
		var affinity uint32
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			affinity = uint32(corev1.DefaultClientIPServiceAffinitySeconds)
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
				affinity = uint32(*c.ClientIP.TimeoutSeconds)
			}
		}
		for _, sp := range svc.Spec.Ports {
			proto, ok := protoNumber(sp.Protocol)
			if !ok || sp.Port <= 0 || sp.Port > 65535 {
				continue
			}
			p := svcPort{
				id:       fmt.Sprintf("%s/%s/%s/%d", svc.Namespace, svc.Name, protoName(proto), sp.Port),
				vip:      MapKey{Addr: vip, Proto: proto, Port: uint16(sp.Port)},
				proto:    proto,
				affinity: affinity,
			}
			for _, a := range external {
				p.external = append(p.external, MapKey{Addr: a, Proto: proto, Port: uint16(sp.Port)})
			}
			if (svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer) &&
				sp.NodePort > 0 && sp.NodePort <= 65535 {
				p.nodePort = &MapKey{Proto: proto, Port: uint16(sp.NodePort)}
			}
			accessible := len(p.external) > 0 || p.nodePort != nil
			p.internalLocal = svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
			p.externalLocal = accessible && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
			rs.addServicePort(p, endpointsOf(bySvc[svc.Namespace+"/"+svc.Name], sp, opts.NodeName), opts)
		}
	}
	return rs
}

// svcPort is one port of a service with what Build needs of the service.
type svcPort struct {
	id                           string // ns/name/proto/port
	vip                          MapKey
	external                     []MapKey // externalIPs and LoadBalancer ingress IPs
	nodePort                     *MapKey
	proto                        uint8
	affinity                     uint32 // ClientIP affinity timeout in seconds; 0 = none
	internalLocal, externalLocal bool
}

// categorize mirrors kube-proxy's CategorizeEndpoints (without topology
// hints): Ready endpoints, or if there are none, serving+terminating ones —
// independently for the cluster-wide and the node-local lists.
func (p svcPort) categorize(eps []epInfo) (cluster, local, reachable []Endpoint, hasAny bool) {
	accessible := len(p.external) > 0 || p.nodePort != nil
	usesCluster := !p.internalLocal || accessible
	usesLocal := p.internalLocal || p.externalLocal
	pick := func(f func(epInfo) bool) []Endpoint {
		var out []Endpoint
		for _, e := range eps {
			if f(e) {
				out = append(out, e.Endpoint)
			}
		}
		return out
	}
	fallback := func(e epInfo) bool { return !e.ready && e.serving && e.terminating }
	if usesCluster {
		cluster = pick(func(e epInfo) bool { return e.ready })
		if len(cluster) == 0 {
			cluster = pick(fallback)
		}
		hasAny = len(cluster) > 0
	}
	if !usesLocal {
		return cluster, nil, cluster, hasAny
	}
	for _, e := range eps {
		if e.ready || fallback(e) {
			hasAny = true
		}
	}
	local = pick(func(e epInfo) bool { return e.local && e.ready })
	localReady := len(local) > 0
	if !localReady {
		local = pick(func(e epInfo) bool { return e.local && fallback(e) })
	}
	if !usesCluster {
		return nil, local, local, hasAny
	}
	if len(local) == 0 || localReady {
		// Ready local endpoints are all in cluster (ready ones, as there are some).
		return cluster, local, cluster, hasAny
	}
	seen := map[Endpoint]bool{}
	for _, e := range append(append([]Endpoint(nil), cluster...), local...) {
		if !seen[e] {
			seen[e] = true
			reachable = append(reachable, e)
		}
	}
	sortEndpoints(reachable)
	return cluster, local, reachable, hasAny
}

// addServicePort adds the map elements and chains of one service port, as
// kube-proxy's nftables proxier writes them.
func (rs *Ruleset) addServicePort(p svcPort, eps []epInfo, opts Options) {
	cluster, local, reachable, hasAny := p.categorize(eps)
	// Names of the endpoint chains and affinity sets, computed once.
	type names struct{ chain, set string }
	byEP := make(map[Endpoint]names, len(reachable))
	for _, e := range reachable {
		id := p.id + "__" + e.Addr.String() + "/" + strconv.Itoa(int(e.Port))
		n := names{chain: ChainName("endpoint", id)}
		if p.affinity > 0 {
			n.set = ChainName("affinity", id)
		}
		byEP[e] = n
	}
	epChain := func(e Endpoint) string { return byEP[e].chain }
	affSet := func(e Endpoint) string { return byEP[e].set }

	clusterChain := ChainName("service", p.id)
	localChain := ChainName("local", p.id)
	externalChain := ChainName("external", p.id)
	usesClusterChain := len(cluster) > 0
	usesLocalChain := len(local) > 0

	internalChain, hasInternal := clusterChain, hasAny
	if p.internalLocal {
		internalChain = localChain
		hasInternal = hasInternal && len(local) > 0
	}
	externalPolicyChain, hasExternal := clusterChain, hasAny
	if p.externalLocal {
		externalPolicyChain = localChain
		hasExternal = hasExternal && len(local) > 0
	}
	usesExternalChain := hasAny && (len(p.external) > 0 || p.nodePort != nil)

	internalFilter, externalFilter := VerdictDrop, VerdictDrop
	if !hasAny {
		internalFilter, externalFilter = chainRejectName, chainRejectName
	}

	if hasInternal {
		rs.Maps[MapServiceIPs][p.vip] = internalChain
	} else {
		rs.Maps[MapNoEndpointServices][p.vip] = internalFilter
	}
	for _, k := range p.external {
		if hasAny {
			rs.Maps[MapServiceIPs][k] = externalChain
		}
		if !hasExternal {
			rs.Maps[MapNoEndpointServices][k] = externalFilter
		}
	}
	if p.nodePort != nil {
		if hasAny {
			rs.Maps[MapServiceNodePorts][*p.nodePort] = externalChain
		}
		if !hasExternal {
			rs.Maps[MapNoEndpointNodePorts][*p.nodePort] = externalFilter
		}
	}

	// Off-cluster traffic to the ClusterIP is masqueraded (it may have been
	// routed here from outside; the reply must come back through this node).
	var internalMasq []Rule
	cidr, haveCIDR := opts.clusterCIDR4()
	if hasInternal && haveCIDR {
		internalMasq = []Rule{{Op: OpNotFromPrefixMarkMasq, Addr: p.vip.Addr, Proto: p.proto, Port: p.vip.Port, Prefix: cidr}}
	}

	if usesExternalChain {
		var rules []Rule
		if !p.externalLocal {
			rules = append(rules, Rule{Op: OpJump, Target: chainMarkMasq})
		} else {
			if haveCIDR {
				// Pods of this node: short-circuit to all endpoints, as if
				// they had gone out to the load balancer and come back.
				rules = append(rules, Rule{Op: OpFromPrefixGoto, Prefix: cidr, Target: clusterChain})
			}
			// The node itself: its source is a local address, masquerade
			// and use all endpoints.
			rules = append(rules,
				Rule{Op: OpFibSaddrLocalMarkMasq},
				Rule{Op: OpFibSaddrLocalGoto, Target: clusterChain})
		}
		if hasExternal {
			rules = append(rules, Rule{Op: OpGoto, Target: externalPolicyChain})
		}
		rs.Chains[externalChain] = newChain(externalChain, rules...)
	}

	if p.affinity > 0 {
		for _, e := range reachable {
			rs.Sets[affSet(e)] = p.affinity
		}
	}
	toEndpoints := func(chain string, eps []Endpoint, masq bool) {
		var rules []Rule
		if masq {
			rules = append(rules, internalMasq...)
		}
		if p.affinity > 0 {
			for _, e := range eps {
				rules = append(rules, Rule{Op: OpAffinityGoto, Set: affSet(e), Target: epChain(e)})
			}
		}
		rules = append(rules, pickEndpoint(eps, epChain)...)
		rs.Chains[chain] = newChain(chain, rules...)
	}
	if usesClusterChain {
		toEndpoints(clusterChain, cluster, hasInternal && internalChain == clusterChain)
	}
	if usesLocalChain {
		toEndpoints(localChain, local, hasInternal && internalChain == localChain)
	}
	for _, e := range reachable {
		rules := []Rule{{Op: OpSaddrMarkMasq, Addr: e.Addr}}
		if p.affinity > 0 {
			rules = append(rules, Rule{Op: OpAffinityUpdate, Set: affSet(e)})
		}
		rules = append(rules, Rule{Op: OpDNAT, Addr: e.Addr, Port: e.Port, Proto: p.proto})
		rs.Chains[epChain(e)] = newChain(epChain(e), rules...)
	}
}

// ChainName derives a stable chain name from a kind and an identity such as
// "ns/name/tcp/80": kind-HASH-identity, as kube-proxy does (the hash keeps
// names unique should the identity ever be ambiguous).
func ChainName(kind, id string) string {
	h := sha256.Sum256([]byte(kind + ":" + id))
	return kind + "-" + base32.StdEncoding.EncodeToString(h[:])[:8] + "-" + id
}

func clusterIPv4(svc *corev1.Service) (netip.Addr, bool) {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		if s == corev1.ClusterIPNone {
			return netip.Addr{}, false
		}
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func endpointsOf(slices []*discoveryv1.EndpointSlice, sp corev1.ServicePort, nodeName string) []epInfo {
	seen := map[Endpoint]bool{}
	var out []epInfo
	for _, s := range slices {
		var port int32 = -1
		for _, p := range s.Ports {
			name, proto := "", corev1.ProtocolTCP
			if p.Name != nil {
				name = *p.Name
			}
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if name == sp.Name && proto == protoOrTCP(sp.Protocol) && p.Port != nil {
				port = *p.Port
				break
			}
		}
		if port <= 0 || port > 65535 {
			continue
		}
		for _, ep := range s.Endpoints {
			c := ep.Conditions
			info := epInfo{
				ready:       c.Ready == nil || *c.Ready,
				serving:     c.Serving == nil || *c.Serving,
				terminating: c.Terminating != nil && *c.Terminating,
				local:       nodeName != "" && ep.NodeName != nil && *ep.NodeName == nodeName,
			}
			for _, a := range ep.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil || !addr.Is4() {
					continue
				}
				info.Endpoint = Endpoint{Addr: addr, Port: uint16(port)}
				if !seen[info.Endpoint] {
					seen[info.Endpoint] = true
					out = append(out, info)
				}
				break // kube-proxy uses the first address only
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return endpointLess(out[i].Endpoint, out[j].Endpoint) })
	return out
}

func endpointLess(a, b Endpoint) bool {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c < 0
	}
	return a.Port < b.Port
}

func sortEndpoints(eps []Endpoint) {
	sort.Slice(eps, func(i, j int) bool { return endpointLess(eps[i], eps[j]) })
}

func protoOrTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func protoNumber(p corev1.Protocol) (uint8, bool) {
	switch protoOrTCP(p) {
	case corev1.ProtocolTCP:
		return ProtoTCP, true
	case corev1.ProtocolUDP:
		return ProtoUDP, true
	case corev1.ProtocolSCTP:
		return ProtoSCTP, true
	}
	return 0, false
}

func protoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	}
	return fmt.Sprint(p)
}

// pickEndpoint chooses one of the endpoints' chains at random with the
// cascade of kube-proxy's iptables mode: rule i is "numgen random mod N-i ==
// 0 goto chain_i" (taken by 1/(N-i) of the connections that reach it, so
// every endpoint gets 1/N of them) and the last one a plain goto. Only the
// first packet of a connection goes through the nat chains: N/2 rules for it
// on average.
//
// kube-proxy's nftables mode uses one map per service instead ("numgen
// random mod N vmap { … }"); in the kernel (6.18) that makes a full sync
// quadratic: adding, filling and binding a set each walk the table's list
// of sets by name (nft_set_lookup_global, nf_tables_newset), and binding an
// anonymous set walks the whole transaction so far (__nft_set_trans_bind) —
// minutes for 10,000 services, 4 s with the cascade. One map shared by all
// service chains is no better: binding a verdict map to another chain
// validates all its elements (nf_tables_bind_set).
func pickEndpoint[E any](eps []E, chain func(E) string) []Rule {
	rules := make([]Rule, 0, len(eps))
	for i, e := range eps {
		if n := len(eps) - i; n > 1 {
			rules = append(rules, Rule{Op: OpNumgenGoto, Mod: uint32(n), Target: chain(e)})
		} else {
			rules = append(rules, Rule{Op: OpGoto, Target: chain(e)})
		}
	}
	return rules
}

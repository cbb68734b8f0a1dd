// Package proxy is skiff's Service proxy: it programs one nftables table
// ("skiff", family ip) the way kube-proxy's nftables mode does (KEP-3866).
//
// Build turns Services and EndpointSlices into a desired Ruleset (pure, no
// kernel); a Syncer applies a Ruleset to the kernel, the first time (and on
// FullSync) by rebuilding the table, afterwards by changing only the map
// elements and chains that differ, in one netlink batch.
//
// Table layout (static chains and maps are created by the Syncer; the
// per-service chains come from the Ruleset):
//
//	map service-ips           ipv4_addr . inet_proto . inet_service : verdict   VIP/external IP → goto service-… / external-…
//	map service-nodeports     inet_proto . inet_service : verdict               node port → goto external-…
//	map no-endpoint-services  ipv4_addr . inet_proto . inet_service : verdict   → goto reject-chain
//	map no-endpoint-nodeports inet_proto . inet_service : verdict               → goto reject-chain
//
//	chain nat-prerouting  (nat, prerouting, -100)  jump services
//	chain nat-output      (nat, output, -100)      jump services
//	chain nat-postrouting (nat, postrouting, 100)  jump masquerading
//	chain filter-input / filter-forward / filter-output (filter, -110) jump filter-services
//	chain services          ip daddr . meta l4proto . th dport vmap @service-ips
//	                        fib daddr type local meta l4proto . th dport vmap @service-nodeports
//	chain filter-services   the same two lookups in the no-endpoint maps
//	chain reject-chain      meta l4proto tcp reject with tcp reset; reject (icmp port-unreachable)
//	chain mark-for-masquerade  meta mark set meta mark | 0x4000
//	chain masquerading      return unless marked; clear the mark; masquerade fully-random
//
//	chain service-<h>-ns/name/proto/port    numgen random mod N vmap { 0 : goto endpoint-…, … }
//	chain external-<h>-ns/name/proto/port   jump mark-for-masquerade; goto service-…
//	chain endpoint-<h>-ns/name/proto/port__ip/port
//	                                        ip saddr ip jump mark-for-masquerade (hairpin); dnat to ip:port
//
// Services with no ready endpoints have no service chain: their keys are in
// the no-endpoint maps, so connections are rejected at once.
//
// NodePorts are served on the node's addresses (fib daddr type local) but not
// on 127.0.0.1, as in kube-proxy's nftables mode (that would need
// route_localnet). Not yet handled: sessionAffinity ClientIP,
// externalTrafficPolicy/internalTrafficPolicy Local, IPv6 (family inet).
package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"sort"
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
// (key → name of the chain to goto) and the service, external and endpoint
// chains. Static chains are not part of it.
type Ruleset struct {
	Maps   map[string]map[MapKey]string
	Chains map[string]Chain
}

func newRuleset() *Ruleset {
	return &Ruleset{
		Maps: map[string]map[MapKey]string{
			MapServiceIPs: {}, MapServiceNodePorts: {}, MapNoEndpointServices: {}, MapNoEndpointNodePorts: {},
		},
		Chains: map[string]Chain{},
	}
}

// String renders the ruleset in a stable nft-like text (for golden tests and logs).
func (rs *Ruleset) String() string {
	var b strings.Builder
	for _, m := range []string{MapServiceIPs, MapServiceNodePorts, MapNoEndpointServices, MapNoEndpointNodePorts} {
		var lines []string
		for k, v := range rs.Maps[m] {
			lines = append(lines, fmt.Sprintf("\t%s : goto %s\n", k, v))
		}
		sort.Strings(lines)
		fmt.Fprintf(&b, "map %s {\n%s}\n", m, strings.Join(lines, ""))
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

// Endpoint is one ready backend of a service port.
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
	// it is masqueraded. Invalid (zero) = no egress masquerade.
	ClusterCIDR netip.Prefix
}

// Build computes the desired ruleset from Services and their EndpointSlices.
// Only IPv4 is handled. Headless and ExternalName services get nothing.
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
		for _, sp := range svc.Spec.Ports {
			proto, ok := protoNumber(sp.Protocol)
			if !ok || sp.Port <= 0 || sp.Port > 65535 {
				continue
			}
			eps := readyEndpoints(bySvc[svc.Namespace+"/"+svc.Name], sp)
			id := fmt.Sprintf("%s/%s/%s/%d", svc.Namespace, svc.Name, protoName(proto), sp.Port)
			vipKey := MapKey{Addr: vip, Proto: proto, Port: uint16(sp.Port)}
			var extKeys []MapKey
			for _, a := range external {
				extKeys = append(extKeys, MapKey{Addr: a, Proto: proto, Port: uint16(sp.Port)})
			}
			var npKey *MapKey
			if (svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer) &&
				sp.NodePort > 0 && sp.NodePort <= 65535 {
				npKey = &MapKey{Proto: proto, Port: uint16(sp.NodePort)}
			}
			if len(eps) == 0 {
				rs.Maps[MapNoEndpointServices][vipKey] = chainRejectName
				for _, k := range extKeys {
					rs.Maps[MapNoEndpointServices][k] = chainRejectName
				}
				if npKey != nil {
					rs.Maps[MapNoEndpointNodePorts][*npKey] = chainRejectName
				}
				continue
			}
			svcChain := ChainName("service", id)
			var targets []string
			for _, ep := range eps {
				epChain := ChainName("endpoint", fmt.Sprintf("%s__%s/%d", id, ep.Addr, ep.Port))
				targets = append(targets, epChain)
				rs.Chains[epChain] = newChain(epChain,
					Rule{Op: OpSaddrMarkMasq, Addr: ep.Addr},
					Rule{Op: OpDNAT, Addr: ep.Addr, Port: ep.Port, Proto: proto})
			}
			rs.Chains[svcChain] = newChain(svcChain, Rule{Op: OpNumgenVmap, Targets: targets})
			rs.Maps[MapServiceIPs][vipKey] = svcChain
			if len(extKeys) > 0 || npKey != nil {
				extChain := ChainName("external", id)
				rs.Chains[extChain] = newChain(extChain,
					Rule{Op: OpJump, Target: chainMarkMasq},
					Rule{Op: OpGoto, Target: svcChain})
				for _, k := range extKeys {
					rs.Maps[MapServiceIPs][k] = extChain
				}
				if npKey != nil {
					rs.Maps[MapServiceNodePorts][*npKey] = extChain
				}
			}
		}
	}
	return rs
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

func readyEndpoints(slices []*discoveryv1.EndpointSlice, sp corev1.ServicePort) []Endpoint {
	seen := map[Endpoint]bool{}
	var out []Endpoint
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
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil || !addr.Is4() {
					continue
				}
				e := Endpoint{Addr: addr, Port: uint16(port)}
				if !seen[e] {
					seen[e] = true
					out = append(out, e)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr.Compare(out[j].Addr); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	return out
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

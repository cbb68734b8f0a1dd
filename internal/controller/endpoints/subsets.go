package endpoints

import (
	"bytes"
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// maxCapacity is how many addresses one Endpoints object holds at most;
// beyond it the object is truncated and annotated (EndpointsOverCapacity).
const maxCapacity = 1000

// portKey is an EndpointPort as a comparable value (AppProtocol by value,
// not by pointer). Port -1 stands for "no ports" (a headless Service
// without ports), as upstream's RepackSubsets.
type portKey struct {
	name, protocol, appProtocol string
	hasAppProtocol              bool
	port                        int32
}

func keyOfPort(p corev1.EndpointPort) portKey {
	k := portKey{name: p.Name, protocol: string(p.Protocol), port: p.Port}
	if p.AppProtocol != nil {
		k.appProtocol, k.hasAppProtocol = *p.AppProtocol, true
	}
	return k
}

func (k portKey) port2() corev1.EndpointPort {
	p := corev1.EndpointPort{Name: k.name, Protocol: corev1.Protocol(k.protocol), Port: k.port}
	if k.hasAppProtocol {
		ap := k.appProtocol
		p.AppProtocol = &ap
	}
	return p
}

func comparePortKeys(a, b portKey) int {
	return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.port, b.port),
		cmp.Compare(a.protocol, b.protocol), cmp.Compare(a.appProtocol, b.appProtocol))
}

// addrKey dedupes addresses by IP and target UID, as upstream.
type addrKey struct {
	ip  string
	uid types.UID
}

func keyOfAddr(a *corev1.EndpointAddress) addrKey {
	k := addrKey{ip: a.IP}
	if a.TargetRef != nil {
		k.uid = a.TargetRef.UID
	}
	return k
}

// lessAddress orders addresses by IP bytes, then target UID (upstream's
// LessEndpointAddress).
func lessAddress(a, b *corev1.EndpointAddress) bool {
	if c := bytes.Compare([]byte(a.IP), []byte(b.IP)); c != 0 {
		return c < 0
	}
	if b.TargetRef == nil {
		return false
	}
	if a.TargetRef == nil {
		return true
	}
	return a.TargetRef.UID < b.TargetRef.UID
}

func compareAddresses(a, b corev1.EndpointAddress) int {
	switch {
	case lessAddress(&a, &b):
		return -1
	case lessAddress(&b, &a):
		return 1
	}
	return 0
}

// repackSubsets expands subsets to (address, port, ready) triples and packs
// them into the canonical layout of upstream's endpoints.RepackSubsets: one
// subset per distinct set of (address, readiness) sharing the same ports; an
// address not ready on a port is not ready there even if another subset
// says ready. Unlike upstream (which orders by a hash of the objects) the
// order here is by port, then address — equally deterministic, cheaper.
func repackSubsets(subsets []corev1.EndpointSubset) []corev1.EndpointSubset {
	all := map[addrKey]*corev1.EndpointAddress{}
	byPort := map[portKey]map[addrKey]bool{}
	add := func(a *corev1.EndpointAddress, p portKey, ready bool) {
		k := keyOfAddr(a)
		if _, ok := all[k]; !ok {
			all[k] = a
		}
		m := byPort[p]
		if m == nil {
			m = map[addrKey]bool{}
			byPort[p] = m
		}
		if was, ok := m[k]; !ok || was {
			m[k] = ready
		}
	}
	for i := range subsets {
		ss := &subsets[i]
		ports := make([]portKey, 0, len(ss.Ports))
		for _, p := range ss.Ports {
			ports = append(ports, keyOfPort(p))
		}
		if len(ports) == 0 {
			ports = append(ports, portKey{port: -1})
		}
		for _, p := range ports {
			for j := range ss.Addresses {
				add(&ss.Addresses[j], p, true)
			}
			for j := range ss.NotReadyAddresses {
				add(&ss.NotReadyAddresses[j], p, false)
			}
		}
	}

	// Group ports by the exact (address, readiness) set they offer.
	type group struct {
		addrs map[addrKey]bool
		ports []portKey
	}
	groups := map[string]*group{}
	var order []string
	for p, addrs := range byPort {
		sig := addrSetSignature(addrs)
		g := groups[sig]
		if g == nil {
			g = &group{addrs: addrs}
			groups[sig] = g
			order = append(order, sig)
		}
		if p.port > 0 { // the "no ports" stand-in adds addresses only
			g.ports = append(g.ports, p)
		}
	}

	out := make([]corev1.EndpointSubset, 0, len(groups))
	for _, sig := range order {
		g := groups[sig]
		var ss corev1.EndpointSubset
		for k, ready := range g.addrs {
			if ready {
				ss.Addresses = append(ss.Addresses, *all[k])
			} else {
				ss.NotReadyAddresses = append(ss.NotReadyAddresses, *all[k])
			}
		}
		slices.SortFunc(ss.Addresses, compareAddresses)
		slices.SortFunc(ss.NotReadyAddresses, compareAddresses)
		slices.SortFunc(g.ports, comparePortKeys)
		for _, p := range g.ports {
			ss.Ports = append(ss.Ports, p.port2())
		}
		out = append(out, ss)
	}
	slices.SortFunc(out, compareSubsets)
	return out
}

// compareSubsets orders subsets by their first port (ports are disjoint
// across packed subsets), port-less subsets first, then by first address.
func compareSubsets(a, b corev1.EndpointSubset) int {
	switch {
	case len(a.Ports) == 0 && len(b.Ports) > 0:
		return -1
	case len(b.Ports) == 0 && len(a.Ports) > 0:
		return 1
	case len(a.Ports) > 0:
		if c := comparePortKeys(keyOfPort(a.Ports[0]), keyOfPort(b.Ports[0])); c != 0 {
			return c
		}
	}
	return cmp.Compare(firstIP(a), firstIP(b))
}

func firstIP(s corev1.EndpointSubset) string {
	if len(s.Addresses) > 0 {
		return s.Addresses[0].IP
	}
	if len(s.NotReadyAddresses) > 0 {
		return s.NotReadyAddresses[0].IP
	}
	return ""
}

func addrSetSignature(addrs map[addrKey]bool) string {
	keys := make([]string, 0, len(addrs))
	for k, ready := range addrs {
		r := "0"
		if ready {
			r = "1"
		}
		keys = append(keys, strconv.Quote(k.ip)+"/"+strconv.Quote(string(k.uid))+"/"+r)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// countAddresses returns the number of (ready and not ready) addresses.
func countAddresses(subsets []corev1.EndpointSubset) int {
	n := 0
	for _, s := range subsets {
		n += len(s.Addresses) + len(s.NotReadyAddresses)
	}
	return n
}

// capacityAnnotationSetCorrectly reports whether the over-capacity
// annotation agrees with subsets (which are never over capacity once
// written, so "correct" means absent and within capacity).
func capacityAnnotationSetCorrectly(annotations map[string]string, subsets []corev1.EndpointSubset) bool {
	if countAddresses(subsets) > maxCapacity {
		return false
	}
	_, ok := annotations[corev1.EndpointsOverCapacity]
	return !ok
}

// truncateEndpoints cuts ep down to maxCapacity addresses, keeping ready
// addresses first and sharing the cut across subsets in proportion to their
// size (upstream's truncateEndpoints). It reports whether it cut anything.
func truncateEndpoints(ep *corev1.Endpoints) bool {
	totalReady, totalNotReady := 0, 0
	for _, s := range ep.Subsets {
		totalReady += len(s.Addresses)
		totalNotReady += len(s.NotReadyAddresses)
	}
	if totalReady+totalNotReady <= maxCapacity {
		return false
	}
	truncateReady := totalReady > maxCapacity
	budget, total := maxCapacity-totalReady, totalNotReady
	if truncateReady {
		budget, total = maxCapacity, totalReady
	}
	left := budget
	for i := range ep.Subsets {
		s := &ep.Subsets[i]
		n := len(s.NotReadyAddresses)
		if truncateReady {
			n = len(s.Addresses)
		}
		take := int(math.Ceil(float64(n) / float64(total) * float64(budget)))
		take = min(take, left)
		if truncateReady {
			if len(s.Addresses) > take {
				s.Addresses = s.Addresses[:take]
			}
			s.NotReadyAddresses = []corev1.EndpointAddress{}
			left -= len(s.Addresses)
		} else {
			if len(s.NotReadyAddresses) > take {
				s.NotReadyAddresses = s.NotReadyAddresses[:take]
			}
			left -= len(s.NotReadyAddresses)
		}
	}
	return true
}

package network

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestHostGW(t *testing.T) {
	requireRoot(t)
	hosts := newTestCluster(t, 3, BackendHostGW)
	n1 := hosts[0]
	addForeign(t, n1)
	if mtu, err := n1.routes.PodMTU(); err != nil || mtu != 1500 {
		t.Fatalf("PodMTU %d %v, want 1500", mtu, err)
	}
	// Without Sync no pod reaches another node's pods.
	if err := pingFrom(n1.pod, hosts[1].podIP, 300*time.Millisecond); err == nil {
		t.Fatal("pod on node2 reachable before Sync")
	}
	nodes := nodesOf(hosts)
	syncAll(t, hosts, nodes)
	syncAllUnchanged(t, hosts, nodes) // idempotent, no writes
	for _, th := range hosts {
		rs := ourRoutesIn(t, th)
		if len(rs) != 2 {
			t.Fatalf("%s: skiff routes %v, want one per peer", th.name, routeDsts(rs))
		}
		for _, r := range rs {
			if r.Gw == nil || r.LinkIndex == 0 {
				t.Fatalf("%s: route %v has no gateway/link", th.name, r)
			}
			dst := netip.MustParsePrefix(r.Dst.String())
			peer := hosts[slices.IndexFunc(hosts, func(o *testHost) bool { return o.cidr == dst })]
			if r.Gw.String() != peer.ip.String() {
				t.Fatalf("%s: route %v via %v, want via %v", th.name, r.Dst, r.Gw, peer.ip)
			}
		}
	}
	checkPodToPod(t, hosts, 8080)

	// A restarted agent (new Routes) syncs the same state: nothing duplicated.
	again, err := NewRoutes(RoutesConfig{Backend: BackendHostGW, NodeIP: n1.ip, PodCIDR: n1.cidr, HostNetNS: n1.ns})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := again.Ensure(); err != nil {
		t.Fatal(err)
	}
	if err := again.Sync(PeersFromNodes(nodes, n1.name)); err != nil {
		t.Fatal(err)
	}
	if rs := ourRoutesIn(t, n1); len(rs) != 2 {
		t.Fatalf("after restart: %v", routeDsts(rs))
	}

	// node3 leaves: its route goes, node2's stays.
	if err := n1.routes.Sync(PeersFromNodes(nodes[:2], n1.name)); err != nil {
		t.Fatal(err)
	}
	if rs := ourRoutesIn(t, n1); len(rs) != 1 || rs[0].Dst.String() != "10.42.2.0/24" {
		t.Fatalf("after node3 left: %v", routeDsts(rs))
	}
	// A changed node IP for node2 moves the route (replaced, not added).
	moved := []Peer{{Name: "node2", NodeIP: netip.MustParseAddr("198.51.100.99"), PodCIDR: hosts[1].cidr}}
	if err := n1.routes.Sync(moved); err != nil {
		t.Fatal(err)
	}
	if rs := ourRoutesIn(t, n1); len(rs) != 1 || rs[0].Gw.String() != "198.51.100.99" {
		t.Fatalf("after node2 moved: %v", rs)
	}
	// A peer not on the link cannot be a host-gw peer: an error naming it, others still programmed.
	bad := append(moved, Peer{Name: "far", NodeIP: netip.MustParseAddr("203.0.113.7"), PodCIDR: netip.MustParsePrefix("10.42.9.0/24")})
	if err := n1.routes.Sync(bad); err == nil {
		t.Fatal("Sync with an unreachable host-gw peer: no error")
	}
	if rs := ourRoutesIn(t, n1); len(rs) != 1 {
		t.Fatalf("after unreachable peer: %v", routeDsts(rs))
	}
	if err := n1.routes.Sync(nil); err != nil {
		t.Fatal(err)
	}
	if rs := ourRoutesIn(t, n1); len(rs) != 0 {
		t.Fatalf("after Sync(nil): %v", routeDsts(rs))
	}
	checkForeign(t, n1)

	// Cleanup removes skiff's links and routes and nothing else; twice is fine.
	for _, th := range hosts {
		for range 2 {
			if err := Cleanup(th.ns); err != nil {
				t.Fatalf("%s: Cleanup: %v", th.name, err)
			}
		}
		checkCleaned(t, th)
	}
	checkForeign(t, n1)
}

func TestPeersFromNodes(t *testing.T) {
	node := func(name, ip, cidr, mac string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
		if ip != "" {
			n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "203.0.113.1"}, {Type: corev1.NodeInternalIP, Address: ip}}
		}
		if mac != "" {
			n.Annotations[AnnotationVTEPMAC] = mac
		}
		return n
	}
	nodes := []*corev1.Node{
		node("c", "198.51.100.13", "10.42.3.0/24", "02:56:c6:33:64:0d"),
		node("self", "198.51.100.10", "10.42.0.0/24", "02:56:c6:33:64:0a"),
		node("a", "198.51.100.11", "10.42.1.0/24", ""),
		node("b", "198.51.100.12", "10.42.2.0/24", "not-a-mac"),
		node("no-ip", "", "10.42.4.0/24", ""),
		node("no-cidr", "198.51.100.15", "", ""),
		nil,
	}
	got := PeersFromNodes(nodes, "self")
	var names []string
	for _, p := range got {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Fatalf("peers %v", names)
	}
	c := got[2]
	if c.NodeIP != netip.MustParseAddr("198.51.100.13") || c.PodCIDR != netip.MustParsePrefix("10.42.3.0/24") || c.VTEPMAC.String() != "02:56:c6:33:64:0d" {
		t.Fatalf("peer c %+v", c)
	}
	if got[0].VTEPMAC != nil || got[1].VTEPMAC != nil {
		t.Fatalf("MAC of a/b: %v %v", got[0].VTEPMAC, got[1].VTEPMAC)
	}
	if m := vtepMAC(netip.MustParseAddr("198.51.100.13")); m.String() != "02:56:c6:33:64:0d" || m[0]&1 != 0 || m[0]&2 == 0 {
		t.Fatalf("vtepMAC %v: want locally administered unicast", m)
	}
}

func TestNewRoutesInvalid(t *testing.T) {
	ip, cidr := netip.MustParseAddr("198.51.100.11"), netip.MustParsePrefix("10.42.1.0/24")
	for _, cfg := range []RoutesConfig{
		{Backend: "udp", NodeIP: ip, PodCIDR: cidr},
		{NodeIP: netip.MustParseAddr("2001:db8::1"), PodCIDR: cidr},
		{NodeIP: ip},
		{NodeIP: ip, PodCIDR: cidr, VXLANDevice: "a-very-long-device"},
		{NodeIP: ip, PodCIDR: cidr, VNI: 1 << 24},
	} {
		if _, err := NewRoutes(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

func TestVXLAN(t *testing.T) {
	requireRoot(t)
	hosts := newTestCluster(t, 3, BackendVXLAN)
	n1 := hosts[0]
	addForeign(t, n1)

	// The device: VNI, port, local address, learning off, MTU, MAC, address, up.
	l, err := n1.h.LinkByName(DefaultVXLANDevice)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s is a %s", DefaultVXLANDevice, l.Type())
	}
	if v.VxlanId != 1 || v.Port != 8472 || !v.SrcAddr.Equal(n1.ip.AsSlice()) || v.Learning || v.MTU != 1450 ||
		v.HardwareAddr.String() != n1.routes.VTEPMAC().String() || v.Flags&net.FlagUp == 0 {
		t.Fatalf("VXLAN device %+v", v)
	}
	if as, _ := n1.h.AddrList(l, netlink.FAMILY_V4); len(as) != 1 || as[0].IPNet.String() != "10.42.1.0/32" {
		t.Fatalf("VXLAN device addresses %v", as)
	}
	if mtu, err := n1.routes.PodMTU(); err != nil || mtu != 1450 {
		t.Fatalf("PodMTU %d %v, want 1450", mtu, err)
	}
	if br, err := n1.h.LinkByName(DefaultBridgeName); err != nil || br.Attrs().MTU != 1450 {
		t.Fatalf("bridge MTU: %v", err)
	}

	// Without Sync no pod reaches another node's pods.
	if err := pingFrom(n1.pod, hosts[1].podIP, 300*time.Millisecond); err == nil {
		t.Fatal("pod on node2 reachable before Sync")
	}
	nodes := nodesOf(hosts)
	syncAll(t, hosts, nodes)
	syncAllUnchanged(t, hosts, nodes) // idempotent, no writes
	for _, th := range hosts {
		checkVXLANState(t, th, hosts, len(hosts)-1)
	}
	checkPodToPod(t, hosts, 8080)

	// Restart: a new Routes ensures and syncs the same state, nothing duplicated.
	again, err := NewRoutes(RoutesConfig{NodeIP: n1.ip, PodCIDR: n1.cidr, HostNetNS: n1.ns})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := again.Ensure(); err != nil {
		t.Fatal(err)
	}
	if err := again.Sync(PeersFromNodes(nodes, n1.name)); err != nil {
		t.Fatal(err)
	}
	if l2, err := n1.h.LinkByName(DefaultVXLANDevice); err != nil || l2.Attrs().Index != l.Attrs().Index {
		t.Fatalf("VXLAN device recreated on restart: %v", err)
	}
	checkVXLANState(t, n1, hosts, 2)

	// node3 leaves: its route, neighbour and FDB entry go; node2's stay.
	if err := n1.routes.Sync(PeersFromNodes(nodes[:2], n1.name)); err != nil {
		t.Fatal(err)
	}
	checkVXLANState(t, n1, hosts[:2], 1)
	// A peer without a VTEP MAC yet is skipped.
	noMAC := PeersFromNodes(nodes[:2], n1.name)
	noMAC[0].VTEPMAC = nil
	if err := n1.routes.Sync(noMAC); err != nil {
		t.Fatal(err)
	}
	checkVXLANState(t, n1, hosts[:1], 0)

	// The device deleted behind our back: Sync repairs it and the peers.
	if err := n1.h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	syncAll(t, hosts, nodes)
	checkVXLANState(t, n1, hosts, 2)
	// An MTU changed behind our back is fixed by Ensure.
	l, _ = n1.h.LinkByName(DefaultVXLANDevice)
	if err := n1.h.LinkSetMTU(l, 1300); err != nil {
		t.Fatal(err)
	}
	if err := n1.routes.Ensure(); err != nil {
		t.Fatal(err)
	}
	if l, _ = n1.h.LinkByName(DefaultVXLANDevice); l.Attrs().MTU != 1450 {
		t.Fatalf("MTU after Ensure %d", l.Attrs().MTU)
	}
	checkPodToPod(t, hosts, 8081)
	checkForeign(t, n1)

	for _, th := range hosts {
		for range 2 {
			if err := Cleanup(th.ns); err != nil {
				t.Fatalf("%s: Cleanup: %v", th.name, err)
			}
		}
		checkCleaned(t, th)
	}
	checkForeign(t, n1)
}

// checkVXLANState: th has exactly one route, neighbour and FDB entry per
// peer in hosts (other than th), right ones, and nothing else.
func checkVXLANState(t *testing.T, th *testHost, hosts []*testHost, want int) {
	t.Helper()
	rs := ourRoutesIn(t, th)
	neigh, fdb := vxlanEntries(t, th)
	if len(rs) != want || len(neigh) != want || len(fdb) != want {
		t.Fatalf("%s: %d routes %v, %d neighbours %v, %d FDB entries %v; want %d each", th.name, len(rs), routeDsts(rs), len(neigh), neigh, len(fdb), fdb, want)
	}
	vx, err := th.h.LinkByName(DefaultVXLANDevice)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range hosts {
		if p == th {
			continue
		}
		gw := p.cidr.Addr().String()
		mac := p.routes.VTEPMAC().String()
		if !slices.ContainsFunc(rs, func(r netlink.Route) bool {
			return r.Dst.String() == p.cidr.String() && r.Gw.String() == gw && r.LinkIndex == vx.Attrs().Index && r.Flags&int(netlink.FLAG_ONLINK) != 0
		}) {
			t.Fatalf("%s: no route %v via %s onlink dev %s in %v", th.name, p.cidr, gw, DefaultVXLANDevice, rs)
		}
		if !slices.ContainsFunc(neigh, func(n netlink.Neigh) bool {
			return n.IP.String() == gw && n.HardwareAddr.String() == mac && n.State&netlink.NUD_PERMANENT != 0
		}) {
			t.Fatalf("%s: no permanent neighbour %s → %s in %v", th.name, gw, mac, neigh)
		}
		if !slices.ContainsFunc(fdb, func(n netlink.Neigh) bool {
			return n.IP.String() == p.ip.String() && n.HardwareAddr.String() == mac && n.State&netlink.NUD_PERMANENT != 0
		}) {
			t.Fatalf("%s: no permanent FDB entry %s → %v in %v", th.name, mac, p.ip, fdb)
		}
	}
}

// TestBackendSwitch: vxlan → host-gw → vxlan on the same hosts; each time the
// other backend's device and routes go and pods still reach each other.
func TestBackendSwitch(t *testing.T) {
	requireRoot(t)
	hosts := newTestCluster(t, 2, BackendVXLAN)
	syncAll(t, hosts, nodesOf(hosts))
	checkVXLANState(t, hosts[0], hosts, 1)
	for i, backend := range []string{BackendHostGW, BackendVXLAN} {
		for _, th := range hosts {
			r, err := NewRoutes(RoutesConfig{Backend: backend, NodeIP: th.ip, PodCIDR: th.cidr, HostNetNS: th.ns})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			if err := r.Ensure(); err != nil {
				t.Fatal(err)
			}
			th.routes = r
		}
		syncAll(t, hosts, nodesOf(hosts))
		for _, th := range hosts {
			_, err := th.h.LinkByName(DefaultVXLANDevice)
			if (err == nil) != (backend == BackendVXLAN) {
				t.Fatalf("%s: backend %s, VXLAN device: %v", th.name, backend, err)
			}
			rs := ourRoutesIn(t, th)
			if len(rs) != 1 || (backend == BackendHostGW) != (rs[0].Gw.String() == hosts[1-slices.Index(hosts, th)].ip.String()) {
				t.Fatalf("%s: backend %s, routes %v", th.name, backend, rs)
			}
		}
		if backend == BackendVXLAN {
			checkVXLANState(t, hosts[0], hosts, 1)
		}
		checkPodToPod(t, hosts, 8090+i)
	}
}

// TestSyncSkipsUnusablePeers: overlapping pod CIDRs, our own node IP and a
// peer on another backend are never routed.
func TestSyncSkipsUnusablePeers(t *testing.T) {
	requireRoot(t)
	hosts := newTestCluster(t, 2, BackendHostGW)
	n1, n2 := hosts[0], hosts[1]
	peers := []Peer{
		{Name: "a-overlaps-ours", NodeIP: n2.ip, PodCIDR: netip.MustParsePrefix("10.42.0.0/16")},
		{Name: "b-own-ip", NodeIP: n1.ip, PodCIDR: netip.MustParsePrefix("10.42.7.0/24")},
		{Name: "c-vxlan", NodeIP: n2.ip, PodCIDR: netip.MustParsePrefix("10.42.8.0/24"), Backend: BackendVXLAN},
		{Name: "node2", NodeIP: n2.ip, PodCIDR: n2.cidr, Backend: BackendHostGW},
		{Name: "z-dup", NodeIP: n2.ip, PodCIDR: netip.MustParsePrefix("10.42.2.128/25")},
	}
	for range 2 {
		if err := n1.routes.Sync(peers); err != nil {
			t.Fatal(err)
		}
	}
	if rs := ourRoutesIn(t, n1); len(rs) != 1 || rs[0].Dst.String() != n2.cidr.String() {
		t.Fatalf("routes %v, want only node2's", routeDsts(rs))
	}
}

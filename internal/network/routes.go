package network

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// Cross-node pod routing, flannel style. Every node owns one pod CIDR (its
// spec.podCIDR); a node reaches another node's pods through one of two
// backends:
//
//   - host-gw: a route PEER_PODCIDR via PEER_NODEIP on the link that reaches
//     the peer. Needs every node on one L2 network; no encapsulation.
//   - vxlan: a VXLAN device (skiff.vxlan, VNI 1, UDP 8472, learning off) whose
//     address is the node's pod CIDR network address (/32). Per peer:
//     route PEER_PODCIDR via PEER_PODCIDR.0 dev skiff.vxlan onlink,
//     a permanent neighbour PEER_PODCIDR.0 → peer VTEP MAC, and a permanent
//     FDB entry peer VTEP MAC → dst PEER_NODEIP. Needs only L3 reachability
//     between node IPs. The VTEP MAC is derived from the node IP, so it is
//     stable across restarts; nodes publish it in AnnotationVTEPMAC.
//
// Pod-to-pod traffic between nodes is not NATed: the source address a pod
// sees is the other pod's address.
//
// Every route skiff installs carries RouteProtocol, so Sync and Cleanup find
// exactly skiff's routes (ip route show proto 83) and nothing else. Neighbour
// and FDB entries need no marker: they live on the VXLAN device, which is
// skiff's alone.

const (
	// BackendHostGW routes each peer's pod CIDR via the peer's node IP.
	BackendHostGW = "host-gw"
	// BackendVXLAN tunnels pod traffic in VXLAN between node IPs (the default).
	BackendVXLAN = "vxlan"

	// AnnotationVTEPMAC on a Node: the MAC of its VXLAN device (vxlan backend).
	AnnotationVTEPMAC = "network.skiff.dev/vtep-mac"
	// AnnotationBackend on a Node: the backend it runs (host-gw or vxlan).
	AnnotationBackend = "network.skiff.dev/backend"

	// DefaultVXLANDevice is the VXLAN device name when RoutesConfig.VXLANDevice is empty.
	DefaultVXLANDevice = "skiff.vxlan"
	// DefaultVNI is the VXLAN network identifier (flannel's default too).
	DefaultVNI = 1
	// DefaultVXLANPort is the VXLAN UDP port (the Linux kernel's and flannel's
	// default 8472, not IANA's 4789).
	DefaultVXLANPort = 8472

	// RouteProtocol marks every route skiff installs (rtm_protocol). 0x53 =
	// 83 ('S'): unused by the kernel and by /etc/iproute2/rt_protos (bird is
	// 12, babel 42, bgp 186 …). `ip route show proto 83` lists skiff's routes.
	RouteProtocol = 0x53

	// vxlanOverhead is what VXLAN over IPv4 adds to a frame: outer IPv4 (20),
	// UDP (8), VXLAN (8) and the inner Ethernet header (14).
	vxlanOverhead = 50
)

// Peer is another node as the routing backends need it.
type Peer struct {
	Name    string
	NodeIP  netip.Addr       // the node's InternalIP (IPv4)
	PodCIDR netip.Prefix     // its spec.podCIDR (IPv4)
	VTEPMAC net.HardwareAddr // from AnnotationVTEPMAC; nil if absent or invalid
	Backend string           // from AnnotationBackend; "" if absent
}

// PeersFromNodes returns the nodes other than self that have an IPv4
// InternalIP and an IPv4 pod CIDR, sorted by name. VTEPMAC comes from the
// node's AnnotationVTEPMAC (nil when absent or malformed: the vxlan backend
// skips such peers until the annotation appears).
func PeersFromNodes(nodes []*corev1.Node, self string) []Peer {
	var peers []Peer
	for _, n := range nodes {
		if n == nil || n.Name == self {
			continue
		}
		p := Peer{Name: n.Name, Backend: n.Annotations[AnnotationBackend]}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				p.NodeIP = ip
				break
			}
		}
		cidrs := append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...)
		for _, c := range cidrs {
			if pfx, err := netip.ParsePrefix(c); err == nil && pfx.Addr().Is4() {
				p.PodCIDR = pfx.Masked()
				break
			}
		}
		if !p.NodeIP.IsValid() || !p.PodCIDR.IsValid() {
			continue
		}
		if s := n.Annotations[AnnotationVTEPMAC]; s != "" {
			if mac, err := net.ParseMAC(s); err == nil && len(mac) == 6 {
				p.VTEPMAC = mac
			}
		}
		peers = append(peers, p)
	}
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return peers
}

// RoutesConfig configures Routes.
type RoutesConfig struct {
	Backend     string       // BackendHostGW or BackendVXLAN; "" = vxlan
	NodeIP      netip.Addr   // this node's InternalIP (IPv4), must be on one of its interfaces
	PodCIDR     netip.Prefix // this node's spec.podCIDR (IPv4)
	HostNetNS   string       // path of the node's network namespace; "" = the current one
	VXLANDevice string       // default DefaultVXLANDevice
	VNI         int          // default DefaultVNI
	Port        int          // default DefaultVXLANPort
	Logger      *slog.Logger // default: discard
}

// Routes keeps this node's routes to the other nodes' pod CIDRs.
type Routes struct {
	cfg RoutesConfig
	log *slog.Logger
	mac net.HardwareAddr

	mu      sync.Mutex
	host    *netlink.Handle
	skipped map[string]string // peer name → why the last Sync skipped it
}

// NewRoutes validates cfg and opens a netlink handle in the host namespace.
// It changes nothing; call Ensure, then Sync.
func NewRoutes(cfg RoutesConfig) (*Routes, error) {
	if cfg.Backend == "" {
		cfg.Backend = BackendVXLAN
	}
	if cfg.Backend != BackendHostGW && cfg.Backend != BackendVXLAN {
		return nil, fmt.Errorf("network: backend %q (want %s or %s): %w", cfg.Backend, BackendHostGW, BackendVXLAN, ErrInvalid)
	}
	if !cfg.NodeIP.IsValid() || !cfg.NodeIP.Is4() {
		return nil, fmt.Errorf("network: node IP %v is not IPv4: %w", cfg.NodeIP, ErrInvalid)
	}
	if !cfg.PodCIDR.IsValid() || !cfg.PodCIDR.Addr().Is4() || cfg.PodCIDR.Bits() > 30 {
		return nil, fmt.Errorf("network: pod CIDR %v: %w", cfg.PodCIDR, ErrInvalid)
	}
	cfg.PodCIDR = cfg.PodCIDR.Masked()
	if cfg.VXLANDevice == "" {
		cfg.VXLANDevice = DefaultVXLANDevice
	}
	if len(cfg.VXLANDevice) > 15 {
		return nil, fmt.Errorf("network: VXLAN device name %q longer than 15: %w", cfg.VXLANDevice, ErrInvalid)
	}
	if cfg.VNI == 0 {
		cfg.VNI = DefaultVNI
	}
	if cfg.VNI < 0 || cfg.VNI >= 1<<24 {
		return nil, fmt.Errorf("network: VNI %d: %w", cfg.VNI, ErrInvalid)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultVXLANPort
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("network: VXLAN port %d: %w", cfg.Port, ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h, err := openHandle(cfg.HostNetNS)
	if err != nil {
		return nil, err
	}
	return &Routes{
		cfg:  cfg,
		log:  cfg.Logger.With("component", "network", "backend", cfg.Backend),
		mac:  vtepMAC(cfg.NodeIP),
		host: h,
	}, nil
}

// openHandle opens a netlink handle in the namespace at path ("" = current).
func openHandle(path string) (*netlink.Handle, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if path == "" {
		h, err = netlink.NewHandle()
	} else {
		var ns netns.NsHandle
		ns, err = netns.GetFromPath(path)
		if err == nil {
			h, err = netlink.NewHandleAt(ns)
			ns.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("network: netlink handle for host namespace %q: %w", path, err)
	}
	return h, nil
}

// vtepMAC is a locally administered unicast MAC derived from the node IP
// (02:56:a.b.c.d), so a restarted node keeps the MAC its peers know.
func vtepMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x56, b[0], b[1], b[2], b[3]}
}

// Backend is the backend in use (after defaulting).
func (r *Routes) Backend() string { return r.cfg.Backend }

// VTEPMAC is the MAC of this node's VXLAN device, derived from NodeIP.
func (r *Routes) VTEPMAC() net.HardwareAddr { return slices.Clone(r.mac) }

// Close releases the netlink handle and leaves the network as it is.
func (r *Routes) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.host != nil {
		r.host.Close()
		r.host = nil
	}
	return nil
}

func (r *Routes) handle() (*netlink.Handle, error) {
	if r.host == nil {
		return nil, fmt.Errorf("network: routes closed: %w", ErrInvalid)
	}
	return r.host, nil
}

// nodeLink is the interface that holds NodeIP.
func (r *Routes) nodeLink() (netlink.Link, error) {
	h, err := r.handle()
	if err != nil {
		return nil, err
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("network: list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == r.cfg.NodeIP {
			l, err := h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("network: interface of node IP %v: %w", r.cfg.NodeIP, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("network: node IP %v is on no interface of the host: %w", r.cfg.NodeIP, ErrInvalid)
}

// PodMTU is the MTU pods (bridge, veths, eth0) should use: the MTU of the
// interface holding NodeIP, less the VXLAN overhead with the vxlan backend.
func (r *Routes) PodMTU() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, err := r.nodeLink()
	if err != nil {
		return 0, err
	}
	mtu := l.Attrs().MTU
	if r.cfg.Backend == BackendVXLAN {
		mtu -= vxlanOverhead
	}
	return mtu, nil
}

// Ensure creates or repairs what the backend needs on the host. vxlan: the
// VXLAN device (see ensureVXLAN). host-gw: nothing to create; a VXLAN device
// left by an earlier vxlan run is removed (its routes go with it).
func (r *Routes) Ensure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg.Backend == BackendVXLAN {
		_, err := r.ensureVXLAN()
		return err
	}
	h, err := r.handle()
	if err != nil {
		return err
	}
	if l, err := h.LinkByName(r.cfg.VXLANDevice); err == nil && l.Type() == "vxlan" {
		if err := h.LinkDel(l); err != nil && !isNotFound(err) {
			return fmt.Errorf("network: remove VXLAN device %s (backend is host-gw): %w", r.cfg.VXLANDevice, err)
		}
		r.log.Info("removed VXLAN device left by the vxlan backend", "device", r.cfg.VXLANDevice)
	}
	return nil
}

// Sync makes skiff's routes (and, with vxlan, the FDB and neighbour entries)
// match exactly peers: missing ones are added, wrong ones replaced, stale
// ones deleted. Idempotent and cheap when nothing changed (a few dumps, no
// writes). Peers that cannot be used are skipped: a pod CIDR overlapping
// ours or an earlier peer's, our own node IP, another backend, or (vxlan)
// no VTEP MAC yet. Errors for single peers are joined; the others are still
// programmed.
func (r *Routes) Sync(peers []Peer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, err := r.handle()
	if err != nil {
		return err
	}
	usable := r.usablePeers(peers)
	if r.cfg.Backend == BackendVXLAN {
		return r.syncVXLAN(h, usable)
	}
	return r.syncHostGW(h, usable)
}

func (r *Routes) usablePeers(peers []Peer) []Peer {
	var out []Peer
	skipped := map[string]string{}
	skip := func(p Peer, reason string) {
		skipped[p.Name] = reason
		if r.skipped[p.Name] != reason { // say it once, not on every Sync
			r.log.Warn("skipping peer: "+reason, "peer", p.Name, "nodeIP", p.NodeIP, "podCIDR", p.PodCIDR, "peerBackend", p.Backend)
		}
	}
	for _, p := range peers {
		switch {
		case !p.NodeIP.Is4() || !p.PodCIDR.IsValid() || !p.PodCIDR.Addr().Is4():
			skip(p, "no IPv4 node IP or pod CIDR")
			continue
		case p.NodeIP == r.cfg.NodeIP:
			skip(p, "it has our node IP")
			continue
		case p.Backend != "" && p.Backend != r.cfg.Backend:
			skip(p, "it runs another pod network backend")
			continue
		case r.cfg.Backend == BackendVXLAN && len(p.VTEPMAC) != 6:
			// Normal for a moment while a node joins: not a warning.
			skipped[p.Name] = "no VTEP MAC"
			r.log.Debug("skipping peer without a VTEP MAC yet", "peer", p.Name)
			continue
		}
		p.PodCIDR = p.PodCIDR.Masked()
		if p.PodCIDR.Overlaps(r.cfg.PodCIDR) {
			skip(p, "its pod CIDR overlaps ours")
			continue
		}
		if slices.ContainsFunc(out, func(q Peer) bool { return q.PodCIDR.Overlaps(p.PodCIDR) }) {
			skip(p, "its pod CIDR overlaps another peer's")
			continue
		}
		out = append(out, p)
	}
	r.skipped = skipped
	return out
}

// syncHostGW: route PEER_PODCIDR via PEER_NODEIP dev <link reaching it>.
func (r *Routes) syncHostGW(h *netlink.Handle, peers []Peer) error {
	var errs []error
	var want []netlink.Route
	// The link of a directly connected peer is the one whose address prefix
	// holds its IP: one address dump instead of a route lookup per peer.
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("network: list addresses: %w", err)
	}
	for _, p := range peers {
		link := 0
		for _, a := range addrs {
			if pfx := netPrefix(a.IPNet); pfx.Bits() < 32 && pfx.Masked().Contains(p.NodeIP) && !r.cfg.PodCIDR.Overlaps(pfx) {
				link = a.LinkIndex
				break
			}
		}
		if link == 0 {
			// Not in a connected prefix: only a device route (no gateway) will do.
			via, err := h.RouteGet(p.NodeIP.AsSlice())
			if err != nil || len(via) == 0 {
				errs = append(errs, fmt.Errorf("network: host-gw: no route to peer %s (%v): %v", p.Name, p.NodeIP, err))
				continue
			}
			if via[0].Gw != nil {
				errs = append(errs, fmt.Errorf("network: host-gw: peer %s (%v) is not on a directly connected network (reached via %v); use the vxlan backend: %w",
					p.Name, p.NodeIP, via[0].Gw, ErrInvalid))
				continue
			}
			link = via[0].LinkIndex
		}
		want = append(want, netlink.Route{
			LinkIndex: link,
			Dst:       prefixNet(p.PodCIDR),
			Gw:        p.NodeIP.AsSlice(),
			Protocol:  RouteProtocol,
			Table:     unix.RT_TABLE_MAIN,
		})
	}
	errs = append(errs, r.syncRoutes(h, want))
	return errors.Join(errs...)
}

// syncRoutes makes skiff's routes in the main table exactly want: a route
// that differs in any way is deleted (so a changed metric or link never
// leaves a second route for one destination) and the wanted one added.
func (r *Routes) syncRoutes(h *netlink.Handle, want []netlink.Route) error {
	have, err := r.ourRoutes(h)
	if err != nil {
		return err
	}
	byDst := make(map[netip.Prefix]int, len(want))
	for i, w := range want {
		byDst[netPrefix(w.Dst)] = i
	}
	var errs []error
	ok := make([]bool, len(want))
	for _, hr := range have {
		if i, found := byDst[netPrefix(hr.Dst)]; found && !ok[i] && sameRoute(hr, want[i]) {
			ok[i] = true
			continue
		}
		if err := h.RouteDel(&hr); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: delete route %v: %w", hr.Dst, err))
			continue
		}
		r.log.Info("removed route", "dst", hr.Dst, "via", hr.Gw)
	}
	for i := range want {
		if ok[i] {
			continue
		}
		if err := h.RouteReplace(&want[i]); err != nil {
			errs = append(errs, fmt.Errorf("network: route %v via %v: %w", want[i].Dst, want[i].Gw, err))
			continue
		}
		r.log.Info("added route", "dst", want[i].Dst, "via", want[i].Gw)
	}
	return errors.Join(errs...)
}

// ourRoutes lists the IPv4 routes in the main table with RouteProtocol.
func (r *Routes) ourRoutes(h *netlink.Handle) ([]netlink.Route, error) {
	routes, err := listOurRoutes(h, unix.RT_TABLE_MAIN)
	if err != nil {
		return nil, fmt.Errorf("network: list routes: %w", err)
	}
	return routes, nil
}

// listOurRoutes lists IPv4 routes with RouteProtocol in table (0 = all tables).
func listOurRoutes(h *netlink.Handle, table int) ([]netlink.Route, error) {
	filter := &netlink.Route{Protocol: RouteProtocol, Table: table}
	return retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
}

func sameRoute(a, b netlink.Route) bool {
	return netPrefix(a.Dst) == netPrefix(b.Dst) &&
		a.Gw.Equal(b.Gw) && a.LinkIndex == b.LinkIndex &&
		a.Flags&int(netlink.FLAG_ONLINK) == b.Flags&int(netlink.FLAG_ONLINK) &&
		a.Priority == b.Priority && a.Table == b.Table && a.Protocol == b.Protocol &&
		a.Scope == b.Scope && a.Src == nil && a.Type == unix.RTN_UNICAST
}

// netPrefix converts a route destination (nil = default) to a netip.Prefix.
func netPrefix(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones)
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// retryDump retries a netlink dump the kernel interrupted (the table changed
// while it was read), so a result is never partial.
func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var (
		out []T
		err error
	)
	for range 5 {
		out, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, err
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV) || errors.As(err, &nf)
}

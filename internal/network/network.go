package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// DefaultBridgeName is the bridge used when Config.BridgeName is empty.
	DefaultBridgeName = "skiff0"
	// DefaultMTU is used when Config.MTU is 0.
	DefaultMTU = 1500
	// PodInterface is the pod side's name inside the pod network namespace.
	PodInterface = "eth0"
	// vethPrefix starts every host-side veth name skiff creates.
	vethPrefix = "skv"
)

// Config of a Manager.
type Config struct {
	BridgeName string       // default skiff0
	PodCIDR    netip.Prefix // this node's spec.podCIDR (IPv4)
	StateDir   string       // IPAM state (one file per allocated address)
	MTU        int          // bridge, veth and eth0 MTU; default 1500
	HostNetNS  string       // path of the node's network namespace; "" = the current one
	Logger     *slog.Logger // default: discard
}

// Manager sets up and tears down pod networking on one node. It matches the
// agent's podworker.Network interface (SetUp / TearDown).
type Manager struct {
	cfg  Config
	ipam *IPAM
	log  *slog.Logger
	gw   netip.Addr

	mu   sync.Mutex // serialises netlink work on host
	host *netlink.Handle
}

// New validates cfg, opens the IPAM state and a netlink handle in the host
// namespace. It changes nothing on the network; call EnsureBridge.
func New(cfg Config) (*Manager, error) {
	if cfg.BridgeName == "" {
		cfg.BridgeName = DefaultBridgeName
	}
	if len(cfg.BridgeName) > 15 {
		return nil, fmt.Errorf("network: bridge name %q longer than 15: %w", cfg.BridgeName, ErrInvalid)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 576 || cfg.MTU > 65535 {
		return nil, fmt.Errorf("network: MTU %d: %w", cfg.MTU, ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ipam, err := NewIPAM(cfg.StateDir, cfg.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	cfg.PodCIDR = ipam.Prefix()
	h, err := openHandle(cfg.HostNetNS)
	if err != nil {
		return nil, err
	}
	return &Manager{
		cfg:  cfg,
		ipam: ipam,
		log:  cfg.Logger.With("component", "network"),
		gw:   ipam.Gateway(),
		host: h,
	}, nil
}

// Close releases the netlink handle. It leaves the network as it is.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.host != nil {
		m.host.Close()
		m.host = nil
	}
	return nil
}

// IPAM exposes the address allocator (read-only use: Lookup, Allocated).
func (m *Manager) IPAM() *IPAM { return m.ipam }

// Gateway is the bridge address pods route through.
func (m *Manager) Gateway() netip.Addr { return m.gw }

// bridgeMAC is a fixed, locally administered MAC derived from the gateway
// address: a bridge otherwise takes the lowest port MAC, which changes as pods
// come and go and leaves stale gateway entries in the pods' ARP caches.
func bridgeMAC(gw netip.Addr) net.HardwareAddr {
	b := gw.As4()
	return net.HardwareAddr{0x02, 0x58, b[0], b[1], b[2], b[3]}
}

func (m *Manager) gatewayAddr() *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{
		IP:   m.gw.AsSlice(),
		Mask: net.CIDRMask(m.cfg.PodCIDR.Bits(), 32),
	}}
}

// EnsureBridge creates the bridge if missing and makes sure it has the
// gateway address, the MTU and is up. Idempotent.
func (m *Manager) EnsureBridge(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.ensureBridge()
	return err
}

func (m *Manager) ensureBridge() (netlink.Link, error) {
	if m.host == nil {
		return nil, fmt.Errorf("network: manager closed: %w", ErrInvalid)
	}
	name := m.cfg.BridgeName
	link, err := m.host.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("network: bridge %s: %w", name, err)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
		br.Name = name
		br.MTU = m.cfg.MTU
		br.HardwareAddr = bridgeMAC(m.gw)
		if err := m.host.LinkAdd(br); err != nil {
			return nil, fmt.Errorf("network: create bridge %s: %w", name, err)
		}
		m.log.Info("created bridge", "bridge", name, "gateway", m.gw)
		if link, err = m.host.LinkByName(name); err != nil {
			return nil, fmt.Errorf("network: bridge %s: %w", name, err)
		}
	}
	if link.Type() != "bridge" {
		return nil, fmt.Errorf("network: %s exists and is a %s, not a bridge: %w", name, link.Type(), ErrInvalid)
	}
	if link.Attrs().MTU != m.cfg.MTU {
		if err := m.host.LinkSetMTU(link, m.cfg.MTU); err != nil {
			return nil, fmt.Errorf("network: bridge %s MTU: %w", name, err)
		}
	}
	if err := m.host.AddrReplace(link, m.gatewayAddr()); err != nil {
		return nil, fmt.Errorf("network: bridge %s address %v: %w", name, m.gw, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := m.host.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("network: bridge %s up: %w", name, err)
		}
	}
	return link, nil
}

// VethName is the host-side veth name of a pod: stable, derived from the
// pod UID, at most 15 characters.
func VethName(uid types.UID) string {
	sum := sha256.Sum256([]byte(uid))
	return vethPrefix + hex.EncodeToString(sum[:])[:15-len(vethPrefix)]
}

func podID(pod *corev1.Pod) (string, error) {
	if pod == nil || pod.UID == "" {
		return "", fmt.Errorf("network: pod without UID: %w", ErrInvalid)
	}
	return string(pod.UID), nil
}

// SetUp gives the pod an address and wires its network namespace to the
// bridge: a veth pair, host side on the bridge (hairpin on), pod side eth0
// with podIP/len, lo up and a default route via the gateway. Calling it again
// for the same pod returns the same address and repairs what is missing.
func (m *Manager) SetUp(ctx context.Context, pod *corev1.Pod, netnsPath string) ([]string, error) {
	id, err := podID(pod)
	if err != nil {
		return nil, err
	}
	if netnsPath == "" {
		return nil, fmt.Errorf("network: pod %s: empty netns path: %w", id, ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	br, err := m.ensureBridge()
	if err != nil {
		return nil, err
	}
	ip, err := m.ipam.Allocate(id)
	if err != nil {
		return nil, fmt.Errorf("network: pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if err := m.setUpPod(br, pod.UID, ip, netnsPath); err != nil {
		// Leave the address allocated: the pod still exists and will be
		// retried (same address) or torn down (address released).
		return nil, fmt.Errorf("network: pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	m.log.Debug("pod network up", "pod", pod.Namespace+"/"+pod.Name, "uid", id, "ip", ip, "veth", VethName(pod.UID))
	return []string{ip.String()}, nil
}

func (m *Manager) setUpPod(br netlink.Link, uid types.UID, ip netip.Addr, netnsPath string) error {
	podNS, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer podNS.Close()
	ph, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", netnsPath, err)
	}
	defer ph.Close()

	hostName := VethName(uid)
	hostLink, herr := m.host.LinkByName(hostName)
	podLink, perr := ph.LinkByName(PodInterface)
	var nf netlink.LinkNotFoundError
	if herr != nil && !errors.As(herr, &nf) {
		return fmt.Errorf("veth %s: %w", hostName, herr)
	}
	if perr != nil && !errors.As(perr, &nf) {
		return fmt.Errorf("%s in pod: %w", PodInterface, perr)
	}
	// Reuse an existing pair only if both ends exist and are each other's peers.
	paired := herr == nil && perr == nil && hostLink.Type() == "veth" && podLink.Type() == "veth" && isPeer(hostLink, podLink)
	if !paired {
		if herr == nil {
			if err := m.host.LinkDel(hostLink); err != nil && !errors.As(err, &nf) {
				return fmt.Errorf("remove stale veth %s: %w", hostName, err)
			}
		}
		if perr == nil {
			// Deleting the host end may have taken eth0 with it: look again.
			if podLink, perr = ph.LinkByName(PodInterface); perr != nil {
				podLink = nil
			}
		}
		if podLink != nil {
			if err := ph.LinkDel(podLink); err != nil && !errors.As(err, &nf) {
				return fmt.Errorf("remove stale %s in pod: %w", PodInterface, err)
			}
		}
		veth := netlink.NewVeth(netlink.LinkAttrs{Name: hostName, MTU: m.cfg.MTU})
		veth.PeerName = PodInterface
		veth.PeerMTU = uint32(m.cfg.MTU)
		veth.PeerNamespace = netlink.NsFd(int(podNS))
		if err := m.host.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth %s: %w", hostName, err)
		}
		if hostLink, err = m.host.LinkByName(hostName); err != nil {
			return fmt.Errorf("veth %s: %w", hostName, err)
		}
		if podLink, err = ph.LinkByName(PodInterface); err != nil {
			return fmt.Errorf("%s in pod: %w", PodInterface, err)
		}
	}

	// Host side: on the bridge, hairpin (a pod reaching itself through a Service), up.
	if hostLink.Attrs().MasterIndex != br.Attrs().Index {
		if err := m.host.LinkSetMaster(hostLink, br); err != nil {
			return fmt.Errorf("veth %s to bridge: %w", hostName, err)
		}
	}
	if err := m.host.LinkSetHairpin(hostLink, true); err != nil {
		return fmt.Errorf("veth %s hairpin: %w", hostName, err)
	}
	if err := m.host.LinkSetUp(hostLink); err != nil {
		return fmt.Errorf("veth %s up: %w", hostName, err)
	}

	// Pod side.
	lo, err := ph.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo in pod: %w", err)
	}
	if err := ph.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(m.cfg.PodCIDR.Bits(), 32)}}
	// Remove addresses that are not ours (a reused pair after an IPAM change).
	if have, err := ph.AddrList(podLink, netlink.FAMILY_V4); err == nil {
		for _, a := range have {
			if !a.IP.Equal(addr.IP) {
				_ = ph.AddrDel(podLink, &a)
			}
		}
	}
	if err := ph.AddrReplace(podLink, addr); err != nil {
		return fmt.Errorf("address %v on %s: %w", ip, PodInterface, err)
	}
	if err := ph.LinkSetUp(podLink); err != nil {
		return fmt.Errorf("%s up: %w", PodInterface, err)
	}
	route := &netlink.Route{
		LinkIndex: podLink.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        m.gw.AsSlice(),
	}
	if err := ph.RouteReplace(route); err != nil {
		return fmt.Errorf("default route via %v: %w", m.gw, err)
	}
	return nil
}

// isPeer reports whether two veth ends are a pair: each one's ParentIndex
// (IFLA_LINK) names the other's index.
func isPeer(host, pod netlink.Link) bool {
	return host.Attrs().ParentIndex == pod.Attrs().Index && pod.Attrs().ParentIndex == host.Attrs().Index
}

// TearDown removes the pod's veth pair (tolerating it already gone, e.g. with
// its namespace) and then releases its address.
func (m *Manager) TearDown(ctx context.Context, pod *corev1.Pod, netnsPath string) error {
	id, err := podID(pod)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.deleteVeth(VethName(pod.UID)); err != nil {
		return fmt.Errorf("network: pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if err := m.ipam.Release(id); err != nil {
		return fmt.Errorf("network: pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	m.log.Debug("pod network down", "pod", pod.Namespace+"/"+pod.Name, "uid", id)
	return nil
}

func (m *Manager) deleteVeth(name string) error {
	if m.host == nil {
		return fmt.Errorf("manager closed: %w", ErrInvalid)
	}
	var nf netlink.LinkNotFoundError
	link, err := m.host.LinkByName(name)
	if err != nil {
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("veth %s: %w", name, err)
	}
	if err := m.host.LinkDel(link); err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("delete veth %s: %w", name, err)
	}
	return nil
}

// Reconcile frees the addresses of pods not in liveUIDs and removes skiff
// veths on the bridge that belong to no live pod. It returns the freed addresses.
//
// liveUIDs must include every pod SetUp may be running for concurrently: take
// it from the pods bound to the node (the desired set), not from the running
// sandboxes, or a pod being started could lose its fresh address.
func (m *Manager) Reconcile(ctx context.Context, liveUIDs []types.UID) ([]netip.Addr, error) {
	live := make(map[string]bool, len(liveUIDs))
	liveVeth := make(map[string]bool, len(liveUIDs))
	for _, u := range liveUIDs {
		live[string(u)] = true
		liveVeth[VethName(u)] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	if m.host != nil {
		if br, err := m.host.LinkByName(m.cfg.BridgeName); err == nil {
			links, err := m.host.LinkList()
			if err != nil {
				errs = append(errs, fmt.Errorf("network: list links: %w", err))
			}
			for _, l := range links {
				a := l.Attrs()
				if l.Type() != "veth" || a.MasterIndex != br.Attrs().Index || !strings.HasPrefix(a.Name, vethPrefix) || liveVeth[a.Name] {
					continue
				}
				if err := m.deleteVeth(a.Name); err != nil {
					errs = append(errs, err)
					continue
				}
				m.log.Info("removed veth of a gone pod", "veth", a.Name)
			}
		}
	}
	freed, err := m.ipam.Reconcile(func(id string) bool { return live[id] })
	if err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	for _, ip := range freed {
		m.log.Info("released address of a gone pod", "ip", ip)
	}
	return freed, errors.Join(errs...)
}

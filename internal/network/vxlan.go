package network

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ensureVXLAN creates or repairs the VXLAN device: VNI, UDP port, local
// address NodeIP over the interface holding it, learning off (entries come
// only from Sync), MTU = that interface's MTU - 50, the deterministic VTEP
// MAC, the pod CIDR's network address as a /32 (flannel does the same: the
// source address of packets the node itself sends to remote pods), and up.
// A device whose tunnel parameters differ is recreated; MTU, MAC and address
// are fixed in place.
func (r *Routes) ensureVXLAN() (netlink.Link, error) {
	h, err := r.handle()
	if err != nil {
		return nil, err
	}
	under, err := r.nodeLink()
	if err != nil {
		return nil, err
	}
	name := r.cfg.VXLANDevice
	mtu := under.Attrs().MTU - vxlanOverhead
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: r.mac},
		VxlanId:      r.cfg.VNI,
		VtepDevIndex: under.Attrs().Index,
		SrcAddr:      r.cfg.NodeIP.AsSlice(),
		Port:         r.cfg.Port,
		Learning:     false,
	}
	link, err := h.LinkByName(name)
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("network: VXLAN device %s: %w", name, err)
	}
	if err == nil {
		if v, ok := link.(*netlink.Vxlan); !ok || !vxlanCompatible(v, want) {
			r.log.Warn("VXLAN device has other settings, recreating", "device", name, "type", link.Type())
			if err := h.LinkDel(link); err != nil && !isNotFound(err) {
				return nil, fmt.Errorf("network: delete VXLAN device %s: %w", name, err)
			}
			link = nil
		}
	} else {
		link = nil
	}
	if link == nil {
		if err := h.LinkAdd(want); err != nil {
			return nil, fmt.Errorf("network: create VXLAN device %s: %w", name, err)
		}
		if link, err = h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("network: VXLAN device %s: %w", name, err)
		}
		r.log.Info("created VXLAN device", "device", name, "vni", r.cfg.VNI, "port", r.cfg.Port, "local", r.cfg.NodeIP, "mac", r.mac.String(), "mtu", mtu)
	}
	if link.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("network: VXLAN device %s MTU %d: %w", name, mtu, err)
		}
	}
	if !bytes.Equal(link.Attrs().HardwareAddr, r.mac) {
		if err := h.LinkSetHardwareAddr(link, r.mac); err != nil {
			return nil, fmt.Errorf("network: VXLAN device %s MAC: %w", name, err)
		}
	}
	addr := &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(r.cfg.PodCIDR.Addr(), 32))}
	have, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("network: VXLAN device %s addresses: %w", name, err)
	}
	found := false
	for _, a := range have {
		if a.IPNet.String() == addr.IPNet.String() {
			found = true
			continue
		}
		if err := h.AddrDel(link, &a); err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("network: VXLAN device %s: remove address %v: %w", name, a.IPNet, err)
		}
	}
	if !found {
		if err := h.AddrReplace(link, addr); err != nil {
			return nil, fmt.Errorf("network: VXLAN device %s address %v: %w", name, addr.IPNet, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("network: VXLAN device %s up: %w", name, err)
		}
	}
	return link, nil
}

func vxlanCompatible(have, want *netlink.Vxlan) bool {
	return have.VxlanId == want.VxlanId &&
		have.Port == want.Port &&
		have.SrcAddr.Equal(want.SrcAddr) &&
		(have.VtepDevIndex == 0 || have.VtepDevIndex == want.VtepDevIndex) &&
		!have.Learning && have.Group == nil && !have.FlowBased && !have.GBP
}

// syncVXLAN programs, per peer, the permanent neighbour entry (PEER_PODCIDR.0
// → VTEP MAC), the FDB entry (VTEP MAC → PEER_NODEIP) and the onlink route,
// and removes every other entry on the device and every other skiff route.
// The device is ensured first, so a deleted device is repaired here.
func (r *Routes) syncVXLAN(h *netlink.Handle, peers []Peer) error {
	link, err := r.ensureVXLAN()
	if err != nil {
		return err
	}
	idx := link.Attrs().Index
	var errs []error

	// Neighbours: PEER_PODCIDR.0 → VTEP MAC.
	wantNeigh := map[netip.Addr]net.HardwareAddr{}
	// FDB: VTEP MAC → PEER_NODEIP.
	wantFDB := map[string]netip.Addr{}
	for _, p := range peers {
		wantNeigh[p.PodCIDR.Addr()] = p.VTEPMAC
		wantFDB[p.VTEPMAC.String()] = p.NodeIP
	}

	neighs, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(idx, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("network: list neighbours on %s: %w", r.cfg.VXLANDevice, err)
	}
	neighOK := map[netip.Addr]bool{}
	for _, n := range neighs {
		ip, _ := netip.AddrFromSlice(n.IP)
		ip = ip.Unmap()
		if mac, ok := wantNeigh[ip]; ok && bytes.Equal(mac, n.HardwareAddr) && n.State&netlink.NUD_PERMANENT != 0 {
			neighOK[ip] = true
			continue
		}
		if _, ok := wantNeigh[ip]; ok {
			continue // replaced below
		}
		if err := h.NeighDel(&n); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: delete neighbour %v on %s: %w", n.IP, r.cfg.VXLANDevice, err))
			continue
		}
		r.log.Info("removed neighbour", "ip", n.IP, "mac", n.HardwareAddr.String())
	}

	fdb, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(idx, unix.AF_BRIDGE) })
	if err != nil {
		return fmt.Errorf("network: list FDB of %s: %w", r.cfg.VXLANDevice, err)
	}
	fdbOK := map[string]bool{}
	for _, n := range fdb {
		if n.LinkIndex != idx {
			continue
		}
		mac := n.HardwareAddr.String()
		dst, _ := netip.AddrFromSlice(n.IP)
		if want, ok := wantFDB[mac]; ok && want == dst.Unmap() && n.State&netlink.NUD_PERMANENT != 0 && !fdbOK[mac] {
			fdbOK[mac] = true
			continue
		}
		n.Family = unix.AF_BRIDGE
		n.Flags |= netlink.NTF_SELF
		if err := h.NeighDel(&n); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: delete FDB entry %s dst %v on %s: %w", mac, n.IP, r.cfg.VXLANDevice, err))
			continue
		}
		r.log.Info("removed FDB entry", "mac", mac, "dst", n.IP)
	}

	var want []netlink.Route
	for _, p := range peers {
		gw := p.PodCIDR.Addr()
		if !neighOK[gw] {
			n := &netlink.Neigh{
				LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, Type: unix.RTN_UNICAST,
				IP: gw.AsSlice(), HardwareAddr: p.VTEPMAC,
			}
			if err := h.NeighSet(n); err != nil {
				errs = append(errs, fmt.Errorf("network: neighbour %v → %s for peer %s: %w", gw, p.VTEPMAC, p.Name, err))
				continue
			}
		}
		if !fdbOK[p.VTEPMAC.String()] {
			n := &netlink.Neigh{
				LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF,
				IP: p.NodeIP.AsSlice(), HardwareAddr: p.VTEPMAC,
			}
			if err := h.NeighSet(n); err != nil {
				errs = append(errs, fmt.Errorf("network: FDB entry %s → %v for peer %s: %w", p.VTEPMAC, p.NodeIP, p.Name, err))
				continue
			}
		}
		if !neighOK[gw] || !fdbOK[p.VTEPMAC.String()] {
			r.log.Info("programmed VXLAN peer", "peer", p.Name, "podCIDR", p.PodCIDR, "nodeIP", p.NodeIP, "vtepMAC", p.VTEPMAC.String())
		}
		want = append(want, netlink.Route{
			LinkIndex: idx,
			Dst:       prefixNet(p.PodCIDR),
			Gw:        gw.AsSlice(),
			Flags:     int(netlink.FLAG_ONLINK),
			Protocol:  RouteProtocol,
			Table:     unix.RT_TABLE_MAIN,
		})
	}
	errs = append(errs, r.syncRoutes(h, want))
	return errors.Join(errs...)
}

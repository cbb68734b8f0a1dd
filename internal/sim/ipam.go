package sim

import (
	"fmt"
	"net/netip"
)

// ipam hands out pod IPs from one node's podCIDR: .1 is the gateway, the
// network and broadcast addresses are skipped, and an address is reused
// only after its pod is gone.
type ipam struct {
	prefix netip.Prefix
	next   netip.Addr
	used   map[netip.Addr]string // address → pod key
	byKey  map[string]netip.Addr
}

func newIPAM(prefix netip.Prefix) *ipam {
	prefix = prefix.Masked()
	return &ipam{prefix: prefix, next: prefix.Addr().Next().Next(), used: map[netip.Addr]string{}, byKey: map[string]netip.Addr{}}
}

// allocate returns key's address, giving it the next free one if it has none.
func (a *ipam) allocate(key string) (netip.Addr, error) {
	if addr, ok := a.byKey[key]; ok {
		return addr, nil
	}
	start := a.next
	for {
		addr := a.next
		a.next = a.next.Next()
		if !a.prefix.Contains(a.next) || a.isBroadcast(a.next) {
			a.next = a.prefix.Addr().Next().Next()
		}
		if _, taken := a.used[addr]; !taken && a.prefix.Contains(addr) && !a.isBroadcast(addr) {
			a.used[addr], a.byKey[key] = key, addr
			return addr, nil
		}
		if a.next == start {
			return netip.Addr{}, fmt.Errorf("no free pod IP in %s", a.prefix)
		}
	}
}

// reserve marks addr as key's (a pod that already has it, after a restart).
func (a *ipam) reserve(addr netip.Addr, key string) {
	if a.prefix.Contains(addr) {
		a.used[addr], a.byKey[key] = key, addr
	}
}

// release frees key's address.
func (a *ipam) release(key string) {
	if addr, ok := a.byKey[key]; ok {
		delete(a.used, addr)
		delete(a.byKey, key)
	}
}

func (a *ipam) isBroadcast(addr netip.Addr) bool {
	if !addr.Is4() {
		return false
	}
	b := addr.As4()
	host := 32 - a.prefix.Bits()
	if host <= 1 {
		return false
	}
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	mask := uint32(1)<<host - 1
	return v&mask == mask
}

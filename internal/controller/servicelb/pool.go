package servicelb

import (
	"errors"
	"fmt"
	"net/netip"
)

// errPoolExhausted is returned when every address of the pool is taken.
var errPoolExhausted = errors.New("no free address left in the pool")

// pool hands out the addresses of one IPv4 prefix, lowest free first, one
// per service key. It is not safe for concurrent use; the controller
// holds its lock around it.
type pool struct {
	prefix      netip.Prefix
	first, last netip.Addr
	byIP        map[netip.Addr]string // address → service key
	byKey       map[string]netip.Addr
}

// newPool covers prefix; for prefixes of /30 and larger the network and
// broadcast addresses are left out, as they are on a real subnet (some
// clients and routers refuse them).
func newPool(prefix netip.Prefix) (*pool, error) {
	if !prefix.IsValid() || !prefix.Addr().Is4() {
		return nil, fmt.Errorf("pool %s: need an IPv4 CIDR", prefix)
	}
	prefix = prefix.Masked()
	first, last := prefix.Addr(), lastAddr(prefix)
	if prefix.Bits() <= 30 {
		first, last = first.Next(), last.Prev()
	}
	return &pool{prefix: prefix, first: first, last: last,
		byIP: map[netip.Addr]string{}, byKey: map[string]netip.Addr{}}, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// contains reports whether ip is one the pool hands out.
func (p *pool) contains(ip netip.Addr) bool {
	return ip.Is4() && p.first.Compare(ip) <= 0 && ip.Compare(p.last) <= 0
}

// held is the address key holds, if any.
func (p *pool) held(key string) (netip.Addr, bool) {
	ip, ok := p.byKey[key]
	return ip, ok
}

// owner is the key holding ip, or "".
func (p *pool) owner(ip netip.Addr) string { return p.byIP[ip] }

// take gives ip to key; it must be in the pool and free (or key's already).
func (p *pool) take(key string, ip netip.Addr) error {
	if !p.contains(ip) {
		return fmt.Errorf("%s is not in the pool %s", ip, p.prefix)
	}
	if o, ok := p.byIP[ip]; ok && o != key {
		return fmt.Errorf("%s is already assigned to service %s", ip, o)
	}
	p.release(key)
	p.byIP[ip] = key
	p.byKey[key] = ip
	return nil
}

// next gives key the lowest free address.
func (p *pool) next(key string) (netip.Addr, error) {
	for ip := p.first; ip.IsValid() && ip.Compare(p.last) <= 0; ip = ip.Next() {
		if _, used := p.byIP[ip]; !used {
			return ip, p.take(key, ip)
		}
	}
	return netip.Addr{}, errPoolExhausted
}

// release frees key's address and reports whether it held one.
func (p *pool) release(key string) bool {
	ip, ok := p.byKey[key]
	if ok {
		delete(p.byKey, key)
		delete(p.byIP, ip)
	}
	return ok
}

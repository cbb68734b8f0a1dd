package nodeipam

import (
	"errors"
	"fmt"
	"net/netip"
)

// maxSubnetBits caps how many node subnets a cluster CIDR may be cut into
// (2^16), as Kubernetes' cidrset does: the bitmap stays small.
const maxSubnetBits = 16

// errCIDRRangeNoCIDRsRemaining is cidrset's "CIDR allocation failed; there
// are no remaining CIDRs left to allocate in the accepted range".
var errCIDRRangeNoCIDRsRemaining = errors.New("CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range")

// cidrSet hands out the subnets of size subBits of a cluster CIDR, round
// robin like Kubernetes' cidrset (a released subnet is not reused at once).
// Not safe for concurrent use; the allocator holds a lock.
type cidrSet struct {
	cluster netip.Prefix
	subBits int
	max     int
	used    []uint64
	count   int
	next    int
}

func newCIDRSet(cluster netip.Prefix, subBits int) (*cidrSet, error) {
	cluster = cluster.Masked()
	if subBits < cluster.Bits() || subBits > cluster.Addr().BitLen() {
		return nil, fmt.Errorf("node CIDR mask size %d must be between the cluster CIDR's %d and %d", subBits, cluster.Bits(), cluster.Addr().BitLen())
	}
	if subBits-cluster.Bits() > maxSubnetBits {
		return nil, fmt.Errorf("node CIDR mask size %d is too big for cluster CIDR %s: at most %d bits more than the cluster's", subBits, cluster, maxSubnetBits)
	}
	max := 1 << (subBits - cluster.Bits())
	return &cidrSet{cluster: cluster, subBits: subBits, max: max, used: make([]uint64, (max+63)/64)}, nil
}

func (s *cidrSet) isUsed(i int) bool { return s.used[i/64]&(1<<(i%64)) != 0 }

func (s *cidrSet) set(i int, on bool) {
	was := s.isUsed(i)
	switch {
	case on && !was:
		s.used[i/64] |= 1 << (i % 64)
		s.count++
	case !on && was:
		s.used[i/64] &^= 1 << (i % 64)
		s.count--
	}
}

// allocateNext returns the next free subnet.
func (s *cidrSet) allocateNext() (netip.Prefix, error) {
	if s.count >= s.max {
		return netip.Prefix{}, errCIDRRangeNoCIDRsRemaining
	}
	for n := 0; n < s.max; n++ {
		i := (s.next + n) % s.max
		if !s.isUsed(i) {
			s.set(i, true)
			s.next = (i + 1) % s.max
			return s.subnet(i), nil
		}
	}
	return netip.Prefix{}, errCIDRRangeNoCIDRsRemaining
}

// indexRange returns the subnets p covers (or the one it lies in).
func (s *cidrSet) indexRange(p netip.Prefix) (first, last int, err error) {
	p = p.Masked()
	if p.Addr().Is4() != s.cluster.Addr().Is4() || !s.cluster.Overlaps(p) {
		return 0, 0, fmt.Errorf("cidr %s is out the range of cluster cidr %s", p, s.cluster)
	}
	if p.Bits() < s.cluster.Bits() {
		// p contains the whole cluster range.
		return 0, s.max - 1, nil
	}
	first = int(addrBits(p.Addr(), s.cluster.Bits(), s.subBits))
	if p.Bits() >= s.subBits {
		return first, first, nil
	}
	return first, first + (1 << (s.subBits - p.Bits())) - 1, nil
}

// occupy marks every subnet p overlaps as used.
func (s *cidrSet) occupy(p netip.Prefix) error {
	first, last, err := s.indexRange(p)
	if err != nil {
		return err
	}
	for i := first; i <= last; i++ {
		s.set(i, true)
	}
	return nil
}

// release marks every subnet p overlaps as free.
func (s *cidrSet) release(p netip.Prefix) error {
	first, last, err := s.indexRange(p)
	if err != nil {
		return err
	}
	for i := first; i <= last; i++ {
		s.set(i, false)
	}
	return nil
}

// subnet returns the i-th subnet of the cluster CIDR.
func (s *cidrSet) subnet(i int) netip.Prefix {
	b := s.cluster.Addr().AsSlice()
	// Write i into bits [cluster.Bits(), subBits) of the address.
	for bit := s.subBits - 1; bit >= s.cluster.Bits(); bit-- {
		if i&1 == 1 {
			b[bit/8] |= 1 << (7 - bit%8)
		}
		i >>= 1
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, s.subBits)
}

// addrBits returns bits [from, to) of a's address as a number.
func addrBits(a netip.Addr, from, to int) uint64 {
	b := a.AsSlice()
	var v uint64
	for bit := from; bit < to; bit++ {
		v = v<<1 | uint64(b[bit/8]>>(7-bit%8)&1)
	}
	return v
}

package registry

// ClusterIP and NodePort allocation for Services, modelled on Kubernetes'
// pkg/registry/core/service/{ipallocator,portallocator}: in-memory bitmaps,
// random choice preferring the upper part of each range (the lower band is
// left for static requests), rebuilt from the stored Services at start.

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand"
	"net/netip"
	"sync"
	"time"
)

// Allocation errors, worded as Kubernetes' allocators word them.
var (
	errSvcRangeFull     = errors.New("range is full")
	errSvcIPAllocated   = errors.New("provided IP is already allocated")
	errSvcPortAllocated = errors.New("provided port is already allocated")
)

// kubernetesServiceKey is the only Service that may hold the first IP of the
// service CIDR.
const kubernetesServiceKey = "default/kubernetes"

// svcBitmap is a set of numbered slots with Kubernetes' "random scan with
// offset" strategy: dynamic allocation picks a random free slot in
// [offset, size), then falls back to [0, offset).
type svcBitmap struct {
	used   []bool
	count  int
	offset int
	// reserved is a slot never handed out dynamically (-1: none).
	reserved int
}

func newSvcBitmap(size, offset, reserved int) svcBitmap {
	if offset > size {
		offset = 0
	}
	return svcBitmap{used: make([]bool, size), offset: offset, reserved: reserved}
}

func (b *svcBitmap) size() int { return len(b.used) }

func (b *svcBitmap) set(i int) bool {
	if b.used[i] {
		return false
	}
	b.used[i] = true
	b.count++
	return true
}

func (b *svcBitmap) clear(i int) {
	if i >= 0 && i < len(b.used) && b.used[i] {
		b.used[i] = false
		b.count--
	}
}

// pick returns a free slot that is also not in skip, without taking it.
func (b *svcBitmap) pick(rnd *rand.Rand, skip map[int]bool) (int, bool) {
	max := len(b.used)
	if b.count >= max {
		return 0, false
	}
	free := func(i int) bool { return !b.used[i] && !skip[i] && i != b.reserved }
	if upper := max - b.offset; upper > 0 {
		start := rnd.Intn(upper)
		for i := 0; i < upper; i++ {
			if at := b.offset + (start+i)%upper; free(at) {
				return at, true
			}
		}
	}
	if b.offset > 0 {
		start := rnd.Intn(b.offset)
		for i := 0; i < b.offset; i++ {
			if at := (start + i) % b.offset; free(at) {
				return at, true
			}
		}
	}
	return 0, false
}

// svcRangeOffset is Kubernetes' calculateRangeOffset: min(max(lo, size/step), hi),
// or 0 for small ranges.
func svcRangeOffset(size, lo, hi, step int) int {
	if size <= lo {
		return 0
	}
	o := size / step
	if o < lo {
		return lo
	}
	if o > hi {
		return hi
	}
	return o
}

// svcAllocator holds the ClusterIP and NodePort bitmaps of one server.
// It is safe for concurrent use.
type svcAllocator struct {
	mu  sync.Mutex
	rnd *rand.Rand

	cidr   netip.Prefix
	family string   // "IPv4" or "IPv6"
	base   *big.Int // first usable address (network + 1)
	ips    svcBitmap

	portFirst, portLast int
	ports               svcBitmap
}

func newSvcAllocator(cidr netip.Prefix, portFirst, portLast int) (*svcAllocator, error) {
	cidr = cidr.Masked()
	if !cidr.IsValid() {
		return nil, fmt.Errorf("invalid service CIDR %v", cidr)
	}
	if portFirst <= 0 || portLast < portFirst || portLast > 65535 {
		return nil, fmt.Errorf("invalid node port range %d-%d", portFirst, portLast)
	}
	bits := cidr.Addr().BitLen() - cidr.Bits()
	size := new(big.Int).Lsh(big.NewInt(1), uint(bits))
	family := "IPv4"
	max := 0
	if cidr.Addr().Is4() {
		// Neither the network nor the broadcast address is usable.
		max = int(size.Int64()) - 2
	} else {
		family = "IPv6"
		if size.Cmp(big.NewInt(65536)) > 0 {
			max = 65536 - 1 // the bitmap is capped as in Kubernetes
		} else {
			max = int(size.Int64()) - 1
		}
	}
	if max < 1 {
		return nil, fmt.Errorf("service CIDR %v is too small", cidr)
	}
	base := new(big.Int).SetBytes(cidr.Addr().AsSlice())
	base.Add(base, big.NewInt(1))
	nports := portLast - portFirst + 1
	// Offsets as Kubernetes computes them: the CIDR size for IPs, the range
	// size for ports.
	ipOffset := 0
	if size.IsInt64() {
		ipOffset = svcRangeOffset(int(min(size.Int64(), 1<<40)), 16, 256, 16)
	} else {
		ipOffset = 256
	}
	return &svcAllocator{
		rnd:       rand.New(rand.NewSource(time.Now().UnixNano())),
		cidr:      cidr,
		family:    family,
		base:      base,
		ips:       newSvcBitmap(max, ipOffset, 0),
		portFirst: portFirst,
		portLast:  portLast,
		ports:     newSvcBitmap(nports, svcRangeOffset(nports, 16, 128, 32), -1),
	}, nil
}

// ipIndex returns the bitmap slot of ip, if ip is usable in the range.
func (a *svcAllocator) ipIndex(ip netip.Addr) (int, bool) {
	if !ip.IsValid() || !a.cidr.Contains(ip) {
		return 0, false
	}
	off := new(big.Int).SetBytes(ip.AsSlice())
	off.Sub(off, a.base)
	if off.Sign() < 0 || !off.IsInt64() || off.Int64() >= int64(a.ips.size()) {
		return 0, false
	}
	return int(off.Int64()), true
}

func (a *svcAllocator) ipAt(i int) netip.Addr {
	v := new(big.Int).Add(a.base, big.NewInt(int64(i)))
	b := v.Bytes()
	n := a.cidr.Addr().BitLen() / 8
	buf := make([]byte, n)
	copy(buf[n-len(b):], b)
	ip, _ := netip.AddrFromSlice(buf)
	return ip
}

// svcIPNotInRange is ipallocator.ErrNotInRange.
func (a *svcAllocator) errIPNotInRange(ip string) error {
	return fmt.Errorf("the provided IP (%s) is not in the valid range. The range of valid IPs is %s", ip, a.cidr)
}

func (a *svcAllocator) errPortNotInRange() error {
	return fmt.Errorf("provided port is not in the valid range. The range of valid ports is %d-%d", a.portFirst, a.portLast)
}

// FirstIP is the address reserved for the default/kubernetes Service.
func (a *svcAllocator) firstIP() netip.Addr { return a.ipAt(0) }

// svcAllocOp is one request's allocations: real ones are taken at once and
// given back by undo; releases are deferred to commit. In a dry run nothing
// touches the bitmaps: requests are checked and free values are chosen, but
// only remembered in the operation.
type svcAllocOp struct {
	a      *svcAllocator
	dryRun bool
	owner  string // namespace/name of the Service

	ips, ports               []int // taken by this operation
	releaseIPs, releasePorts []int // to give back on commit
	done                     bool
}

func (a *svcAllocator) begin(owner string, dryRun bool) *svcAllocOp {
	return &svcAllocOp{a: a, owner: owner, dryRun: dryRun}
}

func svcContains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func svcSkipSet(list []int) map[int]bool {
	m := make(map[int]bool, len(list))
	for _, v := range list {
		m[v] = true
	}
	return m
}

// allocateIP takes the requested ip ("" for any free one) and returns it.
func (op *svcAllocOp) allocateIP(requested string) (string, error) {
	a := op.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if requested == "" {
		var idx int
		var ok bool
		if op.owner == kubernetesServiceKey && !a.ips.used[0] && !svcContains(op.ips, 0) {
			idx, ok = 0, true
		} else {
			idx, ok = a.ips.pick(a.rnd, svcSkipSet(op.ips))
		}
		if !ok {
			return "", errSvcRangeFull
		}
		if !op.dryRun {
			a.ips.set(idx)
		}
		op.ips = append(op.ips, idx)
		return a.ipAt(idx).String(), nil
	}
	ip, err := netip.ParseAddr(requested)
	if err != nil {
		return "", a.errIPNotInRange(requested)
	}
	idx, ok := a.ipIndex(ip.Unmap())
	if !ok {
		return "", a.errIPNotInRange(requested)
	}
	if idx == 0 && op.owner != kubernetesServiceKey {
		return "", errSvcIPAllocated
	}
	if a.ips.used[idx] || svcContains(op.ips, idx) {
		return "", errSvcIPAllocated
	}
	if !op.dryRun {
		a.ips.set(idx)
	}
	op.ips = append(op.ips, idx)
	return requested, nil
}

// allocatePort takes port (0 for any free one) and returns it.
func (op *svcAllocOp) allocatePort(port int) (int, error) {
	a := op.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if port == 0 {
		idx, ok := a.ports.pick(a.rnd, svcSkipSet(op.ports))
		if !ok {
			return 0, errSvcRangeFull
		}
		if !op.dryRun {
			a.ports.set(idx)
		}
		op.ports = append(op.ports, idx)
		return a.portFirst + idx, nil
	}
	if port < a.portFirst || port > a.portLast {
		return 0, a.errPortNotInRange()
	}
	idx := port - a.portFirst
	if a.ports.used[idx] || svcContains(op.ports, idx) {
		return 0, errSvcPortAllocated
	}
	if !op.dryRun {
		a.ports.set(idx)
	}
	op.ports = append(op.ports, idx)
	return port, nil
}

// releaseIPLater gives ip back when the operation commits.
func (op *svcAllocOp) releaseIPLater(ip string) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return
	}
	if idx, ok := op.a.ipIndex(addr.Unmap()); ok {
		op.releaseIPs = append(op.releaseIPs, idx)
	}
}

// releasePortLater gives port back when the operation commits.
func (op *svcAllocOp) releasePortLater(port int) {
	if port >= op.a.portFirst && port <= op.a.portLast {
		op.releasePorts = append(op.releasePorts, port-op.a.portFirst)
	}
}

// commit applies the deferred releases.
func (op *svcAllocOp) commit() {
	a := op.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if op.done {
		return
	}
	op.done = true
	if op.dryRun {
		return
	}
	for _, i := range op.releaseIPs {
		if !svcContains(op.ips, i) {
			a.ips.clear(i)
		}
	}
	for _, i := range op.releasePorts {
		if !svcContains(op.ports, i) {
			a.ports.clear(i)
		}
	}
}

// undo gives back what the operation took; deferred releases are dropped.
func (op *svcAllocOp) undo() {
	a := op.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if op.done {
		return
	}
	op.done = true
	if op.dryRun {
		return
	}
	for _, i := range op.ips {
		a.ips.clear(i)
	}
	for _, i := range op.ports {
		a.ports.clear(i)
	}
}

// releaseNow gives back an IP and ports at once (after a delete).
func (a *svcAllocator) releaseNow(ips []string, ports []int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range ips {
		if addr, err := netip.ParseAddr(s); err == nil {
			if idx, ok := a.ipIndex(addr.Unmap()); ok {
				a.ips.clear(idx)
			}
		}
	}
	for _, p := range ports {
		if p >= a.portFirst && p <= a.portLast {
			a.ports.clear(p - a.portFirst)
		}
	}
}

// reset empties both bitmaps.
func (a *svcAllocator) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ips = newSvcBitmap(a.ips.size(), a.ips.offset, a.ips.reserved)
	a.ports = newSvcBitmap(a.ports.size(), a.ports.offset, a.ports.reserved)
}

// markIP records ip as used (at start); false if out of range or taken.
func (a *svcAllocator) markIP(ip string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	idx, ok := a.ipIndex(addr.Unmap())
	return ok && a.ips.set(idx)
}

// markPort records port as used (at start); false if out of range or taken.
func (a *svcAllocator) markPort(port int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if port < a.portFirst || port > a.portLast {
		return false
	}
	return a.ports.set(port - a.portFirst)
}

// usedCounts reports how many IPs and ports are taken (tests, metrics).
func (a *svcAllocator) usedCounts() (ips, ports int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ips.count, a.ports.count
}

package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Sentinel errors of the package.
var (
	// ErrExhausted: every address of the pod CIDR is allocated.
	ErrExhausted = errors.New("pod CIDR exhausted")
	// ErrInvalid: a bad configuration or argument.
	ErrInvalid = errors.New("invalid")
)

const (
	tmpPrefix = ".tmp-"
	lockName  = ".lock"
)

// IPAM hands out pod addresses from one IPv4 pod CIDR, host-local style.
//
// State layout (StateDir):
//
//	<StateDir>/
//	  .lock          flock(2) held during every operation (guards against a second process)
//	  10.42.3.2      one file per allocated address; content: the owner's ID (pod UID)
//	  10.42.3.7
//	  .tmp-*         in-flight writes; removed on open
//
// An address file is created atomically: its content is written to a temporary
// file, fsynced, then hard-linked to the address name (link(2) fails if the name
// exists, so two allocators can never take one address), and the directory is
// fsynced. The network address, the gateway (.1) and the broadcast address are
// never handed out. Files for addresses outside the current CIDR are ignored.
type IPAM struct {
	dir    string
	prefix netip.Prefix
	gw     netip.Addr
	first  netip.Addr // first allocatable
	last   netip.Addr // last allocatable

	mu   sync.Mutex
	next netip.Addr // where the next scan starts (round robin, so a freed IP is not reused at once)
}

// NewIPAM opens (creating if needed) the state directory for prefix.
func NewIPAM(dir string, prefix netip.Prefix) (*IPAM, error) {
	if dir == "" {
		return nil, fmt.Errorf("ipam: empty state dir: %w", ErrInvalid)
	}
	if !prefix.IsValid() || !prefix.Addr().Is4() || prefix.Bits() > 30 {
		return nil, fmt.Errorf("ipam: pod CIDR %v: need an IPv4 prefix of /30 or larger: %w", prefix, ErrInvalid)
	}
	prefix = prefix.Masked()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	a := &IPAM{dir: dir, prefix: prefix}
	a.gw = prefix.Addr().Next()
	a.first = a.gw.Next()
	a.last = lastAddr(prefix).Prev()
	a.next = a.first
	// Leftovers of writes interrupted by a crash.
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return a, nil
}

// Gateway is the bridge address (.1 of the CIDR).
func (a *IPAM) Gateway() netip.Addr { return a.gw }

// Prefix is the (masked) pod CIDR.
func (a *IPAM) Prefix() netip.Prefix { return a.prefix }

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (a *IPAM) inRange(ip netip.Addr) bool {
	return ip.Is4() && a.first.Compare(ip) <= 0 && ip.Compare(a.last) <= 0
}

// lock takes the in-process mutex and the cross-process flock.
func (a *IPAM) lock() (unlock func(), err error) {
	a.mu.Lock()
	f, err := os.OpenFile(filepath.Join(a.dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("ipam: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		a.mu.Unlock()
		return nil, fmt.Errorf("ipam: flock: %w", err)
	}
	return func() {
		f.Close() // releases the flock
		a.mu.Unlock()
	}, nil
}

// list reads all allocations in range. Caller holds the lock.
func (a *IPAM) list() (map[netip.Addr]string, error) {
	ents, err := os.ReadDir(a.dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	out := make(map[netip.Addr]string, len(ents))
	for _, e := range ents {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || !a.inRange(ip) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.dir, e.Name()))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("ipam: %w", err)
		}
		out[ip] = strings.TrimSpace(string(b))
	}
	return out, nil
}

// Allocated returns every allocation (address → owner ID).
func (a *IPAM) Allocated() (map[netip.Addr]string, error) {
	unlock, err := a.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return a.list()
}

// Lookup returns the address allocated to id, if any.
func (a *IPAM) Lookup(id string) (netip.Addr, bool, error) {
	unlock, err := a.lock()
	if err != nil {
		return netip.Addr{}, false, err
	}
	defer unlock()
	m, err := a.list()
	if err != nil {
		return netip.Addr{}, false, err
	}
	ip, ok := find(m, id)
	return ip, ok, nil
}

func find(m map[netip.Addr]string, id string) (netip.Addr, bool) {
	var best netip.Addr
	for ip, owner := range m {
		if owner == id && (!best.IsValid() || ip.Less(best)) {
			best = ip
		}
	}
	return best, best.IsValid()
}

// Allocate returns the address of id, allocating one if id has none yet
// (so calling it twice for one ID returns the same address).
func (a *IPAM) Allocate(id string) (netip.Addr, error) {
	if id == "" || strings.ContainsAny(id, "\n") {
		return netip.Addr{}, fmt.Errorf("ipam: owner ID %q: %w", id, ErrInvalid)
	}
	unlock, err := a.lock()
	if err != nil {
		return netip.Addr{}, err
	}
	defer unlock()
	m, err := a.list()
	if err != nil {
		return netip.Addr{}, err
	}
	if ip, ok := find(m, id); ok {
		return ip, nil
	}
	ip := a.next
	for {
		if _, used := m[ip]; !used {
			err := a.reserve(ip, id)
			if err == nil {
				n := ip.Next()
				if !a.inRange(n) {
					n = a.first
				}
				a.next = n
				return ip, nil
			}
			if !errors.Is(err, os.ErrExist) {
				return netip.Addr{}, err
			}
		}
		ip = ip.Next()
		if !a.inRange(ip) {
			ip = a.first
		}
		if ip == a.next {
			return netip.Addr{}, fmt.Errorf("ipam: %v: %w", a.prefix, ErrExhausted)
		}
	}
}

// reserve creates the address file atomically; os.ErrExist if taken.
func (a *IPAM) reserve(ip netip.Addr, id string) error {
	tmp, err := os.CreateTemp(a.dir, tmpPrefix)
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(id + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("ipam: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ipam: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	if err := os.Link(tmp.Name(), filepath.Join(a.dir, ip.String())); err != nil {
		if errors.Is(err, os.ErrExist) {
			return os.ErrExist
		}
		return fmt.Errorf("ipam: %w", err)
	}
	return a.syncDir()
}

func (a *IPAM) syncDir() error {
	d, err := os.Open(a.dir)
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("ipam: fsync dir: %w", err)
	}
	return nil
}

// Release frees every address owned by id. Releasing an ID that owns nothing is not an error.
func (a *IPAM) Release(id string) error {
	unlock, err := a.lock()
	if err != nil {
		return err
	}
	defer unlock()
	m, err := a.list()
	if err != nil {
		return err
	}
	var ips []netip.Addr
	for ip, owner := range m {
		if owner == id {
			ips = append(ips, ip)
		}
	}
	return a.remove(ips)
}

func (a *IPAM) remove(ips []netip.Addr) error {
	if len(ips) == 0 {
		return nil
	}
	for _, ip := range ips {
		if err := os.Remove(filepath.Join(a.dir, ip.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ipam: %w", err)
		}
	}
	return a.syncDir()
}

// Reconcile frees the addresses of owners for which live returns false, and
// returns the freed addresses.
func (a *IPAM) Reconcile(live func(id string) bool) ([]netip.Addr, error) {
	unlock, err := a.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	m, err := a.list()
	if err != nil {
		return nil, err
	}
	var freed []netip.Addr
	for ip, owner := range m {
		if !live(owner) {
			freed = append(freed, ip)
		}
	}
	slices.SortFunc(freed, netip.Addr.Compare)
	if err := a.remove(freed); err != nil {
		return nil, err
	}
	return freed, nil
}

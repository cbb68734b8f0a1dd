package network

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

// BenchmarkSyncUnchanged: Sync with 100 peers already programmed, what the
// agent does on every node update (no writes expected).
func BenchmarkSyncUnchanged(b *testing.B) {
	if testing.Short() {
		b.Skip("short")
	}
	requireRoot(b)
	for _, backend := range []string{BackendHostGW, BackendVXLAN} {
		b.Run(backend, func(b *testing.B) {
			ns := newNetNS(b)
			ns2, err := netlinkHandleAt(ns)
			if err != nil {
				b.Fatal(err)
			}
			defer ns2.Close()
			// eth0 holds the node IP; its peer end stays in the namespace.
			if err := ns2.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0p"}); err != nil {
				b.Fatal(err)
			}
			for _, name := range []string{"eth0", "eth0p"} {
				l, err := ns2.LinkByName(name)
				if err != nil {
					b.Fatal(err)
				}
				if name == "eth0" {
					if err := ns2.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(netip.MustParsePrefix("198.51.100.10/24"))}); err != nil {
						b.Fatal(err)
					}
				}
				if err := ns2.LinkSetUp(l); err != nil {
					b.Fatal(err)
				}
			}
			r, err := NewRoutes(RoutesConfig{Backend: backend, NodeIP: netip.MustParseAddr("198.51.100.10"), PodCIDR: netip.MustParsePrefix("10.42.0.0/24"), HostNetNS: ns})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			if err := r.Ensure(); err != nil {
				b.Fatal(err)
			}
			var peers []Peer
			for i := 1; i <= 100; i++ {
				ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(20 + i)})
				peers = append(peers, Peer{
					Name: fmt.Sprintf("node%d", i), NodeIP: ip, VTEPMAC: vtepMAC(ip),
					PodCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, byte(i), 0}), 24),
				})
			}
			if err := r.Sync(peers); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := r.Sync(peers); err != nil {
					b.Fatal(err)
				}
			}
			if rs, err := listOurRoutes(ns2, 0); err != nil || len(rs) != 100 {
				b.Fatalf("%d routes %v", len(rs), err)
			}
		})
	}
}

func netlinkHandleAt(path string) (*netlink.Handle, error) { return openHandle(path) }

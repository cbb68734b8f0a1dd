package network

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkSetUpTearDown: one pod's veth pair + address + routes, and back.
func BenchmarkSetUpTearDown(b *testing.B) {
	if testing.Short() {
		b.Skip("short")
	}
	requireRoot(b)
	ctx := context.Background()
	hostNS := newNetNS(b)
	podNS := newNetNS(b)
	m, err := New(Config{BridgeName: "skb0", PodCIDR: netip.MustParsePrefix("10.244.6.0/24"), StateDir: b.TempDir(), HostNetNS: hostNS})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	if err := m.EnsureBridge(ctx); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		p := testPod("p", fmt.Sprintf("uid-%d", i))
		if _, err := m.SetUp(ctx, p, podNS); err != nil {
			b.Fatal(err)
		}
		if err := m.TearDown(ctx, p, podNS); err != nil {
			b.Fatal(err)
		}
	}
}

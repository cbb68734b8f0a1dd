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

// BenchmarkIPAMAllocateRelease: the file-backed allocator alone (fsyncs included).
func BenchmarkIPAMAllocateRelease(b *testing.B) {
	a, err := NewIPAM(b.TempDir(), netip.MustParsePrefix("10.244.8.0/24"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("uid-%d", i)
		if _, err := a.Allocate(id); err != nil {
			b.Fatal(err)
		}
		if err := a.Release(id); err != nil {
			b.Fatal(err)
		}
	}
}

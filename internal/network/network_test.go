package network

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func testPod(name, uid string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(uid)}}
}

func handleAt(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// listenIn opens a TCP listener inside the namespace at path that echoes one
// line per connection.
func listenIn(t *testing.T, path, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetNS(path, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, path, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, "hello from "+ln.Addr().String()+"\n")
			}()
		}
	}()
	return ln
}

// dialFrom connects from the namespace at path and reads the greeting.
func dialFrom(path, addr string) (string, error) {
	var conn net.Conn
	if err := inNetNS(path, func() (err error) {
		conn, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(conn)
	return string(b), err
}

func TestManagerPodToPod(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	hostNS := newNetNS(t)
	podA, podB := newNetNS(t), newNetNS(t)
	stateDir := t.TempDir()
	cidr := netip.MustParsePrefix("10.244.3.0/24")

	cfg := Config{BridgeName: "skt0", PodCIDR: cidr, StateDir: stateDir, MTU: 1400, HostNetNS: hostNS}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.EnsureBridge(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.EnsureBridge(ctx); err != nil {
		t.Fatalf("second EnsureBridge: %v", err)
	}
	host := handleAt(t, hostNS)
	br, err := host.LinkByName("skt0")
	if err != nil {
		t.Fatal(err)
	}
	if br.Attrs().MTU != 1400 || br.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("bridge mtu %d flags %v", br.Attrs().MTU, br.Attrs().Flags)
	}
	addrs, err := host.AddrList(br, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.244.3.1/24" {
		t.Fatalf("bridge addresses %v %v", addrs, err)
	}

	a, b := testPod("a", "uid-aaaa"), testPod("b", "uid-bbbb")
	ipsA, err := m.SetUp(ctx, a, podA)
	if err != nil {
		t.Fatal(err)
	}
	ipsB, err := m.SetUp(ctx, b, podB)
	if err != nil {
		t.Fatal(err)
	}
	if len(ipsA) != 1 || len(ipsB) != 1 || ipsA[0] == ipsB[0] || !cidr.Contains(netip.MustParseAddr(ipsA[0])) {
		t.Fatalf("pod IPs %v %v", ipsA, ipsB)
	}

	// Host side: on the bridge, hairpin, up, MTU; pod side: eth0 with the address, default route, lo up.
	vethA, err := host.LinkByName(VethName(a.UID))
	if err != nil {
		t.Fatal(err)
	}
	if vethA.Attrs().MasterIndex != br.Attrs().Index || vethA.Attrs().Flags&net.FlagUp == 0 || vethA.Attrs().MTU != 1400 {
		t.Fatalf("host veth %+v", vethA.Attrs())
	}
	if pi, err := host.LinkGetProtinfo(vethA); err != nil || !pi.Hairpin {
		t.Fatalf("hairpin not set: %+v %v", pi, err)
	}
	ph := handleAt(t, podA)
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().MTU != 1400 || eth0.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("eth0 %+v", eth0.Attrs())
	}
	pa, _ := ph.AddrList(eth0, netlink.FAMILY_V4)
	if len(pa) != 1 || pa[0].IPNet.String() != ipsA[0]+"/24" {
		t.Fatalf("eth0 addresses %v", pa)
	}
	routes, _ := ph.RouteList(nil, netlink.FAMILY_V4)
	var hasDefault bool
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "10.244.3.1" {
			hasDefault = true
		}
	}
	if !hasDefault {
		t.Fatalf("no default route via the gateway: %v", routes)
	}
	if lo, err := ph.LinkByName("lo"); err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("lo: %v", err)
	}

	// Pod A → pod B by pod IP, and pod A → gateway (a listener in the host namespace).
	listenIn(t, podB, ipsB[0]+":8080")
	if got, err := dialFrom(podA, ipsB[0]+":8080"); err != nil || got == "" {
		t.Fatalf("pod A → pod B: %q %v", got, err)
	}
	listenIn(t, hostNS, "10.244.3.1:8081")
	if got, err := dialFrom(podA, "10.244.3.1:8081"); err != nil || got == "" {
		t.Fatalf("pod A → gateway: %q %v", got, err)
	}
	// ICMP too: pod A pings the gateway and pod B.
	if err := pingFrom(podA, netip.MustParseAddr("10.244.3.1"), 3*time.Second); err != nil {
		t.Fatalf("ping gateway from pod A: %v", err)
	}
	if err := pingFrom(podA, netip.MustParseAddr(ipsB[0]), 3*time.Second); err != nil {
		t.Fatalf("ping pod B from pod A: %v", err)
	}
	// Pod B → pod A as well.
	listenIn(t, podA, ipsA[0]+":8082")
	if got, err := dialFrom(podB, ipsA[0]+":8082"); err != nil || got == "" {
		t.Fatalf("pod B → pod A: %q %v", got, err)
	}

	// SetUp is idempotent: same IP, same link.
	again, err := m.SetUp(ctx, a, podA)
	if err != nil || len(again) != 1 || again[0] != ipsA[0] {
		t.Fatalf("second SetUp: %v %v, want %v", again, err, ipsA)
	}
	if l, err := host.LinkByName(VethName(a.UID)); err != nil || l.Attrs().Index != vethA.Attrs().Index {
		t.Fatalf("veth recreated on idempotent SetUp: %v", err)
	}
	if got, err := dialFrom(podA, ipsB[0]+":8080"); err != nil || got == "" {
		t.Fatalf("pod A → pod B after second SetUp: %q %v", got, err)
	}

	// A new Manager on the same state keeps the allocations.
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if ips, err := m2.SetUp(ctx, b, podB); err != nil || ips[0] != ipsB[0] {
		t.Fatalf("SetUp after restart: %v %v, want %v", ips, err, ipsB)
	}
	ipsC, err := m2.SetUp(ctx, testPod("c", "uid-cccc"), newNetNS(t))
	if err != nil || ipsC[0] == ipsA[0] || ipsC[0] == ipsB[0] {
		t.Fatalf("new pod after restart got %v %v (a=%v b=%v)", ipsC, err, ipsA, ipsB)
	}

	// TearDown removes the veth and frees the IP; a second TearDown is fine.
	if err := m2.TearDown(ctx, a, podA); err != nil {
		t.Fatal(err)
	}
	var nf netlink.LinkNotFoundError
	if _, err := host.LinkByName(VethName(a.UID)); !errors.As(err, &nf) {
		t.Fatalf("host veth after TearDown: %v", err)
	}
	if _, err := ph.LinkByName("eth0"); !errors.As(err, &nf) {
		t.Fatalf("pod eth0 after TearDown: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, ipsA[0])); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("IP file after TearDown: %v", err)
	}
	if err := m2.TearDown(ctx, a, podA); err != nil {
		t.Fatalf("second TearDown: %v", err)
	}
	if err := m2.TearDown(ctx, a, "/nonexistent/netns"); err != nil {
		t.Fatalf("TearDown with the namespace gone: %v", err)
	}
	if err := pingFrom(podB, netip.MustParseAddr(ipsA[0]), 300*time.Millisecond); err == nil {
		t.Fatal("pod A still answers after TearDown")
	}

	// SetUp after TearDown works again (new pair, an address).
	if _, err := m2.SetUp(ctx, a, podA); err != nil {
		t.Fatalf("SetUp after TearDown: %v", err)
	}
}

func TestManagerReconcile(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	hostNS := newNetNS(t)
	podA, podB := newNetNS(t), newNetNS(t)
	m, err := New(Config{BridgeName: "skt1", PodCIDR: netip.MustParsePrefix("10.244.4.0/24"), StateDir: t.TempDir(), HostNetNS: hostNS})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, b := testPod("a", "uid-a"), testPod("b", "uid-b")
	ipsA, err := m.SetUp(ctx, a, podA)
	if err != nil {
		t.Fatal(err)
	}
	ipsB, err := m.SetUp(ctx, b, podB)
	if err != nil {
		t.Fatal(err)
	}
	// An address whose pod has no veth any more (e.g. lost across a restart).
	if _, err := m.IPAM().Allocate("uid-ghost"); err != nil {
		t.Fatal(err)
	}
	freed, err := m.Reconcile(ctx, []types.UID{"uid-b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(freed) != 2 {
		t.Fatalf("freed %v, want pod a's %v and the ghost's", freed, ipsA)
	}
	host := handleAt(t, hostNS)
	var nf netlink.LinkNotFoundError
	if _, err := host.LinkByName(VethName(a.UID)); !errors.As(err, &nf) {
		t.Fatalf("pod a veth after Reconcile: %v", err)
	}
	if _, err := host.LinkByName(VethName(b.UID)); err != nil {
		t.Fatalf("pod b veth removed: %v", err)
	}
	got, err := m.IPAM().Allocated()
	if err != nil || len(got) != 1 || got[netip.MustParseAddr(ipsB[0])] != "uid-b" {
		t.Fatalf("allocations after Reconcile: %v %v", got, err)
	}
}

func TestManagerRepairsHalfPair(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	hostNS := newNetNS(t)
	pod1 := newNetNS(t)
	m, err := New(Config{PodCIDR: netip.MustParsePrefix("10.244.5.0/24"), StateDir: t.TempDir(), HostNetNS: hostNS})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := testPod("p", "uid-p")
	ips, err := m.SetUp(ctx, p, pod1)
	if err != nil {
		t.Fatal(err)
	}
	// The pod's namespace is replaced (new sandbox): the old pair died with it.
	pod2 := newNetNS(t)
	again, err := m.SetUp(ctx, p, pod2)
	if err != nil || again[0] != ips[0] {
		t.Fatalf("SetUp in a new namespace: %v %v, want %v", again, err, ips)
	}
	ph := handleAt(t, pod2)
	if _, err := ph.LinkByName("eth0"); err != nil {
		t.Fatalf("eth0 in the new namespace: %v", err)
	}
	listenIn(t, hostNS, "10.244.5.1:8083")
	if got, err := dialFrom(pod2, "10.244.5.1:8083"); err != nil || got == "" {
		t.Fatalf("pod → gateway: %q %v", got, err)
	}

	// A namespace with a stray eth0 (not our veth) while our pair exists elsewhere.
	pod3 := newNetNS(t)
	h3 := handleAt(t, pod3)
	if err := h3.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "stray0"}); err != nil {
		t.Fatal(err)
	}
	if again, err := m.SetUp(ctx, p, pod3); err != nil || again[0] != ips[0] {
		t.Fatalf("SetUp over a stray eth0: %v %v", again, err)
	}
	if l, err := h3.LinkByName("eth0"); err != nil || l.Type() != "veth" {
		t.Fatalf("eth0 in pod3: %v %v", l, err)
	}
	if err := pingFrom(pod3, netip.MustParseAddr("10.244.5.1"), 3*time.Second); err != nil {
		t.Fatalf("ping gateway from pod3: %v", err)
	}
}

func TestNewInvalid(t *testing.T) {
	for _, cfg := range []Config{
		{PodCIDR: netip.MustParsePrefix("10.244.0.0/24")},
		{PodCIDR: netip.MustParsePrefix("10.244.0.0/24"), StateDir: "x", MTU: 100},
		{PodCIDR: netip.MustParsePrefix("10.244.0.0/24"), StateDir: "x", BridgeName: "a-very-long-bridge-name"},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", cfg, err)
		}
	}
}

func TestVethName(t *testing.T) {
	n := VethName("0c1d2e3f-aaaa-bbbb-cccc-1234567890ab")
	if len(n) > 15 || n != VethName("0c1d2e3f-aaaa-bbbb-cccc-1234567890ab") || n == VethName("other") {
		t.Fatalf("VethName %q", n)
	}
}

func TestManagerConcurrentPods(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	hostNS := newNetNS(t)
	m, err := New(Config{BridgeName: "skt2", PodCIDR: netip.MustParsePrefix("10.244.7.0/24"), StateDir: t.TempDir(), HostNetNS: hostNS})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const n = 12
	paths := make([]string, n)
	for i := range paths {
		paths[i] = newNetNS(t)
	}
	ips := make([]string, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			got, err := m.SetUp(ctx, testPod("p", "uid-"+string(rune('a'+i))), paths[i])
			if err == nil {
				ips[i] = got[0]
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, ip := range ips {
		if seen[ip] {
			t.Fatalf("duplicate address %s in %v", ip, ips)
		}
		seen[ip] = true
	}
	if err := pingFrom(paths[0], netip.MustParseAddr(ips[n-1]), 3*time.Second); err != nil {
		t.Fatalf("ping first → last pod: %v", err)
	}
	for i := range n {
		go func() { errs <- m.TearDown(ctx, testPod("p", "uid-"+string(rune('a'+i))), paths[i]) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got, err := m.IPAM().Allocated(); err != nil || len(got) != 0 {
		t.Fatalf("allocations left: %v %v", got, err)
	}
}

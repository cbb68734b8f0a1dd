package network

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testHost is one "node": its own network namespace with eth0 on the test
// switch, a Manager (bridge skiff0) with one pod, and Routes.
type testHost struct {
	name   string
	ns     string // host namespace path
	h      *netlink.Handle
	ip     netip.Addr
	cidr   netip.Prefix
	mgr    *Manager
	routes *Routes
	pod    string // pod namespace path
	podIP  netip.Addr
	log    *logBuffer // what th.routes logged
}

// logBuffer collects log output; writes() tells whether Routes changed
// anything since the last reset (every change is logged at info).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	l.buf.Reset()
	return s
}

// newTestCluster builds n hosts (198.51.100.11…, pod CIDRs 10.42.1.0/24 …)
// joined by a bridge in a "switch" namespace, each with the backend's Routes
// ensured, sysctls set, a bridge and one pod. Routes are not synced.
func newTestCluster(t *testing.T, n int, backend string) []*testHost {
	t.Helper()
	ctx := context.Background()
	swNS := newNetNS(t)
	sw := handleAt(t, swNS)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "sw0"}}
	if err := sw.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := sw.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	var hosts []*testHost
	for i := 1; i <= n; i++ {
		th := &testHost{
			name: fmt.Sprintf("node%d", i),
			ns:   newNetNS(t),
			ip:   netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}),
			cidr: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, byte(i), 0}), 24),
		}
		th.h = handleAt(t, th.ns)
		hostNS, err := netns.GetFromPath(th.ns)
		if err != nil {
			t.Fatal(err)
		}
		port := fmt.Sprintf("h%d", i)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MTU: 1500}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(hostNS))}
		err = sw.LinkAdd(veth)
		hostNS.Close()
		if err != nil {
			t.Fatal(err)
		}
		swPort, err := sw.LinkByName(port)
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.LinkSetMaster(swPort, br); err != nil {
			t.Fatal(err)
		}
		if err := sw.LinkSetUp(swPort); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"lo", "eth0"} {
			l, err := th.h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if name == "eth0" {
				if err := th.h.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(th.ip, 24))}); err != nil {
					t.Fatal(err)
				}
			}
			if err := th.h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
		if err := EnsureSysctls(th.ns); err != nil {
			t.Fatal(err)
		}
		th.log = &logBuffer{}
		logger := slog.New(slog.NewTextHandler(th.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
		th.routes, err = NewRoutes(RoutesConfig{Backend: backend, NodeIP: th.ip, PodCIDR: th.cidr, HostNetNS: th.ns, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { th.routes.Close() })
		if err := th.routes.Ensure(); err != nil {
			t.Fatal(err)
		}
		mtu, err := th.routes.PodMTU()
		if err != nil {
			t.Fatal(err)
		}
		th.mgr, err = New(Config{PodCIDR: th.cidr, StateDir: t.TempDir(), MTU: mtu, HostNetNS: th.ns})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { th.mgr.Close() })
		th.pod = newNetNS(t)
		ips, err := th.mgr.SetUp(ctx, testPod("p", fmt.Sprintf("uid-%s-%d", backend, i)), th.pod)
		if err != nil {
			t.Fatal(err)
		}
		th.podIP = netip.MustParseAddr(ips[0])
		hosts = append(hosts, th)
	}
	return hosts
}

// nodesOf is the hosts as API Nodes (InternalIP, podCIDR, annotations).
func nodesOf(hosts []*testHost) []*corev1.Node {
	var nodes []*corev1.Node
	for _, th := range hosts {
		nodes = append(nodes, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: th.name, Annotations: map[string]string{
				AnnotationBackend: th.routes.Backend(),
				AnnotationVTEPMAC: th.routes.VTEPMAC().String(),
			}},
			Spec: corev1.NodeSpec{PodCIDR: th.cidr.String()},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeHostName, Address: th.name},
				{Type: corev1.NodeInternalIP, Address: th.ip.String()},
			}},
		})
	}
	return nodes
}

func syncAll(t *testing.T, hosts []*testHost, nodes []*corev1.Node) {
	t.Helper()
	for _, th := range hosts {
		if err := th.routes.Sync(PeersFromNodes(nodes, th.name)); err != nil {
			t.Fatalf("%s: Sync: %v", th.name, err)
		}
	}
}

// syncAllUnchanged syncs again and checks that nothing was written.
func syncAllUnchanged(t *testing.T, hosts []*testHost, nodes []*corev1.Node) {
	t.Helper()
	for _, th := range hosts {
		th.log.take()
	}
	syncAll(t, hosts, nodes)
	for _, th := range hosts {
		if got := th.log.take(); got != "" {
			t.Fatalf("%s: a Sync without changes changed something:\n%s", th.name, got)
		}
	}
}

// listenPeer opens a TCP listener in the namespace at path that answers each
// connection with the remote address it sees.
func listenPeer(t *testing.T, path, addr string) {
	t.Helper()
	var ln net.Listener
	if err := inNetNS(path, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
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
				fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			}()
		}
	}()
}

// sourceSeen dials addr from the namespace at path and returns the source
// address the listener saw.
func sourceSeen(path, addr string) (string, error) {
	var conn net.Conn
	if err := inNetNS(path, func() (err error) {
		conn, err = net.DialTimeout("tcp4", addr, 5*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

// checkPodToPod: every pod reaches every other pod by pod IP (TCP and ICMP),
// and the listener sees the dialling pod's own IP (no NAT).
func checkPodToPod(t *testing.T, hosts []*testHost, port int) {
	t.Helper()
	for _, dst := range hosts {
		listenPeer(t, dst.pod, netip.AddrPortFrom(dst.podIP, uint16(port)).String())
	}
	for _, src := range hosts {
		for _, dst := range hosts {
			if src == dst {
				continue
			}
			got, err := sourceSeen(src.pod, netip.AddrPortFrom(dst.podIP, uint16(port)).String())
			if err != nil {
				t.Fatalf("pod on %s (%v) → pod on %s (%v): %v", src.name, src.podIP, dst.name, dst.podIP, err)
			}
			if got != src.podIP.String() {
				t.Fatalf("pod on %s → pod on %s: source seen %q, want the pod IP %v (NATed?)", src.name, dst.name, got, src.podIP)
			}
			if err := pingFrom(src.pod, dst.podIP, 5*time.Second); err != nil {
				t.Fatalf("ping pod on %s → pod on %s: %v", src.name, dst.name, err)
			}
			// The node itself reaches the other node's pods too (NodePort
			// traffic forwarded to a remote endpoint starts like this).
			if err := pingFrom(src.ns, dst.podIP, 5*time.Second); err != nil {
				t.Fatalf("ping %s → pod on %s: %v", src.name, dst.name, err)
			}
		}
	}
}

// ourRoutesIn lists the routes with RouteProtocol in any table of th's namespace.
func ourRoutesIn(t *testing.T, th *testHost) []netlink.Route {
	t.Helper()
	rs, err := listOurRoutes(th.h, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func routeDsts(rs []netlink.Route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Dst.String())
	}
	return out
}

// vxlanEntries lists the neighbour and FDB entries on th's VXLAN device.
func vxlanEntries(t *testing.T, th *testHost) (neigh, fdb []netlink.Neigh) {
	t.Helper()
	l, err := th.h.LinkByName(DefaultVXLANDevice)
	if err != nil {
		t.Fatal(err)
	}
	neigh, err = th.h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	all, err := th.h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if n.LinkIndex == l.Attrs().Index {
			fdb = append(fdb, n)
		}
	}
	return neigh, fdb
}

// addForeign puts things skiff does not own in th's namespace: a static
// route and a dummy link; checkForeign verifies they survived.
func addForeign(t *testing.T, th *testHost) {
	t.Helper()
	d := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "other0"}} // dummy is not built into every kernel
	if err := th.h.LinkAdd(d); err != nil {
		t.Fatal(err)
	}
	eth0, err := th.h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := th.h.RouteAdd(&netlink.Route{
		LinkIndex: eth0.Attrs().Index, Dst: prefixNet(netip.MustParsePrefix("203.0.113.0/24")),
		Gw: net.ParseIP("198.51.100.1").To4(), Protocol: unix.RTPROT_STATIC,
	}); err != nil {
		t.Fatal(err)
	}
}

func checkForeign(t *testing.T, th *testHost) {
	t.Helper()
	if _, err := th.h.LinkByName("other0"); err != nil {
		t.Errorf("%s: foreign link other0 gone: %v", th.name, err)
	}
	rs, err := th.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: prefixNet(netip.MustParsePrefix("203.0.113.0/24"))}, netlink.RT_FILTER_DST)
	if err != nil || len(rs) != 1 {
		t.Errorf("%s: foreign route: %v %v", th.name, rs, err)
	}
	if l, err := th.h.LinkByName("eth0"); err != nil {
		t.Errorf("%s: eth0 gone: %v", th.name, err)
	} else if as, _ := th.h.AddrList(l, netlink.FAMILY_V4); len(as) != 1 {
		t.Errorf("%s: eth0 addresses %v", th.name, as)
	}
}

// checkCleaned: no skiff0, skv*, skiff.vxlan or skiff route left.
func checkCleaned(t *testing.T, th *testHost) {
	t.Helper()
	links, err := th.h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		n := l.Attrs().Name
		if n == DefaultBridgeName || n == DefaultVXLANDevice || strings.HasPrefix(n, vethPrefix) {
			t.Errorf("%s: %s (%s) left after Cleanup", th.name, n, l.Type())
		}
	}
	if rs := ourRoutesIn(t, th); len(rs) != 0 {
		t.Errorf("%s: skiff routes left after Cleanup: %v", th.name, routeDsts(rs))
	}
	// The pod's eth0 went with its veth.
	ph := handleAt(t, th.pod)
	if _, err := ph.LinkByName(PodInterface); err == nil {
		t.Errorf("%s: pod eth0 left after Cleanup", th.name)
	}
}

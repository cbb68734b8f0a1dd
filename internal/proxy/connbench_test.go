package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Connection benchmarks (issue 5): connection rate and latency through a
// ClusterIP versus directly to the pod IP; the ratio is the proxy's overhead.
//
// Two node layouts, each in its own unnamed test namespaces (see cbNewNS):
//
//	bridge  client 10.244.0.2 and backend 10.244.0.3 on the node's bridge
//	        skiff0 (10.244.0.1), as skiff's pod network lays pods out. The
//	        direct path is bridged (through the node's netfilter hooks, as
//	        br_netfilter is on); the ClusterIP path is routed by the node,
//	        DNATed, and bridged back out — what a pod on a real node sees.
//	routed  client 10.244.1.2 and backend 10.244.2.2 on veths of their own,
//	        routed by the node: both paths are forwarded by the node, so the
//	        difference is the nftables lookup and DNAT alone.
//
// The backend runs a TCP echo server on :8080; Service bench/echo has VIP
// 10.43.0.100:80 → backend:8080. For each layout:
//
//	direct             to backend:8080
//	clusterip          to 10.43.0.100:80, the echo service alone in the table
//	clusterip-1000svc  the same with 1,000 other services programmed (the
//	                   service-ips map lookup is constant-time)
//	interleaved[-1000svc]  direct and ClusterIP alternately, op by op, so both
//	                   see the same load: ratio-p50 and ratio-mean
//	                   (ClusterIP/direct) are the figures to quote on a busy
//	                   machine (ns/op there covers one op to each)
//
// BenchmarkConnect: one op = new TCP connection, 4-byte request, 4-byte
// reply, close (ns/op is the inverse of the connection rate; p50/p99 are
// reported in µs). The client closes with SO_LINGER 0 (RST): neither end keeps
// TIME_WAIT, so b.N is not bounded by the ephemeral port range or conntrack's
// TIME_WAIT entries; every connection is still fully set up and NATed.
// BenchmarkRequest: one op = 4-byte request and reply on one kept-alive
// connection (conntrack's established fast path: expect equal figures).
//
// The client loop runs on an OS thread locked into the client namespace and
// uses plain syscalls (non-blocking socket + poll, 5 s timeout per wait) so
// that the Go scheduler adds as little as possible to what the kernel does.

const (
	cbVIP         = "10.43.0.100"
	cbVIPPort     = 80
	cbBackendPort = 8080
	cbOthers      = 1000
	cbTimeout     = 5 * time.Second
)

var cbMsg = []byte("ping")

type cbTopo struct {
	node, client, backend *testNS
	backendIP             string
	syncer                *Syncer
	small, large          *Ruleset
}

// cbLayouts are the node layouts every connection benchmark runs on.
var cbLayouts = []struct {
	name  string
	setup func(b *testing.B) *cbTopo
}{
	{"bridge", cbBridge},
	{"routed", cbRouted},
}

func BenchmarkConnect(b *testing.B) { cbRun(b, cbConnectLoop) }

func BenchmarkRequest(b *testing.B) { cbRun(b, cbRequestLoop) }

// cbLoop runs b.N ops on a thread in the client namespace; an op visits every
// target in turn (in alternating order) and lat[j][i] is op i's latency to
// target j.
type cbLoop func(b *testing.B, targets []*unix.SockaddrInet4) (lat [][]time.Duration, err error)

func cbRun(b *testing.B, loop cbLoop) {
	requireRoot(b)
	for _, l := range cbLayouts {
		b.Run(l.name, func(b *testing.B) {
			tp := l.setup(b) // namespaces live until this sub-benchmark ends
			direct := cbSockaddr(tp.backendIP, cbBackendPort)
			vip := cbSockaddr(cbVIP, cbVIPPort)
			large := fmt.Sprintf("-%dsvc", cbOthers)
			cases := []struct {
				name    string
				rs      *Ruleset
				targets []*unix.SockaddrInet4
			}{
				{"direct", tp.small, []*unix.SockaddrInet4{direct}},
				{"clusterip", tp.small, []*unix.SockaddrInet4{vip}},
				{"clusterip" + large, tp.large, []*unix.SockaddrInet4{vip}},
				{"interleaved", tp.small, []*unix.SockaddrInet4{direct, vip}},
				{"interleaved" + large, tp.large, []*unix.SockaddrInet4{direct, vip}},
			}
			for _, c := range cases {
				b.Run(c.name, func(b *testing.B) {
					tp.apply(b, c.rs)
					for _, a := range c.targets {
						tp.waitReachable(b, a)
					}
					var lat [][]time.Duration
					var lerr error
					tp.client.do(b, func() error {
						lat, lerr = loop(b, c.targets)
						return nil
					})
					if lerr != nil {
						b.Fatalf("%s: %v", c.name, lerr)
					}
					cbReport(b, lat)
				})
			}
		})
	}
}

// cbConnectLoop: connect, request, reply, close; b.N times per target.
func cbConnectLoop(b *testing.B, targets []*unix.SockaddrInet4) ([][]time.Duration, error) {
	lat := make([][]time.Duration, len(targets))
	for j := range lat {
		lat[j] = make([]time.Duration, b.N)
	}
	buf := make([]byte, len(cbMsg))
	b.ResetTimer()
	for i := range b.N {
		for k := range targets {
			j := (i + k) % len(targets) // alternate which target goes first
			t0 := time.Now()
			fd, err := cbDial(targets[j])
			if err == nil {
				err = cbRoundTrip(fd, buf)
				unix.Close(fd) // SO_LINGER 0: RST, no TIME_WAIT
			}
			lat[j][i] = time.Since(t0)
			if err != nil {
				b.StopTimer()
				return nil, fmt.Errorf("connection %d to %s: %w", i, cbAddrString(targets[j]), err)
			}
		}
	}
	b.StopTimer()
	return lat, nil
}

// cbRequestLoop: one connection per target, b.N request/reply round trips
// on each.
func cbRequestLoop(b *testing.B, targets []*unix.SockaddrInet4) ([][]time.Duration, error) {
	fds := make([]int, len(targets))
	lat := make([][]time.Duration, len(targets))
	for j, a := range targets {
		fd, err := cbDial(a)
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		fds[j] = fd
		lat[j] = make([]time.Duration, b.N)
	}
	buf := make([]byte, len(cbMsg))
	b.ResetTimer()
	for i := range b.N {
		for k := range targets {
			j := (i + k) % len(targets)
			t0 := time.Now()
			err := cbRoundTrip(fds[j], buf)
			lat[j][i] = time.Since(t0)
			if err != nil {
				b.StopTimer()
				return nil, fmt.Errorf("request %d to %s: %w", i, cbAddrString(targets[j]), err)
			}
		}
	}
	b.StopTimer()
	return lat, nil
}

// cbReport reports p50/p99 in µs and ops/s (from the summed latencies) for
// one target; for two (interleaved: direct, ClusterIP) the same per target
// and the ClusterIP/direct ratios of p50 and of the mean, measured under the
// same load.
func cbReport(b *testing.B, lat [][]time.Duration) {
	type stats struct{ p50, p99, mean float64 }
	st := make([]stats, len(lat))
	for j, l := range lat {
		if len(l) == 0 {
			return
		}
		slices.Sort(l)
		pct := func(p int) float64 { return float64(l[(len(l)-1)*p/100]) / float64(time.Microsecond) }
		var sum time.Duration
		for _, d := range l {
			sum += d
		}
		st[j] = stats{pct(50), pct(99), float64(sum) / float64(len(l)) / float64(time.Microsecond)}
	}
	if len(st) == 1 {
		b.ReportMetric(st[0].p50, "p50-µs")
		b.ReportMetric(st[0].p99, "p99-µs")
		b.ReportMetric(1e6/st[0].mean, "ops/s")
		return
	}
	for j, name := range []string{"direct", "clusterip"}[:len(st)] {
		b.ReportMetric(st[j].p50, name+"-p50-µs")
		b.ReportMetric(st[j].p99, name+"-p99-µs")
	}
	b.ReportMetric(st[1].p50/st[0].p50, "ratio-p50")
	b.ReportMetric(st[1].mean/st[0].mean, "ratio-mean")
}

// cbDial opens a non-blocking TCP connection to addr from the calling
// thread's network namespace, with TCP_NODELAY and SO_LINGER 0.
func cbDial(addr *unix.SockaddrInet4) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("SO_LINGER: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TCP_NODELAY: %w", err)
	}
	err = unix.Connect(fd, addr)
	if errors.Is(err, unix.EINPROGRESS) {
		if err = cbWait(fd, unix.POLLOUT); err == nil {
			var soerr int
			soerr, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err == nil && soerr != 0 {
				err = unix.Errno(soerr)
			}
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", cbAddrString(addr), err)
	}
	return fd, nil
}

// cbRoundTrip writes cbMsg and reads the echo into buf, checking it.
func cbRoundTrip(fd int, buf []byte) error {
	for off := 0; off < len(cbMsg); {
		n, err := unix.Write(fd, cbMsg[off:])
		switch {
		case errors.Is(err, unix.EAGAIN):
			if err := cbWait(fd, unix.POLLOUT); err != nil {
				return err
			}
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return fmt.Errorf("write: %w", err)
		default:
			off += n
		}
	}
	for off := 0; off < len(buf); {
		n, err := unix.Read(fd, buf[off:])
		switch {
		case errors.Is(err, unix.EAGAIN):
			if err := cbWait(fd, unix.POLLIN); err != nil {
				return err
			}
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return fmt.Errorf("read: %w", err)
		case n == 0:
			return fmt.Errorf("read: EOF after %d bytes", off)
		default:
			off += n
		}
	}
	if !bytes.Equal(buf, cbMsg) {
		return fmt.Errorf("reply %q, want %q", buf, cbMsg)
	}
	return nil
}

// cbWait polls fd for events for up to cbTimeout (EINTR retried).
func cbWait(fd int, events int16) error {
	deadline := time.Now().Add(cbTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("timed out after %v", cbTimeout)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			return nil // readiness or an error: the next call reports it
		}
	}
}

func cbSockaddr(ip string, port int) *unix.SockaddrInet4 {
	return &unix.SockaddrInet4{Addr: netip.MustParseAddr(ip).As4(), Port: port}
}

func cbAddrString(a *unix.SockaddrInet4) string {
	return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
}

// waitReachable tries one round trip to addr until it works (links coming
// up, neighbour resolution), for up to cbTimeout.
func (tp *cbTopo) waitReachable(b *testing.B, addr *unix.SockaddrInet4) {
	b.Helper()
	var last error
	deadline := time.Now().Add(cbTimeout)
	for time.Now().Before(deadline) {
		tp.client.do(b, func() error {
			fd, err := cbDial(addr)
			if err == nil {
				err = cbRoundTrip(fd, make([]byte, len(cbMsg)))
				unix.Close(fd)
			}
			last = err
			return nil
		})
		if last == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("%s not reachable from the client: %v", cbAddrString(addr), last)
}

// apply programs rs and checks that the kernel's service-ips map holds all
// of its elements (so the 1,000-service case really has them).
func (tp *cbTopo) apply(b *testing.B, rs *Ruleset) {
	b.Helper()
	conn := tp.node.nft(b)
	if err := tp.syncer.Apply(conn, rs); err != nil {
		b.Fatalf("apply: %v", err)
	}
	tbl, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
	if err != nil {
		b.Fatal(err)
	}
	set, err := conn.GetSetByName(tbl, MapServiceIPs)
	if err != nil {
		b.Fatal(err)
	}
	elems, err := conn.GetSetElements(set)
	if err != nil {
		b.Fatal(err)
	}
	if len(elems) != len(rs.Maps[MapServiceIPs]) {
		b.Fatalf("%s has %d elements in the kernel, want %d", MapServiceIPs, len(elems), len(rs.Maps[MapServiceIPs]))
	}
}

// cbRulesets: the echo service alone, and with cbOthers more services whose
// endpoints (10.244.100.0/22, never dialled) exist nowhere.
func cbRulesets(backendIP string) (small, large *Ruleset) {
	svcs := []*corev1.Service{svc("bench", "echo", cbVIP, port("http", cbVIPPort, 0))}
	sls := []*discoveryv1.EndpointSlice{slice("bench", "echo", "http", cbBackendPort, ep(backendIP, true))}
	small = Build(svcs, sls, Options{})
	for i := range cbOthers {
		name := fmt.Sprintf("other-%d", i)
		svcs = append(svcs, svc("bench", name, fmt.Sprintf("10.43.%d.%d", 1+i/250, 1+i%250), port("http", 80, 0)))
		sls = append(sls, slice("bench", name, "http", 8080,
			ep(fmt.Sprintf("10.244.%d.%d", 100+i/250, 1+i%250), true)))
	}
	return small, Build(svcs, sls, Options{})
}

// cbNewNS makes an unnamed network namespace, held only by the returned
// handle (and sockets in it): nothing under /run/netns to unmount, so nothing
// can stay behind — not after a failed delete (a first `ip netns add` on the
// machine bind-mounts /run/netns over itself, hiding named namespaces made
// before it, whose delete then fails with EBUSY), nor after a killed test
// binary. Cleanup closes the handle; the kernel frees the namespace with its
// links, addresses and nft table once the last socket in it is closed.
func cbNewNS(b *testing.B) *testNS {
	b.Helper()
	name := fmt.Sprintf("skiff-t-%d-cb%d", os.Getpid(), nsCounter.Add(1)) // for messages only
	type res struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.New()
		ch <- res{h, err}
	}()
	r := <-ch
	if r.err != nil {
		b.Fatalf("netns %s: %v", name, r.err)
	}
	ns := &testNS{name: name, h: r.h}
	b.Cleanup(func() {
		if ns.nl != nil {
			ns.nl.Close()
		}
		ns.h.Close()
	})
	nl, err := netlink.NewHandleAt(r.h)
	if err != nil {
		b.Fatalf("netlink handle in %s: %v", name, err)
	}
	ns.nl = nl
	lo, err := nl.LinkByName("lo")
	if err != nil {
		b.Fatal(err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		b.Fatal(err)
	}
	return ns
}

// cbBridge: client and backend on the node's bridge.
func cbBridge(b *testing.B) *cbTopo {
	tp := &cbTopo{node: cbNewNS(b), client: cbNewNS(b), backend: cbNewNS(b), backendIP: "10.244.0.3"}
	// br_netfilter makes bridged replies from the backend pass conntrack,
	// which undoes the DNAT; without it a ClusterIP reply to a pod on the
	// same bridge skips the reverse NAT. Only read it: on old kernels the
	// setting is global.
	var brnf string
	tp.node.do(b, func() error {
		v, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
		if err == nil {
			brnf = strings.TrimSpace(string(v))
		}
		return nil
	})
	if brnf != "1" {
		b.Skipf("bridge-nf-call-iptables is %q in a new namespace (br_netfilter not loaded?): ClusterIP replies on one bridge would skip conntrack", brnf)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "skiff0"}}
	if err := tp.node.nl.LinkAdd(br); err != nil {
		b.Fatalf("bridge: %v", err)
	}
	brl, err := tp.node.nl.LinkByName("skiff0")
	if err != nil {
		b.Fatal(err)
	}
	if err := tp.node.nl.AddrAdd(brl, mustAddr(b, "10.244.0.1/24")); err != nil {
		b.Fatal(err)
	}
	if err := tp.node.nl.LinkSetUp(brl); err != nil {
		b.Fatal(err)
	}
	cbBridgePort(b, tp.node, brl, tp.client, "vcl", "10.244.0.2/24")
	cbBridgePort(b, tp.node, brl, tp.backend, "vbe", tp.backendIP+"/24")
	return tp.finish(b)
}

// cbBridgePort plugs pod into the bridge with a veth (eth0 in pod, address
// addr, default route via the bridge's 10.244.0.1).
func cbBridgePort(b *testing.B, node *testNS, br netlink.Link, pod *testNS, name, addr string) {
	b.Helper()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(pod.h)),
	}
	if err := node.nl.LinkAdd(veth); err != nil {
		b.Fatalf("veth %s: %v", name, err)
	}
	l, err := node.nl.LinkByName(name)
	if err != nil {
		b.Fatal(err)
	}
	if err := node.nl.LinkSetUp(l); err != nil {
		b.Fatal(err)
	}
	pl, err := pod.nl.LinkByName("eth0")
	if err != nil {
		b.Fatal(err)
	}
	if err := pod.nl.AddrAdd(pl, mustAddr(b, addr)); err != nil {
		b.Fatal(err)
	}
	if err := pod.nl.LinkSetUp(pl); err != nil {
		b.Fatal(err)
	}
	if err := pod.nl.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: net.ParseIP("10.244.0.1")}); err != nil {
		b.Fatalf("default route in %s: %v", pod.name, err)
	}
}

// cbRouted: client and backend each on a veth of the node, routed.
func cbRouted(b *testing.B) *cbTopo {
	tp := &cbTopo{node: cbNewNS(b), client: cbNewNS(b), backend: cbNewNS(b), backendIP: "10.244.2.2"}
	link(b, tp.node, tp.client, "vc", "10.244.1.1/24", "10.244.1.2/24")
	link(b, tp.node, tp.backend, "vb", "10.244.2.1/24", tp.backendIP+"/24")
	return tp.finish(b)
}

// finish: forwarding on, echo server in the backend, proxy table programmed.
func (tp *cbTopo) finish(b *testing.B) *cbTopo {
	enableForwarding(b, tp.node)
	cbEcho(b, tp.backend, fmt.Sprintf("%s:%d", tp.backendIP, cbBackendPort))
	tp.small, tp.large = cbRulesets(tp.backendIP)
	tp.syncer = NewSyncer(Options{})
	tp.apply(b, tp.small)
	return tp
}

// cbEcho serves a TCP echo on addr in ns: one goroutine, one poll(2) loop over
// the listening socket and every connection, with the same non-blocking
// syscalls as the client, so no Go scheduler wake-up sits in the measured
// path. The benchmark's cleanup stops it, waits for it and closes every
// socket.
func cbEcho(b *testing.B, ns *testNS, addr string) {
	b.Helper()
	ap := netip.MustParseAddrPort(addr)
	lfd := -1
	var stop atomic.Bool
	var done chan struct{} // nil until the loop runs
	b.Cleanup(func() {
		if done != nil {
			stop.Store(true)
			<-done
		}
		if lfd >= 0 {
			unix.Close(lfd)
		}
	})
	ns.do(b, func() error { // the socket stays in ns
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		lfd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
			return err
		}
		return unix.Listen(fd, 128)
	})
	done = make(chan struct{})
	go func() {
		var conns []int
		defer func() {
			for _, c := range conns {
				unix.Close(c)
			}
			close(done)
		}()
		buf := make([]byte, 512)
		var pfds []unix.PollFd
		for !stop.Load() {
			pfds = append(pfds[:0], unix.PollFd{Fd: int32(lfd), Events: unix.POLLIN})
			for _, c := range conns {
				pfds = append(pfds, unix.PollFd{Fd: int32(c), Events: unix.POLLIN})
			}
			n, err := unix.Poll(pfds, 100) // 100 ms: look at stop now and then
			if errors.Is(err, unix.EINTR) || n == 0 {
				continue
			}
			if err != nil {
				return
			}
			keep := conns[:0]
			for k, c := range conns {
				if pfds[k+1].Revents != 0 && !cbEchoOnce(c, buf) {
					unix.Close(c)
					continue
				}
				keep = append(keep, c)
			}
			conns = keep
			if pfds[0].Revents != 0 {
				for {
					cfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
					if err != nil {
						break // EAGAIN (none left), EINTR, ECONNABORTED: poll again
					}
					unix.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
					conns = append(conns, cfd)
				}
			}
		}
	}()
}

// cbEchoOnce echoes what fd has to read; false when fd is done (EOF, the
// client's RST, an error).
func cbEchoOnce(fd int, buf []byte) bool {
	n, err := unix.Read(fd, buf)
	switch {
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return true
	case err != nil || n == 0:
		return false
	}
	for off := 0; off < n; {
		w, err := unix.Write(fd, buf[off:n])
		switch {
		case errors.Is(err, unix.EAGAIN):
			if cbWait(fd, unix.POLLOUT) != nil {
				return false
			}
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return false
		default:
			off += w
		}
	}
	return true
}

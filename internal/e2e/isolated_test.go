package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/skiff-dev/skiff/internal/runtime"
)

// Agents program the network of the namespace they run in (bridge, veths,
// nftables, routes, ip_forward). Tests never let them touch the machine's
// own network: a cluster with agents runs inside an isolated "host"
// namespace of its own — loopback plus an eth0 with isolatedHostIP and
// a default route through it (so Service VIPs are routable, while nothing
// outside the namespace is reachable) — and the test reaches its API server
// through a forwarder from the same port on the machine's loopback.

// isolatedHostIP is the node IP inside an isolated host namespace; a
// standalone agent beside a --disable-agent server uses isolatedAgentIP (an
// agent may not claim the API server's address).
const (
	isolatedHostIP  = "198.51.100.10"
	isolatedAgentIP = "198.51.100.20"
)

var isolatedSeq atomic.Int32

// newIsolatedHost makes the namespace and removes it when the test ends.
func newIsolatedHost(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("skiff-e2e-%d-%d", os.Getpid(), isolatedSeq.Add(1))
	ns, err := newNamedNetNS(name)
	if err != nil {
		t.Fatalf("network namespace %s: %v", name, err)
	}
	path := "/run/netns/" + name
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("removing network namespace %s: %v", name, err)
		}
	})
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("loopback up in %s: %v", name, err)
	}
	// A veth pair with both ends here (this kernel has no dummy links):
	// eth0 has carrier, and its peer leads nowhere.
	eth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}, PeerName: "eth0-peer"}
	if err := h.LinkAdd(eth); err != nil {
		t.Fatalf("eth0 in %s: %v", name, err)
	}
	if peer, err := h.LinkByName("eth0-peer"); err != nil || h.LinkSetUp(peer) != nil {
		t.Fatalf("eth0-peer in %s: %v", name, err)
	}
	for _, ip := range []string{isolatedHostIP, isolatedAgentIP} {
		addr, _ := netlink.ParseAddr(ip + "/24")
		if err := h.AddrAdd(eth, addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	// Default route via an address nobody holds (as the multi-node harness).
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP("198.51.100.1")}); err != nil {
		t.Fatalf("default route in %s: %v", name, err)
	}
	return path
}

// newNamedNetNS creates /run/netns/NAME without moving this process into it.
func newNamedNetNS(name string) (netns.NsHandle, error) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return 0, err
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		return 0, err
	}
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the new namespace: never unlock it.
		goruntime.LockOSThread()
		return 0, err
	}
	return ns, nil
}

// inNetNS runs argv inside the namespace at path (nsenter replaces itself
// with argv, so the command's process is argv's).
func inNetNS(path string, argv ...string) *exec.Cmd {
	if path == "" {
		return exec.Command(argv[0], argv[1:]...)
	}
	return exec.Command("nsenter", append([]string{"--net=" + path, "--"}, argv...)...)
}

// forwarder accepts on 127.0.0.1:port of the machine and connects each
// client to the same port on the namespace's loopback.
type forwarder struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
}

func startForwarder(t testing.TB, nsPath string, port int) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("forwarder: %v", err)
	}
	f := &forwarder{ln: ln, open: map[net.Conn]bool{}}
	target := fmt.Sprintf("127.0.0.1:%d", port)
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() { f.serve(c, nsPath, target) })
		}
	})
	t.Cleanup(f.close)
	return f
}

func (f *forwarder) track(c net.Conn, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.open[c] = true
	} else {
		delete(f.open, c)
	}
}

func (f *forwarder) serve(c net.Conn, nsPath, target string) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	up, err := runtime.DialInNetNS(ctx, nsPath, "tcp", target)
	cancel()
	if err != nil {
		return
	}
	defer up.Close()
	f.track(c, true)
	f.track(up, true)
	defer f.track(c, false)
	defer f.track(up, false)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
}

func (f *forwarder) close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.open {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

package proxy

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Test network namespaces. Nothing here touches the root namespace: every
// link, address, route, sysctl and nft table is made inside a namespace the
// test created, and the namespaces are deleted in t.Cleanup.

var nsCounter atomic.Int64

type testNS struct {
	name string
	h    netns.NsHandle
	nl   *netlink.Handle
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (network namespaces)")
	}
}

// newNS creates a named netns. The goroutine that creates it keeps its thread
// locked and exits, so the thread (now in the new namespace) is discarded.
func newNS(tb testing.TB) *testNS {
	tb.Helper()
	name := fmt.Sprintf("skiff-t-%d-%d", os.Getpid(), nsCounter.Add(1))
	type res struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.NewNamed(name)
		ch <- res{h, err}
	}()
	r := <-ch
	if r.err != nil {
		tb.Fatalf("netns %s: %v", name, r.err)
	}
	if r.h <= 0 {
		tb.Fatalf("netns %s: bad handle %d", name, r.h)
	}
	ns := &testNS{name: name, h: r.h}
	tb.Cleanup(func() {
		if ns.nl != nil {
			ns.nl.Close()
		}
		ns.h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			tb.Errorf("delete netns %s: %v", name, err)
		}
	})
	nl, err := netlink.NewHandleAt(r.h)
	if err != nil {
		tb.Fatalf("netlink handle in %s: %v", name, err)
	}
	ns.nl = nl
	lo, err := nl.LinkByName("lo")
	if err != nil {
		tb.Fatal(err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		tb.Fatal(err)
	}
	return ns
}

// do runs f on a thread switched into ns; the thread is discarded afterwards.
func (ns *testNS) do(tb testing.TB, f func() error) {
	tb.Helper()
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(ns.h); err != nil {
			ch <- err
			return
		}
		ch <- f()
	}()
	if err := <-ch; err != nil {
		tb.Fatalf("in netns %s: %v", ns.name, err)
	}
}

// nft returns an nftables connection bound to the namespace.
func (ns *testNS) nft(tb testing.TB) *nftables.Conn {
	tb.Helper()
	if ns.h <= 0 {
		tb.Fatal("refusing an nftables connection without a test namespace")
	}
	c, err := NewConn(nftables.WithNetNSFd(int(ns.h)))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func mustAddr(tb testing.TB, s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// link joins node and peer with a veth: node side nodeAddr, peer side
// peerAddr with a default route via the node side.
func link(tb testing.TB, node, peer *testNS, name, nodeAddr, peerAddr string) {
	tb.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(peer.h))}
	if err := node.nl.LinkAdd(veth); err != nil {
		tb.Fatalf("veth %s: %v", name, err)
	}
	l, err := node.nl.LinkByName(name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := node.nl.AddrAdd(l, mustAddr(tb, nodeAddr)); err != nil {
		tb.Fatal(err)
	}
	if err := node.nl.LinkSetUp(l); err != nil {
		tb.Fatal(err)
	}
	pl, err := peer.nl.LinkByName("eth0")
	if err != nil {
		tb.Fatal(err)
	}
	if err := peer.nl.AddrAdd(pl, mustAddr(tb, peerAddr)); err != nil {
		tb.Fatal(err)
	}
	if err := peer.nl.LinkSetUp(pl); err != nil {
		tb.Fatal(err)
	}
	gw := mustAddr(tb, nodeAddr).IP
	if err := peer.nl.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: gw}); err != nil {
		tb.Fatalf("default route in %s: %v", peer.name, err)
	}
}

// uplink gives the node an "uplink" with a default route, as a real node
// has: traffic to VIPs without endpoints is then routed (and reaches the
// forward hook) instead of failing with "no route". The uplink is a veth
// whose peer stays in the node namespace with no address: nothing leaves the
// namespace (no dummy driver on these hosts).
func uplink(tb testing.TB, node *testNS) {
	tb.Helper()
	if err := node.nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "up0p"}); err != nil {
		tb.Fatal(err)
	}
	l, err := node.nl.LinkByName("up0")
	if err != nil {
		tb.Fatal(err)
	}
	p, err := node.nl.LinkByName("up0p")
	if err != nil {
		tb.Fatal(err)
	}
	if err := node.nl.AddrAdd(l, mustAddr(tb, "198.51.100.1/24")); err != nil {
		tb.Fatal(err)
	}
	for _, x := range []netlink.Link{l, p} {
		if err := node.nl.LinkSetUp(x); err != nil {
			tb.Fatal(err)
		}
	}
	if err := node.nl.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP("198.51.100.254")}); err != nil {
		tb.Fatal(err)
	}
}

func enableForwarding(tb testing.TB, node *testNS) {
	tb.Helper()
	// /proc/sys/net is per network namespace: opened from a thread inside
	// node, this is node's ip_forward, not the host's.
	node.do(tb, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	})
}

// serve starts a TCP listener in ns on addr that answers every connection
// with name and closes it.
func serve(tb testing.TB, ns *testNS, addr, name string) {
	tb.Helper()
	var ln net.Listener
	ns.do(tb, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	}()
}

// serveWho is serve, but the reply is "name from <client IP>": tests see the
// source address the server saw (masquerade or not).
func serveWho(tb testing.TB, ns *testNS, addr, name string) {
	tb.Helper()
	var ln net.Listener
	ns.do(tb, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			c.Write([]byte(name + " from " + host))
			c.Close()
		}
	}()
}

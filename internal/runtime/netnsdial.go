package runtime

import (
	"context"
	"fmt"
	"net"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// DialInNetNS connects from inside the network namespace at nsPath (a
// sandbox's NetNSPath): exec-less probes and port-forwarding reach a pod's
// loopback and ports this way, with or without a pod network. Only the socket
// is created in the namespace (a socket keeps the namespace it was created
// in), so the returned conn is used from any goroutine. addr must be a literal
// IP:port: no name resolution happens inside the namespace.
func DialInNetNS(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// A dedicated, locked thread: setns changes the calling thread only.
		goruntime.LockOSThread()
		c, err, restored := dialInNetNS(ctx, nsPath, network, addr)
		if restored {
			goruntime.UnlockOSThread()
		} // else: the thread is in the wrong namespace; it exits with the goroutine
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func dialInNetNS(ctx context.Context, nsPath, network, addr string) (c net.Conn, err error, restored bool) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open own netns: %w", err), true
	}
	defer unix.Close(orig)
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", nsPath, err), true
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter netns %s: %w", nsPath, err), true
	}
	var d net.Dialer
	c, err = d.DialContext(ctx, network, addr)
	restored = unix.Setns(orig, unix.CLONE_NEWNET) == nil
	return c, err, restored
}

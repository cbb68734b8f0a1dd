package runtime

import (
	"context"
	"io"
	"net"
	goruntime "runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDialInNetNS(t *testing.T) {
	rt := newTestRuntime(t)
	ctx := context.Background()
	sb, err := rt.CreateSandbox(ctx, SandboxConfig{ID: "dial-sb"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.RemoveSandbox(ctx, sb.ID) })

	// A listener on the host's loopback must not be reachable from the
	// sandbox: its loopback is its own.
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if c, err := DialInNetNS(dctx, sb.NetNSPath, "tcp", host.Addr().String()); err == nil {
		c.Close()
		t.Fatal("dial from the sandbox reached the host's loopback")
	}
	// A host listener after the dial still works: the calling threads were
	// restored to the host namespace.
	c, err := net.Dial("tcp", host.Addr().String())
	if err != nil {
		t.Fatalf("host dial after sandbox dial: %v", err)
	}
	c.Close()
	if _, err := DialInNetNS(dctx, "/nonexistent", "tcp", "127.0.0.1:1"); err == nil {
		t.Fatal("dial in a missing netns succeeded")
	}

	// A listener inside the sandbox is reached.
	l := listenInNetNS(t, sb.NetNSPath)
	go func() {
		if c, err := l.Accept(); err == nil {
			_, _ = io.WriteString(c, "hello")
			c.Close()
		}
	}()
	c, err = DialInNetNS(dctx, sb.NetNSPath, "tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial in sandbox: %v", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "hello" {
		t.Fatalf("read %q", b)
	}
}

func listenInNetNS(t *testing.T, nsPath string) net.Listener {
	t.Helper()
	type res struct {
		l   net.Listener
		err error
	}
	ch := make(chan res, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: this thread may be left in the sandbox
		orig, _ := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY, 0)
		fd, err := unix.Open(nsPath, unix.O_RDONLY, 0)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		_ = unix.Setns(fd, unix.CLONE_NEWNET)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		_ = unix.Setns(orig, unix.CLONE_NEWNET)
		ch <- res{l, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.l.Close() })
	return r.l
}

package network

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// sysctl is one setting under /proc/sys.
type sysctl struct {
	name  string // dotted, e.g. net.ipv4.ip_forward
	value string
	// optional: skipped when the file does not exist (its module is not loaded).
	optional bool
}

// nodeSysctls are the settings a node needs, all per network namespace:
//   - net.ipv4.ip_forward=1: nodes route between pods, the bridge, the VXLAN
//     device and the node's link (starts at 0 on many hosts).
//   - net.bridge.bridge-nf-call-iptables=1: bridged pod-to-pod packets go
//     through the IPv4 netfilter hooks, so the Service proxy's conntrack
//     reverses DNAT for a pod reaching a Service backed by a pod on the same
//     bridge. Only present when br_netfilter is loaded (then usually already
//     1); see BridgeNetfilter.
var nodeSysctls = []sysctl{
	{name: "net.ipv4.ip_forward", value: "1"},
	{name: "net.bridge.bridge-nf-call-iptables", value: "1", optional: true},
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// EnsureSysctls sets what the pod network needs in the network namespace at
// hostNetNS ("" = the current one): net.ipv4.ip_forward=1 and, when
// br_netfilter is loaded, net.bridge.bridge-nf-call-iptables=1. A setting
// already right is not written (so a read-only /proc/sys that is already
// right is fine). The error names the sysctl that could not be set.
func EnsureSysctls(hostNetNS string) error {
	return withNetNS(hostNetNS, func() error {
		var errs []error
		for _, s := range nodeSysctls {
			if err := ensureSysctl(s); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

func ensureSysctl(s sysctl) error {
	p := sysctlPath(s.name)
	cur, err := os.ReadFile(p)
	if err != nil {
		if s.optional && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("network: sysctl %s: %w", s.name, err)
	}
	if string(bytes.TrimSpace(cur)) == s.value {
		return nil
	}
	if err := os.WriteFile(p, []byte(s.value+"\n"), 0o644); err != nil {
		return fmt.Errorf("network: cannot set sysctl %s=%s (is /proc/sys read-only, or the agent not root?): %w", s.name, s.value, err)
	}
	return nil
}

// BridgeNetfilter reports whether bridged IPv4 traffic passes the netfilter
// hooks in the namespace at hostNetNS: br_netfilter loaded and
// net.bridge.bridge-nf-call-iptables=1. Without it a pod reaching a Service
// whose chosen backend is on the same node's bridge gets replies it drops
// (the agent should warn, or load br_netfilter).
func BridgeNetfilter(hostNetNS string) (bool, error) {
	var on bool
	err := withNetNS(hostNetNS, func() error {
		b, err := os.ReadFile(sysctlPath("net.bridge.bridge-nf-call-iptables"))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		on = string(bytes.TrimSpace(b)) == "1"
		return nil
	})
	return on, err
}

// withNetNS runs fn with the calling goroutine's files under /proc/sys/net
// resolving to the namespace at path ("" = run fn as is). /proc/sys/net
// shows the namespace of the thread that opens the file, so fn runs on a
// locked OS thread switched into the namespace; a thread that cannot switch
// back is left locked and dies with its goroutine.
func withNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network: open own netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network: open netns %s: %w", path, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network: enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("network: leave netns %s: %w", path, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

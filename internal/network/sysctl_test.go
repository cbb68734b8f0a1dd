package network

import (
	"os"
	"strings"
	"testing"
)

func readSysctlIn(t *testing.T, ns, name string) string {
	t.Helper()
	var v string
	if err := withNetNS(ns, func() error {
		b, err := os.ReadFile(sysctlPath(name))
		v = strings.TrimSpace(string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestEnsureSysctls(t *testing.T) {
	requireRoot(t)
	rootBefore, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward") // read only: never written here
	if err != nil {
		t.Fatal(err)
	}
	ns := newNetNS(t)
	if got := readSysctlIn(t, ns, "net.ipv4.ip_forward"); got != "0" {
		t.Skipf("ip_forward starts at %s in a new namespace", got)
	}
	if err := EnsureSysctls(ns); err != nil {
		t.Fatal(err)
	}
	if got := readSysctlIn(t, ns, "net.ipv4.ip_forward"); got != "1" {
		t.Fatalf("ip_forward %s after EnsureSysctls", got)
	}
	if got := readSysctlIn(t, ns, "net.ipv4.conf.all.forwarding"); got != "1" {
		t.Fatalf("conf.all.forwarding %s", got)
	}
	if err := EnsureSysctls(ns); err != nil {
		t.Fatalf("second EnsureSysctls: %v", err)
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); err == nil {
		if on, err := BridgeNetfilter(ns); err != nil || !on {
			t.Fatalf("BridgeNetfilter %v %v", on, err)
		}
	}
	rootAfter, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if string(rootAfter) != string(rootBefore) {
		t.Fatalf("root namespace ip_forward changed: %q → %q", rootBefore, rootAfter)
	}

	// An impossible setting is reported with its name.
	err = withNetNS(ns, func() error { return ensureSysctl(sysctl{name: "net.ipv4.no_such_setting", value: "1"}) })
	if err == nil || !strings.Contains(err.Error(), "net.ipv4.no_such_setting") {
		t.Fatalf("missing sysctl: %v", err)
	}
	if err := withNetNS(ns, func() error {
		return ensureSysctl(sysctl{name: "net.ipv4.no_such_setting", value: "1", optional: true})
	}); err != nil {
		t.Fatalf("missing optional sysctl: %v", err)
	}
	if err := EnsureSysctls("/nonexistent/netns"); err == nil {
		t.Fatal("EnsureSysctls in a missing namespace: no error")
	}
}

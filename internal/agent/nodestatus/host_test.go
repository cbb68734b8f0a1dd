package nodestatus

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
)

func TestCountCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-3": 4, "0-3,6": 5, "0,2,4-7": 6} {
		if got, err := countCPUList(in); err != nil || got != want {
			t.Errorf("countCPUList(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a", "3-1", "1-x"} {
		if _, err := countCPUList(in); err == nil {
			t.Errorf("countCPUList(%q): no error", in)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	m, err := parseMeminfo([]byte("MemTotal:       16384 kB\nMemFree:  1024 kB\nInactive(file):   2048 kB\nHugePages_Total:       0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m["MemTotal"] != 16384*1024 || m["MemFree"] != 1024*1024 || m["Inactive(file)"] != 2048*1024 || m["HugePages_Total"] != 0 {
		t.Fatalf("parsed %v", m)
	}
	if _, err := parseMeminfo([]byte("MemFree: 1 kB\n")); err == nil {
		t.Fatal("no error without MemTotal")
	}
}

func TestParseOSRelease(t *testing.T) {
	for in, want := range map[string]string{
		"NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n": "Debian GNU/Linux 13 (trixie)",
		"PRETTY_NAME='Alpine Linux v3.20'\n":                                        "Alpine Linux v3.20",
		"PRETTY_NAME=Plain\n":                                                       "Plain",
		"NAME=x\n":                                                                  "",
	} {
		if got := parseOSRelease([]byte(in)); got != want {
			t.Errorf("parseOSRelease(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHostCapacity(t *testing.T) {
	// A data dir that does not exist yet is measured on its parent.
	res, err := HostCapacity(t.TempDir() + "/not/yet")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage} {
		q, ok := res[r]
		if !ok || q.Sign() <= 0 {
			t.Errorf("%s = %v (present %v)", r, q.String(), ok)
		}
	}
	if q := res[corev1.ResourcePods]; q.Value() != 110 {
		t.Errorf("pods = %s", q.String())
	}
	if q := res[corev1.ResourceCPU]; q.MilliValue()%1000 != 0 {
		t.Errorf("cpu = %s, want whole CPUs", q.String())
	}
	for name, q := range res {
		if strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix) {
			if name != "hugepages-2Mi" && name != "hugepages-1Gi" && name != "hugepages-32Mi" && name != "hugepages-64Ki" {
				t.Errorf("unexpected hugepage resource %s = %s", name, q.String())
			}
		}
	}
	t.Logf("capacity: %v", res)
}

func TestReadSignalsAndSystemInfo(t *testing.T) {
	dir := t.TempDir()
	s, err := readSignals(dir, dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.MemoryCapacity <= 0 || s.MemoryAvailable <= 0 || s.MemoryAvailable > s.MemoryCapacity {
		t.Errorf("memory signals %+v", s)
	}
	if s.NodeFS.Capacity <= 0 || s.NodeFS.Available > s.NodeFS.Capacity || s.ImageFS != s.NodeFS {
		t.Errorf("fs signals %+v", s)
	}
	if s.PIDMax <= 0 || s.PIDAvailable <= 0 || s.PIDAvailable >= s.PIDMax {
		t.Errorf("pid signals %+v", s)
	}
	info := systemInfo()
	if info.KernelVersion == "" || info.OSImage == "" || info.BootID == "" || info.OperatingSystem != "linux" || info.Architecture == "" {
		t.Errorf("system info %+v", info)
	}
	t.Logf("signals %+v\ninfo %+v", s, info)
}

// TestDefaultNodeIP checks the address on this host: a global unicast
// address of one of its interfaces, the default route's when it has one.
func TestDefaultNodeIP(t *testing.T) {
	ip, err := DefaultNodeIP()
	if err != nil {
		t.Skipf("no usable address on this host: %v", err)
	}
	if !ip.IsGlobalUnicast() {
		t.Fatalf("DefaultNodeIP = %s, not global unicast", ip)
	}
	owner := ""
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifaces {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				owner = ifc.Name
			}
		}
	}
	if owner == "" {
		t.Fatalf("DefaultNodeIP = %s, on no interface", ip)
	}
	family := netlink.FAMILY_V4
	if ip.To4() == nil {
		family = netlink.FAMILY_V6
	}
	routes, err := netlink.RouteList(nil, family)
	if err != nil {
		t.Fatal(err)
	}
	var best *netlink.Route
	for i := range routes {
		r := &routes[i]
		if r.LinkIndex > 0 && (r.Dst == nil || isDefault(r.Dst)) && (best == nil || r.Priority < best.Priority) {
			best = r
		}
	}
	if best != nil && best.Src == nil {
		link, err := netlink.LinkByIndex(best.LinkIndex)
		if err != nil {
			t.Fatal(err)
		}
		if link.Attrs().Name != owner {
			t.Fatalf("DefaultNodeIP = %s on %s, but the default route goes through %s", ip, owner, link.Attrs().Name)
		}
	}
	t.Logf("DefaultNodeIP = %s on %s", ip, owner)
}

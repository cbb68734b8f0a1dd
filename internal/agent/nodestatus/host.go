package nodestatus

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// defaultMaxPods is the kubelet's --max-pods default.
const defaultMaxPods = 110

// Host files, variables so that tests can point them elsewhere.
var (
	procMeminfo  = "/proc/meminfo"
	procLoadavg  = "/proc/loadavg"
	procPIDMax   = "/proc/sys/kernel/pid_max"
	procThreads  = "/proc/sys/kernel/threads-max"
	procBootID   = "/proc/sys/kernel/random/boot_id"
	cpuOnline    = "/sys/devices/system/cpu/online"
	hugepagesDir = "/sys/kernel/mm/hugepages"
	productUUID  = "/sys/class/dmi/id/product_uuid"
	machineIDs   = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}
	osRelease    = []string{"/etc/os-release", "/usr/lib/os-release"}
)

// HostCapacity is the node's capacity as the kubelet reports it from
// cAdvisor's machine info: cpu (online CPUs), memory (MemTotal of
// /proc/meminfo), pods (110, the --max-pods default; Run uses
// Config.MaxPods), ephemeral-storage (size of the filesystem holding
// dataDir, or of its nearest existing parent) and one hugepages-<size> per
// page size the kernel supports (0 when none are reserved).
func HostCapacity(dataDir string) (corev1.ResourceList, error) {
	cpus, err := onlineCPUs()
	if err != nil {
		return nil, err
	}
	mem, err := readMeminfo()
	if err != nil {
		return nil, err
	}
	fs, err := statFS(dataDir)
	if err != nil {
		return nil, err
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewMilliQuantity(int64(cpus)*1000, resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(mem["MemTotal"], resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(defaultMaxPods, resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(fs.capacity, resource.BinarySI),
	}
	hp, err := hugepages()
	if err != nil {
		return nil, err
	}
	for name, q := range hp {
		res[name] = q
	}
	return res, nil
}

// onlineCPUs counts the CPUs listed in /sys/devices/system/cpu/online
// ("0-3,6"); runtime.NumCPU when the file is unreadable. (NumCPU honours
// the process's affinity mask, the kubelet does not.)
func onlineCPUs() (int, error) {
	b, err := os.ReadFile(cpuOnline)
	if err != nil {
		return goruntime.NumCPU(), nil
	}
	n, err := countCPUList(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", cpuOnline, err)
	}
	return n, nil
}

// countCPUList counts the CPUs of a kernel cpu list such as "0-3,6,8-9".
func countCPUList(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty cpu list")
	}
	n := 0
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("bad cpu list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("bad cpu list %q", s)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

// readMeminfo returns /proc/meminfo's fields in bytes.
func readMeminfo() (map[string]int64, error) {
	b, err := os.ReadFile(procMeminfo)
	if err != nil {
		return nil, err
	}
	return parseMeminfo(b)
}

func parseMeminfo(b []byte) (map[string]int64, error) {
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		out[key] = v
	}
	if _, ok := out["MemTotal"]; !ok {
		return nil, errors.New("meminfo: no MemTotal")
	}
	return out, nil
}

// fsStats is what statfs says of a filesystem, in bytes and inodes.
type fsStats struct {
	capacity, available int64
	inodes, inodesFree  int64
}

// statFS stats the filesystem of path, or of its nearest existing parent
// (the data directory may not exist yet on first start).
func statFS(path string) (fsStats, error) {
	if path == "" {
		path = "/"
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return fsStats{}, err
	}
	for {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if err == nil {
			bs := int64(st.Bsize)
			return fsStats{
				capacity:   int64(st.Blocks) * bs,
				available:  int64(st.Bavail) * bs,
				inodes:     int64(st.Files),
				inodesFree: int64(st.Ffree),
			}, nil
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, unix.ENOENT) || parent == p {
			return fsStats{}, fmt.Errorf("statfs %s: %w", p, err)
		}
		p = parent
	}
}

// hugepages lists hugepages-<size> = nr_hugepages × size for every page
// size of /sys/kernel/mm/hugepages, as the kubelet does.
func hugepages() (corev1.ResourceList, error) {
	entries, err := os.ReadDir(hugepagesDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := corev1.ResourceList{}
	for _, e := range entries {
		kb, ok := strings.CutPrefix(e.Name(), "hugepages-")
		if !ok {
			continue
		}
		kb, ok = strings.CutSuffix(kb, "kB")
		if !ok {
			continue
		}
		size, err := strconv.ParseInt(kb, 10, 64)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(hugepagesDir, e.Name(), "nr_hugepages"))
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		pageSize := resource.NewQuantity(size*1024, resource.BinarySI)
		out[corev1.ResourceName(corev1.ResourceHugePagesPrefix+pageSize.String())] = *resource.NewQuantity(n*size*1024, resource.BinarySI)
	}
	return out, nil
}

// readSignals measures the eviction signals the pressure conditions are
// computed from.
func readSignals(dataDir, imageDir string) (Signals, error) {
	var s Signals
	mem, err := readMeminfo()
	if err != nil {
		return s, err
	}
	// The kubelet's memory.available is capacity minus the root cgroup's
	// working set (usage minus inactive file pages); for the root that is
	// MemFree + Inactive(file).
	s.MemoryCapacity = mem["MemTotal"]
	s.MemoryAvailable = mem["MemFree"] + mem["Inactive(file)"]
	fs, err := statFS(dataDir)
	if err != nil {
		return s, err
	}
	s.NodeFS = FSSignals{Capacity: fs.capacity, Available: fs.available, Inodes: fs.inodes, InodesFree: fs.inodesFree}
	if imageDir != "" {
		fs, err := statFS(imageDir)
		if err != nil {
			return s, err
		}
		s.ImageFS = FSSignals{Capacity: fs.capacity, Available: fs.available, Inodes: fs.inodes, InodesFree: fs.inodesFree}
	}
	s.PIDMax, s.PIDAvailable, err = pidSignals()
	return s, err
}

// pidSignals is the kubelet's pid.available: min(pid_max, threads-max)
// minus the scheduling entities the kernel counts (/proc/loadavg).
func pidSignals() (maxPID, available int64, err error) {
	maxPID, err = readInt(procPIDMax)
	if err != nil {
		return 0, 0, err
	}
	if threads, err := readInt(procThreads); err == nil && threads < maxPID {
		maxPID = threads
	}
	b, err := os.ReadFile(procLoadavg)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 4 {
		return 0, 0, fmt.Errorf("%s: unexpected %q", procLoadavg, b)
	}
	_, total, ok := strings.Cut(f[3], "/")
	n, perr := strconv.ParseInt(total, 10, 64)
	if !ok || perr != nil {
		return 0, 0, fmt.Errorf("%s: unexpected %q", procLoadavg, b)
	}
	return maxPID, maxPID - n, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// systemInfo fills the machine part of nodeInfo: IDs, kernel, OS image.
func systemInfo() corev1.NodeSystemInfo {
	info := corev1.NodeSystemInfo{
		OperatingSystem: goruntime.GOOS,
		Architecture:    goruntime.GOARCH,
		BootID:          readTrimmed(procBootID),
		SystemUUID:      readTrimmed(productUUID),
		OSImage:         osImage(),
	}
	for _, p := range machineIDs {
		if info.MachineID = readTrimmed(p); info.MachineID != "" {
			break
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		info.KernelVersion = unix.ByteSliceToString(u.Release[:])
	}
	return info
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// osImage is PRETTY_NAME of os-release, "Linux" without one (as cAdvisor).
func osImage() string {
	for _, p := range osRelease {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if v := parseOSRelease(b); v != "" {
			return v
		}
	}
	return "Linux"
}

func parseOSRelease(b []byte) string {
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			return uq
		}
		return strings.Trim(v, `"'`)
	}
	return ""
}

// DefaultNodeIP is the node's address when --node-ip is not given: the
// first global unicast address of the interface carrying the default route
// (IPv4 first, then IPv6; the route's preferred source when it has one),
// else the first global unicast address of any interface.
func DefaultNodeIP() (net.IP, error) {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if ip := defaultRouteIP(family); ip != nil {
			return ip, nil
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var v6 net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP.To4(), nil
		}
		if v6 == nil {
			v6 = n.IP
		}
	}
	if v6 != nil {
		return v6, nil
	}
	return nil, errors.New("no global unicast address on any interface: pass the node IP explicitly")
}

// defaultRouteIP is the address of the best default route of the main
// table for family, or nil.
func defaultRouteIP(family int) net.IP {
	routes, err := netlink.RouteList(nil, family)
	if err != nil {
		return nil
	}
	var best *netlink.Route
	for i := range routes {
		r := &routes[i]
		if r.LinkIndex <= 0 || (r.Dst != nil && !isDefault(r.Dst)) {
			continue
		}
		if best == nil || r.Priority < best.Priority {
			best = r
		}
	}
	if best == nil {
		return nil
	}
	if best.Src != nil && best.Src.IsGlobalUnicast() {
		return normalize(best.Src)
	}
	link, err := netlink.LinkByIndex(best.LinkIndex)
	if err != nil {
		return nil
	}
	addrs, err := netlink.AddrList(link, family)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			return normalize(a.IP)
		}
	}
	return nil
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

func normalize(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

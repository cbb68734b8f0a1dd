package runtime

import (
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultCaps is the capability set containerd and Docker give a container
// by default (what Kubernetes pods get without a securityContext).
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultCPUPeriod is the CFS period used when a quota is set without one.
const DefaultCPUPeriod = 100000

// CPUShares converts a CPU request in millicores to cgroup v1 shares as the
// kubelet does (minimum 2; libcontainer maps shares to weight on v2).
func CPUShares(milli int64) uint64 {
	if milli <= 0 {
		return 2
	}
	s := uint64(milli) * 1024 / 1000
	if s < 2 {
		s = 2
	}
	return s
}

// CPUQuota converts a CPU limit in millicores to a CFS quota for the default
// period (minimum 1000 µs), as the kubelet does. 0 means no limit.
func CPUQuota(milli int64) int64 {
	if milli <= 0 {
		return 0
	}
	q := milli * DefaultCPUPeriod / 1000
	if q < 1000 {
		q = 1000
	}
	return q
}

// spec builds the OCI spec of a container from its config.
func (r *Runtime) spec(cfg *ContainerConfig, rootfs string, sb *Sandbox) (*specs.Spec, error) {
	s := specconv.Example()
	s.Root = &specs.Root{Path: rootfs, Readonly: cfg.ReadonlyRootfs}
	s.Hostname = cfg.Hostname
	if s.Hostname == "" && sb != nil {
		s.Hostname = sb.Hostname
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	env := cfg.Env
	if !hasEnv(env, "PATH") {
		env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	}
	s.Process = &specs.Process{
		Terminal: cfg.Tty,
		Args:     cfg.Args,
		Env:      env,
		Cwd:      cwd,
		User:     specs.User{UID: cfg.UID, GID: cfg.GID, AdditionalGids: cfg.AdditionalGIDs},
		Capabilities: &specs.LinuxCapabilities{
			Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
		},
		NoNewPrivileges: false,
	}
	if s.Hostname == "" {
		s.Hostname = cfg.ID
		if len(s.Hostname) > 63 {
			s.Hostname = s.Hostname[:63]
		}
	}

	var mounts []specs.Mount
	for _, m := range s.Mounts {
		if m.Destination == "/dev/shm" && sb != nil {
			m = specs.Mount{Destination: "/dev/shm", Type: "bind", Source: sb.ShmPath,
				Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}}
		}
		mounts = append(mounts, m)
	}
	for _, m := range cfg.Mounts {
		if !filepath.IsAbs(m.Destination) || !filepath.IsAbs(m.Source) {
			return nil, fmt.Errorf("mount %s:%s: paths must be absolute: %w", m.Source, m.Destination, ErrInvalid)
		}
		opts := []string{"rbind", "rprivate"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		mounts = append(mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: opts})
	}
	s.Mounts = mounts

	ns := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.CgroupNamespace},
	}
	switch {
	case sb != nil && sb.HostNetwork:
		// No network namespace entry: the container stays in the host's.
		ns = append(ns, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: sb.IPCNSPath})
	case sb != nil:
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNSPath},
			specs.LinuxNamespace{Type: specs.IPCNamespace, Path: sb.IPCNSPath})
	default:
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace},
			specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	s.Linux.Namespaces = ns
	s.Linux.CgroupsPath = path.Join(r.opts.CgroupParent, cfg.CgroupParent, cfg.ID)

	res := s.Linux.Resources
	if res == nil {
		res = &specs.LinuxResources{}
		s.Linux.Resources = res
	}
	rc := cfg.Resources
	if rc.CPUShares != 0 || rc.CPUQuota != 0 {
		cpu := &specs.LinuxCPU{}
		if rc.CPUShares != 0 {
			v := rc.CPUShares
			cpu.Shares = &v
		}
		if rc.CPUQuota > 0 {
			q, p := rc.CPUQuota, rc.CPUPeriod
			if p == 0 {
				p = DefaultCPUPeriod
			}
			cpu.Quota, cpu.Period = &q, &p
		}
		res.CPU = cpu
	}
	if rc.MemoryLimit > 0 {
		lim := rc.MemoryLimit
		mem := &specs.LinuxMemory{Limit: &lim}
		if swapAccounted() {
			// memory+swap = memory: no swap, so a limit means an OOM kill.
			sw := lim
			mem.Swap = &sw
		}
		res.Memory = mem
	}
	if rc.PidsLimit > 0 {
		res.Pids = &specs.LinuxPids{Limit: &rc.PidsLimit}
	}
	return s, nil
}

// libcontainerConfig converts the spec; libcontainer resolves a relative
// root.path against the working directory, so the path is absolute here.
func libcontainerConfig(id string, s *specs.Spec) (*configs.Config, error) {
	return specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: s, NoNewKeyring: true})
}

// swapAccounted reports whether a swap limit can be written: always on v2
// (libcontainer skips memory.swap.max=0 where swap is not compiled in), and
// on v1 when memory.memsw.* exists (swapaccount=1).
func swapAccounted() bool {
	if cgroups.IsCgroup2UnifiedMode() {
		return true
	}
	mnt, err := cgroups.FindCgroupMountpoint("", "memory")
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(mnt, "memory.memsw.limit_in_bytes"))
	return err == nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if len(e) > len(key) && e[:len(key)] == key && e[len(key)] == '=' {
			return true
		}
	}
	return false
}

package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SandboxConfig describes a pod sandbox.
type SandboxConfig struct {
	// ID names the sandbox (e.g. the pod UID); libcontainer id characters.
	ID string
	// Hostname is set in every container of the sandbox unless the
	// container overrides it.
	Hostname string
	// ShmSize is the size of the pod's /dev/shm tmpfs; default 64 MiB.
	ShmSize int64
	// Labels are kept for the caller (pod namespace/name/uid…).
	Labels map[string]string
	// HostNetwork: the sandbox's containers share the host's network
	// namespace (pod spec hostNetwork); the sandbox makes no network
	// namespace and its NetNSPath is empty.
	HostNetwork bool `json:",omitempty"`
}

// Sandbox is a pod's shared environment: a network namespace (with loopback
// up), an IPC namespace and a /dev/shm tmpfs, all held by files so no process
// needs to run for them.
type Sandbox struct {
	SandboxConfig
	// NetNSPath is the bind-mounted network namespace; the network code
	// moves a veth into it (netns.GetFromPath / netlink.NewHandleAt).
	// Empty for a HostNetwork sandbox.
	NetNSPath string
	// IPCNSPath is the bind-mounted IPC namespace.
	IPCNSPath string
	// ShmPath is the tmpfs mounted as /dev/shm in each container.
	ShmPath   string
	CreatedAt time.Time
}

// CreateSandbox creates a sandbox. On error nothing is left behind.
func (r *Runtime) CreateSandbox(ctx context.Context, cfg SandboxConfig) (_ *Sandbox, retErr error) {
	if err := validID(cfg.ID); err != nil {
		return nil, err
	}
	defer r.lock("sandbox/" + cfg.ID)()
	dir := r.sandboxDir(cfg.ID)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, ErrExist)
		}
		return nil, err
	}
	if cfg.ShmSize <= 0 {
		cfg.ShmSize = 64 << 20
	}
	sb := &Sandbox{
		SandboxConfig: cfg,
		NetNSPath:     filepath.Join(r.opts.NetNSDir, "skiff-"+cfg.ID), // cleared below for HostNetwork
		IPCNSPath:     filepath.Join(r.opts.NetNSDir, "skiff-"+cfg.ID+".ipc"),
		ShmPath:       filepath.Join(dir, "shm"),
		CreatedAt:     time.Now(),
	}
	defer func() {
		if retErr != nil {
			_ = r.removeSandbox(cfg.ID, sb)
		}
	}()
	if err := os.MkdirAll(r.opts.NetNSDir, 0o755); err != nil {
		return nil, err
	}
	if cfg.HostNetwork {
		sb.NetNSPath = ""
	}
	if err := newNamespaces(sb.NetNSPath, sb.IPCNSPath); err != nil {
		return nil, fmt.Errorf("sandbox %s: namespaces: %w", cfg.ID, err)
	}
	if err := os.Mkdir(sb.ShmPath, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount("shm", sb.ShmPath, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
		"mode=1777,size="+strconv.FormatInt(cfg.ShmSize, 10)); err != nil {
		return nil, fmt.Errorf("sandbox %s: mount shm: %w", cfg.ID, err)
	}
	if err := writeJSON(filepath.Join(dir, "sandbox.json"), sb); err != nil {
		return nil, err
	}
	r.log.Debug("sandbox created", "sandbox", cfg.ID, "netns", sb.NetNSPath)
	return sb, nil
}

// newNamespaces makes a network (unless netPath is empty: host network) and
// an IPC namespace on a throw-away OS thread, binds them to the given paths
// and brings loopback up. The thread stays locked, so the Go runtime ends it
// instead of reusing it.
func newNamespaces(netPath, ipcPath string) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with us
		errc <- func() error {
			flags := unix.CLONE_NEWNET | unix.CLONE_NEWIPC
			if netPath == "" {
				flags = unix.CLONE_NEWIPC
			}
			if err := unix.Unshare(flags); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			self := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/ns/"
			binds := []struct{ src, dst string }{{self + "ipc", ipcPath}}
			if netPath != "" {
				binds = append(binds, struct{ src, dst string }{self + "net", netPath})
			}
			for _, b := range binds {
				f, err := os.OpenFile(b.dst, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
				if err != nil {
					return err
				}
				f.Close()
				if err := unix.Mount(b.src, b.dst, "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("bind %s: %w", b.dst, err)
				}
			}
			if netPath == "" {
				return nil
			}
			h, err := netlink.NewHandle(unix.NETLINK_ROUTE) // socket in this thread's netns
			if err != nil {
				return err
			}
			defer h.Close()
			lo, err := h.LinkByName("lo")
			if err != nil {
				return err
			}
			return h.LinkSetUp(lo)
		}()
	}()
	return <-errc
}

// GetSandbox returns a sandbox by id.
func (r *Runtime) GetSandbox(id string) (*Sandbox, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	var sb Sandbox
	if err := readJSON(filepath.Join(r.sandboxDir(id), "sandbox.json"), &sb); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("sandbox %s: %w", id, ErrNotFound)
		}
		return nil, err
	}
	return &sb, nil
}

// ListSandboxes returns the sandboxes under the root, for reconciling after a
// restart.
func (r *Runtime) ListSandboxes() ([]*Sandbox, error) {
	ents, err := os.ReadDir(r.sandboxesDir())
	if err != nil {
		return nil, err
	}
	var out []*Sandbox
	for _, e := range ents {
		sb, err := r.GetSandbox(e.Name())
		if err != nil {
			// Half-made (crash during create): report what the path says
			// so the caller can remove it.
			sb = &Sandbox{SandboxConfig: SandboxConfig{ID: e.Name()}}
		}
		out = append(out, sb)
	}
	return out, nil
}

// RemoveSandbox unmounts and removes a sandbox's namespaces and shm. Its
// containers should be deleted first (they keep the namespaces alive until
// they exit, but nothing else breaks). Removing a missing sandbox is no error.
func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	defer r.lock("sandbox/" + id)()
	sb, err := r.GetSandbox(id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return r.removeSandbox(id, sb)
}

func (r *Runtime) removeSandbox(id string, sb *Sandbox) error {
	netPath := filepath.Join(r.opts.NetNSDir, "skiff-"+id)
	paths := []string{netPath, netPath + ".ipc", filepath.Join(r.sandboxDir(id), "shm")}
	if sb != nil && sb.NetNSPath != "" {
		paths = []string{sb.NetNSPath, sb.IPCNSPath, sb.ShmPath}
	}
	var errs []error
	for _, p := range paths {
		if err := unmountAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(r.sandboxDir(id)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unmountAll detaches every mount stacked on path; a path that is not a
// mount point (or does not exist) is fine.
func unmountAll(path string) error {
	for i := 0; i < 16; i++ {
		err := unix.Unmount(path, unix.MNT_DETACH)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted", path)
}

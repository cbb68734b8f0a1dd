package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/internal/agent/nodenet"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// KillAll stops and removes every container and sandbox of the agent whose
// data dir is dataDir, unmounts what the agent mounted under it and removes
// the pods' cgroups: what `skiff killall` (and skiff-killall.sh) does after
// the agent has stopped, and removes the node's network (nftables table,
// bridge, veths, VXLAN device and routes) in the current network namespace.
// Pod objects in the API are not touched; images and
// the node's credentials stay. The agent must not be running.
func KillAll(ctx context.Context, dataDir, cgroupRoot string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if cgroupRoot == "" {
		cgroupRoot = DefaultCgroupRoot
	}
	dir := Dir(dataDir)
	var errs []error
	root := filepath.Join(dir, "containers")
	if _, err := os.Stat(root); err == nil {
		// Re-adopting each container is logged at info; not news here.
		rtLog := slog.New(minLevel{log.Handler(), slog.LevelWarn})
		rt, err := runtime.Open(root, runtime.Options{CgroupParent: cgroupRoot, Logger: rtLog})
		if err != nil {
			return err
		}
		states, err := rt.List()
		if err != nil {
			errs = append(errs, err)
		}
		for _, s := range states {
			if _, err := rt.Stop(ctx, s.ID, 0); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", s.ID, err))
			}
			if err := rt.Delete(ctx, s.ID); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", s.ID, err))
			}
		}
		if len(states) > 0 {
			log.Info("stopped and removed containers", "count", len(states))
		}
		sbs, err := rt.ListSandboxes()
		if err != nil {
			errs = append(errs, err)
		}
		for _, sb := range sbs {
			if err := rt.RemoveSandbox(ctx, sb.ID); err != nil {
				errs = append(errs, fmt.Errorf("remove sandbox %s: %w", sb.ID, err))
			}
		}
		// The pods' QoS cgroups (kubepods/…) hold nothing once their
		// containers are deleted.
		if err := rt.RemoveCgroup("kubepods"); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroups: %w", err))
		}
		_ = rt.Close()
		// And the agent's own root cgroup, empty now.
		if err := removeCgroupEverywhere(cgroupRoot); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	// The node's network (in this network namespace): Service rules,
	// bridge, veths, VXLAN device, routes. With every pod gone, so are
	// their addresses.
	if err := nodenet.Cleanup(); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	if err := os.RemoveAll(filepath.Join(dir, "network")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unmountUnder lazily unmounts every mount point below dir, deepest first
// (pod volumes on tmpfs, leftovers of a crashed container setup).
func unmountUnder(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountPath(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		for try := 0; ; try++ {
			err := unix.Unmount(p, unix.MNT_DETACH)
			if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				break
			}
			if try == 3 {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space…).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroupEverywhere removes the (empty) cgroup rel in every hierarchy.
func removeCgroupEverywhere(rel string) error {
	var dirs []string
	if cgroups.IsCgroup2UnifiedMode() {
		dirs = []string{filepath.Join("/sys/fs/cgroup", rel)}
	} else {
		ms, err := cgroups.GetCgroupMounts(true)
		if err != nil {
			return err
		}
		for _, m := range ms {
			dirs = append(dirs, filepath.Join(m.Mountpoint, rel))
		}
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup/unified", rel))
	}
	var errs []error
	for _, d := range dirs {
		if err := cgroups.RemovePath(d); err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// minLevel drops records below a level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }

package podconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-dev/skiff/internal/runtime"
)

// containerMounts is the kubelet's makeMounts plus the files containerd adds:
// each volumeMount (subPath / subPathExpr resolved inside the volume;
// read-only when asked or when the volume is), then /etc/hosts,
// /etc/hostname and /etc/resolv.conf unless the container mounts something
// there itself, then the termination-message file.
func containerMounts(pod *corev1.Pod, c *corev1.Container, env map[string]string, opts *Options) ([]runtime.Mount, error) {
	var mounts []runtime.Mount
	taken := map[string]bool{}
	for _, m := range c.VolumeMounts {
		vol, ok := opts.Volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("cannot find volume %q to mount into container %q", m.Name, c.Name)
		}
		if !filepath.IsAbs(m.MountPath) {
			return nil, fmt.Errorf("volumeMount %q: mountPath %q must be absolute", m.Name, m.MountPath)
		}
		src := vol.HostPath
		subPath := m.SubPath
		if m.SubPathExpr != "" {
			var err error
			if subPath, err = expandSubPath(m.SubPathExpr, env); err != nil {
				return nil, err
			}
		}
		if subPath != "" {
			var err error
			if src, err = resolveSubPath(vol.HostPath, subPath, m.Name, c.Name); err != nil {
				return nil, err
			}
		}
		taken[filepath.Clean(m.MountPath)] = true
		mounts = append(mounts, runtime.Mount{Source: src, Destination: m.MountPath, ReadOnly: m.ReadOnly || vol.ReadOnly})
	}
	ro := c.SecurityContext != nil && isTrue(c.SecurityContext.ReadOnlyRootFilesystem)
	for _, f := range []struct{ src, dst string }{
		{opts.PodFiles.Hosts, "/etc/hosts"},
		{opts.PodFiles.Hostname, "/etc/hostname"},
		{opts.PodFiles.ResolvConf, "/etc/resolv.conf"},
	} {
		if f.src != "" && !taken[f.dst] {
			mounts = append(mounts, runtime.Mount{Source: f.src, Destination: f.dst, ReadOnly: ro})
		}
	}
	if opts.TerminationLogPath != "" {
		dst := c.TerminationMessagePath
		if dst == "" {
			dst = corev1.TerminationMessagePathDefault
		}
		if !taken[filepath.Clean(dst)] {
			mounts = append(mounts, runtime.Mount{Source: opts.TerminationLogPath, Destination: dst})
		}
	}
	return mounts, nil
}

// expandSubPath is upstream's kubecontainer.ExpandContainerVolumeMounts: every
// referenced variable must be defined and non-empty.
func expandSubPath(expr string, env map[string]string) (string, error) {
	missing := map[string]bool{}
	out := Expand(expr, func(k string) string {
		v, ok := env[k]
		if !ok || v == "" {
			missing[k] = true
		}
		return v
	})
	if len(missing) > 0 {
		keys := make([]string, 0, len(missing))
		for k := range missing {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return "", fmt.Errorf("missing value for %s", strings.Join(keys, ", "))
	}
	return out, nil
}

// resolveSubPath checks subPath as the kubelet's makeMounts does (relative,
// no ".." element), resolves it inside the volume with symlinks confined to
// the volume (securejoin; the kubelet instead bind-mounts an fd opened
// without following symlinks — a symlink swapped in between this check and
// the container start is not caught here), and creates it as a directory
// with the volume's mode when it does not exist.
func resolveSubPath(volPath, subPath, volName, cName string) (string, error) {
	if filepath.IsAbs(subPath) {
		return "", fmt.Errorf("error SubPath `%s` must not be an absolute path", subPath)
	}
	for _, part := range strings.Split(filepath.ToSlash(subPath), "/") {
		if part == ".." {
			return "", fmt.Errorf("unable to provision SubPath `%s`: must not contain '..'", subPath)
		}
	}
	p, err := securejoin.SecureJoin(volPath, subPath)
	if err != nil {
		return "", fmt.Errorf("unable to provision SubPath `%s`: %w", subPath, err)
	}
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		perm := os.FileMode(0o755)
		if fi, err := os.Stat(volPath); err == nil {
			perm = fi.Mode().Perm()
		}
		if err := mkdirAllChmod(volPath, p, perm); err != nil {
			return "", fmt.Errorf("failed to create subPath directory for volumeMount %q of container %q", volName, cName)
		}
	} else if err != nil {
		return "", err
	}
	return p, nil
}

// mkdirAllChmod creates the missing directories from root down to p with
// perm, chmodding each (mkdir applies the umask; upstream's doSafeMakeDir
// fchmods too).
func mkdirAllChmod(root, p string, perm os.FileMode) error {
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%s is not under %s", p, root)
	}
	cur := root
	for _, part := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, perm); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return err
		}
		if err := os.Chmod(cur, perm); err != nil {
			return err
		}
	}
	return nil
}

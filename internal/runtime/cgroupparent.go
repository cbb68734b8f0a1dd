package runtime

import (
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
)

// validCgroupParent accepts "" or a clean relative path without "..".
func validCgroupParent(p string) error {
	if p == "" {
		return nil
	}
	if path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "..") || strings.Contains(p, "/../") {
		return fmt.Errorf("cgroup parent %q: want a clean relative path: %w", p, ErrInvalid)
	}
	return nil
}

// RemoveCgroup removes the cgroup rel (relative to Options.CgroupParent, as
// ContainerConfig.CgroupParent) and the cgroups below it, in every
// hierarchy. It fails while a process is still in any of them: delete the
// pod's containers first.
func (r *Runtime) RemoveCgroup(rel string) error {
	if rel == "" {
		return fmt.Errorf("remove cgroup: empty path: %w", ErrInvalid)
	}
	if err := validCgroupParent(rel); err != nil {
		return err
	}
	m, err := manager.New(&cgroups.Cgroup{Path: path.Join(r.opts.CgroupParent, rel), Resources: &cgroups.Resources{}})
	if err != nil {
		return err
	}
	return m.Destroy()
}

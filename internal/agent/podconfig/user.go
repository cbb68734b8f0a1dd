package podconfig

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// User is the identity the container's process runs as.
type User struct {
	UID, GID       uint32
	AdditionalGIDs []uint32
	// Username from the rootfs's /etc/passwd, when known.
	Username string
}

// ResolveUser decides the container's uid, gid and supplementary groups the
// way the kubelet (determineEffectiveSecurityContext) and containerd
// (WithUser/WithUserID/WithAdditionalGIDs) do together:
//
//   - runAsUser (container's, else pod's) wins; its primary gid is the one
//     the rootfs's /etc/passwd gives that uid, else 0.
//   - otherwise the image's User: "uid", "uid:gid", "name" or "name:group";
//     names are looked up in the rootfs's /etc/passwd and /etc/group through
//     readFile (an unknown name is an error, as in runc); a numeric uid
//     gets its primary gid from /etc/passwd when listed, else 0.
//   - otherwise root (0:0).
//   - runAsGroup (container's, else pod's) replaces the primary gid.
//   - supplementary groups: the primary gid, the /etc/group groups listing
//     the user by name (skipped with supplementalGroupsPolicy Strict), then
//     the pod's fsGroup, then its supplementalGroups; duplicates dropped.
//
// readFile may be nil: then only numeric users work and no group
// membership is read.
//
// One deliberate difference: the kubelet passes only the user part of the
// image's User to the runtime (getImageUser → RunAsUser/RunAsUsername), so
// under kubelet+containerd an image "1000:1000" or "www:web" runs with the
// user's passwd group, not the image's; here the image's group is honoured,
// as Docker and runc do (and as the OCI image spec describes).
func ResolveUser(pod *corev1.Pod, c *corev1.Container, imageUser string, readFile func(string) ([]byte, error)) (User, error) {
	psc := pod.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	runAsUser, runAsGroup := psc.RunAsUser, psc.RunAsGroup
	if csc.RunAsUser != nil {
		runAsUser = csc.RunAsUser
	}
	if csc.RunAsGroup != nil {
		runAsGroup = csc.RunAsGroup
	}
	var passwd, group []byte
	if readFile != nil {
		var err error
		if passwd, err = readFile("/etc/passwd"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return User{}, fmt.Errorf("read /etc/passwd: %w", err)
		}
		if group, err = readFile("/etc/group"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return User{}, fmt.Errorf("read /etc/group: %w", err)
		}
	}
	users := parseColonFile(passwd, 4)
	groups := parseColonFile(group, 3)
	byUID := func(uid uint32) (name string, gid uint32) {
		for _, u := range users {
			if id, err := strconv.ParseUint(u[2], 10, 32); err == nil && uint32(id) == uid {
				g, _ := strconv.ParseUint(u[3], 10, 32)
				return u[0], uint32(g)
			}
		}
		return "", 0
	}

	var u User
	switch {
	case runAsUser != nil:
		if *runAsUser < 0 || *runAsUser > 0xffffffff {
			return User{}, fmt.Errorf("runAsUser %d out of range", *runAsUser)
		}
		u.UID = uint32(*runAsUser)
		u.Username, u.GID = byUID(u.UID)
	case imageUser != "":
		name, grp, hasGroup := strings.Cut(imageUser, ":")
		if id, err := strconv.ParseUint(name, 10, 32); err == nil {
			u.UID = uint32(id)
			u.Username, u.GID = byUID(u.UID)
		} else {
			found := false
			for _, e := range users {
				if e[0] == name {
					id, err1 := strconv.ParseUint(e[2], 10, 32)
					g, err2 := strconv.ParseUint(e[3], 10, 32)
					if err1 != nil || err2 != nil {
						return User{}, fmt.Errorf("invalid /etc/passwd entry for %s", name)
					}
					u.UID, u.GID, u.Username, found = uint32(id), uint32(g), name, true
					break
				}
			}
			if !found {
				return User{}, fmt.Errorf("unable to find user %s: no matching entries in passwd file", name)
			}
		}
		if hasGroup {
			if id, err := strconv.ParseUint(grp, 10, 32); err == nil {
				u.GID = uint32(id)
			} else {
				found := false
				for _, g := range groups {
					if g[0] == grp {
						id, err := strconv.ParseUint(g[2], 10, 32)
						if err != nil {
							return User{}, fmt.Errorf("invalid /etc/group entry for %s", grp)
						}
						u.GID, found = uint32(id), true
						break
					}
				}
				if !found {
					return User{}, fmt.Errorf("unable to find group %s: no matching entries in group file", grp)
				}
			}
		}
	default:
		u.Username, _ = byUID(0)
	}
	if runAsGroup != nil {
		if *runAsGroup < 0 || *runAsGroup > 0xffffffff {
			return User{}, fmt.Errorf("runAsGroup %d out of range", *runAsGroup)
		}
		u.GID = uint32(*runAsGroup)
	}

	seen := map[uint32]bool{}
	add := func(g uint32) {
		if !seen[g] {
			seen[g] = true
			u.AdditionalGIDs = append(u.AdditionalGIDs, g)
		}
	}
	add(u.GID)
	strict := psc.SupplementalGroupsPolicy != nil && *psc.SupplementalGroupsPolicy == corev1.SupplementalGroupsPolicyStrict
	if u.Username != "" && !strict {
		for _, g := range groups {
			if g[0] == u.Username {
				continue
			}
			for _, m := range strings.Split(g[3], ",") {
				if m == u.Username {
					if id, err := strconv.ParseUint(g[2], 10, 32); err == nil {
						add(uint32(id))
					}
					break
				}
			}
		}
	}
	if psc.FSGroup != nil {
		add(uint32(*psc.FSGroup))
	}
	for _, g := range psc.SupplementalGroups {
		add(uint32(g))
	}
	return u, nil
}

// parseColonFile splits passwd/group lines into at least minFields+1 fields.
func parseColonFile(data []byte, minFields int) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		for len(f) <= minFields {
			f = append(f, "")
		}
		out = append(out, f)
	}
	return out
}

// LowerdirReader reads files of an overlay rootfs from its read-only layers
// (top first, as image.Store.LowerDirs returns them) without mounting it: the
// topmost layer holding the path wins; an overlay whiteout (char device 0/0)
// or an opaque parent directory (trusted.overlay.opaque=y) in a higher layer
// hides lower ones. Symlinks are followed inside the rootfs (absolute
// targets are relative to the rootfs), up to 16 hops.
func LowerdirReader(lowerdirs []string) func(p string) ([]byte, error) {
	var read func(p string, depth int) ([]byte, error)
	read = func(p string, depth int) ([]byte, error) {
		if depth > 16 {
			return nil, fmt.Errorf("%s: too many symlinks", p)
		}
		p = path.Clean("/" + p)
		for _, dir := range lowerdirs {
			full := filepath.Join(dir, p)
			fi, err := os.Lstat(full)
			if err == nil {
				switch {
				case fi.Mode()&fs.ModeCharDevice != 0:
					if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev == 0 {
						return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
					}
					return nil, fmt.Errorf("%s: not a regular file", p)
				case fi.Mode()&fs.ModeSymlink != 0:
					target, err := os.Readlink(full)
					if err != nil {
						return nil, err
					}
					if !path.IsAbs(target) {
						target = path.Join(path.Dir(p), target)
					}
					return read(target, depth+1)
				case fi.Mode().IsRegular():
					return os.ReadFile(full)
				default:
					return nil, fmt.Errorf("%s: not a regular file", p)
				}
			}
			if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
				return nil, err
			}
			// An opaque parent hides lower layers' entries.
			buf := make([]byte, 1)
			if n, err := unix.Lgetxattr(filepath.Join(dir, path.Dir(p)), "trusted.overlay.opaque", buf); err == nil && n == 1 && buf[0] == 'y' {
				break
			}
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	return func(p string) ([]byte, error) { return read(p, 0) }
}

package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// ensureSnapshot makes sure the layer with this diffID is unpacked, doing the
// work once however many callers ask at the same time. open returns the
// uncompressed layer tar. The caller has pinned diffID. It returns the
// unpacked size.
func (s *Store) ensureSnapshot(ctx context.Context, diffID string, open func() (io.ReadCloser, error)) (int64, error) {
	v, err, _ := s.layers.Do(diffID, func() (any, error) {
		if _, err := os.Stat(s.snapshotDir(diffID)); err == nil {
			return s.knownSize(diffID), nil
		}
		rc, err := open()
		if err != nil {
			return int64(0), err
		}
		defer rc.Close()
		start := time.Now()
		n, err := s.unpack(ctx, diffID, rc)
		if err != nil {
			return int64(0), fmt.Errorf("layer %s: %w", diffID, err)
		}
		s.log.Debug("layer unpacked", "diffID", diffID, "bytes", n, "took", time.Since(start))
		return n, nil
	})
	if err != nil {
		return 0, err
	}
	return v.(int64), nil
}

// knownSize is the recorded unpacked size of a snapshot, 0 if no image says.
func (s *Store) knownSize(diffID string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, img := range s.images {
		for _, l := range img.Layers {
			if l.DiffID == diffID {
				return l.Size
			}
		}
	}
	return 0
}

// unpack extracts an uncompressed layer tar into a temp dir, checks its
// digest against diffID and renames it into snapshots/.
func (s *Store) unpack(ctx context.Context, diffID string, r io.Reader) (int64, error) {
	if !strings.HasPrefix(diffID, "sha256:") || len(hexOf(diffID)) != 64 || !isHex(hexOf(diffID)) {
		return 0, fmt.Errorf("%w: diffID %q", ErrInvalid, diffID)
	}
	work, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "unpack-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(work)
	dst := filepath.Join(work, "fs")
	if err := os.Mkdir(dst, 0o755); err != nil {
		return 0, err
	}
	h := sha256.New()
	tee := io.TeeReader(r, h)
	n, err := Unpack(ctx, tee, dst)
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // tar padding after the end marker
		return 0, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return 0, fmt.Errorf("%w: layer content digest %s does not match diffID %s", ErrInvalid, got, diffID)
	}
	if err := os.Rename(dst, s.snapshotDir(diffID)); err != nil {
		if _, serr := os.Stat(s.snapshotDir(diffID)); serr == nil {
			return n, nil // another process (or an earlier crash) got there first
		}
		return 0, err
	}
	return n, nil
}

// Unpack extracts an uncompressed OCI/Docker layer tar into the directory dst
// (which should be empty) as an overlayfs lower layer: whiteouts ".wh.NAME"
// become character devices 0/0 and ".wh..wh..opq" sets trusted.overlay.opaque=y
// on its directory. It keeps modes, owners, xattrs, times, hard links,
// symlinks and device nodes. Entries that would write outside dst — a ".."
// path component, a path through a symlink, a hard link to outside the
// layer — fail with ErrUnsafe. It returns the bytes of file content written.
func Unpack(ctx context.Context, r io.Reader, dst string) (int64, error) {
	u := &unpacker{root: dst}
	tr := tar.NewReader(r)
	for i := 0; ; i++ {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("reading layer tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return 0, fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
	// Directory times last: creating children changes them.
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		_ = setTimes(d.path, d.hdr)
	}
	return u.size, nil
}

type unpacker struct {
	root string
	size int64
	dirs []dirMeta
}

type dirMeta struct {
	path string
	hdr  *tar.Header
}

// cleanRel turns a tar entry name into a path relative to the layer root,
// rejecting any ".." component. "" is the root itself.
func cleanRel(name string) (string, error) {
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: path %q leaves the layer", ErrUnsafe, name)
		}
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), nil
}

// parents makes sure every directory above rel exists as a real directory
// (creating missing ones 0755), refusing to go through symlinks or files.
func (u *unpacker) parents(rel string) error {
	dir := path.Dir(rel)
	if dir == "." || dir == "/" || dir == "" {
		return nil
	}
	p := u.root
	for _, c := range strings.Split(dir, "/") {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: path %q goes through symlink %q", ErrUnsafe, rel, strings.TrimPrefix(p, u.root+"/"))
		case !fi.IsDir():
			return fmt.Errorf("%w: path %q: %q is not a directory", ErrInvalid, rel, strings.TrimPrefix(p, u.root+"/"))
		}
	}
	return nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanRel(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		if hdr.Typeflag == tar.TypeDir {
			if err := u.meta(u.root, hdr); err != nil {
				return err
			}
			u.dirs = append(u.dirs, dirMeta{u.root, hdr})
		}
		return nil
	}
	if err := u.parents(rel); err != nil {
		return err
	}
	target := filepath.Join(u.root, rel)
	base := path.Base(rel)

	if strings.HasPrefix(base, whiteoutPrefix) {
		parent := filepath.Dir(target)
		if base == opaqueWhiteout {
			return unix.Lsetxattr(parent, opaqueXattr, []byte("y"), 0)
		}
		orig := strings.TrimPrefix(base, whiteoutPrefix)
		if orig == "" || orig == "." || orig == ".." {
			return fmt.Errorf("%w: whiteout %q", ErrInvalid, hdr.Name)
		}
		wt := filepath.Join(parent, orig)
		if err := os.RemoveAll(wt); err != nil {
			return err
		}
		if err := unix.Mknod(wt, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("whiteout: %w", err)
		}
		return nil
	}

	fi, err := os.Lstat(target)
	exists := err == nil
	if exists && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
		if err := os.RemoveAll(target); err != nil {
			return err
		}
		exists = false
	}

	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !exists {
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		}
		u.dirs = append(u.dirs, dirMeta{target, hdr})
	case tar.TypeReg, tar.TypeRegA:
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		u.size += n
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
	case tar.TypeLink:
		lrel, err := cleanRel(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link: %w", err)
		}
		if lrel == "" {
			return fmt.Errorf("%w: hard link to the layer root", ErrUnsafe)
		}
		if err := u.noSymlinkParents(lrel); err != nil {
			return fmt.Errorf("hard link: %w", err)
		}
		src := filepath.Join(u.root, lrel)
		sfi, err := os.Lstat(src)
		if err != nil {
			return fmt.Errorf("%w: hard link to %q, which is not in the layer", ErrUnsafe, hdr.Linkname)
		}
		if sfi.IsDir() {
			return fmt.Errorf("%w: hard link to directory %q", ErrUnsafe, hdr.Linkname)
		}
		return os.Link(src, target) // shares the source's metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		m := mode
		switch hdr.Typeflag {
		case tar.TypeChar:
			m |= unix.S_IFCHR
		case tar.TypeBlock:
			m |= unix.S_IFBLK
		default:
			m |= unix.S_IFIFO
		}
		if err := unix.Mknod(target, m, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return nil // unknown types (e.g. GNU sparse leftovers) are skipped, as containerd does
	}
	if err := u.meta(target, hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeDir {
		return setTimes(target, hdr)
	}
	return nil
}

// noSymlinkParents checks that no directory above rel is a symlink.
func (u *unpacker) noSymlinkParents(rel string) error {
	dir := path.Dir(rel)
	if dir == "." {
		return nil
	}
	p := u.root
	for _, c := range strings.Split(dir, "/") {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("%w: %q is not in the layer", ErrUnsafe, rel)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: %q goes through a non-directory", ErrUnsafe, rel)
		}
	}
	return nil
}

// meta applies owner, mode and xattrs (in that order: chown clears setuid
// bits and file capabilities).
func (u *unpacker) meta(p string, hdr *tar.Header) error {
	if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, uint32(hdr.Mode)&0o7777, 0); err != nil {
			return err
		}
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if strings.HasPrefix(name, "trusted.overlay.") {
			continue // only whiteout entries may steer overlayfs
		}
		if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
				continue
			}
			return fmt.Errorf("xattr %s: %w", name, err)
		}
	}
	return nil
}

func setTimes(p string, hdr *tar.Header) error {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

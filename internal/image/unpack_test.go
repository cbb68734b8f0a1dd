package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnpackMetadata(t *testing.T) {
	dst := t.TempDir()
	b := tarBytes(t,
		entry{Name: "./", Type: tar.TypeDir, Mode: 0o755},
		entry{Name: "usr/bin/", Type: tar.TypeDir, Mode: 0o711, UID: 7, GID: 8},
		entry{Name: "usr/bin/su", Type: tar.TypeReg, Body: "#!", Mode: 0o4755, UID: 0, GID: 0},
		entry{Name: "home/u/f", Type: tar.TypeReg, Body: "hi", Mode: 0o600, UID: 1000, GID: 1000,
			Xattrs: map[string]string{"user.note": "x", "trusted.overlay.redirect": "/evil"}},
		hardlink("home/u/g", "home/u/f"),
		symlink("abs", "/usr/bin/su"),
		entry{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666},
		entry{Name: "fifo", Type: tar.TypeFifo, Mode: 0o644},
	)
	n, err := Unpack(ctxT(t), bytes.NewReader(b), dst)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("size %d, want 4", n)
	}
	var st unix.Stat_t
	check := func(p string, mode uint32, uid, gid uint32) {
		t.Helper()
		if err := unix.Lstat(filepath.Join(dst, p), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != mode || st.Uid != uid || st.Gid != gid {
			t.Errorf("%s: mode %o uid %d gid %d, want %o %d %d", p, st.Mode, st.Uid, st.Gid, mode, uid, gid)
		}
	}
	check("usr/bin", unix.S_IFDIR|0o711, 7, 8)
	check("usr/bin/su", unix.S_IFREG|0o4755, 0, 0)
	check("home/u/f", unix.S_IFREG|0o600, 1000, 1000)
	check("dev/null", unix.S_IFCHR|0o666, 0, 0)
	check("fifo", unix.S_IFIFO|0o644, 0, 0)
	if unix.Lstat(filepath.Join(dst, "home/u/g"), &st); st.Nlink != 2 {
		t.Errorf("hard link: nlink %d", st.Nlink)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "abs")); l != "/usr/bin/su" {
		t.Errorf("abs -> %q", l)
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(dst, "home/u/f"), "user.note", buf); err != nil || string(buf[:n]) != "x" {
		t.Errorf("user.note xattr: %q %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(dst, "home/u/f"), "trusted.overlay.redirect", buf); err == nil {
		t.Error("trusted.overlay.* xattr from the tar was applied")
	}
	fi, _ := os.Stat(filepath.Join(dst, "usr/bin"))
	if !fi.ModTime().Equal(epoch) {
		t.Errorf("dir mtime %v, want %v", fi.ModTime(), epoch)
	}
}

func TestUnpackRejectsHostileEntries(t *testing.T) {
	for name, entries := range map[string][]entry{
		"dotdot":               {file("../evil", "x")},
		"dotdot inside":        {dir("a/"), file("a/../../evil", "x")},
		"abs dotdot":           {file("/../evil", "x")},
		"through abs symlink":  {symlink("esc", "/"), file("esc/evil", "x")},
		"through rel symlink":  {symlink("esc", "../../.."), file("esc/evil", "x")},
		"through dir symlink":  {dir("d/"), symlink("d/l", ".."), file("d/l/l2/evil", "x")},
		"hardlink dotdot":      {hardlink("h", "../outside")},
		"hardlink abs outside": {hardlink("h", "/etc/passwd")},
		"hardlink via symlink": {symlink("esc", "/etc"), hardlink("h", "esc/passwd")},
		"whiteout via symlink": {symlink("esc", ".."), file("esc/.wh.outside", "")},
		"opaque via symlink":   {symlink("esc", ".."), file("esc/.wh..wh..opq", "")},
	} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			dst := filepath.Join(base, "root")
			os.Mkdir(dst, 0o755)
			os.WriteFile(filepath.Join(base, "outside"), []byte("keep"), 0o644)
			_, err := Unpack(ctxT(t), bytes.NewReader(tarBytes(t, entries...)), dst)
			if !errors.Is(err, ErrUnsafe) {
				t.Errorf("err = %v, want ErrUnsafe", err)
			}
			ents, _ := os.ReadDir(base)
			if len(ents) != 2 {
				t.Errorf("something was written next to the layer: %v", ents)
			}
			if b, _ := os.ReadFile(filepath.Join(base, "outside")); string(b) != "keep" {
				t.Errorf("outside file changed: %q", b)
			}
			buf := make([]byte, 4)
			if _, err := unix.Lgetxattr(base, opaqueXattr, buf); err == nil {
				t.Error("opaque xattr set outside the layer")
			}
		})
	}
}

func TestUnpackChecksDiffID(t *testing.T) {
	s := openStore(t, Options{})
	b := tarBytes(t, file("a", "x"))
	sum := sha256.Sum256(b)
	good := "sha256:" + hex.EncodeToString(sum[:])
	bad := "sha256:" + strings.Repeat("0", 64)
	if _, err := s.unpack(ctxT(t), bad, bytes.NewReader(b)); !errors.Is(err, ErrInvalid) {
		t.Errorf("wrong diffID: %v", err)
	}
	if _, err := os.Stat(s.snapshotDir(bad)); err == nil {
		t.Error("snapshot kept for a layer with the wrong digest")
	}
	if _, err := s.unpack(ctxT(t), good, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.root, "tmp")); len(ents) != 0 {
		t.Errorf("tmp not cleaned: %v", ents)
	}
}

// TestWhiteoutsOnOverlay mounts the snapshots as overlayfs lowerdirs and
// checks that whiteouts and opaque directories hide the lower layer's files.
func TestWhiteoutsOnOverlay(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for overlay mounts and whiteout device nodes")
	}
	lower := layerOf(t, dir("dir/"), file("dir/a", "a"), file("dir/b", "b"), dir("opq/"), file("opq/x", "x"),
		dir("gone/"), file("gone/f", "f"), file("keep", "k"))
	upper := layerOf(t, dir("dir/"), file("dir/.wh.a", ""), dir("opq/"), file("opq/.wh..wh..opq", ""), file("opq/y", "y"),
		file(".wh.gone", ""), file("new", "n"))
	img := imageOf(t, []string{"sh"}, lower, upper)
	s := openStore(t, Options{})
	got, err := s.store(ctxT(t), img, "example.com/wh:1", "", fromOCIArchive)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := s.LowerDirs(got)
	if err != nil || len(dirs) != 2 {
		t.Fatalf("LowerDirs: %v %v", dirs, err)
	}
	// The snapshot holds overlay's own whiteout format.
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dirs[0], "dir/a"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("dir/a in the upper snapshot: mode %o rdev %d %v, want a 0/0 char device", st.Mode, st.Rdev, err)
	}
	buf := make([]byte, 4)
	if n, err := unix.Lgetxattr(filepath.Join(dirs[0], "opq"), opaqueXattr, buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opq opaque xattr: %q %v", buf[:n], err)
	}

	mnt := t.TempDir()
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(dirs, ":")); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	for p, want := range map[string]string{"dir/a": "", "dir/b": "b", "opq/x": "", "opq/y": "y", "gone/f": "", "gone": "", "keep": "k", "new": "n"} {
		b, err := os.ReadFile(filepath.Join(mnt, p))
		switch {
		case want == "" && !errors.Is(err, os.ErrNotExist):
			t.Errorf("%s visible through the overlay (%v)", p, err)
		case want != "" && string(b) != want:
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(mnt, "opq"))
	if len(ents) != 1 || ents[0].Name() != "y" {
		t.Errorf("opaque dir lists %v, want only y", ents)
	}
}

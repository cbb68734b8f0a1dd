package podconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// FileProjection is one file of an atomically written volume.
type FileProjection struct {
	Data []byte
	Mode int32
	// GID, when set, becomes the file's group (the pod's fsGroup).
	GID *int64
}

const (
	dataDirName    = "..data"
	newDataDirName = "..data_tmp"
	maxPathLength  = 4096
	maxFileNameLen = 255
)

// validatePayloadPath is upstream's atomic_writer validatePath: relative, no
// ".." element, not starting with "..", length limits.
func validatePayloadPath(p string) error {
	if p == "" {
		return fmt.Errorf("invalid path: must not be empty: %q", p)
	}
	if path.IsAbs(p) {
		return fmt.Errorf("invalid path: must be relative path: %s", p)
	}
	if len(p) > maxPathLength {
		return fmt.Errorf("invalid path: must be less than or equal to %d characters", maxPathLength)
	}
	items := strings.Split(p, "/")
	for _, item := range items {
		if item == ".." {
			return fmt.Errorf("invalid path: must not contain '..': %s", p)
		}
		if len(item) > maxFileNameLen {
			return fmt.Errorf("invalid path: filenames must be less than or equal to %d characters", maxFileNameLen)
		}
	}
	if strings.HasPrefix(items[0], "..") && len(items[0]) > 2 {
		return fmt.Errorf("invalid path: must not start with '..': %s", p)
	}
	return nil
}

// WriteAtomic writes payload into dir with the semantics of the kubelet's
// AtomicWriter (pkg/volume/util/atomic_writer.go):
//
//	dir/..2026_11_29_01_02_03.123456789/   the payload, a new directory per change
//	dir/..data -> ..2026_…                 swapped with rename(2) (atomic)
//	dir/key -> ..data/key                  one symlink per top-level path
//
// Readers following dir/key always see one complete version. Paths are
// validated as upstream (no "..", not absolute). When the payload equals what
// is on disk (data and mode) nothing is written; otherwise the new version is
// written, ..data swapped, user-visible symlinks of removed top-level paths
// deleted and the previous version removed. It returns whether it wrote.
func WriteAtomic(dir string, payload map[string]FileProjection) (bool, error) {
	clean := make(map[string]FileProjection, len(payload))
	for p, fp := range payload {
		if err := validatePayloadPath(p); err != nil {
			return false, err
		}
		cp := path.Clean(p)
		if cp == "." {
			return false, fmt.Errorf("invalid path: %q", p)
		}
		clean[cp] = fp
	}
	payload = clean
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	oldTs, err := os.Readlink(filepath.Join(dir, dataDirName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err == nil && (strings.Contains(oldTs, "/") || !strings.HasPrefix(oldTs, "..")) {
		return false, fmt.Errorf("%s: unexpected %s target %q", dir, dataDirName, oldTs)
	}
	oldUserVisible, err := userVisiblePaths(dir)
	if err != nil {
		return false, err
	}
	wantTop := map[string]bool{}
	for p := range payload {
		wantTop[strings.SplitN(p, "/", 2)[0]] = true
	}
	var remove []string
	for p := range oldUserVisible {
		if !wantTop[p] {
			remove = append(remove, p)
		}
	}
	sort.Strings(remove)

	if oldTs != "" && len(remove) == 0 {
		same, err := payloadOnDisk(filepath.Join(dir, oldTs), payload)
		if err != nil {
			return false, err
		}
		if same {
			// Still make sure every user-visible link exists.
			return false, createUserVisible(dir, wantTop)
		}
	}

	tsDir, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return false, err
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		os.RemoveAll(tsDir)
		return false, err
	}
	if err := writePayload(tsDir, payload); err != nil {
		os.RemoveAll(tsDir)
		return false, err
	}
	tmpLink := filepath.Join(dir, newDataDirName)
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		os.RemoveAll(tsDir)
		return false, err
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataDirName)); err != nil {
		os.Remove(tmpLink)
		os.RemoveAll(tsDir)
		return false, err
	}
	if err := createUserVisible(dir, wantTop); err != nil {
		return true, err
	}
	for _, p := range remove {
		if err := os.Remove(filepath.Join(dir, p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return true, err
		}
	}
	if oldTs != "" {
		if err := os.RemoveAll(filepath.Join(dir, oldTs)); err != nil {
			return true, err
		}
	}
	return true, nil
}

// userVisiblePaths lists dir's entries that are not ".."-prefixed.
func userVisiblePaths(dir string) (map[string]bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "..") {
			out[e.Name()] = true
		}
	}
	return out, nil
}

func createUserVisible(dir string, top map[string]bool) error {
	for p := range top {
		link := filepath.Join(dir, p)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join(dataDirName, p), link); err != nil {
			return err
		}
	}
	return nil
}

// payloadOnDisk reports whether tsDir holds exactly payload (upstream's
// shouldWritePayload/shouldWriteFile compare content and mode).
func payloadOnDisk(tsDir string, payload map[string]FileProjection) (bool, error) {
	n := 0
	err := filepath.WalkDir(tsDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			n++
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	if n != len(payload) {
		return false, nil
	}
	for p, fp := range payload {
		full := filepath.Join(tsDir, p)
		fi, err := os.Lstat(full)
		if err != nil {
			return false, nil
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != fileMode(fp).Perm() {
			return false, nil
		}
		data, err := os.ReadFile(full)
		if err != nil || !bytes.Equal(data, fp.Data) {
			return false, nil
		}
		if fp.GID != nil {
			if st, ok := statGID(fi); !ok || st != uint32(*fp.GID) {
				return false, nil
			}
		}
	}
	return true, nil
}

func fileMode(fp FileProjection) os.FileMode {
	m := os.FileMode(fp.Mode) & 0o777
	if fp.GID != nil {
		// SetVolumeOwnership on a read-only volume: mode | 0440.
		m |= 0o440
	}
	return m
}

func writePayload(tsDir string, payload map[string]FileProjection) error {
	paths := make([]string, 0, len(payload))
	for p := range payload {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fp := payload[p]
		full := filepath.Join(tsDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		mode := fileMode(fp)
		if err := os.WriteFile(full, fp.Data, mode); err != nil {
			return err
		}
		if fp.GID != nil {
			if err := os.Lchown(full, -1, int(*fp.GID)); err != nil {
				return err
			}
		}
		// Chmod after the write: the umask applied at creation.
		if err := os.Chmod(full, mode); err != nil {
			return err
		}
	}
	return nil
}

func statGID(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Gid, true
}

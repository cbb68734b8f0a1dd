package logs

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// rotatedTimeFormat names rotated files: PATH.<UTC time>, optionally .gz.
// The kubelet uses second precision (20060102-150405); rotation here happens
// as soon as the file is full, possibly several times a second, so the name
// carries nanoseconds. Names sort in time order.
const rotatedTimeFormat = "20060102-150405.000000000"

const gzSuffix = ".gz"
const tmpSuffix = ".tmp"

// segment is one file of a container run's log, oldest first.
type segment struct {
	path string // as listed; a plain rotated file may have been compressed since
	gz   bool
	key  string // sort key: the rotation timestamp, "~" for the current file
}

// segments lists the rotated files of path, oldest first, then path itself
// (even if it does not exist). Temporary files and plain files whose
// compressed copy exists are left out.
func segments(path string) ([]segment, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("logs: %w", err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	var segs []segment
	for n := range names {
		if !strings.HasPrefix(n, base+".") || strings.HasSuffix(n, tmpSuffix) {
			continue
		}
		stem := strings.TrimPrefix(n, base+".")
		gz := strings.HasSuffix(stem, gzSuffix)
		stem = strings.TrimSuffix(stem, gzSuffix)
		if len(stem) != len(rotatedTimeFormat) {
			continue
		}
		if !gz && names[n+gzSuffix] {
			continue
		}
		segs = append(segs, segment{path: filepath.Join(dir, n), gz: gz, key: stem})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].key < segs[j].key })
	return append(segs, segment{path: path, key: "~"}), nil
}

// openSegment opens a segment for reading, following a plain rotated file to
// its compressed copy if it was compressed meanwhile.
func openSegment(s segment) (io.ReadCloser, error) {
	if !s.gz {
		f, err := os.Open(s.path)
		if err == nil || s.key == "~" || !os.IsNotExist(err) {
			return f, err
		}
		s.path, s.gz = s.path+gzSuffix, true
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("logs: %s: %w", s.path, err)
	}
	return &gzFile{Reader: zr, f: f}, nil
}

type gzFile struct {
	*gzip.Reader
	f *os.File
}

func (g *gzFile) Close() error {
	g.Reader.Close()
	return g.f.Close()
}

// maintain compresses and prunes rotated files whenever signalled, like the
// kubelet's container log manager: of the rotated files, the newest stays
// plain (a follower may still be reading it), older ones are gzipped, and
// only MaxFiles-1 are kept.
func (w *Writer) maintain() {
	defer close(w.maintDone)
	for range w.maintCh {
		if err := w.maintainOnce(); err != nil {
			w.log.Warn("log rotation maintenance", "err", err)
		}
	}
}

func (w *Writer) maintainOnce() error {
	dir, base := filepath.Split(w.path)
	// Leftovers of an interrupted compression.
	tmps, _ := filepath.Glob(filepath.Join(dir, globEscape(base)+".*"+tmpSuffix))
	for _, t := range tmps {
		_ = os.Remove(t)
	}
	segs, err := segments(w.path)
	if err != nil {
		return err
	}
	rotated := segs[:len(segs)-1]
	// Plain files hidden by a compressed copy.
	for _, s := range rotated {
		if s.gz {
			_ = os.Remove(strings.TrimSuffix(s.path, gzSuffix))
		}
	}
	keep := w.opts.MaxFiles - 1
	for len(rotated) > keep {
		if err := os.Remove(rotated[0].path); err != nil && !os.IsNotExist(err) {
			return err
		}
		rotated = rotated[1:]
	}
	for i, s := range rotated {
		if s.gz || i == len(rotated)-1 {
			continue
		}
		if err := compress(s.path); err != nil {
			return err
		}
	}
	return nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

// compress writes path.gz through a temporary file and removes path.
func compress(path string) error {
	in, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	defer in.Close()
	tmp := path + gzSuffix + tmpSuffix
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path+gzSuffix)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compressing %s: %w", path, err)
	}
	return os.Remove(path)
}

// rotations remembers, per log path, the identity of the last files the
// writers of this process rotated and the names they got, so that a follower
// whose file was rotated and compressed before it noticed finds its place.
var rotations sync.Map // path -> *rotationLog

type rotationLog struct {
	mu      sync.Mutex
	entries []rotationEntry
}

type rotationEntry struct {
	fi  os.FileInfo
	key string
}

// recordRotation remembers a rotation; keep bounds the entries per path
// (a follower lagging more rotations than MaxFiles has lost lines anyway).
func recordRotation(path string, fi os.FileInfo, key string, keep int) {
	v, _ := rotations.LoadOrStore(path, &rotationLog{})
	rl := v.(*rotationLog)
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.entries = append(rl.entries, rotationEntry{fi: fi, key: key})
	if len(rl.entries) > keep {
		rl.entries = rl.entries[len(rl.entries)-keep:]
	}
}

func rotatedKey(path string, fi os.FileInfo) (string, bool) {
	v, ok := rotations.Load(path)
	if !ok {
		return "", false
	}
	rl := v.(*rotationLog)
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for i := len(rl.entries) - 1; i >= 0; i-- {
		if os.SameFile(rl.entries[i].fi, fi) {
			return rl.entries[i].key, true
		}
	}
	return "", false
}

func forgetRotations(path string) { rotations.Delete(path) }

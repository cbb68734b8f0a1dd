package image

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
)

const schemaVersion = "1"

// Options configure a Store. The zero value is usable.
type Options struct {
	// InsecureRegistries may be reached over plain HTTP (and HTTPS without
	// certificate verification): "host" or "host:port". Every other registry
	// is HTTPS only.
	InsecureRegistries []string
	// RootCAs verify registries' certificates (nil: the host's roots), for
	// registries with a private CA.
	RootCAs *x509.CertPool
	// Platform selected from multi-platform images; default linux/GOARCH.
	Platform *v1.Platform
	// HighThresholdPercent / LowThresholdPercent of the filesystem holding the
	// store: GC removes unused images once usage reaches High, until it is
	// below Low (kubelet's imageGCHighThresholdPercent=85 / Low=80, the
	// defaults).
	HighThresholdPercent int
	LowThresholdPercent  int
	// MaxParallelLayers unpacked at once per pull (default 3).
	MaxParallelLayers int
	// UserAgent sent to registries (default "skiff").
	UserAgent string
	// Logger (default slog.Default()); the store adds component=image.
	Logger *slog.Logger
}

// Config is the part of an image's configuration a runtime uses.
type Config = v1.Config

// Image is a stored image. Values returned by the Store are copies.
type Image struct {
	// ID is the digest of the image config ("sha256:…"): the image's identity.
	ID string `json:"id"`
	// RepoTags are the normalised names that point at it
	// ("docker.io/library/busybox:latest").
	RepoTags []string `json:"repoTags,omitempty"`
	// RepoDigests are repo@digest of the manifest (or index) it was pulled by
	// ("docker.io/library/busybox@sha256:…").
	RepoDigests []string `json:"repoDigests,omitempty"`
	// ManifestDigest is the digest of the platform image manifest; empty for
	// an image imported from a docker save tar, which has none.
	ManifestDigest string `json:"manifestDigest"`
	// Layers bottom first.
	Layers []Layer `json:"layers"`
	// Config is the image's runtime config: Entrypoint, Cmd, Env, WorkingDir,
	// User, ExposedPorts, Volumes, Labels, StopSignal.
	Config   Config    `json:"config"`
	OS       string    `json:"os,omitempty"`
	Arch     string    `json:"architecture,omitempty"`
	Created  time.Time `json:"created"`  // when it entered the store
	LastUsed time.Time `json:"lastUsed"` // pulled, looked up by Ensure, in use at GC
}

// Layer is one layer of an image.
type Layer struct {
	DiffID string `json:"diffID"`           // digest of the uncompressed tar; names the snapshot
	Digest string `json:"digest,omitempty"` // digest of the blob as distributed
	Size   int64  `json:"size"`             // unpacked bytes (file contents)
}

// Size is the unpacked size of all layers (shared layers counted fully).
func (img *Image) Size() int64 {
	var n int64
	for _, l := range img.Layers {
		n += l.Size
	}
	return n
}

// ImageRef is what Kubernetes shows as a container's imageID: the first repo
// digest, else the ID.
func (img *Image) ImageRef() string {
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID
}

func (img *Image) clone() *Image {
	c := *img
	c.RepoTags = append([]string(nil), img.RepoTags...)
	c.RepoDigests = append([]string(nil), img.RepoDigests...)
	c.Layers = append([]Layer(nil), img.Layers...)
	return &c
}

// Store is a content-addressed image store. It is safe for concurrent use.
type Store struct {
	root string
	opts Options
	log  *slog.Logger
	lock *os.File

	mu     sync.Mutex
	images map[string]*Image // by ID
	// pinned counts in-flight pulls/imports per layer diffID: GC keeps their
	// snapshots although no record references them yet.
	pinned map[string]int

	pulls  singleflight.Group // by normalised ref
	layers singleflight.Group // by diffID

	// ctx ends at Close and cancels background pulls; wg waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// statfs is replaced in tests.
	statfs func(path string) (used, total uint64, err error)
}

// Open opens (creating if needed) the store at root and loads its records.
func Open(root string, opts Options) (*Store, error) {
	if root == "" {
		return nil, fmt.Errorf("%w: empty store root", ErrInvalid)
	}
	if opts.HighThresholdPercent == 0 {
		opts.HighThresholdPercent = 85
	}
	if opts.LowThresholdPercent == 0 {
		opts.LowThresholdPercent = 80
	}
	if opts.LowThresholdPercent > opts.HighThresholdPercent || opts.HighThresholdPercent > 100 || opts.LowThresholdPercent < 0 {
		return nil, fmt.Errorf("%w: GC thresholds low %d%% high %d%%", ErrInvalid, opts.LowThresholdPercent, opts.HighThresholdPercent)
	}
	if opts.MaxParallelLayers <= 0 {
		opts.MaxParallelLayers = 3
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "skiff"
	}
	if opts.Platform == nil {
		p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
		if runtime.GOARCH == "arm64" {
			p.Variant = "v8"
		}
		opts.Platform = &p
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	s := &Store{root: root, opts: opts, log: lg.With("component", "image"), images: map[string]*Image{}, pinned: map[string]int{}, statfs: statfs}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, d := range []string{"blobs/sha256", "snapshots/sha256", "images", "imports", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	lf, err := os.OpenFile(filepath.Join(root, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrLocked, root, err)
	}
	s.lock = lf
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close cancels and waits for background pulls (a pull whose callers all gave
// up goes on until it is done or the store is closed) and releases the
// store's lock. Calls of other methods must have returned.
func (s *Store) Close() error {
	s.mu.Lock()
	s.cancel() // under mu: no pull starts after this
	s.mu.Unlock()
	s.wg.Wait()
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) load() error {
	vf := filepath.Join(s.root, "version")
	switch b, err := os.ReadFile(vf); {
	case errors.Is(err, fs.ErrNotExist):
		if err := writeFileAtomic(vf, []byte(schemaVersion+"\n")); err != nil {
			return err
		}
	case err != nil:
		return err
	case strings.TrimSpace(string(b)) != schemaVersion:
		return fmt.Errorf("image store %s: schema version %q, want %s", s.root, strings.TrimSpace(string(b)), schemaVersion)
	}
	// Leftovers of interrupted unpacks and imports.
	tmp := filepath.Join(s.root, "tmp")
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		_ = os.RemoveAll(filepath.Join(tmp, e.Name()))
	}
	ents, err := os.ReadDir(filepath.Join(s.root, "images"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.root, "images", e.Name()))
		if err != nil {
			return err
		}
		var img Image
		if err := json.Unmarshal(b, &img); err != nil {
			s.log.Warn("skipping unreadable image record", "file", e.Name(), "err", err)
			continue
		}
		if !s.snapshotsPresent(&img) {
			s.log.Warn("dropping image record with missing layers", "image", img.ID)
			_ = os.Remove(filepath.Join(s.root, "images", e.Name()))
			continue
		}
		s.images[img.ID] = &img
	}
	return nil
}

func (s *Store) snapshotsPresent(img *Image) bool {
	for _, l := range img.Layers {
		if _, err := os.Stat(s.snapshotDir(l.DiffID)); err != nil {
			return false
		}
	}
	return true
}

func hexOf(digest string) string {
	_, h, _ := strings.Cut(digest, ":")
	return h
}

func (s *Store) snapshotDir(diffID string) string {
	return filepath.Join(s.root, "snapshots", "sha256", hexOf(diffID))
}

func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.root, "blobs", "sha256", hexOf(digest))
}

func (s *Store) recordPath(id string) string {
	return filepath.Join(s.root, "images", hexOf(id)+".json")
}

// writeFileAtomic writes via a temp file in the same dir, fsync and rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func (s *Store) writeBlob(digest string, data []byte) error {
	p := s.blobPath(digest)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return writeFileAtomic(p, data)
}

// saveLocked persists a record; s.mu held.
func (s *Store) saveLocked(img *Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.recordPath(img.ID), b)
}

// commit records an image under the given tag (may be empty) and repo digest
// (may be empty), moving the tag off any other image, and writes its blobs.
func (s *Store) commit(img *Image, tag, repoDigest string, blobs map[string][]byte) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, b := range blobs { // under s.mu: GC cannot see them unreferenced
		if err := s.writeBlob(d, b); err != nil {
			return nil, err
		}
	}
	now := time.Now().UTC()
	cur := s.images[img.ID]
	if cur == nil {
		cur = img.clone()
		cur.RepoTags, cur.RepoDigests = nil, nil
		cur.Created = now
	}
	cur.LastUsed = now
	if tag != "" {
		for _, other := range s.images {
			if other.ID != img.ID && contains(other.RepoTags, tag) {
				other.RepoTags = remove(other.RepoTags, tag)
				if err := s.saveLocked(other); err != nil {
					return nil, err
				}
			}
		}
		if !contains(cur.RepoTags, tag) {
			cur.RepoTags = append(cur.RepoTags, tag)
		}
	}
	if repoDigest != "" && !contains(cur.RepoDigests, repoDigest) {
		cur.RepoDigests = append(cur.RepoDigests, repoDigest)
	}
	if err := s.saveLocked(cur); err != nil {
		return nil, err
	}
	s.images[cur.ID] = cur
	return cur.clone(), nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func remove(ss []string, s string) []string {
	out := ss[:0]
	for _, x := range ss {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// Get finds an image by name ("busybox", "docker.io/library/busybox:1.36"),
// by repo digest ("busybox@sha256:…"), or by ID ("sha256:…", or its hex).
func (s *Store) Get(ref string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img := s.findLocked(ref)
	if img == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	return img.clone(), nil
}

func (s *Store) findLocked(ref string) *Image {
	id := ref
	if !strings.HasPrefix(id, "sha256:") && len(id) == 64 && isHex(id) {
		id = "sha256:" + id
	}
	if img := s.images[id]; img != nil {
		return img
	}
	r, err := ParseReference(ref)
	if err != nil {
		return nil
	}
	for _, img := range s.images {
		if r.Digest != "" {
			if contains(img.RepoDigests, r.Repo()+"@"+r.Digest) || (img.ManifestDigest == r.Digest && hasRepo(img, r.Repo())) {
				return img
			}
			continue
		}
		if contains(img.RepoTags, r.String()) {
			return img
		}
	}
	return nil
}

func hasRepo(img *Image, repo string) bool {
	for _, t := range append(append([]string(nil), img.RepoTags...), img.RepoDigests...) {
		if strings.HasPrefix(t, repo+":") || strings.HasPrefix(t, repo+"@") {
			return true
		}
	}
	return false
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// List returns all images, ordered by ID.
func (s *Store) List() []*Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, img.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// MarkUsed records that a container uses the image now (LRU order for GC).
func (s *Store) MarkUsed(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img := s.images[id]; img != nil {
		img.LastUsed = time.Now().UTC()
		_ = s.saveLocked(img)
	}
}

// LowerDirs are the image's snapshot directories for overlayfs, top layer
// first: mount with "lowerdir=" + strings.Join(dirs, ":"). An image without
// layers has none; the runtime then uses an empty directory.
func (s *Store) LowerDirs(img *Image) ([]string, error) {
	out := make([]string, 0, len(img.Layers))
	for i := len(img.Layers) - 1; i >= 0; i-- {
		d := s.snapshotDir(img.Layers[i].DiffID)
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("image %s: layer %s: %w", img.ID, img.Layers[i].DiffID, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// Remove deletes the image ref names (all its tags and digests, as `crictl
// rmi`) unless its ID is in inUse; then its snapshots and blobs no other
// image uses.
func (s *Store) Remove(ref string, inUse map[string]bool) error {
	s.mu.Lock()
	img := s.findLocked(ref)
	if img == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	if inUse[img.ID] {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s (%s)", ErrInUse, ref, img.ID)
	}
	err := s.removeLocked(img)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = s.collectGarbage()
	return err
}

func (s *Store) removeLocked(img *Image) error {
	if err := os.Remove(s.recordPath(img.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	delete(s.images, img.ID)
	s.log.Info("image removed", "image", img.ID, "tags", img.RepoTags)
	return nil
}

// GCResult says what a GC removed.
type GCResult struct {
	Images       []string // IDs
	Snapshots    int
	Blobs        int
	BytesFreed   uint64 // filesystem usage before − after
	UsagePercent int    // after
}

// GC frees disk as kubelet's image GC does: when the filesystem holding the
// store is at or above HighThresholdPercent, it removes images whose IDs are
// not in inUse, least recently used first, until usage is below
// LowThresholdPercent. Images in inUse count as used now. Snapshots and blobs
// no image references are removed in any case.
func (s *Store) GC(ctx context.Context, inUse map[string]bool) (GCResult, error) {
	return s.gc(ctx, inUse, false)
}

// Prune removes every image not in inUse (`crictl rmi --prune`), then
// unreferenced snapshots and blobs.
func (s *Store) Prune(ctx context.Context, inUse map[string]bool) (GCResult, error) {
	return s.gc(ctx, inUse, true)
}

func (s *Store) gc(ctx context.Context, inUse map[string]bool, all bool) (GCResult, error) {
	var res GCResult
	used0, total, err := s.statfs(s.root)
	if err != nil {
		return res, err
	}
	pct := func(used uint64) int {
		if total == 0 {
			return 0
		}
		return int(used * 100 / total)
	}
	now := time.Now().UTC()
	s.mu.Lock()
	var candidates []*Image
	for id, img := range s.images {
		if inUse[id] {
			img.LastUsed = now
			continue
		}
		candidates = append(candidates, img)
	}
	s.mu.Unlock()
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].LastUsed.Before(candidates[j].LastUsed) })

	used := used0
	if all || pct(used) >= s.opts.HighThresholdPercent {
		for _, img := range candidates {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			if !all && pct(used) < s.opts.LowThresholdPercent {
				break
			}
			s.mu.Lock()
			if cur := s.images[img.ID]; cur == nil || cur.LastUsed.After(img.LastUsed) {
				s.mu.Unlock() // gone, or used since we looked
				continue
			}
			err := s.removeLocked(img)
			s.mu.Unlock()
			if err != nil {
				return res, err
			}
			res.Images = append(res.Images, img.ID)
			n, err := s.collectGarbage()
			if err != nil {
				return res, err
			}
			res.Snapshots += n.Snapshots
			res.Blobs += n.Blobs
			if used, _, err = s.statfs(s.root); err != nil {
				return res, err
			}
		}
	}
	n, err := s.collectGarbage()
	if err != nil {
		return res, err
	}
	res.Snapshots += n.Snapshots
	res.Blobs += n.Blobs
	if used, _, err = s.statfs(s.root); err != nil {
		return res, err
	}
	if used < used0 {
		res.BytesFreed = used0 - used
	}
	res.UsagePercent = pct(used)
	if len(res.Images) > 0 || res.Snapshots > 0 {
		s.log.Info("image gc", "images", len(res.Images), "snapshots", res.Snapshots, "blobs", res.Blobs, "freed", res.BytesFreed, "usage%", res.UsagePercent)
	}
	return res, nil
}

// collectGarbage removes snapshots and blobs no image record references and
// no in-flight pull has pinned. Dead snapshots are renamed away under s.mu (so
// a pull that pins a layer and then finds its snapshot keeps it) and deleted
// after.
func (s *Store) collectGarbage() (GCResult, error) {
	var res GCResult
	s.mu.Lock()
	keepSnap, keepBlob := map[string]bool{}, map[string]bool{}
	for _, img := range s.images {
		keepBlob[hexOf(img.ID)] = true
		if img.ManifestDigest != "" {
			keepBlob[hexOf(img.ManifestDigest)] = true
		}
		for _, l := range img.Layers {
			keepSnap[hexOf(l.DiffID)] = true
		}
	}
	for d := range s.pinned {
		keepSnap[hexOf(d)] = true
	}
	sd := filepath.Join(s.root, "snapshots", "sha256")
	ents, err := os.ReadDir(sd)
	if err != nil {
		s.mu.Unlock()
		return res, err
	}
	var dead []string
	for _, e := range ents {
		if keepSnap[e.Name()] {
			continue
		}
		d, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "dead-")
		if err == nil {
			err = os.Rename(filepath.Join(sd, e.Name()), filepath.Join(d, "fs"))
		}
		if err != nil {
			s.mu.Unlock()
			return res, err
		}
		dead = append(dead, d)
	}
	bd := filepath.Join(s.root, "blobs", "sha256")
	if ents, err = os.ReadDir(bd); err != nil {
		s.mu.Unlock()
		return res, err
	}
	for _, e := range ents {
		if keepBlob[e.Name()] || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if err := os.Remove(filepath.Join(bd, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.mu.Unlock()
			return res, err
		}
		res.Blobs++
	}
	s.mu.Unlock()
	for _, d := range dead {
		if err := os.RemoveAll(d); err != nil {
			return res, err
		}
		res.Snapshots++
	}
	return res, nil
}

// pin keeps the layers' snapshots from GC until unpin.
func (s *Store) pin(diffIDs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range diffIDs {
		s.pinned[d]++
	}
}

func (s *Store) unpin(diffIDs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range diffIDs {
		if s.pinned[d]--; s.pinned[d] <= 0 {
			delete(s.pinned, d)
		}
	}
}

func statfs(path string) (used, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	total = st.Blocks * uint64(st.Bsize)
	used = (st.Blocks - st.Bfree) * uint64(st.Bsize)
	return used, total, nil
}

// Stats describe the store and the filesystem holding it (the node's
// imagefs, for DiskPressure and the kubelet stats summary).
type Stats struct {
	Images       int
	Layers       int    // distinct snapshots referenced by images
	LayerBytes   int64  // their unpacked size, each counted once
	FsUsedBytes  uint64 // of the filesystem holding the store
	FsTotalBytes uint64
}

// Stats reports the store's size and its filesystem's usage.
func (s *Store) Stats() (Stats, error) {
	var st Stats
	s.mu.Lock()
	seen := map[string]bool{}
	st.Images = len(s.images)
	for _, img := range s.images {
		for _, l := range img.Layers {
			if !seen[l.DiffID] {
				seen[l.DiffID] = true
				st.Layers++
				st.LayerBytes += l.Size
			}
		}
	}
	s.mu.Unlock()
	var err error
	st.FsUsedBytes, st.FsTotalBytes, err = s.statfs(s.root)
	return st, err
}

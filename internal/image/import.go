package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Annotations naming images in an OCI image layout.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// Import reads an OCI image-layout tar or a `docker save` tar from r (it is
// spooled to a temp file first) and returns the names imported; see
// ImportFile.
func (s *Store) Import(ctx context.Context, r io.Reader) ([]string, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "import-*.tar")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return s.ImportFile(ctx, f.Name())
}

// ImportFile imports every image in an OCI image-layout tar or a `docker
// save` tar (one or several images). It returns the normalised names
// imported ("docker.io/library/busybox:latest"), or the image ID for an image
// the archive does not name. From an OCI index of several platforms only the
// store's platform is imported.
func (s *Store) ImportFile(ctx context.Context, path string) ([]string, error) {
	kind, err := archiveKind(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	var names []string
	switch kind {
	case "docker":
		names, err = s.importDocker(ctx, path)
	case "oci":
		names, err = s.importOCI(ctx, path)
	default:
		err = fmt.Errorf("%w: neither an OCI image layout (index.json, oci-layout) nor a docker save tar (manifest.json)", ErrInvalid)
	}
	if err != nil {
		return names, fmt.Errorf("import %s: %w", path, err)
	}
	s.log.Info("images imported", "file", path, "format", kind, "images", names)
	return names, nil
}

func archiveKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var hasIndex, hasLayout bool
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%w: not a tar archive: %v", ErrInvalid, err)
		}
		switch filepath.Clean(h.Name) {
		case "manifest.json":
			return "docker", nil // docker ≥25 writes index.json too; manifest.json has the tags
		case "index.json":
			hasIndex = true
		case "oci-layout":
			hasLayout = true
		}
	}
	if hasIndex && hasLayout {
		return "oci", nil
	}
	return "", nil
}

func (s *Store) importDocker(ctx context.Context, path string) ([]string, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range m {
		var tag *name.Tag
		if len(d.RepoTags) > 0 {
			t, err := name.NewTag(d.RepoTags[0])
			if err != nil {
				return names, fmt.Errorf("%w: tag %q: %v", ErrInvalid, d.RepoTags[0], err)
			}
			tag = &t
		} else if len(m) > 1 {
			s.log.Warn("skipping untagged image in multi-image docker archive", "file", path, "config", d.Config)
			continue
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return names, err
		}
		got, err := s.storeNamed(ctx, img, d.RepoTags, fromDockerArchive)
		names = append(names, got...)
		if err != nil {
			return names, err
		}
	}
	return names, nil
}

// storeNamed stores img under each of tags (docker or full references); with
// no tags its ID is the name returned.
func (s *Store) storeNamed(ctx context.Context, img v1.Image, tags []string, src layerSource) ([]string, error) {
	var norm []string
	for _, t := range tags {
		r, err := ParseReference(t)
		if err != nil {
			return nil, err
		}
		if r.Tag == "" {
			continue
		}
		r.Digest = ""
		norm = append(norm, r.String())
	}
	first := ""
	if len(norm) > 0 {
		first = norm[0]
	}
	rec, err := s.store(ctx, img, first, "", src)
	if err != nil {
		return nil, err
	}
	for _, t := range norm[min(1, len(norm)):] {
		if _, err := s.commit(rec, t, "", nil); err != nil {
			return nil, err
		}
	}
	if len(norm) == 0 {
		return []string{rec.ID}, nil
	}
	return norm, nil
}

func (s *Store) importOCI(ctx context.Context, path string) ([]string, error) {
	dir, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "layout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := extractPlain(path, dir); err != nil {
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range im.Manifests {
		var img v1.Image
		switch {
		case d.MediaType.IsImage():
			if img, err = idx.Image(d.Digest); err != nil {
				return names, err
			}
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return names, err
			}
			if img, err = s.platformImage(child); err != nil {
				return names, err
			}
		default:
			continue
		}
		if img == nil {
			s.log.Warn("no image for this platform in archive index", "file", path, "digest", d.Digest, "platform", s.opts.Platform.String())
			continue
		}
		var tags []string
		if n := d.Annotations[annotationContainerdName]; n != "" {
			tags = append(tags, n)
		} else if n := d.Annotations[annotationRefName]; strings.ContainsAny(n, "/:") {
			tags = append(tags, n)
		}
		got, err := s.storeNamed(ctx, img, tags, fromOCIArchive)
		names = append(names, got...)
		if err != nil {
			return names, err
		}
	}
	return names, nil
}

// platformImage picks the store's platform from an index (nil if absent).
func (s *Store) platformImage(idx v1.ImageIndex) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.MediaType.IsImage() && d.Platform != nil && d.Platform.Satisfies(*s.opts.Platform) {
			return idx.Image(d.Digest)
		}
	}
	for _, d := range im.Manifests { // an index without platforms: its only image
		if d.MediaType.IsImage() && d.Platform == nil && len(im.Manifests) == 1 {
			return idx.Image(d.Digest)
		}
	}
	return nil, nil
}

// extractPlain unpacks the regular files and directories of an image-layout
// tar into dir, refusing paths that leave it.
func extractPlain(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := cleanRel(h.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue
		}
		p := filepath.Join(dir, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeRegA:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// fileStat is ImportDir's cache of a tar's digest.
type fileStat struct {
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime"`
	Digest  string `json:"digest"`
}

// importMarker is what ImportDir remembers about an imported tar.
type importMarker struct {
	File  string   `json:"file"`
	Names []string `json:"names"`
	IDs   []string `json:"ids"`
}

// ImportDir imports every *.tar in dir (the air-gap directory,
// DATA/agent/images). A tar is remembered by its content digest and not
// imported again while the images it gave are still in the store, so agent
// restarts do not redo the work, while an image GC removed comes back. One
// bad tar does not stop the others; their errors are joined.
func (s *Store) ImportDir(ctx context.Context, dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Digests of files seen before, by name, size and mtime: hashing
	// gigabytes of tars at every start would delay the agent.
	statCache := map[string]fileStat{}
	cachePath := filepath.Join(s.root, "imports", "files.json")
	if b, err := os.ReadFile(cachePath); err == nil {
		_ = json.Unmarshal(b, &statCache)
	}
	newCache := map[string]fileStat{}
	defer func() {
		if b, err := json.Marshal(newCache); err == nil {
			_ = writeFileAtomic(cachePath, b)
		}
	}()
	var names []string
	var errs []error
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".tar") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return names, err
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st := fileStat{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
		if c, ok := statCache[e.Name()]; ok && c.Size == st.Size && c.ModTime == st.ModTime {
			st.Digest = c.Digest
		} else if st.Digest, err = fileDigest(p); err != nil {
			errs = append(errs, err)
			continue
		}
		newCache[e.Name()] = st
		sum := st.Digest
		mp := filepath.Join(s.root, "imports", sum)
		if b, err := os.ReadFile(mp); err == nil {
			var m importMarker
			if json.Unmarshal(b, &m) == nil && s.allPresent(m.IDs) {
				continue
			}
		}
		got, err := s.ImportFile(ctx, p)
		names = append(names, got...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m := importMarker{File: e.Name(), Names: got}
		for _, n := range got {
			if img, err := s.Get(n); err == nil {
				m.IDs = append(m.IDs, img.ID)
			}
		}
		b, _ := json.Marshal(m)
		if err := writeFileAtomic(mp, b); err != nil {
			errs = append(errs, err)
		}
	}
	sort.Strings(names)
	return names, errors.Join(errs...)
}

func (s *Store) allPresent(ids []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.images[id] == nil {
			return false
		}
	}
	return true
}

func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

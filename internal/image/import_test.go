package image

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestImportDockerSave(t *testing.T) {
	bb := busyboxImage(t)
	app := imageOf(t, []string{"app"}, busyboxLayer(t), layerOf(t, file("app", "app")))
	p := filepath.Join(t.TempDir(), "save.tar")
	dockerSaveTar(t, p, map[string]v1.Image{"busybox:latest": bb, "busybox:1.36": bb, "example.com/team/app:v2": app})
	s := openStore(t, Options{})
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := s.Import(ctxT(t), f)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	want := "docker.io/library/busybox:1.36 docker.io/library/busybox:latest example.com/team/app:v2"
	if strings.Join(names, " ") != want {
		t.Errorf("imported %v, want %s", names, want)
	}
	img, err := s.Get("busybox:1.36")
	if err != nil || img.ID != configDigest(t, bb) || len(img.RepoTags) != 2 {
		t.Fatalf("busybox: %+v %v", img, err)
	}
	if img.ImageRef() != img.ID {
		t.Errorf("imported image's ref %s, want its ID", img.ImageRef())
	}
	a, err := s.Get("example.com/team/app:v2")
	if err != nil {
		t.Fatal(err)
	}
	if dirs, err := s.LowerDirs(a); err != nil || len(dirs) != 2 {
		t.Fatalf("LowerDirs: %v %v", dirs, err)
	} else if _, err := os.Stat(filepath.Join(dirs[1], "bin/busybox")); err != nil {
		t.Error(err)
	}
	if n := snapshotCount(t, s); n != 2 {
		t.Errorf("%d snapshots, want 2", n)
	}

	// Layers stored uncompressed, as `docker save` writes them.
	raw := imageOf(t, []string{"raw"}, static.NewLayer(tarBytes(t, file("raw", "r")), types.DockerUncompressedLayer))
	p2 := filepath.Join(t.TempDir(), "raw.tar")
	dockerSaveTar(t, p2, map[string]v1.Image{"raw:1": raw})
	names, err = s.ImportFile(ctxT(t), p2)
	if err != nil || len(names) != 1 {
		t.Fatalf("uncompressed docker save: %v %v", names, err)
	}
	ri, err := s.Get("raw:1")
	if err != nil || ri.ID != configDigest(t, raw) || ri.ManifestDigest != "" {
		t.Fatalf("raw image %+v %v", ri, err)
	}
	if dirs, err := s.LowerDirs(ri); err != nil {
		t.Fatal(err)
	} else if b, err := os.ReadFile(filepath.Join(dirs[0], "raw")); err != nil || string(b) != "r" {
		t.Errorf("raw file: %q %v", b, err)
	}
}

func TestImportOCILayout(t *testing.T) {
	bb := busyboxImage(t)
	other := imageOf(t, []string{"x"}, layerOf(t, file("x", "x")))
	p := filepath.Join(t.TempDir(), "oci.tar")
	ociLayoutTar(t, p, map[string]v1.Image{"example.com/bb:v1": bb, "": other})
	s := openStore(t, Options{})
	names, err := s.ImportFile(ctxT(t), p)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if len(names) != 2 || names[0] != "example.com/bb:v1" || names[1] != configDigest(t, other) {
		t.Fatalf("imported %v", names)
	}
	if img, err := s.Get("example.com/bb:v1"); err != nil || img.ID != configDigest(t, bb) {
		t.Fatalf("%v %v", img, err)
	}
	if _, err := s.Get(configDigest(t, other)); err != nil {
		t.Error(err)
	}
	// A multi-platform index: only this platform's image is imported.
	mine := busyboxImage(t)
	foreign := imageOf(t, []string{"foreign"}, layerOf(t, file("f", "f")))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "mips64le"}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}})
	ld := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(ld, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationContainerdName: "docker.io/library/multi:1", annotationRefName: "1"})); err != nil {
		t.Fatal(err)
	}
	p3 := filepath.Join(t.TempDir(), "multi.tar")
	tarDir(t, ld, p3)
	s3 := openStore(t, Options{})
	if names, err := s3.ImportFile(ctxT(t), p3); err != nil || len(names) != 1 || names[0] != "docker.io/library/multi:1" {
		t.Fatalf("multi-platform import: %v %v", names, err)
	}
	if img, err := s3.Get("multi:1"); err != nil || img.ID != configDigest(t, mine) || len(s3.List()) != 1 {
		t.Errorf("multi-platform import stored %+v %v", img, err)
	}

	// Not an image archive.
	bad := filepath.Join(t.TempDir(), "bad.tar")
	os.WriteFile(bad, tarBytes(t, file("hello", "x")), 0o644)
	if _, err := s.ImportFile(ctxT(t), bad); err == nil {
		t.Error("imported a tar that is no image archive")
	}
}

func TestImportDir(t *testing.T) {
	dir := t.TempDir()
	dockerSaveTar(t, filepath.Join(dir, "a.tar"), map[string]v1.Image{"busybox:latest": busyboxImage(t)})
	ociLayoutTar(t, filepath.Join(dir, "b.tar"), map[string]v1.Image{"example.com/b:1": imageOf(t, []string{"b"}, layerOf(t, file("b", "b")))})
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o644)
	s := openStore(t, Options{})
	ctx := ctxT(t)
	names, err := s.ImportDir(ctx, dir)
	if err != nil || len(names) != 2 {
		t.Fatalf("ImportDir: %v %v", names, err)
	}
	// Remembered: a second run (an agent restart) imports nothing.
	s.Close()
	s2, err := Open(s.Root(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if names, err := s2.ImportDir(ctx, dir); err != nil || len(names) != 0 {
		t.Fatalf("second ImportDir: %v %v", names, err)
	}
	// An imported image GC removed comes back at the next start.
	if err := s2.Remove("busybox", nil); err != nil {
		t.Fatal(err)
	}
	if names, err := s2.ImportDir(ctx, dir); err != nil || len(names) != 1 || names[0] != "docker.io/library/busybox:latest" {
		t.Fatalf("ImportDir after removal: %v %v", names, err)
	}
	// A tar replaced under the same name is imported again.
	dockerSaveTar(t, filepath.Join(dir, "a.tar"), map[string]v1.Image{"busybox:2": imageOf(t, []string{"v2"}, busyboxLayer(t))})
	if names, err := s2.ImportDir(ctx, dir); err != nil || len(names) != 1 || names[0] != "docker.io/library/busybox:2" {
		t.Fatalf("ImportDir after replacing a.tar: %v %v", names, err)
	}
	if names, err := s2.ImportDir(ctx, filepath.Join(dir, "missing")); err != nil || names != nil {
		t.Errorf("missing dir: %v %v", names, err)
	}
}

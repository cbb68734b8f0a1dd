package image

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BenchmarkPullBusybox pulls and unpacks the busybox test image (~2 MB) from
// the in-process registry into a fresh store each iteration.
func BenchmarkPullBusybox(b *testing.B) {
	host := testRegistry(b, nil)
	push(b, host+"/library/busybox:latest", busyboxImage(b))
	ctx := ctxT(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for b.Loop() {
		s, err := Open(filepath.Join(b.TempDir(), "s"), Options{InsecureRegistries: []string{host}, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Pull(ctx, host+"/library/busybox", nil); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkImportDockerSave imports a docker-save tar of the busybox image.
func BenchmarkImportDockerSave(b *testing.B) {
	p := filepath.Join(b.TempDir(), "bb.tar")
	dockerSaveTar(b, p, map[string]v1.Image{"busybox:latest": busyboxImage(b)})
	fi, _ := os.Stat(p)
	b.SetBytes(fi.Size())
	ctx := ctxT(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for b.Loop() {
		s, err := Open(filepath.Join(b.TempDir(), "s"), Options{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.ImportFile(ctx, p); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

package image

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/skiff-dev/skiff/internal/image/imagetest"
)

// The fixtures are shared with other packages' tests through imagetest.
var epoch = imagetest.Epoch

type entry = imagetest.Entry

var (
	file          = imagetest.File
	dir           = imagetest.Dir
	symlink       = imagetest.Symlink
	hardlink      = imagetest.Hardlink
	tarBytes      = imagetest.TarBytes
	layerOf       = imagetest.Layer
	busyboxLayer  = imagetest.BusyboxLayer
	imageOf       = imagetest.Image
	busyboxImage  = imagetest.Busybox
	testRegistry  = imagetest.RegistryWith
	dockerSaveTar = imagetest.WriteDockerTarFile
	ociLayoutTar  = imagetest.WriteOCITarFile
	tarDir        = imagetest.TarDir
	basicAuth     = imagetest.BasicAuth
)

func push(t testing.TB, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatal(err)
	}
}

func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := Open(filepath.Join(t.TempDir(), "store"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func digestOf(t testing.TB, x interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func configDigest(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

package image

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestPullByTagAndDigest(t *testing.T) {
	host := testRegistry(t, nil)
	img := busyboxImage(t)
	push(t, host+"/library/busybox:1.36", img)
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	ctx := ctxT(t)

	got, err := s.Pull(ctx, host+"/library/busybox:1.36", nil)
	if err != nil {
		t.Fatal(err)
	}
	mdig := digestOf(t, img)
	if got.ID != configDigest(t, img) {
		t.Errorf("ID = %s, want config digest %s", got.ID, configDigest(t, img))
	}
	if want := host + "/library/busybox@" + mdig; got.ImageRef() != want {
		t.Errorf("ImageRef = %s, want %s", got.ImageRef(), want)
	}
	if want := []string{host + "/library/busybox:1.36"}; fmt.Sprint(got.RepoTags) != fmt.Sprint(want) {
		t.Errorf("RepoTags = %v, want %v", got.RepoTags, want)
	}
	if fmt.Sprint(got.Config.Cmd) != "[sh]" || got.Config.WorkingDir != "/" || len(got.Config.Env) != 1 {
		t.Errorf("config = %+v", got.Config)
	}
	if got.Size() < 1<<20 {
		t.Errorf("size = %d, want busybox's size", got.Size())
	}
	dirs, err := s.LowerDirs(got)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("LowerDirs = %v, %v", dirs, err)
	}
	fi, err := os.Stat(filepath.Join(dirs[0], "bin/busybox"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("bin/busybox: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dirs[0], "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}

	// By digest: the same image, no new tag.
	byDigest, err := s.Pull(ctx, host+"/library/busybox@"+mdig, nil)
	if err != nil {
		t.Fatal(err)
	}
	if byDigest.ID != got.ID {
		t.Errorf("by digest ID %s != %s", byDigest.ID, got.ID)
	}
	for _, ref := range []string{host + "/library/busybox:1.36", host + "/library/busybox@" + mdig, got.ID, strings.TrimPrefix(got.ID, "sha256:")} {
		if g, err := s.Get(ref); err != nil || g.ID != got.ID {
			t.Errorf("Get(%s) = %v, %v", ref, g, err)
		}
	}
	if _, err := s.Get(host + "/library/busybox:other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(other tag) err = %v, want ErrNotFound", err)
	}
	if n := len(s.List()); n != 1 {
		t.Errorf("List has %d images, want 1", n)
	}

	// Records survive a restart.
	s.Close()
	s2, err := Open(s.Root(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if g, err := s2.Get(host + "/library/busybox:1.36"); err != nil || g.ID != got.ID || len(g.RepoDigests) != 1 {
		t.Errorf("after reopen: %+v, %v", g, err)
	}
	if _, err := Open(s.Root(), Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
}

func TestPullPlainHTTPRefusedUnlessInsecure(t *testing.T) {
	host := testRegistry(t, nil)
	push(t, host+"/app:v1", busyboxImage(t))
	s := openStore(t, Options{})
	_, err := s.Pull(ctxT(t), host+"/app:v1", nil)
	t.Logf("pull error: %v", err)
	if err == nil || !strings.Contains(err.Error(), ErrInsecure.Error()) {
		t.Fatalf("pull over HTTP from a registry not marked insecure: err = %v", err)
	}
	if len(s.List()) != 0 {
		t.Error("image stored after a refused pull")
	}
}

func TestPullPlatformFromIndex(t *testing.T) {
	host := testRegistry(t, nil)
	mine := busyboxImage(t)
	other := imageOf(t, []string{"other"}, layerOf(t, file("other", "x")))
	otherArch := "s390x"
	if runtime.GOARCH == otherArch {
		otherArch = "riscv64"
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref, err := name.ParseReference(host+"/multi:latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	got, err := s.Pull(ctxT(t), host+"/multi", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != configDigest(t, mine) {
		t.Errorf("pulled %s, want the %s image %s", got.ID, runtime.GOARCH, configDigest(t, mine))
	}
	if want := host + "/multi@" + digestOf(t, idx); got.ImageRef() != want {
		t.Errorf("repo digest %s, want the index digest %s", got.ImageRef(), want)
	}
	if got.ManifestDigest != digestOf(t, mine) {
		t.Errorf("manifest digest %s, want %s", got.ManifestDigest, digestOf(t, mine))
	}
}

func TestPullWithImagePullSecrets(t *testing.T) {
	host := testRegistry(t, basicAuth("alice", "s3cret"))
	img := busyboxImage(t)
	push(t, host+"/private/app:v1", img, remote.WithAuth(&basicAuthn{"alice", "s3cret"}))
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	ctx := ctxT(t)

	_, err := s.Pull(ctx, host+"/private/app:v1", nil)
	t.Logf("pull error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("anonymous pull: err = %v, want UNAUTHORIZED from the registry", err)
	}
	wrong, _ := KeychainFromSecrets([]byte(fmt.Sprintf(`{"auths":{%q:{"username":"alice","password":"nope"}}}`, host)))
	if _, err := s.Pull(ctx, host+"/private/app:v1", wrong); err == nil {
		t.Fatal("pull with a wrong password succeeded")
	}
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	for name, secret := range map[string]string{
		".dockerconfigjson":      fmt.Sprintf(`{"auths":{"other.example.com":{"auth":"eDp5"},%q:{"auth":%q}}}`, "http://"+host, auth),
		".dockercfg":             fmt.Sprintf(`{%q:{"username":"alice","password":"s3cret"}}`, host),
		".dockerconfigjson path": fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host+"/private", auth),
	} {
		kc, err := KeychainFromSecrets([]byte(secret))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := s.Pull(ctx, host+"/private/app:v1", kc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.ID != configDigest(t, img) {
			t.Errorf("%s: ID %s", name, got.ID)
		}
	}
	if _, err := KeychainFromSecrets([]byte("{not json")); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad secret: %v", err)
	}
}

type basicAuthn struct{ user, pass string }

func (b *basicAuthn) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{Username: b.user, Password: b.pass}, nil
}

func TestPullRegistryMessageSurfaces(t *testing.T) {
	const msg = "pulls of this repository are suspended for abuse"
	host := testRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprintf(w, `{"errors":[{"code":"DENIED","message":%q}]}`, msg)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	_, err := s.Pull(ctxT(t), host+"/app:v1", nil)
	t.Logf("pull error: %v", err)
	if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("err = %v, want the registry's DENIED message", err)
	}
	_, err = s.Pull(ctxT(t), "bad ref!", nil)
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("bad reference: %v", err)
	}
}

func TestConcurrentPullsDoTheWorkOnce(t *testing.T) {
	img := busyboxImage(t)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	var blobGets, manifestGets atomic.Int32
	host := testRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
				blobGets.Add(1)
			}
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
				manifestGets.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	})
	push(t, host+"/library/busybox:latest", img)
	blobGets.Store(0)
	manifestGets.Store(0)
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	ctx := ctxT(t)
	var wg sync.WaitGroup
	ids := make([]string, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img, err := s.Pull(ctx, host+"/library/busybox", nil)
			errs[i] = err
			if err == nil {
				ids[i] = img.ID
			}
		}()
	}
	wg.Wait()
	for i := range 4 {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("pull %d: %s %v", i, ids[i], errs[i])
		}
	}
	if n := blobGets.Load(); n != 1 {
		t.Errorf("layer fetched %d times, want 1", n)
	}
	if n := manifestGets.Load(); n > 1 {
		t.Errorf("manifest fetched %d times, want 1", n)
	}
	// A second keychain makes a second pull, but the layer is not fetched again.
	kc := Keychain(nil)
	if _, err := s.Pull(ctx, host+"/library/busybox", kc); err != nil {
		t.Fatal(err)
	}
	if n := blobGets.Load(); n != 1 {
		t.Errorf("layer fetched %d times after re-pull, want 1", n)
	}
}

func TestEnsurePolicies(t *testing.T) {
	host := testRegistry(t, nil)
	push(t, host+"/app:v1", busyboxImage(t))
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	ctx := ctxT(t)
	if _, err := s.Ensure(ctx, host+"/app:v1", PullNever, nil); !errors.Is(err, ErrNeverPull) {
		t.Fatalf("Never, absent: %v", err)
	}
	if _, err := s.Ensure(ctx, host+"/app:v1", "", nil); err != nil {
		t.Fatal(err)
	}
	// Present now: IfNotPresent and Never do not touch the registry.
	s.opts.InsecureRegistries = nil
	for _, p := range []PullPolicy{PullIfNotPresent, PullNever, ""} {
		if _, err := s.Ensure(ctx, host+"/app:v1", p, nil); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	if _, err := s.Ensure(ctx, host+"/app:v1", PullAlways, nil); err == nil {
		t.Error("Always did not go to the registry")
	}
}

func TestPullCancelled(t *testing.T) {
	host := testRegistry(t, nil)
	push(t, host+"/app:v1", busyboxImage(t))
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Pull(ctx, host+"/app:v1", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// TestPullLayerCompressions pulls an image whose layers are gzip, zstd and
// uncompressed tars.
func TestPullLayerCompressions(t *testing.T) {
	gz := busyboxLayer(t)
	zb := tarBytes(t, file("etc/zstd", "z"))
	zl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(zb)), nil },
		tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	raw := static.NewLayer(tarBytes(t, file("etc/raw", "r")), types.OCIUncompressedLayer)
	img := imageOf(t, []string{"sh"}, gz, zl, raw)
	host := testRegistry(t, nil)
	push(t, host+"/comp:1", img)
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	got, err := s.Pull(ctxT(t), host+"/comp:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := s.LowerDirs(got)
	if err != nil || len(dirs) != 3 {
		t.Fatalf("LowerDirs %v %v", dirs, err)
	}
	for i, p := range []string{"etc/raw", "etc/zstd", "bin/busybox"} {
		if _, err := os.Stat(filepath.Join(dirs[i], p)); err != nil {
			t.Errorf("layer %d: %v", i, err)
		}
	}
}

// TestCloseStopsAbandonedPull: a pull whose caller gave up goes on in the
// background; Close cancels it and waits.
func TestCloseStopsAbandonedPull(t *testing.T) {
	release := make(chan struct{})
	host := testRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	push(t, host+"/slow:1", busyboxImage(t))
	defer close(release)
	s := openStore(t, Options{InsecureRegistries: []string{host}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.Pull(ctx, host+"/slow:1", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not stop the background pull")
	}
	if _, err := s.Pull(context.Background(), host+"/slow:1", nil); err == nil {
		t.Error("pull after Close succeeded")
	}
}

// TestPullHTTPS: a registry with a certificate the host does not trust is
// refused, reached with its CA in Options.RootCAs, and reached without
// verification when marked insecure.
func TestPullHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	img := busyboxImage(t)
	push(t, host+"/tls:1", img, remote.WithTransport(srv.Client().Transport))
	ctx := ctxT(t)

	if _, err := openStore(t, Options{}).Pull(ctx, host+"/tls:1", nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: err = %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	if got, err := openStore(t, Options{RootCAs: pool}).Pull(ctx, host+"/tls:1", nil); err != nil || got.ID != configDigest(t, img) {
		t.Errorf("with the CA: %v %v", got, err)
	}
	if _, err := openStore(t, Options{InsecureRegistries: []string{host}}).Pull(ctx, host+"/tls:1", nil); err != nil {
		t.Errorf("insecure: %v", err)
	}
}

package imagetest

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestBusybox(t *testing.T) {
	img := Busybox(t)
	files := map[string]*tar.Header{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
	}
	for _, a := range []string{"sh", "httpd", "wget", "sleep", "cat", "echo", "id"} {
		if h := files["bin/"+a]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("bin/%s: %+v", a, h)
		}
	}
	if h := files["bin/busybox"]; h == nil || h.Size < 1<<20 || h.Mode&0o111 == 0 {
		t.Errorf("bin/busybox: %+v", h)
	}
	if h := files["tmp"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("tmp: %+v", h)
	}
	for _, f := range []string{"etc/passwd", "etc/group"} {
		if files[f] == nil {
			t.Errorf("%s missing", f)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cf.Config.Cmd) != "[sh]" || fmt.Sprint(cf.Config.Env) != "["+DefaultPath+"]" || cf.OS != "linux" {
		t.Errorf("config %+v", cf)
	}
	// Deterministic: a second build has the same digests.
	if ID(t, Busybox(t)) != ID(t, img) || ManifestDigest(t, Busybox(t)) != ManifestDigest(t, img) {
		t.Error("Busybox is not deterministic")
	}
}

func TestWithConfig(t *testing.T) {
	img := Busybox(t)
	img = WithEntrypoint(t, img, "httpd", "-f")
	img = WithCmd(t, img, "-p", "8080")
	img = WithUser(t, img, "65534")
	img = WithWorkingDir(t, img, "/var/www")
	img = WithEnv(t, img, "PATH=/bin", "GREETING=hi")
	img = WithExposedPorts(t, img, "8080/tcp")
	img = WithLayer(t, img, File("var/www/index.html", "hello"))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	got := fmt.Sprintln(c.Entrypoint, c.Cmd, c.User, c.WorkingDir, c.Env, c.ExposedPorts)
	if want := "[httpd -f] [-p 8080] 65534 /var/www [PATH=/bin GREETING=hi] map[8080/tcp:{}]\n"; got != want {
		t.Errorf("config %s, want %s", got, want)
	}
	if ls, _ := img.Layers(); len(ls) != 2 {
		t.Errorf("%d layers", len(ls))
	}
}

func TestTars(t *testing.T) {
	img := WithCmd(t, Busybox(t), "true")
	p := WriteDockerTar(t, img, "example.com/a:v1")
	tag, _ := name.NewTag("example.com/a:v1")
	got, err := tarball.ImageFromPath(p, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if ID(t, got) != ID(t, img) {
		t.Errorf("docker tar: ID %s, want %s", ID(t, got), ID(t, img))
	}

	p = WriteOCITar(t, img, "example.com/a:v1")
	dir := t.TempDir()
	untar(t, p, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "example.com/a:v1" ||
		m.Manifests[0].Digest.String() != ManifestDigest(t, img) {
		t.Errorf("index %+v", m)
	}
}

func untar(t *testing.T, p, dir string) {
	t.Helper()
	out, err := execCommand("tar", "-C", dir, "-xf", p)
	if err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
}

func TestRegistryPush(t *testing.T) {
	img := Busybox(t)
	host := Registry(t)
	ref := Push(t, host, "library/busybox:1.36", img)
	if ref != host+"/library/busybox:1.36" {
		t.Errorf("ref %s", ref)
	}
	r, _ := name.ParseReference(ref, name.Insecure)
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != ManifestDigest(t, img) {
		t.Errorf("digest %s", desc.Digest)
	}
}

func TestRegistryBasicAuth(t *testing.T) {
	img := Busybox(t)
	host := RegistryWith(t, BasicAuth("alice", "s3cret"))
	ref := Push(t, host, "private/app:v1", img, Auth("alice", "s3cret"))
	r, _ := name.ParseReference(ref, name.Insecure)
	_, err := remote.Get(r)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous get: %v", err)
	}
	// The secret's credentials work through a keychain.
	cfg := string(DockerConfigJSON(host, "alice", "s3cret"))
	if !strings.Contains(cfg, `"auth":"YWxpY2U6czNjcmV0"`) {
		t.Errorf("config %s", cfg)
	}
	if _, err := remote.Get(r, remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: "alice", Password: "s3cret"}))); err != nil {
		t.Fatal(err)
	}
}

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

// TestNotInTheBinary: only tests may import this package (it links the
// registry from go-containerregistry's tests).
func TestNotInTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-e", "-deps", "github.com/skiff-dev/skiff").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/skiff-dev/skiff/internal/image/imagetest" || p == "github.com/google/go-containerregistry/pkg/registry" {
			t.Errorf("the skiff binary links %s", p)
		}
	}
}

// TestBusyboxRuns: the image's rootfs works as a container's (shell,
// applets, users from /etc/passwd and /etc/group).
func TestBusyboxRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	dir := t.TempDir()
	cmd := exec.Command("tar", "-C", dir, "-xf", "-")
	cmd.Stdin = mutate.Extract(Busybox(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	out, err := exec.Command("chroot", dir, "/bin/sh", "-c", "id -un; su -s /bin/sh nobody -c 'id -un; id -gn'; touch /tmp/x && echo ok").CombinedOutput()
	if err != nil || string(out) != "root\nnobody\nnobody\nok\n" {
		t.Errorf("chroot: %v %q", err, out)
	}
}

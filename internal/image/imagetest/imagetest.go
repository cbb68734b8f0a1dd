// Package imagetest builds container images, image tars and an in-process
// registry for tests. It is for _test.go files only: nothing in the skiff
// binary may import it (it links go-containerregistry's test registry).
//
// Images are built in the test from the host's /bin/busybox (Debian's
// busybox-static); tests skip when it is missing. Nothing binary is
// committed.
//
//	img := imagetest.Busybox(t)                          // sh, httpd, wget… ; Cmd ["sh"]
//	img = imagetest.WithCmd(t, img, "httpd", "-f", "-p", "8080")
//	tarPath := imagetest.WriteOCITar(t, img, "example.com/web:v1")    // or WriteDockerTar
//	host := imagetest.Registry(t)                        // "127.0.0.1:PORT", plain HTTP
//	ref := imagetest.Push(t, host, "library/web:v1", img) // "127.0.0.1:PORT/library/web:v1"
//
// For imagePullSecrets: RegistryWith(t, BasicAuth(user, pass)), Push with
// Auth(user, pass), and DockerConfigJSON(host, user, pass) as the secret's
// .dockerconfigjson. The registry is plain HTTP: the store must list host
// in Options.InsecureRegistries.
//
// This package must not import internal/image (whose own tests use it).
package imagetest

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Epoch is the modification time of every entry and the images' created time,
// so that one host builds the same digests every run.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// BusyboxPath is the static busybox the test image is built from.
const BusyboxPath = "/bin/busybox"

// DefaultPath is the PATH in the images' config.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Entry is one tar entry of a test layer.
type Entry struct {
	Name     string
	Type     byte // tar.TypeReg, TypeDir, TypeSymlink, TypeLink, TypeChar…
	Body     string
	Linkname string
	Mode     int64
	UID, GID int
	Xattrs   map[string]string
}

// File is a regular file (0644).
func File(name, body string) Entry {
	return Entry{Name: name, Type: tar.TypeReg, Body: body, Mode: 0o644}
}

// Dir is a directory (0755).
func Dir(name string) Entry { return Entry{Name: name, Type: tar.TypeDir, Mode: 0o755} }

// Symlink is a symbolic link name → target.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Linkname: target, Mode: 0o777}
}

// Hardlink is a hard link name → target (a path in the layer).
func Hardlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeLink, Linkname: target, Mode: 0o644}
}

// TarBytes is an uncompressed layer tar of the entries, in order.
func TarBytes(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Linkname: e.Linkname, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			ModTime: Epoch, Size: int64(len(e.Body)), Format: tar.FormatPAX}
		if e.Type != tar.TypeReg {
			h.Size = 0
		}
		if len(e.Xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.Xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layer is a (gzip-compressed when distributed) layer of the entries.
func Layer(t testing.TB, entries ...Entry) v1.Layer {
	t.Helper()
	return layerFromBytes(t, TarBytes(t, entries...))
}

func layerFromBytes(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var busybox struct {
	once sync.Once
	tar  []byte
	err  error
}

// fallbackApplets are linked when `busybox --list` does not answer.
var fallbackApplets = []string{"sh", "ash", "ls", "cat", "echo", "httpd", "wget", "sleep", "env", "id", "ps",
	"kill", "true", "false", "mkdir", "rm", "touch", "test", "[", "grep", "head", "tail", "hostname", "printf",
	"nc", "date", "whoami", "pwd", "cp", "mv", "ln", "chmod", "sed", "wc", "stat", "uname", "nslookup", "timeout"}

// BusyboxLayer is the layer of Busybox: /bin/busybox from the host with
// every applet it has as a symlink /bin/APPLET → busybox, /etc/passwd and
// /etc/group (root, nobody), /root, /tmp (1777), /var/www. It skips the test
// when /bin/busybox is missing.
func BusyboxLayer(t testing.TB) v1.Layer {
	t.Helper()
	busybox.once.Do(func() {
		bb, err := os.ReadFile(BusyboxPath)
		if err != nil {
			busybox.err = err
			return
		}
		applets := fallbackApplets
		if out, err := exec.Command(BusyboxPath, "--list").Output(); err == nil && len(out) > 0 {
			applets = strings.Fields(string(out))
		}
		sort.Strings(applets)
		e := []Entry{Dir("bin/"), {Name: "bin/busybox", Type: tar.TypeReg, Body: string(bb), Mode: 0o755}}
		seen := map[string]bool{"busybox": true}
		for _, a := range applets {
			if seen[a] || strings.Contains(a, "/") {
				continue
			}
			seen[a] = true
			e = append(e, Symlink("bin/"+a, "busybox"))
		}
		e = append(e,
			Dir("etc/"),
			File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
			File("etc/group", "root:x:0:\nnobody:x:65534:\n"),
			Entry{Name: "root/", Type: tar.TypeDir, Mode: 0o700},
			Entry{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
			Dir("var/"), Dir("var/www/"),
		)
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, x := range e {
			h := &tar.Header{Name: x.Name, Typeflag: x.Type, Linkname: x.Linkname, Mode: x.Mode, ModTime: Epoch,
				Size: int64(len(x.Body)), Format: tar.FormatPAX}
			if x.Type != tar.TypeReg {
				h.Size = 0
			}
			if busybox.err = tw.WriteHeader(h); busybox.err != nil {
				return
			}
			if _, busybox.err = io.WriteString(tw, x.Body); busybox.err != nil {
				return
			}
		}
		busybox.err = tw.Close()
		busybox.tar = buf.Bytes()
	})
	if busybox.err != nil {
		if os.IsNotExist(busybox.err) {
			t.Skipf("busybox-static is not installed: %v", busybox.err)
		}
		t.Fatalf("busybox layer: %v", busybox.err)
	}
	return layerFromBytes(t, busybox.tar)
}

// Image is an image for linux/GOARCH of the layers (bottom first) with Cmd
// cmd, Env [DefaultPath] and WorkingDir "/". Its digests depend only on its
// contents.
func Image(t testing.TB, cmd []string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: Epoch}
	cf.Config.Cmd = cmd
	cf.Config.Env = []string{DefaultPath}
	cf.Config.WorkingDir = "/"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Busybox is a single-layer image of BusyboxLayer with Cmd ["sh"].
func Busybox(t testing.TB) v1.Image {
	t.Helper()
	return Image(t, []string{"sh"}, BusyboxLayer(t))
}

// WithConfig returns img with its runtime config changed by edit.
func WithConfig(t testing.TB, img v1.Image, edit func(*v1.Config)) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	edit(&cf.Config)
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// WithEntrypoint sets the image's Entrypoint.
func WithEntrypoint(t testing.TB, img v1.Image, entrypoint ...string) v1.Image {
	t.Helper()
	return WithConfig(t, img, func(c *v1.Config) { c.Entrypoint = entrypoint })
}

// WithCmd sets the image's Cmd.
func WithCmd(t testing.TB, img v1.Image, cmd ...string) v1.Image {
	t.Helper()
	return WithConfig(t, img, func(c *v1.Config) { c.Cmd = cmd })
}

// WithUser sets the image's User ("65534", "nobody", "1000:1000").
func WithUser(t testing.TB, img v1.Image, user string) v1.Image {
	t.Helper()
	return WithConfig(t, img, func(c *v1.Config) { c.User = user })
}

// WithWorkingDir sets the image's WorkingDir.
func WithWorkingDir(t testing.TB, img v1.Image, dir string) v1.Image {
	t.Helper()
	return WithConfig(t, img, func(c *v1.Config) { c.WorkingDir = dir })
}

// WithEnv sets "NAME=value" variables in the image's Env, replacing an
// existing variable of the same name in place.
func WithEnv(t testing.TB, img v1.Image, env ...string) v1.Image {
	t.Helper()
	return WithConfig(t, img, func(c *v1.Config) {
		out := append([]string(nil), c.Env...)
	next:
		for _, kv := range env {
			k, _, _ := strings.Cut(kv, "=")
			for i, old := range out {
				if ok, _, _ := strings.Cut(old, "="); ok == k {
					out[i] = kv
					continue next
				}
			}
			out = append(out, kv)
		}
		c.Env = out
	})
}

// WithExposedPorts adds ExposedPorts ("8080/tcp", "53/udp").
func WithExposedPorts(t testing.TB, img v1.Image, ports ...string) v1.Image {
	t.Helper()
	return WithConfig(t, img, func(c *v1.Config) {
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			c.ExposedPorts[p] = struct{}{}
		}
	})
}

// WithLayer adds a layer of the entries on top of img
// (WithLayer(t, img, File("var/www/index.html", "hello"))).
func WithLayer(t testing.TB, img v1.Image, entries ...Entry) v1.Image {
	t.Helper()
	out, err := mutate.AppendLayers(img, Layer(t, entries...))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ID is the image's config digest ("sha256:…"), what the store calls the
// image's ID (image.Image.ID).
func ID(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// ManifestDigest is the digest of the image's manifest ("sha256:…").
func ManifestDigest(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// WriteOCITar writes img as an OCI image-layout tar into a temp dir, named
// ref (annotation org.opencontainers.image.ref.name; "" for none), and
// returns its path.
func WriteOCITar(t testing.TB, img v1.Image, ref string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "oci.tar")
	WriteOCITarFile(t, p, map[string]v1.Image{ref: img})
	return p
}

// WriteDockerTar writes img as a `docker save` tar tagged ref into a temp
// dir and returns its path.
func WriteDockerTar(t testing.TB, img v1.Image, ref string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "docker.tar")
	WriteDockerTarFile(t, p, map[string]v1.Image{ref: img})
	return p
}

// WriteDockerTarFile writes a `docker save` tar of tag → image at path.
func WriteDockerTarFile(t testing.TB, path string, imgs map[string]v1.Image) {
	t.Helper()
	m := map[name.Tag]v1.Image{}
	for tag, img := range imgs {
		tg, err := name.NewTag(tag)
		if err != nil {
			t.Fatal(err)
		}
		m[tg] = img
	}
	if err := tarball.MultiWriteToFile(path, m); err != nil {
		t.Fatal(err)
	}
}

// WriteOCITarFile writes an OCI image-layout tar at path holding the images,
// each annotated with its name (org.opencontainers.image.ref.name; none
// for "").
func WriteOCITarFile(t testing.TB, path string, imgs map[string]v1.Image) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(imgs))
	for n := range imgs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var opts []layout.Option
		if n != "" {
			opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": n}))
		}
		if err := lp.AppendImage(imgs[n], opts...); err != nil {
			t.Fatal(err)
		}
	}
	TarDir(t, dir, path)
}

// TarDir writes the tree under dir (without dir itself) as a tar at out.
func TarDir(t testing.TB, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = rel
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Registry serves go-containerregistry's in-memory registry over plain HTTP
// on 127.0.0.1 until the test ends and returns its host:port.
func Registry(t testing.TB) string {
	t.Helper()
	return RegistryWith(t, nil)
}

// RegistryWith is Registry with the handler wrapped (nil: not wrapped), e.g.
// by BasicAuth or a handler injecting errors.
func RegistryWith(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// BasicAuth wraps a registry so that every request needs HTTP basic auth
// user:pass; others get 401 with the registry's UNAUTHORIZED error body.
func BasicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Auth is the push option for a registry behind BasicAuth(user, pass).
func Auth(user, pass string) remote.Option {
	return remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}))
}

// DockerConfigJSON is a kubernetes.io/dockerconfigjson secret's
// .dockerconfigjson for user:pass at host.
func DockerConfigJSON(host, user, pass string) []byte {
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{
		"username": user, "password": pass,
		"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
	}}})
	return b
}

// Push pushes img to host (a Registry) as repoTag ("library/busybox:1.36")
// and returns the full reference host/repoTag.
func Push(t testing.TB, host, repoTag string, img v1.Image, opts ...remote.Option) string {
	t.Helper()
	ref := host + "/" + repoTag
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatal(err)
	}
	return ref
}

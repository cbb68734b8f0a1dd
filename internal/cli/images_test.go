package cli

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/agent/imagesapi"
	"github.com/skiff-dev/skiff/internal/image"
	"github.com/skiff-dev/skiff/internal/image/imagetest"
)

func runSkiff(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(append([]string{"skiff"}, args...), strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// imagesCLI runs the import, ls and rm subcommands against data (whatever
// serves it) and checks their output.
func imagesCLI(t *testing.T, data string, check func(ref string)) {
	bb := imagetest.Busybox(t)
	web := imagetest.WithCmd(t, bb, "httpd", "-f")
	oci := imagetest.WriteOCITar(t, web, "example.com/web:v1")
	docker := imagetest.WriteDockerTar(t, bb, "busybox:1.36")

	code, out, errOut := runSkiff(t, "images", "import", "--data-dir", data, oci, docker)
	if code != 0 || out != "example.com/web:v1\ndocker.io/library/busybox:1.36\n" {
		t.Fatalf("import: code %d stdout %q stderr %q", code, out, errOut)
	}
	check("example.com/web:v1")

	code, out, errOut = runSkiff(t, "images", "ls", "--data-dir", data)
	if code != 0 {
		t.Fatalf("ls: code %d stderr %q", code, errOut)
	}
	t.Logf("skiff images ls:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "IMAGE") {
		t.Fatalf("ls output:\n%s", out)
	}
	bbID := strings.TrimPrefix(imagetest.ID(t, bb), "sha256:")[:13]
	if f := strings.Fields(lines[1]); len(f) != 4 || f[0] != "docker.io/library/busybox" || f[1] != "1.36" || f[2] != bbID || !strings.HasSuffix(f[3], "MB") {
		t.Errorf("ls row %q", lines[1])
	}
	if f := strings.Fields(lines[2]); len(f) != 4 || f[0] != "example.com/web" || f[1] != "v1" {
		t.Errorf("ls row %q", lines[2])
	}
	code, out, _ = runSkiff(t, "images", "ls", "-q", "--data-dir", data)
	if code != 0 || len(strings.Fields(out)) != 2 || !strings.Contains(out, imagetest.ID(t, bb)) {
		t.Errorf("ls -q: %d %q", code, out)
	}

	code, out, errOut = runSkiff(t, "images", "rm", "--data-dir", data, "busybox:1.36", "nosuch:1")
	if code != 1 || out != "Deleted: docker.io/library/busybox:1.36\n" || !strings.Contains(errOut, `error removing image "nosuch:1"`) {
		t.Errorf("rm: code %d stdout %q stderr %q", code, out, errOut)
	}
	code, out, _ = runSkiff(t, "images", "ls", "--data-dir", data)
	if code != 0 || strings.Contains(out, "busybox") || !strings.Contains(out, "example.com/web") {
		t.Errorf("ls after rm: %q", out)
	}
}

func TestImagesCLIDirect(t *testing.T) {
	data := t.TempDir()
	imagesCLI(t, data, func(ref string) {
		// The CLI held the store's lock only while it ran.
		st, err := image.Open(imagesapi.StoreDir(data), image.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, err := st.Get(ref); err != nil {
			t.Error(err)
		}
	})
}

func TestImagesCLIThroughAgent(t *testing.T) {
	data := t.TempDir()
	st, err := image.Open(imagesapi.StoreDir(data), image.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var inUse atomic.Pointer[map[string]bool]
	srv := &imagesapi.Server{Store: st, Logger: slog.New(slog.DiscardHandler),
		InUse: func() (map[string]bool, error) {
			if m := inUse.Load(); m != nil {
				return *m, nil
			}
			return nil, nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, imagesapi.SocketPath(data)) }()
	t.Cleanup(func() { cancel(); <-done })
	c := imagesapi.NewClient(imagesapi.SocketPath(data))
	defer c.Close()
	for i := 0; c.Ping(ctx) != nil; i++ {
		if i > 1000 {
			t.Fatal("images API does not answer")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The agent holds the store's lock: everything must go through it.
	imagesCLI(t, data, func(ref string) {
		if _, err := st.Get(ref); err != nil {
			t.Errorf("not in the agent's store: %v", err)
		}
	})

	web, err := st.Get("example.com/web:v1")
	if err != nil {
		t.Fatal(err)
	}
	inUse.Store(&map[string]bool{web.ID: true})
	code, out, errOut := runSkiff(t, "images", "rm", "--data-dir", data, "example.com/web:v1")
	t.Logf("rm of an image in use: %s", errOut)
	if code != 1 || out != "" || !strings.Contains(errOut, "in use by a container") {
		t.Errorf("rm in use: code %d stdout %q stderr %q", code, out, errOut)
	}
	if _, err := st.Get("example.com/web:v1"); err != nil {
		t.Errorf("image in use was removed: %v", err)
	}
}

func TestImagesCLILockedWithoutAgent(t *testing.T) {
	data := t.TempDir()
	st, err := image.Open(imagesapi.StoreDir(data), image.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	code, _, errOut := runSkiff(t, "images", "ls", "--data-dir", data)
	if code != 1 || !strings.Contains(errOut, "no agent answers on "+imagesapi.SocketPath(data)) {
		t.Errorf("code %d stderr %q", code, errOut)
	}
}

func TestImagesCLIUsage(t *testing.T) {
	data := t.TempDir()
	for _, args := range [][]string{{"import"}, {"rm"}, {"ls", "extra"}} {
		code, _, errOut := runSkiff(t, append(append([]string{"images"}, args...), "--data-dir", data)...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: code %d stderr %q", args, code, errOut)
		}
	}
	code, _, errOut := runSkiff(t, "images", "import", "--data-dir", data, data+"/missing.tar")
	if code != 1 || !strings.Contains(errOut, "missing.tar") {
		t.Errorf("import of a missing file: %d %q", code, errOut)
	}
}

func TestImageTable(t *testing.T) {
	id := "sha256:" + strings.Repeat("ab", 32)
	imgs := []*image.Image{
		{ID: "sha256:" + strings.Repeat("cd", 32), RepoTags: []string{"docker.io/library/nginx:1.27"},
			Layers: []image.Layer{{Size: 187_654_321}}},
		{ID: id, RepoTags: []string{"docker.io/library/busybox:latest", "127.0.0.1:5000/busybox:1.36"},
			Layers: []image.Layer{{Size: 4_261_000}, {Size: 512}}},
		{ID: "sha256:" + strings.Repeat("ef", 32), RepoDigests: []string{"ghcr.io/x/y@sha256:" + strings.Repeat("01", 32)},
			Layers: []image.Layer{{Size: 512}}},
	}
	var b bytes.Buffer
	if err := writeImageTable(&b, imgs, false); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"IMAGE                       TAG                 IMAGE ID            SIZE\n" +
		"docker.io/library/busybox   latest              ababababababa       4.26MB\n" +
		"127.0.0.1:5000/busybox      1.36                ababababababa       4.26MB\n" +
		"docker.io/library/nginx     1.27                cdcdcdcdcdcdc       188MB\n" +
		"ghcr.io/x/y                 <none>              efefefefefefe       512B\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	for n, want := range map[int64]string{0: "0B", 999: "999B", 1000: "1kB", 1234: "1.23kB", 999_499: "999kB", 12_345_678_901: "12.3GB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %s, want %s", n, got, want)
		}
	}
}

package imagesapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/image"
	"github.com/skiff-dev/skiff/internal/image/imagetest"
	"github.com/skiff-dev/skiff/internal/runtime"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// inUseSet is a settable InUse func.
type inUseSet struct {
	mu  sync.Mutex
	ids map[string]bool
	err error
}

func (s *inUseSet) set(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = map[string]bool{}
	for _, id := range ids {
		s.ids[id] = true
	}
}

func (s *inUseSet) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *inUseSet) fn() (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]bool{}
	for k, v := range s.ids {
		m[k] = v
	}
	return m, s.err
}

func openStore(t *testing.T, data string, opts image.Options) *image.Store {
	t.Helper()
	opts.Logger = quiet()
	st, err := image.Open(StoreDir(data), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// startAgent serves the API for st on DATA/agent/skiff.sock until the test
// ends and waits until it answers.
func startAgent(t *testing.T, data string, st *image.Store, inUse func() (map[string]bool, error)) *Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &Server{Store: st, InUse: inUse, Logger: quiet()}
	go func() { done <- srv.Serve(ctx, SocketPath(data)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c := NewClient(SocketPath(data))
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Ping(ctxT(t))
		if err == nil {
			return c
		}
		select {
		case err := <-done:
			t.Fatalf("Serve: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("images API does not answer: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServerImportListRemove(t *testing.T) {
	data := t.TempDir()
	st := openStore(t, data, image.Options{})
	inUse := &inUseSet{}
	c := startAgent(t, data, st, inUse.fn)
	ctx := ctxT(t)

	fi, err := os.Stat(SocketPath(data))
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", fi.Mode(), err)
	}

	bb := imagetest.Busybox(t)
	web := imagetest.WithCmd(t, bb, "httpd", "-f")
	names, err := c.ImportFile(ctx, imagetest.WriteDockerTar(t, bb, "busybox:1.36"))
	if err != nil || strings.Join(names, " ") != "docker.io/library/busybox:1.36" {
		t.Fatalf("import docker tar: %v %v", names, err)
	}
	names, err = c.ImportFile(ctx, imagetest.WriteOCITar(t, web, "example.com/web:v1"))
	if err != nil || strings.Join(names, " ") != "example.com/web:v1" {
		t.Fatalf("import OCI tar: %v %v", names, err)
	}
	if _, err := c.Import(ctx, strings.NewReader("not a tar")); err == nil {
		t.Error("importing garbage succeeded")
	} else {
		t.Logf("garbage import: %v", err)
	}

	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, img := range list {
		tags = append(tags, img.RepoTags...)
	}
	sort.Strings(tags)
	if strings.Join(tags, " ") != "docker.io/library/busybox:1.36 example.com/web:v1" || len(list) != 2 {
		t.Fatalf("list: %v", tags)
	}

	// In use by a container: refused, 409 → image.ErrInUse, and kept.
	inUse.set(imagetest.ID(t, web))
	_, err = c.Remove(ctx, "example.com/web:v1")
	t.Logf("rm in-use image: %v", err)
	if !errors.Is(err, image.ErrInUse) || !strings.Contains(err.Error(), "in use by a container") {
		t.Fatalf("rm of an image in use: %v", err)
	}
	if _, err := st.Get("example.com/web:v1"); err != nil {
		t.Fatalf("image in use was removed: %v", err)
	}
	// InUse failing: refused too.
	inUse.fail(errors.New("runtime down"))
	if _, err := c.Remove(ctx, "busybox:1.36"); err == nil || !strings.Contains(err.Error(), "runtime down") {
		t.Errorf("rm while InUse fails: %v", err)
	}
	inUse.fail(nil)

	if _, err := c.Remove(ctx, "nosuch:1"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("rm of a missing image: %v", err)
	}
	deleted, err := c.Remove(ctx, "busybox:1.36")
	if err != nil || strings.Join(deleted, " ") != "docker.io/library/busybox:1.36" {
		t.Fatalf("rm: %v %v", deleted, err)
	}
	inUse.set()
	// By ID too (the path carries "sha256:").
	deleted, err = c.Remove(ctx, imagetest.ID(t, web))
	if err != nil || strings.Join(deleted, " ") != "example.com/web:v1" {
		t.Fatalf("rm by ID: %v %v", deleted, err)
	}
	if list := st.List(); len(list) != 0 {
		t.Errorf("left: %v", list)
	}
}

func TestServeSocketLifecycle(t *testing.T) {
	data := t.TempDir()
	sock := SocketPath(data)
	// A stale socket from a crashed agent: nobody listens on it.
	os.MkdirAll(filepath.Dir(sock), 0o700)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}

	st := openStore(t, data, image.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- (&Server{Store: st, Logger: quiet()}).Serve(ctx, sock) }()
	c := NewClient(sock)
	defer c.Close()
	for i := 0; ; i++ {
		if err := c.Ping(ctx); err == nil {
			break
		} else if i > 500 {
			t.Fatalf("no answer: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A second server does not take a live socket over.
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("Listen on a live socket: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Serve returned: %v", err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, ErrNoAgent) {
		t.Errorf("ping after stop: %v, want ErrNoAgent", err)
	}
	ents, _ := os.ReadDir(filepath.Dir(sock))
	for _, e := range ents {
		if strings.Contains(e.Name(), "tmp") || strings.HasPrefix(e.Name(), ".s") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestConnect(t *testing.T) {
	ctx := ctxT(t)
	bb := imagetest.Busybox(t)

	t.Run("no store, no agent", func(t *testing.T) {
		data := t.TempDir()
		imgs, err := Connect(ctx, data, ConnectOptions{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer imgs.Close()
		if l, err := imgs.List(ctx); err != nil || len(l) != 0 {
			t.Errorf("list: %v %v", l, err)
		}
		if _, err := os.Stat(StoreDir(data)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ls created the store: %v", err)
		}
	})

	t.Run("direct", func(t *testing.T) {
		data := t.TempDir()
		imgs, err := Connect(ctx, data, ConnectOptions{Create: true, Logger: quiet(),
			InUse: func() (map[string]bool, error) { return map[string]bool{imagetest.ID(t, bb): true}, nil }})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := imgs.(*Local); !ok {
			t.Fatalf("%T, want *Local", imgs)
		}
		names, err := imgs.ImportFile(ctx, imagetest.WriteOCITar(t, bb, "busybox:1"))
		if err != nil || len(names) != 1 {
			t.Fatalf("import: %v %v", names, err)
		}
		if _, err := imgs.Remove(ctx, "busybox:1"); !errors.Is(err, image.ErrInUse) {
			t.Errorf("rm in use: %v", err)
		}
		imgs.Close()
		// The lock was held only while connected.
		st := openStore(t, data, image.Options{})
		if _, err := st.Get("busybox:1"); err != nil {
			t.Error(err)
		}
	})

	t.Run("locked, no agent", func(t *testing.T) {
		data := t.TempDir()
		openStore(t, data, image.Options{}) // holds the lock, serves nothing
		_, err := Connect(ctx, data, ConnectOptions{Logger: quiet()})
		t.Logf("connect: %v", err)
		if !errors.Is(err, image.ErrLocked) || !strings.Contains(err.Error(), "no agent answers") {
			t.Errorf("connect to a locked store: %v", err)
		}
	})

	t.Run("agent", func(t *testing.T) {
		data := t.TempDir()
		st := openStore(t, data, image.Options{})
		startAgent(t, data, st, nil)
		imgs, err := Connect(ctx, data, ConnectOptions{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer imgs.Close()
		if _, ok := imgs.(*Client); !ok {
			t.Fatalf("%T, want *Client", imgs)
		}
		if _, err := imgs.ImportFile(ctx, imagetest.WriteDockerTar(t, bb, "busybox:2")); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get("busybox:2"); err != nil {
			t.Errorf("not in the agent's store: %v", err)
		}
	})
}

type fakeLister []*runtime.State

func (f fakeLister) List() ([]*runtime.State, error) { return f, nil }

func TestInUseFunc(t *testing.T) {
	m, err := InUseFunc(fakeLister{
		{ID: "a", Labels: map[string]string{LabelImageID: "sha256:1"}},
		{ID: "b", Labels: map[string]string{LabelImageID: "sha256:2"}},
		{ID: "c"},
	})()
	if err != nil || len(m) != 2 || !m["sha256:1"] || !m["sha256:2"] {
		t.Errorf("%v %v", m, err)
	}
}

func TestRunGC(t *testing.T) {
	data := t.TempDir()
	// Thresholds of 1%: any real filesystem is over, so GC removes every
	// image no container uses.
	st := openStore(t, data, image.Options{HighThresholdPercent: 1, LowThresholdPercent: 1})
	ctx := ctxT(t)
	bb := imagetest.Busybox(t)
	other := imagetest.Image(t, []string{"x"}, imagetest.Layer(t, imagetest.File("x", strings.Repeat("x", 4096))))
	if _, err := st.ImportFile(ctx, imagetest.WriteDockerTar(t, bb, "busybox:1")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportFile(ctx, imagetest.WriteDockerTar(t, other, "other:1")); err != nil {
		t.Fatal(err)
	}
	inUse := &inUseSet{}
	inUse.set(imagetest.ID(t, bb))

	// A failing InUse skips the round.
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	inUse.fail(errors.New("runtime down"))
	gcOnce(ctx, st, inUse.fn, log.With("component", "image-gc"))
	if len(st.List()) != 2 || !strings.Contains(logs.String(), "skipped") {
		t.Fatalf("GC ran without knowing what is in use: %d images; log %s", len(st.List()), logs.String())
	}
	inUse.fail(nil)

	gctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { RunGC(gctx, st, inUse.fn, time.Hour, log); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(st.List()) != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	list := st.List()
	if len(list) != 1 || list[0].ID != imagetest.ID(t, bb) {
		t.Fatalf("after GC: %v", list)
	}
	if !strings.Contains(logs.String(), "freed") || !strings.Contains(logs.String(), imagetest.ID(t, other)) {
		t.Errorf("log: %s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)

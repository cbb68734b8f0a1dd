package runtime

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the console copier and the test.
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

func TestAttachStdin(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := filepath.Join(t.TempDir(), "out")
	if _, err := r.Create(ctx, ContainerConfig{ID: "cat", Rootfs: Rootfs{Dir: busyboxRootfs(t)}, Args: []string{"cat"},
		Stdin: true, StdinOnce: true, StdoutPath: out}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "cat"); err != nil {
		t.Fatal(err)
	}
	if err := r.Attach(ctx, "cat", AttachConfig{Stdin: strings.NewReader("via attach\n")}); err != nil {
		t.Fatal(err)
	}
	st, err := r.Wait(ctx, "cat")
	if err != nil || st.ExitCode != 0 {
		t.Fatalf("%+v %v", st, err)
	}
	if got := readFile(t, out); got != "via attach\n" {
		t.Fatalf("stdout %q", got)
	}
}

func TestAttachTTY(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := filepath.Join(t.TempDir(), "out")
	if _, err := r.Create(ctx, ContainerConfig{ID: "tty", Rootfs: Rootfs{Dir: busyboxRootfs(t)}, Args: []string{"sh"},
		Tty: true, Stdin: true, StdoutPath: out}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "tty"); err != nil {
		t.Fatal(err)
	}
	var got syncBuffer
	resize := make(chan TermSize, 1)
	resize <- TermSize{Width: 100, Height: 40}
	close(resize)
	// A first client only resizes, then detaches.
	rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer rcancel()
	if err := r.Attach(rctx, "tty", AttachConfig{Resize: resize}); err != context.DeadlineExceeded {
		t.Fatalf("resize-only attach: %v", err)
	}
	if err := r.Attach(ctx, "tty", AttachConfig{
		Stdin:  strings.NewReader("tty; stty size; echo sum=$((1+2)); exit 3\n"),
		Stdout: &got,
	}); err != nil {
		t.Fatal(err)
	}
	st, err := r.Wait(ctx, "tty")
	if err != nil || st.ExitCode != 3 {
		t.Fatalf("%+v %v", st, err)
	}
	for _, want := range []string{"/dev/pts/", "40 100", "sum=3"} {
		if !strings.Contains(got.String(), want) {
			t.Errorf("attached output %q lacks %q", got.String(), want)
		}
		if !strings.Contains(readFile(t, out), want) {
			t.Errorf("log %q lacks %q", readFile(t, out), want)
		}
	}
}

package runtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"

	"github.com/skiff-dev/skiff/internal/runtime/runtimetest"
)

// The test binary is also libcontainer's `init`, as skiff's main is.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		ContainerInit()
	}
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runtime tests need root (namespaces, cgroups, mounts)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("runtime tests need /bin/busybox (Debian: busybox-static)")
	}
}

var testSeq atomic.Int64

// newTestRuntime opens a runtime in a temp root with its own cgroup parent
// and registers a cleanup that deletes everything and checks that no
// cgroup, mount, netns file or state dir is left.
func newTestRuntime(t testing.TB) *Runtime {
	t.Helper()
	root := t.TempDir()
	parent := fmt.Sprintf("skiff-test-%d-%d", os.Getpid(), testSeq.Add(1))
	r, err := Open(root, Options{CgroupParent: parent, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupRuntime(t, root, parent) })
	return r
}

// cleanupRuntime deletes all containers and sandboxes under root (through a
// fresh Runtime, as an agent after a restart would) and checks the host.
func cleanupRuntime(t testing.TB, root, parent string) {
	t.Helper()
	r, err := Open(root, Options{CgroupParent: parent, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Errorf("cleanup: open: %v", err)
		return
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, _ := r.List()
	for _, c := range cs {
		if err := r.Delete(ctx, c.ID); err != nil {
			t.Errorf("cleanup: delete %s: %v", c.ID, err)
		}
	}
	sbs, _ := r.ListSandboxes()
	for _, sb := range sbs {
		if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
			t.Errorf("cleanup: remove sandbox %s: %v", sb.ID, err)
		}
		if _, err := os.Stat(filepath.Join(r.opts.NetNSDir, "skiff-"+sb.ID)); err == nil {
			t.Errorf("cleanup: netns file of %s left", sb.ID)
		}
	}
	// Cgroups: the per-container ones must be gone; then remove the parent.
	for _, dir := range cgroupDirs(t, "/"+parent) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() {
				t.Errorf("cleanup: cgroup %s/%s left", dir, e.Name())
			}
		}
		if err := cgroups.RemovePath(dir); err != nil {
			t.Errorf("cleanup: remove cgroup %s: %v", dir, err)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("cleanup: cgroup %s left", dir)
		}
	}
	for _, m := range mountsUnder(t, root) {
		t.Errorf("cleanup: mount left: %s", m)
	}
	for _, sub := range []string{"state", "containers", "sandboxes"} {
		ents, _ := os.ReadDir(filepath.Join(root, sub))
		for _, e := range ents {
			t.Errorf("cleanup: %s/%s left", sub, e.Name())
		}
	}
}

// run creates and starts a container and waits for it to exit.
func run(t testing.TB, r *Runtime, cfg ContainerConfig) *State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.Create(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	st, err := r.Wait(ctx, cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func busyboxRootfs(t testing.TB) string { return runtimetest.BusyboxRootfs(t, nil) }

func cgroupDirs(t testing.TB, path string) []string { return runtimetest.CgroupDirs(t, path) }

func mountsUnder(t testing.TB, dir string) []string { return runtimetest.MountsUnder(t, dir) }

package runtime

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
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

// busyboxRootfs builds a minimal rootfs from /bin/busybox in a temp dir.
func busyboxRootfs(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "etc", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	// As `busybox --install -s`, but with relative links (--install points
	// them at the host's resolved /proc/self/exe).
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
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

// cgroupDirs returns path in every cgroup hierarchy mounted here.
func cgroupDirs(t testing.TB, path string) []string {
	if cgroups.IsCgroup2UnifiedMode() {
		return []string{filepath.Join("/sys/fs/cgroup", path)}
	}
	ms, err := cgroups.GetCgroupMounts(true)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, filepath.Join(m.Mountpoint, path))
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		out = append(out, filepath.Join("/sys/fs/cgroup/unified", path))
	}
	return out
}

// mountsUnder lists mount points at or below dir.
func mountsUnder(t testing.TB, dir string) []string {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && (fs[4] == dir || strings.HasPrefix(fs[4], dir+"/")) {
			out = append(out, fs[4])
		}
	}
	return out
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

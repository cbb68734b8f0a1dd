package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/internal/runtime"
	"github.com/skiff-dev/skiff/internal/runtime/runtimetest"
)

// The test binary is also libcontainer's `init`, as skiff's main is.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.ContainerInit()
	}
}

func TestKillAllLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox")
	}
	ctx := context.Background()
	data := t.TempDir()
	cgroupRoot := fmt.Sprintf("skiff-killall-test-%d", os.Getpid())
	rt, err := runtime.Open(filepath.Join(Dir(data), "containers"), runtime.Options{CgroupParent: cgroupRoot})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = KillAll(context.Background(), data, cgroupRoot, nil) })

	sb, err := rt.CreateSandbox(ctx, runtime.SandboxConfig{ID: "killall-pod"})
	if err != nil {
		t.Fatal(err)
	}
	rootfs := runtimetest.BusyboxRootfs(t, nil)
	c, err := rt.Create(ctx, runtime.ContainerConfig{
		ID: "killall-c1", SandboxID: sb.ID, Rootfs: runtime.Rootfs{Dir: rootfs},
		Args: []string{"sleep", "1000"}, CgroupParent: "kubepods/besteffort/podkillall",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	st, err := rt.State(c.ID)
	if err != nil || st.Status != runtime.StatusRunning {
		t.Fatalf("state %+v %v", st, err)
	}
	pid := st.Pid
	// A pod volume on tmpfs, as the pod worker mounts secrets.
	vol := filepath.Join(Dir(data), "pods", "uid1", "volumes", "kubernetes.io~secret", "s")
	if err := os.MkdirAll(vol, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", vol, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	// The agent stops (containers keep running), then killall.
	_ = rt.Close()

	if err := KillAll(ctx, data, cgroupRoot, nil); err != nil {
		t.Fatalf("KillAll: %v", err)
	}
	if err := unix.Kill(pid, 0); err == nil {
		t.Errorf("container process %d still alive", pid)
	}
	if _, err := os.Stat(sb.NetNSPath); err == nil {
		t.Errorf("netns %s left behind", sb.NetNSPath)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), data) {
		t.Errorf("mounts under %s left behind", data)
	}
	for _, base := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(base, cgroupRoot)); err == nil {
			t.Errorf("cgroup %s left behind", filepath.Join(base, cgroupRoot))
		}
	}
}

package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostNetworkSandbox: containers of a HostNetwork sandbox are in the
// host's network namespace and still share the sandbox's IPC namespace.
func TestHostNetworkSandbox(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	ctx := context.Background()
	sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: "hostpod", Hostname: "h", HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	if sb.NetNSPath != "" {
		t.Fatalf("NetNSPath %q", sb.NetNSPath)
	}
	if got, err := r.GetSandbox("hostpod"); err != nil || !got.HostNetwork || got.NetNSPath != "" {
		t.Fatalf("GetSandbox: %+v %v", got, err)
	}
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ipc, err := os.Readlink("/proc/self/ns/ipc")
	if err != nil {
		t.Fatal(err)
	}
	rootfs := busyboxRootfs(t)
	out := filepath.Join(t.TempDir(), "out")
	st := run(t, r, ContainerConfig{ID: "c", SandboxID: "hostpod", Rootfs: Rootfs{Dir: rootfs},
		Args: []string{"sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc"}, StdoutPath: out})
	if st.ExitCode != 0 {
		t.Fatalf("exit %d: %s", st.ExitCode, readFile(t, out))
	}
	lines := strings.Fields(readFile(t, out))
	if len(lines) != 2 || lines[0] != hostNet || lines[1] == ipc {
		t.Fatalf("container namespaces %v; host net %s ipc %s", lines, hostNet, ipc)
	}
	if err := r.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveSandbox(ctx, "hostpod"); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(r.opts.NetNSDir, "skiff-hostpod*")); len(left) != 0 {
		t.Fatalf("namespace files left: %v", left)
	}
}

package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoScript runs what `make run` runs (the README's first quick-start
// command) with its own data dir and kubeconfig, waits for the demo
// Deployment to roll out, and stops it with SIGTERM as Ctrl-C would.
func TestDemoScript(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server on port 6443")
	}
	dir := t.TempDir()
	log := &syncBuffer{}
	// The demo's node programs the network of the namespace it runs in:
	// an isolated host, not this machine's.
	cmd := inNetNS(newIsolatedHost(t), "../../scripts/run-demo.sh", skiffBin)
	cmd.Env = append(cmd.Environ(), "DATA_DIR="+filepath.Join(dir, "data"), "KUBECONFIG_OUT="+filepath.Join(dir, "kubeconfig.yaml"))
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so the signal reaches the script only (it
	// stops its children itself).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Errorf("demo did not stop within 20s of SIGTERM\n%s", log)
		}
	}()
	deadline := time.After(90 * time.Second)
	for !strings.Contains(log.String(), "skiff is running") {
		select {
		case err := <-exited:
			t.Fatalf("demo exited early: %v\n%s", err, log)
		case <-deadline:
			t.Fatalf("demo not up in 90s\n%s", log)
		case <-time.After(100 * time.Millisecond):
		}
	}
	out := log.String()
	for _, want := range []string{`deployment "web" successfully rolled out`, "service/web", "Running"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The page three times: from localhost in the pod, through the
	// ClusterIP from a pod, through the NodePort from the host.
	if n := strings.Count(out, "<h1>skiff</h1>"); n != 3 {
		t.Errorf("demo output has the page %d times, want 3 (pod, ClusterIP, NodePort):\n%s", n, out)
	}
}

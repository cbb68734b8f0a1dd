package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testImage is the image agent tests run: busybox from the host's
// busybox-static, built by scripts/busybox-image.sh and imported through
// DATA/agent/images/ (the air-gap path), so no registry is involved.
const testImage = "docker.io/library/busybox:stable-skiff"

var (
	testImageOnce sync.Once
	testImageTar  string
	testImageErr  error
)

// busyboxImageTar builds the test image once per test binary.
func busyboxImageTar(t testing.TB) string {
	t.Helper()
	testImageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "skiff-e2e-image-")
		if err != nil {
			testImageErr = err
			return
		}
		testImageTar = filepath.Join(dir, "busybox.tar")
		out, err := exec.Command("../../scripts/busybox-image.sh", testImageTar, testImage).CombinedOutput()
		if err != nil {
			testImageErr = fmt.Errorf("busybox-image.sh: %v\n%s", err, out)
		}
	})
	if testImageErr != nil {
		t.Fatal(testImageErr)
	}
	return testImageTar
}

// startServerWithAgent starts `skiff server` with its in-process agent in an
// isolated host namespace (see newIsolatedHost): that "host" becomes a node
// (InternalIP isolatedHostIP) that runs pods for real. The
// kubelet port and the pods' cgroup root are the test's own, the busybox
// test image is in the air-gap import directory, and when the test ends the
// server is stopped and `skiff killall` removes every container, sandbox,
// mount and cgroup it left (even after a failure).
func startServerWithAgent(t testing.TB, extraArgs ...string) *cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the agent needs root")
	}
	dir := t.TempDir()
	c := &cluster{t: t, dataDir: filepath.Join(dir, "data"), kubeconfig: filepath.Join(dir, "kubeconfig.yaml"), port: freePort(t), withAgent: true}
	c.netns = newIsolatedHost(t)
	c.cgroupRoot = fmt.Sprintf("skiff-e2e-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	c.extraArgs = append([]string{
		"--node-ip", isolatedHostIP, "--node-name", "e2e-node",
		"--kubelet-port", fmt.Sprint(freePort(t)), "--cgroup-root", c.cgroupRoot,
	}, extraArgs...)
	if err := os.MkdirAll(filepath.Join(c.dataDir, "agent", "images"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(busyboxImageTar(t), filepath.Join(c.dataDir, "agent", "images", "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.killall)
	c.start()
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Errorf("stopping skiff server: %v\n%s", err, c.log)
		}
	})
	return c
}

// startServerForAgents starts a `skiff server --disable-agent` in an
// isolated host namespace, for standalone agents (startAgent) to join.
func startServerForAgents(t testing.TB, extraArgs ...string) *cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the agent needs root")
	}
	dir := t.TempDir()
	c := &cluster{t: t, dataDir: filepath.Join(dir, "data"), kubeconfig: filepath.Join(dir, "kubeconfig.yaml"), port: freePort(t), extraArgs: extraArgs}
	c.netns = newIsolatedHost(t)
	c.start()
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Errorf("stopping skiff server: %v\n%s", err, c.log)
		}
	})
	return c
}

// killall removes what the agent left on the host once the server is gone.
func (c *cluster) killall() {
	if c.cmd != nil {
		_ = c.stop()
	}
	out, err := inNetNS(c.netns, skiffBin, "killall", "--data-dir", c.dataDir, "--cgroup-root", c.cgroupRoot).CombinedOutput()
	if err != nil {
		c.t.Errorf("skiff killall: %v\n%s", err, out)
	}
}

// waitNodeReady waits for the agent's node to be Ready.
func (c *cluster) waitNodeReady(name string) {
	c.t.Helper()
	client := c.client()
	c.eventually(60*time.Second, "node "+name+" Ready", func() bool {
		n, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	})
}

// podWhere waits until the pod satisfies cond and returns it.
func (c *cluster) podWhere(ns, name, what string, timeout time.Duration, cond func(*corev1.Pod) bool) *corev1.Pod {
	c.t.Helper()
	client := c.client()
	var last *corev1.Pod
	deadline := time.Now().Add(timeout)
	for {
		p, err := client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = p
			if cond(p) {
				return p
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for pod %s/%s: %s (last: %s, err %v)\nserver log:\n%s",
				timeout, ns, name, what, podSummary(last), err, tail(c.log.String(), 6000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func podSummary(p *corev1.Pod) string {
	if p == nil {
		return "none"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s", p.Status.Phase)
	for _, cs := range p.Status.ContainerStatuses {
		fmt.Fprintf(&b, " %s:ready=%v,restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
		if w := cs.State.Waiting; w != nil {
			fmt.Fprintf(&b, ",waiting=%s(%s)", w.Reason, w.Message)
		}
	}
	return b.String()
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitServiceAccount waits for the namespace's default ServiceAccount, which
// the controllers create just after start-up: pods are refused without it.
func (c *cluster) waitServiceAccount(ns string) {
	c.t.Helper()
	client := c.client()
	c.eventually(30*time.Second, "ServiceAccount "+ns+"/default", func() bool {
		_, err := client.CoreV1().ServiceAccounts(ns).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil
	})
}

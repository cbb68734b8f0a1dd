package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// simNodes runs `skiff sim` against the cluster until the test ends and
// waits until its nodes are Ready (and have pod CIDRs, so their pods get
// IPs at once).
func (c *cluster) simNodes(nodes int, extra ...string) *syncBuffer {
	c.t.Helper()
	log := &syncBuffer{}
	args := append([]string{"sim", "--kubeconfig", c.kubeconfig, "--nodes", fmt.Sprint(nodes)}, extra...)
	cmd := exec.Command(skiffBin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				c.t.Errorf("skiff sim exited with %v\n%s", err, log)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			c.t.Errorf("skiff sim did not stop within 20s of SIGTERM\n%s", log)
		}
	})
	client := c.client()
	c.eventually(60*time.Second+time.Duration(nodes)*100*time.Millisecond, fmt.Sprintf("%d simulated nodes Ready with pod CIDRs", nodes), func() bool {
		select {
		case err := <-exited:
			exited <- err
			c.t.Fatalf("skiff sim exited early: %v\n%s", err, log)
		default:
		}
		list, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: "type=skiff-sim"})
		if err != nil {
			return false
		}
		ready := 0
		for _, n := range list.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue && n.Spec.PodCIDR != "" {
					ready++
				}
			}
		}
		return ready >= nodes
	})
	return log
}

// client is a client-go client with the admin kubeconfig.
func (c *cluster) client() kubernetes.Interface {
	c.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	return kubernetes.NewForConfigOrDie(cfg)
}

// eventually polls cond every 100ms until it holds, failing the test with
// what after timeout.
func (c *cluster) eventually(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		c.t.Fatalf("timed out after %s waiting for %s\nserver log:\n%s", timeout, what, tail(c.log.String(), 4000))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

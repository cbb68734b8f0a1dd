package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentJoin joins a standalone `skiff agent` to a server that runs no
// agent of its own, refuses a token pinning another CA, and then uses the
// node through upstream kubectl: logs -f, exec -i, port-forward.
func TestAgentJoin(t *testing.T) {
	kubectl := upstreamKubectl(t)
	if os.Geteuid() != 0 {
		t.Skip("the agent needs root")
	}
	c := startServerForAgents(t)

	// A token whose CA hash is not this server's CA is refused before any
	// secret is sent.
	tok, err := os.ReadFile(filepath.Join(c.dataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(strings.TrimSpace(string(tok)), "::", 2)
	bad := "K10" + strings.Repeat("0", 64) + "::" + parts[1]
	out, err := inNetNS(c.netns, skiffBin, "agent", "--server", fmt.Sprintf("https://127.0.0.1:%d", c.port), "--token", bad,
		"--data-dir", t.TempDir(), "--node-name", "bad-node", "--kubelet-port", fmt.Sprint(freePort(t))).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CA") {
		t.Errorf("agent with a wrong CA hash: err=%v\n%s", err, out)
	}

	c.startAgent("worker-1")
	c.waitNodeReady("worker-1")
	node, err := c.client().CoreV1().Nodes().Get(context.Background(), "worker-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := node.Status.NodeInfo.ContainerRuntimeVersion; !strings.HasPrefix(v, "runc://") {
		t.Errorf("containerRuntimeVersion %q", v)
	}
	if node.Labels["kubernetes.io/hostname"] != "worker-1" || node.Status.Capacity.Cpu().IsZero() || node.Status.Allocatable.Memory().IsZero() {
		t.Errorf("node registration: labels %v capacity %v", node.Labels, node.Status.Capacity)
	}

	c.waitServiceAccount("default")
	c.mustKubectl(kubectl, `apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  containers:
  - name: c
    image: `+testImage+`
    command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
  - name: web
    image: `+testImage+`
    command: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
`, "apply", "-f", "-")
	p := c.podWhere("default", "talker", "Running", 60*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if p.Spec.NodeName != "worker-1" {
		t.Fatalf("scheduled to %q", p.Spec.NodeName)
	}

	t.Run("logs -f", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectl, "logs", "-f", "talker", "-c", "c", "--tail", "1")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		var lines []string
		for len(lines) < 4 && sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if len(lines) < 4 {
			t.Fatalf("logs -f gave %q", lines)
		}
		re := regexp.MustCompile(`^tick (\d+)$`)
		for _, l := range lines {
			if !re.MatchString(l) {
				t.Errorf("log line %q", l)
			}
		}
	})

	t.Run("port-forward", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		local := freePort(t)
		cmd := exec.CommandContext(ctx, kubectl, "port-forward", "pod/talker", fmt.Sprintf("%d:8080", local))
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() || !strings.Contains(sc.Text(), "Forwarding from") {
			t.Fatalf("port-forward said %q", sc.Text())
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		for i := 0; i < 3; i++ {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", local))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "skiff") {
				t.Errorf("through port-forward: %d %q", resp.StatusCode, body)
			}
		}
	})

	t.Run("exec -c and -i", func(t *testing.T) {
		out := c.mustKubectl(kubectl, "hello\n", "exec", "-i", "talker", "-c", "web", "--", "tr", "a-z", "A-Z")
		if out != "HELLO\n" {
			t.Errorf("exec -i tr: %q", out)
		}
	})
}

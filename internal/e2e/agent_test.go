package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentPods runs real pods on the server's in-process agent and drives
// them with upstream kubectl: readiness, logs, exec exit codes, ConfigMap env
// and Secret volumes, crash back-off, liveness restarts, an agent restart
// that keeps containers, and deletion that frees the host's resources.
func TestAgentPods(t *testing.T) {
	kubectl := upstreamKubectl(t)
	c := startServerWithAgent(t)
	c.waitNodeReady("e2e-node")
	c.waitServiceAccount("default")
	client := c.client()
	ctx := context.Background()

	c.mustKubectl(kubectl, `apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data: {GREETING: hello-from-configmap}
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret}
stringData: {password: s3cr3t}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 3 # httpd is PID 1: it ignores SIGTERM
  containers:
  - name: httpd
    image: `+testImage+`
    command: ["sh", "-c", "echo starting web; exec httpd -f -v -p 80 -h /var/www"]
    envFrom: [{configMapRef: {name: app-config}}]
    volumeMounts: [{name: secret, mountPath: /etc/app-secret, readOnly: true}]
    readinessProbe:
      httpGet: {path: /index.html, port: 80}
      periodSeconds: 1
  volumes:
  - name: secret
    secret: {secretName: app-secret}
`, "apply", "-f", "-")

	pod := c.podWhere("default", "web", "Ready", 60*time.Second, podReady)
	if len(pod.Status.ContainerStatuses) != 1 || !strings.HasPrefix(pod.Status.ContainerStatuses[0].ContainerID, "runc://") {
		t.Fatalf("container status: %+v", pod.Status.ContainerStatuses)
	}
	cid := pod.Status.ContainerStatuses[0].ContainerID

	t.Run("exec", func(t *testing.T) {
		out := c.mustKubectl(kubectl, "", "exec", "web", "--", "wget", "-qO-", "http://localhost/index.html")
		if !strings.Contains(out, "<h1>skiff</h1>") {
			t.Errorf("wget through exec: %q", out)
		}
		_, _, err := c.kubectl(kubectl, "", "exec", "web", "--", "sh", "-c", "exit 3")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 3 {
			t.Errorf("kubectl exec exit 3: got %v", err)
		}
		out = c.mustKubectl(kubectl, "", "exec", "web", "--", "sh", "-c", "echo $GREETING; cat /etc/app-secret/password")
		if out != "hello-from-configmap\ns3cr3t" && out != "hello-from-configmap\ns3cr3t\n" {
			t.Errorf("env and secret volume: %q", out)
		}
		out = c.mustKubectl(kubectl, "in\n", "exec", "-i", "web", "--", "cat")
		if out != "in\n" {
			t.Errorf("exec -i cat: %q", out)
		}
		// The embedded client does the same through the same API.
		out, _, err = c.skiffKubectl("", "exec", "web", "--", "sh", "-c", "echo $GREETING; exit 4")
		if !errors.As(err, &exit) || exit.ExitCode() != 4 || out != "hello-from-configmap\n" {
			t.Errorf("skiff kubectl exec: %q, %v", out, err)
		}
		if out, errOut, err := c.skiffKubectl("", "logs", "web", "--tail", "1"); err != nil || strings.Count(out, "\n") != 1 {
			t.Errorf("skiff kubectl logs --tail 1: %q %s %v", out, errOut, err)
		}
		// The service-account token is mounted where client libraries look.
		out = c.mustKubectl(kubectl, "", "exec", "web", "--", "ls", "/var/run/secrets/kubernetes.io/serviceaccount")
		for _, f := range []string{"ca.crt", "namespace", "token"} {
			if !strings.Contains(out, f) {
				t.Errorf("service account volume lacks %s: %q", f, out)
			}
		}
	})

	t.Run("logs", func(t *testing.T) {
		c.eventually(10*time.Second, "logs show the probe requests", func() bool {
			out, _, err := c.kubectl(kubectl, "", "logs", "web")
			return err == nil && strings.Contains(out, "starting web") && strings.Contains(out, "response:200")
		})
		out := c.mustKubectl(kubectl, "", "logs", "web", "--tail", "1", "--timestamps")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "Z ") {
			t.Errorf("logs --tail 1 --timestamps: %q", out)
		}
	})

	t.Run("agent restart keeps the container", func(t *testing.T) {
		if err := c.stop(); err != nil {
			t.Fatal(err)
		}
		c.start()
		c.waitNodeReady("e2e-node")
		time.Sleep(3 * time.Second) // a few sync periods of the restarted agent
		p, err := client.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cs := p.Status.ContainerStatuses[0]
		if cs.ContainerID != cid || cs.RestartCount != 0 || cs.State.Running == nil {
			t.Errorf("after restart: %s restarts=%d running=%v, want %s running with 0 restarts", cs.ContainerID, cs.RestartCount, cs.State.Running != nil, cid)
		}
		out := c.mustKubectl(kubectl, "", "exec", "web", "--", "wget", "-qO-", "http://localhost/index.html")
		if !strings.Contains(out, "skiff") {
			t.Errorf("exec after restart: %q", out)
		}
		c.eventually(10*time.Second, "logs after restart", func() bool {
			out, _, err := c.kubectl(kubectl, "", "logs", "web")
			return err == nil && strings.Count(out, "starting web") == 1
		})
	})

	t.Run("delete frees the host", func(t *testing.T) {
		uid := string(pod.UID)
		id := strings.TrimPrefix(cid, "runc://")
		netns := "/run/netns/skiff-" + uid
		if _, err := os.Stat(netns); err != nil {
			t.Fatalf("pod netns: %v", err)
		}
		c.mustKubectl(kubectl, "", "delete", "pod", "web", "--timeout=60s")
		if _, err := os.Stat(netns); err == nil {
			t.Errorf("netns %s left after delete", netns)
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(mounts), id) || strings.Contains(string(mounts), uid) {
			t.Errorf("mounts of the pod left after delete")
		}
		matches, _ := filepath.Glob("/sys/fs/cgroup/*/" + c.cgroupRoot + "/kubepods*/*" + uid + "*")
		if len(matches) > 0 {
			t.Errorf("pod cgroups left: %v", matches)
		}
		if _, err := os.Stat(filepath.Join(c.dataDir, "agent", "pods", uid)); err == nil {
			t.Errorf("pod dir left")
		}
	})
}

// TestAgentRestarts checks restartPolicy, CrashLoopBackOff and liveness
// probes on real containers.
func TestAgentRestarts(t *testing.T) {
	kubectl := upstreamKubectl(t)
	c := startServerWithAgent(t)
	c.waitNodeReady("e2e-node")
	c.waitServiceAccount("default")
	c.mustKubectl(kubectl, `apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: c
    image: `+testImage+`
    command: ["sh", "-c", "echo crashing; exit 1"]
---
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  containers:
  - name: c
    image: `+testImage+`
    command: ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 1000"]
    livenessProbe:
      exec: {command: ["test", "-f", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: `+testImage+`
    command: ["sh", "-c", "echo done; exit 7"]
`, "apply", "-f", "-")

	c.podWhere("default", "crasher", "CrashLoopBackOff", 60*time.Second, func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 1 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "CrashLoopBackOff" &&
			cs[0].LastTerminationState.Terminated != nil && cs[0].LastTerminationState.Terminated.ExitCode == 1
	})
	out := c.mustKubectl(kubectl, "", "logs", "crasher", "--previous")
	if !strings.Contains(out, "crashing") {
		t.Errorf("logs --previous: %q", out)
	}
	c.podWhere("default", "unhealthy", "restarted by its liveness probe", 60*time.Second, func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 1
	})
	out = c.mustKubectl(kubectl, "", "get", "events", "--field-selector", "involvedObject.name=unhealthy")
	if !strings.Contains(out, "Liveness probe failed") {
		t.Errorf("no Unhealthy event:\n%s", out)
	}
	p := c.podWhere("default", "once", "Failed", 30*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.ExitCode != 7 || cs[0].RestartCount != 0 {
		t.Errorf("restartPolicy Never: %+v", cs)
	}
	if out := c.mustKubectl(kubectl, "", "logs", "once"); out != "done\n" {
		t.Errorf("logs of a finished pod: %q", out)
	}
}

// TestAgentImagePullError reports a missing image as Kubernetes does.
func TestAgentImagePullError(t *testing.T) {
	kubectl := upstreamKubectl(t)
	c := startServerWithAgent(t)
	c.waitNodeReady("e2e-node")
	c.waitServiceAccount("default")
	// An unreachable registry on loopback (nothing listens on the port).
	img := fmt.Sprintf("127.0.0.1:%d/nope/nope:1", freePort(t))
	c.mustKubectl(kubectl, "", "run", "pull", "--image", img)
	c.podWhere("default", "pull", "ErrImagePull or ImagePullBackOff", 60*time.Second, func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].State.Waiting != nil &&
			(cs[0].State.Waiting.Reason == "ErrImagePull" || cs[0].State.Waiting.Reason == "ImagePullBackOff") &&
			cs[0].State.Waiting.Message != ""
	})
}

package deployment

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// kubectlRunner runs the upstream kubectl on PATH against the test server.
type kubectlRunner struct {
	t          *testing.T
	bin, dir   string
	kubeconfig string
}

func newKubectl(t *testing.T, server string) *kubectlRunner {
	t.Helper()
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	dir := t.TempDir()
	k := &kubectlRunner{t: t, bin: bin, dir: dir, kubeconfig: filepath.Join(dir, "kubeconfig")}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: %s
contexts:
- name: c
  context:
    cluster: c
    user: u
    namespace: default
users:
- name: u
  user:
    token: t
current-context: c
`, server)
	if err := os.WriteFile(k.kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kubectlRunner) run(args ...string) string {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig, "HOME="+k.dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestKubectlRollout drives the controller with upstream kubectl: create,
// rollout status, set image, history, undo, restart, pause/resume, scale.
func TestKubectlRollout(t *testing.T) {
	e := startEnv(t)
	k := newKubectl(t, e.host)

	k.run("create", "deployment", "web", "--image=nginx:1", "--replicas=3")
	if out := k.run("rollout", "status", "deployment/web", "--timeout=30s"); !strings.Contains(out, `deployment "web" successfully rolled out`) {
		t.Fatalf("rollout status: %s", out)
	}
	k.run("set", "image", "deployment/web", "nginx=nginx:2")
	k.run("annotate", "deployment/web", "kubernetes.io/change-cause=image 2")
	k.run("rollout", "status", "deployment/web", "--timeout=30s")

	hist := k.run("rollout", "history", "deployment/web")
	if !regexp.MustCompile(`(?m)^1\s+<none>`).MatchString(hist) || !regexp.MustCompile(`(?m)^2\s+image 2`).MatchString(hist) {
		t.Fatalf("rollout history:\n%s", hist)
	}
	if out := k.run("rollout", "history", "deployment/web", "--revision=1"); !strings.Contains(out, "nginx:1") {
		t.Fatalf("history of revision 1:\n%s", out)
	}

	if out := k.run("rollout", "undo", "deployment/web"); !strings.Contains(out, "rolled back") {
		t.Fatalf("undo: %s", out)
	}
	k.run("rollout", "status", "deployment/web", "--timeout=30s")
	if img := k.run("get", "deployment/web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); img != "nginx:1" {
		t.Fatalf("image after undo %q", img)
	}
	hist = k.run("rollout", "history", "deployment/web")
	if !regexp.MustCompile(`(?m)^3\s`).MatchString(hist) || regexp.MustCompile(`(?m)^1\s`).MatchString(hist) {
		t.Fatalf("history after undo (revision 1 became 3):\n%s", hist)
	}

	k.run("rollout", "restart", "deployment/web")
	k.run("rollout", "status", "deployment/web", "--timeout=30s")
	if n := strings.Count(k.run("get", "rs", "-o", "name"), "\n"); n != 3 {
		t.Fatalf("restart: %d replica sets", n)
	}

	k.run("rollout", "pause", "deployment/web")
	k.run("set", "image", "deployment/web", "nginx=nginx:3")
	k.run("scale", "deployment/web", "--replicas=5")
	e.waitFor("paused deployment to scale", func() (bool, error) {
		d := e.get("web")
		c := getCondition(d.Status, "Progressing")
		return d.Status.AvailableReplicas == 5 && d.Status.ObservedGeneration == d.Generation && c != nil && c.Reason == PausedDeployReason,
			fmt.Errorf("status %+v", d.Status)
	})
	if n := strings.Count(k.run("get", "rs", "-o", "name"), "\n"); n != 3 {
		t.Fatalf("paused deployment rolled out: %d replica sets", n)
	}
	k.run("rollout", "resume", "deployment/web")
	k.run("rollout", "status", "deployment/web", "--timeout=30s")
	if d := e.get("web"); d.Status.UpdatedReplicas != 5 || d.Annotations[RevisionAnnotation] != "5" {
		t.Fatalf("after resume: revision %s, %+v", d.Annotations[RevisionAnnotation], d.Status)
	}

	k.run("scale", "deployment/web", "--replicas=0")
	e.waitFor("scale to 0", func() (bool, error) {
		d := e.get("web")
		return d.Status.Replicas == 0 && d.Status.ObservedGeneration == d.Generation, fmt.Errorf("status %+v", d.Status)
	})
}

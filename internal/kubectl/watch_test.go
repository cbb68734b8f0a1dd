package kubectl

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var watchCases = []struct {
	name string
	args []string
}{
	{"watch-pods", []string{"get", "pods", "-w"}},
	{"watch-pods-all-namespaces", []string{"get", "pods", "-A", "--watch"}},
	{"watch-pods-events", []string{"get", "pods", "-w", "--output-watch-events"}},
	{"watch-only", []string{"get", "pods", "--watch-only"}},
	{"watch-one-pod", []string{"get", "pod", "nginx", "-w"}},
	{"watch-pods-name", []string{"get", "pods", "-w", "-o", "name"}},
	{"watch-pods-yaml", []string{"get", "pods", "-l", "app=nginx", "-w", "-o", "yaml"}},
}

// churn makes the same changes on a fake server while a watch is open.
func churn(t *testing.T, f *fakeServer) {
	f.waitWatchers(t, 1)
	f.add(obj(`{apiVersion: v1, kind: Pod, metadata: {name: a-much-longer-pod-name-than-before, namespace: default, labels: {app: new}}, spec: {containers: [{name: c, image: i}]}}`))
	f.update("pods", "default", "nginx", func(o map[string]any) {
		o["metadata"].(map[string]any)["labels"].(map[string]any)["tier"] = "fe"
		o["status"].(map[string]any)["phase"] = "Succeeded"
	})
	f.remove("pods", "default", "web-7d9f8c6b5-x2x7q")
	f.add(obj(`{apiVersion: v1, kind: Pod, metadata: {name: other, namespace: kube-system}, spec: {containers: [{name: c, image: i}]}}`))
}

// TestWatchMatchesUpstream runs get -w with both tools while the fake
// server changes pods, and compares what they print.
func TestWatchMatchesUpstream(t *testing.T) {
	bin := kubectlPath(t)
	for _, tc := range watchCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeServer(t)
			f.watchTimeout = 1500 * time.Millisecond
			seed(f)
			kc := f.kubeconfig(t)
			type outcome struct {
				r   result
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				r, err := runOursErr(kc, "", tc.args...)
				done <- outcome{r, err}
			}()
			churn(t, f)
			o := <-done
			if o.err != nil {
				t.Fatal(o.err)
			}
			ours := o.r
			golden(t, tc.name, ours.stdout+"--- stderr\n"+ours.stderr)
			if bin == "" {
				t.Skip("kubectl not on PATH")
			}
			f2 := newFakeServer(t)
			f2.watchTimeout = 1500 * time.Millisecond
			seed(f2)
			kc2 := f2.kubeconfig(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			home := t.TempDir()
			cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kc2, "--cache-dir", filepath.Join(home, "c")}, tc.args...)...)
			cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			churn(t, f2)
			code := 0
			if err := cmd.Wait(); err != nil {
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("kubectl: %v", err)
				}
				code = ee.ExitCode()
			}
			if code != ours.code {
				t.Errorf("exit code %d, kubectl %d", ours.code, code)
			}
			if out.String() != ours.stdout {
				t.Errorf("stdout differs\n--- kubectl\n%s--- ours\n%s", out.String(), ours.stdout)
			}
			if strings.TrimSpace(normalizeStderr(errOut.String())) != strings.TrimSpace(ours.stderr) {
				t.Errorf("stderr differs\n--- kubectl\n%s--- ours\n%s", errOut.String(), ours.stderr)
			}
		})
	}
}

// lockedBuffer lets a test read output while a watch is still writing it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

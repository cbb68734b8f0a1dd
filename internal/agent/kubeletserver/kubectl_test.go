package kubeletserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/internal/apiserver"
	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

// kubectlBinaries finds upstream kubectl builds: $SKIFF_TEST_KUBECTL (a
// list of paths), else the versioned binaries of the Google Cloud SDK
// package (1.27: SPDY only; 1.30: exec over WebSocket v5; 1.31: port-forward
// over tunneled SPDY; the newest), else kubectl on PATH.
func kubectlBinaries(t *testing.T) []string {
	if env := os.Getenv("SKIFF_TEST_KUBECTL"); env != "" {
		return strings.Fields(env)
	}
	var out []string
	for _, v := range []string{"1.27", "1.30", "1.31", "1.33"} {
		p := "/usr/lib/google-cloud-sdk/bin/kubectl." + v
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		if p, err := exec.LookPath("kubectl"); err == nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		t.Skip("no kubectl binary found (set SKIFF_TEST_KUBECTL)")
	}
	return out
}

// startAPIServer runs a real API server (plain HTTP on loopback, every
// request admin) whose kubelet client is tlsCfg.
func startAPIServer(t *testing.T, p *testPKI) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := registry.Resources(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := apiserver.New(apiserver.Config{
		Store:     st,
		Resources: res,
		Authenticator: func(*http.Request) (apiserver.Identity, bool) {
			return apiserver.Identity{Name: "test-admin", Groups: []string{"system:masters", "system:authenticated"}}, true
		},
		KubeletTLS: p.apiserverTLS,
		Version:    version.Info{Major: "1", Minor: "32", GitVersion: "v1.32.0-skiff"},
		Logger:     testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.RegisterOnShutdown(srv.StopWatches)
	hs.Start()
	t.Cleanup(func() {
		srv.StopWatches()
		hs.CloseClientConnections()
		hs.Close()
		st.Close()
	})
	cfg := &rest.Config{Host: hs.URL, QPS: -1}
	return cfg, kubernetes.NewForConfigOrDie(cfg)
}

// testCluster is an API server, this server as node n1's kubelet endpoint,
// and pod "web" with real containers "web" (httpd on 8080, a line on
// stdout and one on stderr) and "ticker" (a line every 0.2 s), plus pod
// "pending" whose container waits to start.
type testCluster struct {
	cfg         *rest.Config
	client      kubernetes.Interface
	kubeconfig  string
	web, ticker *fakeContainer
}

func startCluster(t *testing.T) *testCluster {
	t.Helper()
	p := newTestPKI(t)
	rt := newRuntime(t)
	pods := newFakePods()
	addr := startServer(t, p, pods, rt)
	cfg, client := startAPIServer(t, p)
	ctx := context.Background()

	// The node, reachable at 127.0.0.1:<the test server's port>.
	var port int32
	if _, err := fmt.Sscanf(addr[strings.LastIndex(addr, ":")+1:], "%d", &port); err != nil {
		t.Fatal(err)
	}
	node, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: "n1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = port
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	sb := newSandbox(t, rt, "web")
	web := runContainer(t, rt, pods, sb, "default", "web", "web", false, false,
		"sh", "-c", "echo hello from web; echo warning from web >&2; exec httpd -f -p 8080 -h /www")
	ticker := runContainer(t, rt, pods, sb, "default", "web", "ticker", false, false,
		"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done")
	shell := runContainer(t, rt, pods, sb, "default", "web", "shell", true, true, "sh")
	createPod(t, client, "web", "n1", map[string]string{"web": web.id, "ticker": ticker.id, "shell": shell.id}, nil)
	createPod(t, client, "pending", "n1", map[string]string{"c": ""}, &corev1.ContainerStateWaiting{Reason: "ContainerCreating"})

	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q}}]
users: [{name: admin, user: {}}]
contexts: [{name: test, context: {cluster: test, user: admin, namespace: default}}]
current-context: test
`, cfg.Host)), 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog(t, web.log, "hello from web")
	return &testCluster{cfg: cfg, client: client, kubeconfig: kubeconfig, web: web, ticker: ticker}
}

// TestKubectl runs upstream kubectl's logs, exec, attach and port-forward
// through the API server and this server against real containers.
func TestKubectl(t *testing.T) {
	requireRoot(t)
	kubectls := kubectlBinaries(t)
	c := startCluster(t)
	kubeconfig := c.kubeconfig

	for _, kubectl := range kubectls {
		t.Run(filepath.Base(kubectl), func(t *testing.T) {
			k := func(stdin string, args ...string) (string, string, int) {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
				cmd.Stdin = strings.NewReader(stdin)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				err := cmd.Run()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatalf("kubectl %v: %v", args, err)
				}
				return out.String(), errb.String(), code
			}
			expect := func(args []string, stdin, wantOut, wantErr string, wantCode int) {
				t.Helper()
				out, errs, code := k(stdin, args...)
				if code != wantCode || !strings.Contains(out, wantOut) || !strings.Contains(errs, wantErr) {
					t.Errorf("kubectl %s: exit %d, stdout %q, stderr %q; want exit %d, stdout ⊇ %q, stderr ⊇ %q",
						strings.Join(args, " "), code, out, errs, wantCode, wantOut, wantErr)
				}
			}
			// Logs.
			// (stdout and stderr are two pipes: their order in the log is not fixed)
			expect([]string{"logs", "web", "-c", "web"}, "", "hello from web\n", "", 0)
			expect([]string{"logs", "web", "-c", "web"}, "", "warning from web\n", "", 0)
			if out, _, _ := k("", "logs", "web", "-c", "web", "--tail=1"); out != "hello from web\n" && out != "warning from web\n" {
				t.Errorf("logs --tail=1: %q", out)
			}
			expect([]string{"logs", "web", "-c", "web", "--limit-bytes=5"}, "", "", "", 0)
			if out, _, _ := k("", "logs", "web", "-c", "web", "--limit-bytes=5"); len(out) != 5 {
				t.Errorf("logs --limit-bytes=5: %q", out)
			}
			out, _, _ := k("", "logs", "web", "-c", "web", "--timestamps")
			if !regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z hello from web$`).MatchString(out) {
				t.Errorf("logs --timestamps: %q", out)
			}
			expect([]string{"logs", "web", "-c", "web", "--since=1h"}, "", "hello from web", "", 0)
			// kubectl picks the first container itself (and says so).
			expect([]string{"logs", "web"}, "", "hello from web", `Defaulted container "web" out of: web, ticker, shell`, 0)
			expect([]string{"logs", "pending"}, "", "", `container "c" in pod "pending" is waiting to start: ContainerCreating`, 1)
			expect([]string{"logs", "web", "-c", "web", "--previous"}, "", "", `previous terminated container "web" in pod "web" not found`, 1)
			expect([]string{"logs", "nope"}, "", "", `pods "nope" not found`, 1)
			followLogs(t, kubectl, kubeconfig)

			// Exec: exit codes, streams, stdin.
			expect([]string{"exec", "web", "-c", "web", "--", "sh", "-c", "exit 3"}, "", "", "", 3)
			expect([]string{"exec", "web", "-c", "web", "--", "sh", "-c", "echo out; echo err >&2"}, "", "out\n", "err\n", 0)
			expect([]string{"exec", "-i", "web", "-c", "web", "--", "sh", "-c", "cat; echo done"}, "line one\nline two\n", "line one\nline two\ndone\n", "", 0)
			expect([]string{"exec", "web", "-c", "web", "--", "wget", "-q", "-O-", "http://127.0.0.1:8080/"}, "", "hello from the pod\n", "", 0)
			// As with containerd: the exec fails to start, an internal error.
			expect([]string{"exec", "web", "-c", "web", "--", "nosuchcommand"}, "", "", `error: Internal error occurred: error executing command in container: `, 1)
			expect([]string{"exec", "web", "-c", "web", "--", "nosuchcommand"}, "", "", `executable file not found in $PATH`, 1)
			expect([]string{"exec", "web", "-c", "nope", "--", "true"}, "", "", "Error from server (BadRequest): container nope is not valid for pod web", 1)
			expect([]string{"exec", "pending", "--", "true"}, "", "", "", 1)
			expect([]string{"exec", "nope", "--", "true"}, "", "", `pods "nope" not found`, 1)

			// exec -it on a real terminal (util-linux script gives kubectl one).
			if script, err := exec.LookPath("script"); err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				cmd := exec.CommandContext(ctx, script, "-qec", kubectl+" --kubeconfig "+kubeconfig+
					" exec -it web -c web -- sh -c 'test -t 0 && test -t 1 && echo on-a-tty; exit 5'", "/dev/null")
				out, err := cmd.CombinedOutput()
				cancel()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 5 || !strings.Contains(string(out), "on-a-tty") {
					t.Errorf("exec -it: %v, output %q", err, out)
				}
			}

			// Attach to a container without a TTY follows its output.
			attachOutput(t, kubectl, kubeconfig)

			// Port-forward.
			portForward(t, kubectl, kubeconfig)
		})
	}
}

func createPod(t *testing.T, client kubernetes.Interface, name, node string, containers map[string]string, waiting *corev1.ContainerStateWaiting) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{NodeName: node}}
	var names []string
	for _, n := range []string{"web", "ticker", "shell", "c"} {
		if _, ok := containers[n]; ok {
			names = append(names, n)
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: n, Image: "busybox"})
		}
	}
	pod, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	if waiting != nil {
		pod.Status.Phase = corev1.PodPending
	}
	for _, n := range names {
		cs := corev1.ContainerStatus{Name: n, Image: "busybox", ImageID: "sha256:0"}
		if waiting != nil {
			cs.State.Waiting = waiting
		} else {
			cs.ContainerID = "skiff://" + containers[n]
			cs.Ready, cs.Started = true, new(true)
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.Now()}
		}
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, cs)
	}
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitLog(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(want)) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%q never appeared in %s", want, path)
}

// startKubectl runs a long-lived kubectl and returns its stdout lines.
func startKubectl(t *testing.T, kubectl, kubeconfig string, args ...string) (<-chan string, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	errb := &syncBuffer{}
	cmd.Stderr = errb
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	return lines, errb
}

func nextLine(t *testing.T, lines <-chan string, what string, stderr *syncBuffer) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("%s: kubectl ended; stderr %q", what, stderr.String())
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no output; stderr %q", what, stderr.String())
	}
	return ""
}

// followLogs checks that `kubectl logs -f` streams new lines.
func followLogs(t *testing.T, kubectl, kubeconfig string) {
	lines, stderr := startKubectl(t, kubectl, kubeconfig, "logs", "-f", "web", "-c", "ticker", "--tail=1")
	first := nextLine(t, lines, "logs -f", stderr)
	var n0, n1 int
	if _, err := fmt.Sscanf(first, "tick %d", &n0); err != nil {
		t.Fatalf("logs -f: %q", first)
	}
	for range 3 {
		l := nextLine(t, lines, "logs -f", stderr)
		if _, err := fmt.Sscanf(l, "tick %d", &n1); err != nil || n1 != n0+1 {
			t.Fatalf("logs -f: after tick %d got %q", n0, l)
		}
		n0 = n1
	}
}

func attachOutput(t *testing.T, kubectl, kubeconfig string) {
	lines, stderr := startKubectl(t, kubectl, kubeconfig, "attach", "web", "-c", "ticker")
	var n0, n1 int
	for {
		l := nextLine(t, lines, "attach", stderr)
		if _, err := fmt.Sscanf(l, "tick %d", &n0); err == nil {
			break
		}
	}
	l := nextLine(t, lines, "attach", stderr)
	if _, err := fmt.Sscanf(l, "tick %d", &n1); err != nil || n1 != n0+1 {
		t.Fatalf("attach: after tick %d got %q", n0, l)
	}
}

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)`)

func startPortForward(t *testing.T, kubectl, kubeconfig, port string) (string, *syncBuffer) {
	lines, stderr := startKubectl(t, kubectl, kubeconfig, "port-forward", "pod/web", ":"+port)
	for {
		l := nextLine(t, lines, "port-forward", stderr)
		if m := forwardingRE.FindStringSubmatch(l); m != nil && m[2] == port {
			return m[1], stderr
		}
	}
}

func portForward(t *testing.T, kubectl, kubeconfig string) {
	// Nothing listens on 9999 in the pod: the connection fails, kubectl says why.
	local, stderr := startPortForward(t, kubectl, kubeconfig, "9999")
	waitFor(t, "kubectl to report the failed connection", func() bool {
		if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://127.0.0.1:" + local + "/"); err == nil {
			resp.Body.Close()
			t.Errorf("port-forward to a closed port: got %d", resp.StatusCode)
		}
		return strings.Contains(stderr.String(), "failed to connect to localhost:9999 inside namespace")
	})

	local, stderr = startPortForward(t, kubectl, kubeconfig, "8080")
	c := &http.Client{Timeout: 20 * time.Second}
	for i := range 3 { // several connections over one forwarding session
		resp, err := c.Get("http://127.0.0.1:" + local + "/")
		if err != nil {
			t.Fatalf("port-forward request %d: %v; kubectl stderr %q", i, err, stderr.String())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello from the pod\n" {
			t.Fatalf("port-forward request %d: %d %q", i, resp.StatusCode, body)
		}
	}
}

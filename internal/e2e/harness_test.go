// Package e2e runs the built skiff binary and drives it with the upstream
// kubectl installed on the machine, as a user would.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// skiffBin is the binary under test, built once by TestMain.
var skiffBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	skiffBin = filepath.Join(dir, "skiff")
	// Built as `make build` does, so size measurements mean the release binary.
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", skiffBin, "../..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building skiff:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if testImageTar != "" {
		os.RemoveAll(filepath.Dir(testImageTar)) // busyboxImageTar's directory
	}
	os.Exit(code)
}

// cluster is one running `skiff server`.
type cluster struct {
	t          testing.TB
	dataDir    string
	kubeconfig string
	port       int
	cmd        *exec.Cmd
	log        *syncBuffer
	exited     chan error
	extraArgs  []string // more `skiff server` flags
	withAgent  bool     // run the in-process agent (real pods); see startServerWithAgent
	cgroupRoot string   // the agent's --cgroup-root
	// netns, when set, is the isolated host namespace the server (and any
	// agent) runs in; fwd makes its API port reachable on loopback.
	netns string
	fwd   *forwarder
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServer starts skiff on a free loopback port with its own data dir
// and waits until the API answers and the kubeconfig exists. The server is
// stopped when the test ends.
func startServer(t testing.TB, extraArgs ...string) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, dataDir: filepath.Join(dir, "data"), kubeconfig: filepath.Join(dir, "kubeconfig.yaml"), port: freePort(t), extraArgs: extraArgs}
	c.start()
	t.Cleanup(func() {
		// Every test ends with SIGTERM, which must shut the server down cleanly.
		if err := c.stop(); err != nil {
			t.Errorf("stopping skiff server: %v\n%s", err, c.log)
		}
	})
	return c
}

func (c *cluster) start() {
	c.t.Helper()
	c.log = &syncBuffer{}
	if c.netns != "" && c.fwd == nil {
		c.fwd = startForwarder(c.t, c.netns, c.port)
	}
	c.cmd = inNetNS(c.netns, skiffBin, "server",
		"--data-dir", c.dataDir, "--write-kubeconfig", c.kubeconfig,
		"--bind-address", "127.0.0.1", "--https-listen-port", fmt.Sprint(c.port),
	)
	if !c.withAgent {
		c.cmd.Args = append(c.cmd.Args, "--disable-agent")
	}
	c.cmd.Args = append(c.cmd.Args, c.extraArgs...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.exited = make(chan error, 1)
	go func() { c.exited <- c.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-c.exited:
			c.exited <- err
			c.t.Fatalf("skiff server exited early: %v\n%s", err, c.log)
		default:
		}
		if _, err := os.Stat(c.kubeconfig); err == nil && c.readyz() {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("skiff server not ready in 30s\n%s", c.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) readyz() bool {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/readyz", c.port))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stop sends SIGTERM and waits for a clean exit.
func (c *cluster) stop() error {
	if c.cmd == nil || c.cmd.Process == nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.exited:
		c.cmd = nil
		return err
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		c.cmd = nil
		return fmt.Errorf("server did not stop within 20s of SIGTERM")
	}
}

// syncBuffer collects the server's output; the test may read it (on
// failure) while the process is still writing.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// kubectlBinaries are the upstream kubectl versions to test with: the one on
// the PATH and, when installed, an older one.
func kubectlBinaries(t *testing.T) map[string]string {
	t.Helper()
	bins := map[string]string{}
	if p, err := exec.LookPath("kubectl"); err == nil {
		bins["path"] = p
	} else {
		t.Skip("upstream kubectl is not installed")
	}
	for _, v := range []string{"1.27", "1.33"} {
		p := "/usr/lib/google-cloud-sdk/bin/kubectl." + v
		if _, err := os.Stat(p); err == nil {
			bins[v] = p
		}
	}
	return bins
}

// kubectl runs an upstream kubectl binary with the written kubeconfig and no
// other flags.
func (c *cluster) kubectl(bin string, stdin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// mustKubectl fails the test unless kubectl succeeds; returns stdout.
func (c *cluster) mustKubectl(bin, stdin string, args ...string) string {
	c.t.Helper()
	out, errOut, err := c.kubectl(bin, stdin, args...)
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	if strings.Contains(errOut, "Warning") || strings.Contains(errOut, "error") || strings.Contains(errOut, "E1") || strings.Contains(errOut, "E0") {
		c.t.Errorf("kubectl %s printed to stderr:\n%s", strings.Join(args, " "), errOut)
	}
	return out
}

// skiffKubectl runs the embedded client.
func (c *cluster) skiffKubectl(stdin string, args ...string) (string, string, error) {
	return c.kubectl(skiffBin, stdin, append([]string{"kubectl"}, args...)...)
}

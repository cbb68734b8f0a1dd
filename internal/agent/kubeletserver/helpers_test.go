package kubeletserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-dev/skiff/internal/agent/logs"
	"github.com/skiff-dev/skiff/internal/pki"
	"github.com/skiff-dev/skiff/internal/runtime"
	"github.com/skiff-dev/skiff/internal/runtime/runtimetest"
)

// The test binary is also libcontainer's `init`, as skiff's main is.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.ContainerInit()
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("KUBELETSERVER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// fakePods is an in-memory Pods.
type fakePods struct {
	mu         sync.Mutex
	containers map[string]*fakeContainer // ns/pod/container
	netns      map[string]string         // ns/pod
}

type fakeContainer struct {
	id      string
	running bool
	log     string
	prev    string
	done    chan struct{}
}

func newFakePods() *fakePods {
	return &fakePods{containers: map[string]*fakeContainer{}, netns: map[string]string{}}
}

func (f *fakePods) add(ns, pod, name string, c *fakeContainer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[ns+"/"+pod+"/"+name] = c
}

func (f *fakePods) get(ns, pod, name string) (*fakeContainer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[ns+"/"+pod+"/"+name]
	if !ok {
		if _, ok := f.netns[ns+"/"+pod]; ok {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("container %q not found in pod %q", name, pod))
		}
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, pod)
	}
	return c, nil
}

func (f *fakePods) ContainerID(ns, pod, name string) (string, bool, error) {
	c, err := f.get(ns, pod, name)
	if err != nil {
		return "", false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return c.id, c.running, nil
}

func (f *fakePods) ContainerLog(ns, pod, name string, previous bool) (string, <-chan struct{}, error) {
	c, err := f.get(ns, pod, name)
	if err != nil {
		return "", nil, err
	}
	if previous {
		if c.prev == "" {
			return "", nil, apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", name, pod))
		}
		closed := make(chan struct{})
		close(closed)
		return c.prev, closed, nil
	}
	return c.log, c.done, nil
}

func (f *fakePods) PodNetNS(ns, pod string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.netns[ns+"/"+pod]
	if !ok {
		return "", apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, pod)
	}
	return p, nil
}

// testPKI is a cluster CA with the kubelet's serving certificate (for
// 127.0.0.1) on disk and the API server's kubelet client TLS config.
type testPKI struct {
	ca                *pki.CA
	certFile, keyFile string
	apiserverTLS      *tls.Config
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	b, err := pki.LoadOrCreate(dir, pki.DefaultServingNames("localhost", nil, net.ParseIP("127.0.0.1")))
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{ca: b.CA, certFile: filepath.Join(dir, "kubelet.crt"), keyFile: filepath.Join(dir, "kubelet.key")}
	if err := os.WriteFile(p.certFile, b.Serving.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.keyFile, b.Serving.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	p.apiserverTLS = p.clientTLS(t, APIServerUser, []string{"system:masters"})
	return p
}

func (p *testPKI) clientTLS(t testing.TB, user string, groups []string) *tls.Config {
	t.Helper()
	kp, err := p.ca.IssueClient(user, groups)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: p.ca.Pool(), MinVersion: tls.VersionTLS12}
}

// startServer serves a kubeletserver on 127.0.0.1 with TLS until the test
// ends; it returns its address.
func startServer(t testing.TB, p *testPKI, pods Pods, rt Runtime) string {
	t.Helper()
	if rt == nil {
		rt = noRuntime{}
	}
	s, err := New(Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCA: p.ca.Pool(), Pods: pods, Runtime: rt,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.getCertificate(nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("kubeletserver: %v", err)
		}
	})
	return ln.Addr().String()
}

// writeCRILog writes lines as CRI log records of stdout (and "err:"
// prefixed ones to stderr).
func writeCRILog(t testing.TB, path string, start time.Time, lines ...string) {
	t.Helper()
	var b []byte
	for i, l := range lines {
		s := logs.Stdout
		if c, ok := strings.CutPrefix(l, "err:"); ok {
			l, s = c, logs.Stderr
		}
		b = logs.AppendLine(b, start.Add(time.Duration(i)*time.Second), s, false, []byte(l))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ---- real containers ----

func requireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test with real containers (-short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, cgroups, mounts)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (Debian: busybox-static)")
	}
}

var cgroupSeq int

// newRuntime opens a runtime in a temp root whose containers and sandboxes
// are removed when the test ends.
func newRuntime(t testing.TB) *runtime.Runtime {
	t.Helper()
	cgroupSeq++
	parent := fmt.Sprintf("skiff-kstest-%d-%d", os.Getpid(), cgroupSeq)
	rt, err := runtime.Open(t.TempDir(), runtime.Options{CgroupParent: parent, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cs, _ := rt.List()
		for _, c := range cs {
			// Stop first, as the pod worker does: Delete of a running
			// container races with the runtime recording its exit.
			if _, err := rt.Stop(ctx, c.ID, 0); err != nil {
				t.Errorf("cleanup: stop %s: %v", c.ID, err)
			}
			if err := rt.Delete(ctx, c.ID); err != nil {
				t.Errorf("cleanup: delete %s: %v", c.ID, err)
			}
		}
		sbs, _ := rt.ListSandboxes()
		for _, sb := range sbs {
			if err := rt.RemoveSandbox(ctx, sb.ID); err != nil {
				t.Errorf("cleanup: remove sandbox %s: %v", sb.ID, err)
			}
		}
		rt.Close()
		for _, dir := range cgroupDirs(t, "/"+parent) {
			if err := cgroups.RemovePath(dir); err != nil {
				t.Errorf("cleanup: remove cgroup %s: %v", dir, err)
			}
		}
	})
	return rt
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runContainer starts a container in sandbox sb with its output logged to
// a CRI log file (as the pod worker does) and registers it in pods.
func runContainer(t testing.TB, rt *runtime.Runtime, pods *fakePods, sb *runtime.Sandbox, ns, pod, name string,
	tty, stdin bool, args ...string) *fakeContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	id := randomID()
	out, err := logs.OpenFIFO(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	errf, err := logs.OpenFIFO(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := logs.NewWriter(logs.Path(dir, name, 0), logs.WriterOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if tty {
		w.Copy(out, nil)
	} else {
		w.Copy(out, errf)
	}
	t.Cleanup(func() {
		w.Close()
		out.Close()
		errf.Close()
	})
	cfg := runtime.ContainerConfig{ID: id, SandboxID: sb.ID, Rootfs: runtime.Rootfs{Dir: busyboxRootfs(t)}, Args: args,
		StdoutPath: out.Name(), StderrPath: errf.Name(), Tty: tty, Stdin: stdin}
	if tty {
		cfg.StderrPath = out.Name()
	}
	_, err = rt.Create(ctx, cfg)
	_ = out.ReleaseWriter()
	_ = errf.ReleaseWriter()
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	c := &fakeContainer{id: id, running: true, log: w.Path(), done: make(chan struct{})}
	go func() {
		<-w.Done()
		close(c.done)
	}()
	go func() {
		if _, err := rt.Wait(context.Background(), id); err == nil {
			pods.mu.Lock()
			c.running = false
			pods.mu.Unlock()
		}
	}()
	pods.add(ns, pod, name, c)
	pods.mu.Lock()
	pods.netns[ns+"/"+pod] = sb.NetNSPath
	pods.mu.Unlock()
	return c
}

func newSandbox(t testing.TB, rt *runtime.Runtime, pod string) *runtime.Sandbox {
	t.Helper()
	sb, err := rt.CreateSandbox(context.Background(), runtime.SandboxConfig{ID: randomID()[:16], Hostname: pod})
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func appendRecord(t time.Time, line string) []byte {
	return logs.AppendLine(nil, t, logs.Stdout, false, []byte(line))
}

// noRuntime is a Runtime for tests that run no container.
type noRuntime struct{}

func (noRuntime) Exec(context.Context, string, runtime.ExecConfig) (int, error) {
	return -1, runtime.ErrNotFound
}
func (noRuntime) Attach(context.Context, string, runtime.AttachConfig) error {
	return runtime.ErrNotFound
}
func (noRuntime) Wait(context.Context, string) (*runtime.State, error) {
	return nil, runtime.ErrNotFound
}

func busyboxRootfs(t testing.TB) string {
	return runtimetest.BusyboxRootfs(t, map[string]string{"www/index.html": "hello from the pod\n"})
}

func cgroupDirs(t testing.TB, path string) []string { return runtimetest.CgroupDirs(t, path) }

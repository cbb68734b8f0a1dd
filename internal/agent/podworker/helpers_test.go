package podworker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/agent/logs"
	"github.com/skiff-dev/skiff/internal/agent/podsources"
	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/controller/controllertest"
	"github.com/skiff-dev/skiff/internal/image"
	"github.com/skiff-dev/skiff/internal/image/imagetest"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// The test binary is also libcontainer's `init`, as skiff's main is.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.ContainerInit()
	}
}

const (
	testNode  = "node-1"
	testImage = "skiff.test/busybox:v1"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("pod worker tests need root (namespaces, cgroups, mounts)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("pod worker tests need /bin/busybox (Debian: busybox-static)")
	}
}

// lockedBuffer collects logs, shown when a test fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var testSeq atomic.Int64

// env is a node: API server, image store with the busybox image, a runtime
// and a running Manager. Everything is removed when the test ends.
type env struct {
	t        testing.TB
	api      *controllertest.API
	client   kubernetes.Interface
	dir      string
	rtRoot   string
	cgParent string
	netnsDir string
	images   *image.Store
	rt       *runtime.Runtime
	m        *Manager
	cancel   context.CancelFunc
	done     chan error
	logs     *lockedBuffer
	events   *controller.Events
	src      *podsources.Manager
	cur      atomic.Pointer[Manager]
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvWith(t, image.Options{})
}

// newEnvWith is newEnv with image store options (insecure registries).
func newEnvWith(t testing.TB, imgOpts image.Options) *env {
	t.Helper()
	requireRoot(t)
	api := controllertest.Start(t)
	e := &env{t: t, api: api, client: api.Client, dir: t.TempDir(), logs: &lockedBuffer{}}
	e.rtRoot = filepath.Join(e.dir, "containers")
	e.netnsDir = filepath.Join(e.dir, "netns")
	e.cgParent = fmt.Sprintf("skiff-pwtest-%d-%d", os.Getpid(), testSeq.Add(1))
	imgOpts.Logger = slog.New(slog.DiscardHandler)
	st, err := image.Open(filepath.Join(e.dir, "image-store"), imgOpts)
	if err != nil {
		t.Fatal(err)
	}
	e.images = st
	tar := imagetest.WriteOCITar(t, imagetest.Busybox(t), testImage)
	if _, err := st.ImportFile(context.Background(), tar); err != nil {
		t.Fatal(err)
	}
	evctx, evcancel := context.WithCancel(context.Background())
	e.events = controller.StartEvents(evctx, api.Client)
	src, err := podsources.New(podsources.Config{Client: api.Client, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srcDone := make(chan struct{})
	go func() { defer close(srcDone); src.Run(evctx) }()
	src.OnChange(func(ns, kind, name string) {
		if m := e.cur.Load(); m != nil {
			for _, uid := range src.PodsUsing(kind, ns, name) {
				m.ResyncPod(uid)
			}
		}
	})
	e.src = src
	t.Cleanup(func() {
		// Pods deleted at once by the API (terminal ones, force-deleted)
		// are cleaned up after they left it: give the workers the time.
		if e.m != nil && !t.Failed() {
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				cs, _ := e.rt.List()
				sbs, _ := e.rt.ListSandboxes()
				if len(cs)+len(sbs) == 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		e.stop()
		e.cleanupHost()
		st.Close()
		e.events.Shutdown()
		evcancel()
		<-srcDone
		if t.Failed() {
			t.Logf("agent logs:\n%s", e.logs)
		}
		if f := os.Getenv("PODWORKER_TEST_LOGS"); f != "" { // a file to append the agent's logs to
			if fh, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
				fh.WriteString(e.logs.String())
				fh.Close()
			}
		}
	})
	e.start()
	return e
}

// start opens the runtime and runs a Manager.
func (e *env) start() {
	t := e.t
	t.Helper()
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rt, err := runtime.Open(e.rtRoot, runtime.Options{CgroupParent: e.cgParent, NetNSDir: e.netnsDir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{
		Client: e.client, NodeName: testNode, Runtime: rt, Images: e.images,
		PodsDir: filepath.Join(e.dir, "pods"), RunDir: filepath.Join(e.dir, "run"),
		Sources: e.src, Services: e.src.Services, NodeIPs: []string{"10.0.0.1"},
		HostResolvConf: []byte("nameserver 10.0.0.53\n"), ClusterDomain: "cluster.local",
		Recorder: e.events.Recorder("kubelet"), Logger: log,
		MaxParallelStarts: envInt("PODWORKER_MAX_STARTS"), // benchmarks compare settings
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.rt, e.m, e.cancel, e.done = rt, m, cancel, make(chan error, 1)
	e.cur.Store(m)
	go func() { e.done <- m.Run(ctx) }()
	select {
	case <-m.Started():
	case err := <-e.done:
		t.Fatalf("manager: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("manager did not start")
	}
}

// stop ends the Manager (containers keep running) and closes the runtime.
func (e *env) stop() {
	if e.m == nil {
		return
	}
	e.cancel()
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("manager: %v", err)
		}
	case <-time.After(30 * time.Second):
		e.t.Error("manager did not stop")
	}
	e.rt.Close()
	e.m = nil
	e.cur.Store(nil)
}

// cleanupHost removes every container, sandbox, cgroup and mount the test
// left, and reports them.
func (e *env) cleanupHost() {
	t := e.t
	rt, err := runtime.Open(e.rtRoot, runtime.Options{CgroupParent: e.cgParent, NetNSDir: e.netnsDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Every test deletes its pods: whatever is left is a leak of the pod
	// worker (reported, then removed).
	cs, _ := rt.List()
	sbs, _ := rt.ListSandboxes()
	mounts := mountsUnder(e.dir)
	podCgroups, _ := filepath.Glob("/sys/fs/cgroup/*/" + e.cgParent + "/kubepods/*pod*")
	more, _ := filepath.Glob("/sys/fs/cgroup/*/" + e.cgParent + "/kubepods/*/pod*")
	podCgroups = append(podCgroups, more...)
	if !t.Failed() && len(cs)+len(sbs)+len(mounts)+len(podCgroups) > 0 {
		t.Errorf("left behind: %d containers, %d sandboxes, mounts %v, cgroups %v", len(cs), len(sbs), mounts, podCgroups)
	}
	for _, c := range cs {
		if err := rt.Delete(ctx, c.ID); err != nil {
			t.Errorf("cleanup: delete %s: %v", c.ID, err)
		}
	}
	for _, sb := range sbs {
		if err := rt.RemoveSandbox(ctx, sb.ID); err != nil {
			t.Errorf("cleanup: remove sandbox %s: %v", sb.ID, err)
		}
	}
	// Pod cgroups, deepest first, then the parent.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + e.cgParent)
	if d := "/sys/fs/cgroup/" + e.cgParent; exists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		var all []string
		filepath.WalkDir(d, func(p string, de os.DirEntry, err error) error {
			if err == nil && de.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		sort.Slice(all, func(i, j int) bool { return len(all[i]) > len(all[j]) })
		for _, p := range all {
			os.Remove(p)
		}
	}
	for _, m := range mountsUnder(e.dir) {
		unmount(m)
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// mountsUnder lists mount points below dir.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// podCgroups lists a pod's cgroup directories on the host.
func (e *env) podCgroups(uid string) []string {
	var out []string
	for _, pat := range []string{"/sys/fs/cgroup/*/" + e.cgParent + "/kubepods/*pod" + uid, "/sys/fs/cgroup/*/" + e.cgParent + "/kubepods/*/pod" + uid,
		"/sys/fs/cgroup/" + e.cgParent + "/kubepods/pod" + uid, "/sys/fs/cgroup/" + e.cgParent + "/kubepods/*/pod" + uid} {
		m, _ := filepath.Glob(pat)
		out = append(out, m...)
	}
	return out
}

func (e *env) createPod(pod *corev1.Pod) *corev1.Pod {
	e.t.Helper()
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	pod.Spec.NodeName = testNode
	p, err := e.client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) getPod(ns, name string) *corev1.Pod {
	p, err := e.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return p
}

// waitPod polls the pod until cond holds.
func (e *env) waitPod(ns, name string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var last *corev1.Pod
	for time.Now().Before(deadline) {
		last = e.getPod(ns, name)
		if last != nil && cond(last) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		e.t.Fatalf("pod %s/%s: timed out waiting for %s; status: %s", ns, name, what, dump(last.Status))
	}
	e.t.Fatalf("pod %s/%s: timed out waiting for %s (pod gone)", ns, name, what)
	return nil
}

func (e *env) waitGone(ns, name string, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		_, err := e.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("pod %s/%s still exists", ns, name)
}

// waitFor polls cond.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func dump(v any) string {
	b, _ := jsonMarshalIndent(v)
	return string(b)
}

// containerLog reads a container's current log through the Manager.
func (e *env) containerLog(ns, pod, container string, previous bool) string {
	e.t.Helper()
	path, _, err := e.m.ContainerLog(ns, pod, container, previous)
	if err != nil {
		return ""
	}
	var buf bytes.Buffer
	if err := logs.ReadLogs(context.Background(), path, logs.ReadOptions{}, &buf); err != nil && !os.IsNotExist(err) {
		e.t.Logf("read logs: %v", err)
	}
	return buf.String()
}

var _ = io.Discard

func cond(pod *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func cstatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == name {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	for i := range pod.Status.InitContainerStatuses {
		if pod.Status.InitContainerStatuses[i].Name == name {
			return &pod.Status.InitContainerStatuses[i]
		}
	}
	return nil
}

func simplePod(name string, containers ...corev1.Container) *corev1.Pod {
	for i := range containers {
		if containers[i].Image == "" {
			containers[i].Image = testImage
		}
		if containers[i].ImagePullPolicy == "" {
			containers[i].ImagePullPolicy = corev1.PullIfNotPresent
		}
	}
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: containers, TerminationGracePeriodSeconds: &grace, EnableServiceLinks: new(bool)},
	}
}

func jsonMarshalIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }

func envInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}

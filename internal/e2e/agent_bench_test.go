package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-dev/skiff/internal/runtime"
	"github.com/skiff-dev/skiff/internal/runtime/runtimetest"
)

// The test binary is also libcontainer's `init` (for the runtime floor
// measured below), as skiff's main is.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.ContainerInit()
	}
}

// BenchmarkPodStartup measures pod startup latency on one node — from the
// create request to the pod's Running status seen through a watch — for 1,
// 10 and 50 pods created at once, next to the floor: as many bare
// libcontainer create+starts at once of the same image's rootfs, in this
// process. It also reports
// the agent's resident memory with 0 and with 50 pods, from a standalone
// `skiff agent` joined to a server without its own agent.
//
//	go test -run '^$' -bench PodStartup -benchtime 1x ./internal/e2e/
func BenchmarkPodStartup(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	c := startServerForAgents(b)
	a := c.startAgent("bench-node")
	c.waitNodeReady("bench-node")
	c.waitServiceAccount("default")
	time.Sleep(2 * time.Second)
	b.ReportMetric(rssKB(b, a.Process.Pid)/1024, "agent-idle-RSS-MiB")

	for i := 0; i < b.N; i++ {
		for _, n := range []int{1, 10, 50} {
			floor := runtimeFloor(b, n)
			b.ReportMetric(ms(floor[len(floor)/2]), fmt.Sprintf("floor-p50-ms-%dpods", n))
			b.ReportMetric(ms(floor[(len(floor)*99+99)/100-1]), fmt.Sprintf("floor-p99-ms-%dpods", n))
			lat := startPods(b, c, n)
			b.ReportMetric(ms(lat[len(lat)/2]), fmt.Sprintf("p50-ms-%dpods", n))
			b.ReportMetric(ms(lat[(len(lat)*99+99)/100-1]), fmt.Sprintf("p99-ms-%dpods", n))
			if n == 50 {
				time.Sleep(2 * time.Second)
				b.ReportMetric(rssKB(b, a.Process.Pid)/1024, "agent-50pods-RSS-MiB")
			}
			deletePods(b, c)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// startPods creates n pods at once and returns each one's create→Running
// latency, sorted.
func startPods(b *testing.B, c *cluster, n int) []time.Duration {
	client := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := client.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "bench=startup"})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	created := make([]time.Time, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("startup-%d", i), Labels: map[string]string{"bench": "startup"}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64),
					Containers:                    []corev1.Container{{Name: "c", Image: testImage, Command: []string{"sleep", "3600"}}},
				},
			}
			created[i] = time.Now()
			if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				b.Error(err)
			}
		}(i)
	}
	wg.Wait()
	lat := map[string]time.Duration{}
	for len(lat) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("watch ended with %d/%d pods running", len(lat), n)
			}
			if ev.Type != watch.Modified && ev.Type != watch.Added {
				continue
			}
			p := ev.Object.(*corev1.Pod)
			if _, seen := lat[p.Name]; seen || p.Status.Phase != corev1.PodRunning {
				continue
			}
			var i int
			fmt.Sscanf(p.Name, "startup-%d", &i)
			lat[p.Name] = time.Since(created[i])
		case <-ctx.Done():
			b.Fatalf("only %d/%d pods running after 2 minutes", len(lat), n)
		}
	}
	out := make([]time.Duration, 0, n)
	for _, d := range lat {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func deletePods(b *testing.B, c *cluster) {
	client := c.client()
	ctx := context.Background()
	if err := client.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{LabelSelector: "bench=startup"}); err != nil {
		b.Fatal(err)
	}
	c.eventually(2*time.Minute, "benchmark pods gone", func() bool {
		l, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "bench=startup"})
		return err == nil && len(l.Items) == 0
	})
}

// runtimeFloor starts n containers at once with libcontainer directly (no
// API, no agent, no sandbox) from the test image's rootfs and returns each
// one's create+start time from the common start, sorted: the floor that n
// pods started together cannot beat on this machine.
func runtimeFloor(b *testing.B, n int) []time.Duration {
	root := b.TempDir()
	parent := fmt.Sprintf("skiff-e2e-floor-%d", os.Getpid())
	rt, err := runtime.Open(filepath.Join(root, "rt"), runtime.Options{CgroupParent: parent, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	rootfs := filepath.Join(root, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", busyboxImageTar(b), "-C", root, "--wildcards", "./blobs/*").CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	// The layer is the largest blob; unpack it as the rootfs.
	blobs, _ := filepath.Glob(filepath.Join(root, "blobs/sha256/*"))
	var layer string
	var size int64
	for _, p := range blobs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			layer, size = p, fi.Size()
		}
	}
	if out, err := exec.Command("tar", "-xf", layer, "-C", rootfs).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	ctx := context.Background()
	out := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("floor%d", i)
			if _, err := rt.Create(ctx, runtime.ContainerConfig{ID: id, Rootfs: runtime.Rootfs{Dir: rootfs}, Args: []string{"sleep", "60"}}); err != nil {
				b.Error(err)
				return
			}
			if err := rt.Start(ctx, id); err != nil {
				b.Error(err)
				return
			}
			out[i] = time.Since(start)
		}(i)
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		_, _ = rt.Stop(ctx, fmt.Sprintf("floor%d", i), 0)
		if err := rt.Delete(ctx, fmt.Sprintf("floor%d", i)); err != nil {
			b.Error(err)
		}
	}
	_ = rt.Close()
	for _, d := range runtimetest.CgroupDirs(b, parent) {
		_ = os.Remove(d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// startAgent runs a standalone `skiff agent` joined to c with the server's
// token, stopped (and its containers removed) when the test ends.
func (c *cluster) startAgent(name string) *exec.Cmd {
	c.t.Helper()
	tok, err := os.ReadFile(filepath.Join(c.dataDir, "server", "token"))
	if err != nil {
		c.t.Fatal(err)
	}
	data := filepath.Join(c.t.TempDir(), "agent-data")
	if err := os.MkdirAll(filepath.Join(data, "agent", "images"), 0o700); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Link(busyboxImageTar(c.t), filepath.Join(data, "agent", "images", "busybox.tar")); err != nil {
		c.t.Fatal(err)
	}
	cgroupRoot := fmt.Sprintf("skiff-e2e-agent-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	log := &syncBuffer{}
	if c.netns == "" {
		c.t.Fatal("startAgent needs a server from startServerForAgents (an isolated host)")
	}
	cmd := inNetNS(c.netns, skiffBin, "agent", "--server", fmt.Sprintf("https://127.0.0.1:%d", c.port),
		"--token", strings.TrimSpace(string(tok)), "--data-dir", data, "--node-name", name, "--node-ip", isolatedAgentIP,
		"--kubelet-port", fmt.Sprint(freePort(c.t)), "--cgroup-root", cgroupRoot)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if out, err := inNetNS(c.netns, skiffBin, "killall", "--data-dir", data, "--cgroup-root", cgroupRoot).CombinedOutput(); err != nil {
			c.t.Errorf("skiff killall: %v\n%s", err, out)
		}
		if c.t.Failed() {
			c.t.Logf("agent log:\n%s", tail(log.String(), 6000))
		}
	})
	return cmd
}

// BenchmarkRuntimeFloor is the floor alone: one bare libcontainer
// create+start at a time, in this (large, k8s-linking) test binary.
func BenchmarkRuntimeFloor(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		total += runtimeFloor(b, 1)[0]
	}
	b.ReportMetric(ms(total/time.Duration(b.N)), "ms/start")
}

package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// BenchmarkControlPlaneScale is issue 3's scale test: SKIFF_BENCH_NODES
// simulated nodes (default 1000) and Deployments of 100 replicas up to
// SKIFF_BENCH_PODS pods (default 30000), created at once. It reports the
// time from the first create to every pod Running, the scheduler's binds
// per second, the server's peak RSS, and the p50/p99 latency of a single
// `get pod` issued every 50ms throughout.
//
//	go test -run '^$' -bench ControlPlaneScale -benchtime 1x -timeout 60m ./internal/e2e/
func BenchmarkControlPlaneScale(b *testing.B) {
	nodes, pods := envInt("SKIFF_BENCH_NODES", 1000), envInt("SKIFF_BENCH_PODS", 30000)
	const perDeployment = 100
	deployments := (pods + perDeployment - 1) / perDeployment
	for i := 0; i < b.N; i++ {
		// A /24 per node: 1,000 nodes need more than the default /16.
		c := startServer(b, "--cluster-cidr", "10.0.0.0/14")
		c.simNodes(nodes)
		client := c.client()
		ctx, cancel := context.WithCancel(context.Background())

		// Count bindings and Running pods from one watch.
		w, err := client.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		bound, running := map[string]bool{}, map[string]bool{}
		var firstBind, lastBind time.Time
		allRunning := make(chan time.Time, 1)
		go func() {
			for ev := range w.ResultChan() {
				p, ok := ev.Object.(*corev1.Pod)
				if !ok || ev.Type == watch.Deleted {
					continue
				}
				mu.Lock()
				if p.Spec.NodeName != "" && !bound[p.Name] {
					bound[p.Name] = true
					now := time.Now()
					if firstBind.IsZero() {
						firstBind = now
					}
					lastBind = now
				}
				if p.Status.Phase == corev1.PodRunning && !running[p.Name] {
					running[p.Name] = true
					if len(running) == pods {
						allRunning <- time.Now()
					}
				}
				mu.Unlock()
			}
		}()

		// Probe single-object latency during the churn, on a pod of its own.
		probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "kube-system"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example/probe:1"}}}}
		if _, err := client.CoreV1().Pods("kube-system").Create(ctx, probe, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		var latencies []time.Duration
		var probing sync.WaitGroup
		stopProbe := make(chan struct{})
		probing.Add(1)
		go func() {
			defer probing.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopProbe:
					return
				case <-tick.C:
				}
				t0 := time.Now()
				if _, err := client.CoreV1().Pods("kube-system").Get(ctx, "probe", metav1.GetOptions{}); err != nil {
					b.Error(err)
					return
				}
				latencies = append(latencies, time.Since(t0))
			}
		}()
		var peakKB atomic.Int64
		go func() {
			for ctx.Err() == nil {
				if kb := int64(hwmKB(c.cmd.Process.Pid)); kb > peakKB.Load() {
					peakKB.Store(kb)
				}
				time.Sleep(time.Second)
			}
		}()

		start := time.Now()
		var creating sync.WaitGroup
		sem := make(chan struct{}, 16)
		for d := range deployments {
			replicas := int32(min(perDeployment, pods-d*perDeployment))
			creating.Add(1)
			sem <- struct{}{}
			go func() {
				defer creating.Done()
				defer func() { <-sem }()
				if _, err := client.AppsV1().Deployments("default").Create(ctx, scaleDeployment(d, replicas), metav1.CreateOptions{}); err != nil {
					b.Error(err)
				}
			}()
		}
		creating.Wait()
		var done time.Time
		select {
		case done = <-allRunning:
		case <-time.After(30 * time.Minute):
			mu.Lock()
			b.Fatalf("only %d of %d pods Running after 30 minutes (%d bound)", len(running), pods, len(bound))
		}
		close(stopProbe)
		probing.Wait()
		cancel()
		w.Stop()

		mu.Lock()
		bindSecs := lastBind.Sub(firstBind).Seconds()
		mu.Unlock()
		sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
		b.ReportMetric(done.Sub(start).Seconds(), "s-to-all-running")
		b.ReportMetric(float64(pods)/bindSecs, "binds/s")
		b.ReportMetric(float64(peakKB.Load())/1024, "server-peak-RSS-MiB")
		b.ReportMetric(pct(latencies, 0.50), "get-p50-ms")
		b.ReportMetric(pct(latencies, 0.99), "get-p99-ms")
		if err := c.stop(); err != nil {
			b.Fatal(err)
		}
	}
}

func scaleDeployment(i int, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": fmt.Sprintf("load-%d", i)}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("load-%d", i)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.example/app:1",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}},
				}}},
			},
		},
	}
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(float64(len(sorted)-1)*p)].Microseconds()) / 1000
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// hwmKB is a process's peak resident set (VmHWM).
func hwmKB(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}

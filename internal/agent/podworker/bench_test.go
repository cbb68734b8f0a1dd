package podworker

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/runtime"
)

// BenchmarkPodStartup measures pod startup latency as the issue defines
// it: from create to Running seen through a watch, for 1, 10 and 50 pods
// created at once, next to a bare runtime Create+Start of the same image
// (the floor). Run with -benchtime=1x.
func BenchmarkPodStartup(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			e := newEnv(b)
			floor := e.bareStart(b, n)
			var all []time.Duration
			for i := 0; i < b.N; i++ {
				all = append(all, e.startPods(b, n, i)...)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			p := func(q float64) time.Duration { return all[int(q*float64(len(all)-1))] }
			b.ReportMetric(float64(p(0.5).Milliseconds()), "p50-ms")
			b.ReportMetric(float64(p(0.99).Milliseconds()), "p99-ms")
			b.ReportMetric(float64(floor[len(floor)/2].Milliseconds()), "floor-p50-ms")
			b.ReportMetric(float64(floor[len(floor)*99/100].Milliseconds()), "floor-p99-ms")
		})
	}
}

// bareStart is the floor: n runtime Create+Start of the busybox image at
// once, without pods (no sandbox, API, logs); it returns their sorted
// latencies.
func (e *env) bareStart(b *testing.B, n int) []time.Duration {
	img, err := e.images.Get(testImage)
	if err != nil {
		b.Fatal(err)
	}
	lower, err := e.images.LowerDirs(img)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	out := make([]time.Duration, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i] = newID()
			t0 := time.Now()
			if _, err := e.rt.Create(ctx, runtime.ContainerConfig{ID: ids[i], Rootfs: runtime.Rootfs{Lowerdirs: lower}, Args: []string{"sleep", "3600"}}); err != nil {
				b.Error(err)
				return
			}
			if err := e.rt.Start(ctx, ids[i]); err != nil {
				b.Error(err)
			}
			out[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if err := e.rt.Delete(ctx, id); err != nil {
			b.Error(err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// startPods creates n pods at once and returns each one's create→Running
// latency as a watch sees it; it deletes them afterwards.
func (e *env) startPods(b *testing.B, n, round int) []time.Duration {
	ctx := context.Background()
	w, err := e.client.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	created := map[string]time.Time{}
	var wg sync.WaitGroup
	for i := range n {
		name := fmt.Sprintf("bench-%d-%d", round, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := simplePod(name, corev1.Container{Name: "c", Command: []string{"sleep", "3600"}})
			pod.Spec.NodeName = testNode
			mu.Lock()
			created[name] = time.Now()
			mu.Unlock()
			if _, err := e.client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				b.Error(err)
			}
		}()
	}
	var out []time.Duration
	seen := map[string]bool{}
	timeout := time.After(2 * time.Minute)
	for len(out) < n {
		select {
		case ev := <-w.ResultChan():
			if ev.Type != watch.Modified && ev.Type != watch.Added {
				continue
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || seen[p.Name] || p.Status.Phase != corev1.PodRunning {
				continue
			}
			now := time.Now()
			mu.Lock()
			t0 := created[p.Name]
			mu.Unlock()
			seen[p.Name] = true
			out = append(out, now.Sub(t0))
		case <-timeout:
			b.Fatalf("only %d of %d pods running", len(out), n)
		}
	}
	wg.Wait()
	b.StopTimer()
	for name := range created {
		e.client.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	for name := range created {
		e.waitGone("default", name, time.Minute)
	}
	waitFor(b, time.Minute, "pods cleaned up", func() bool {
		cs, _ := e.rt.List()
		sbs, _ := e.rt.ListSandboxes()
		return len(cs) == 0 && len(sbs) == 0
	})
	b.StartTimer()
	return out
}

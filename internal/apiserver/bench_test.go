package apiserver

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/store"
)

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// BenchmarkCreateLatency creates ConfigMaps through client-go at a fixed
// rate (500 req/s for 3 s, durable fsync store) and reports p50/p99
// latency. It runs the schedule once, whatever b.N.
func BenchmarkCreateLatency(b *testing.B) {
	e := newTestEnvWithStore(b, store.BoltOptions{CompactInterval: -1})
	ctx := context.Background()
	const rate, seconds = 500, 3
	total := rate * seconds
	lat := make([]time.Duration, total)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * time.Second / rate)
		time.Sleep(time.Until(due))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t0 := time.Now()
			if _, err := e.client.CoreV1().ConfigMaps("default").Create(ctx, cm(fmt.Sprintf("c%d", i), nil), metav1.CreateOptions{}); err != nil {
				b.Error(err)
			}
			lat[i] = time.Since(t0)
		}(i)
	}
	wg.Wait()
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkWatchLatency1000 opens 1,000 client-go watches on ConfigMaps,
// writes 20 changes and reports how long each event took to reach each
// watcher (p50/p99 over all 20,000 deliveries).
func BenchmarkWatchLatency1000(b *testing.B) {
	e := newTestEnv(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const watchers, events = 1000, 20
	cs, err := kubernetes.NewForConfig(e.cfg)
	if err != nil {
		b.Fatal(err)
	}
	rv := func() string {
		l, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return l.ResourceVersion
	}()
	var mu sync.Mutex
	var lat []time.Duration
	var ready, done sync.WaitGroup
	for i := 0; i < watchers; i++ {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
			ready.Done()
			if err != nil {
				b.Error(err)
				return
			}
			defer w.Stop()
			local := make([]time.Duration, 0, events)
			for ev := range w.ResultChan() {
				c, ok := ev.Object.(*corev1.ConfigMap)
				if !ok {
					continue
				}
				sent, _ := strconv.ParseInt(c.Data["sent"], 10, 64)
				local = append(local, time.Since(time.Unix(0, sent)))
				if len(local) == events {
					break
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	ready.Wait()
	time.Sleep(500 * time.Millisecond) // let every watch reach the server
	b.ResetTimer()
	for i := 0; i < events; i++ {
		c := cm(fmt.Sprintf("w%d", i), nil)
		c.Data["sent"] = strconv.FormatInt(time.Now().UnixNano(), 10)
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, c, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitDone := make(chan struct{})
	go func() { done.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case <-time.After(60 * time.Second):
		b.Fatal("watchers did not receive every event")
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) != watchers*events {
		b.Fatalf("%d deliveries, want %d", len(lat), watchers*events)
	}
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

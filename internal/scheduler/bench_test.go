package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// BenchmarkSchedule measures the pure decision path (filter, score,
// assume) on the target: 1,000 nodes (4 cpu, 16Gi, 110 pods)
// filling with Deployments of 100 replicas, 30,000 pods per cluster.
func BenchmarkSchedule(b *testing.B) {
	const nodes, perCluster, replicas = 1000, 30000, 100
	var infos []*PodInfo
	for i := range perCluster {
		infos = append(infos, NewPodInfo(testPod(fmt.Sprintf("p%d", i), "100m", "128Mi", withOwner(fmt.Sprintf("rs%d", i/replicas)))))
	}
	fresh := func() *schedCache {
		c := newSchedCache()
		for i := range nodes {
			c.setNode(testNode(fmt.Sprintf("node-%d", i), "4", "16Gi", 110))
		}
		return c
	}
	c := fresh()
	st := &decisionState{rnd: rand.New(rand.NewPCG(1, 2))}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i > 0 && i%perCluster == 0 {
			b.StopTimer()
			c = fresh()
			b.StartTimer()
		}
		p := infos[i%perCluster]
		d, err := schedule(p, c.snapshotLocked(), st)
		if err != nil {
			b.Fatal(err)
		}
		c.assumeLocked(p, d.Node)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pods/s")
}

// BenchmarkSchedulerAPI runs the whole scheduler against the real API
// server: 100 Ready nodes (SCHED_NODES) and b.N pending pods (Deployments of 100) exist
// before it starts; timed until all are bound, which includes the binds,
// Scheduled events and informer traffic, with 16 bind workers
// (SCHED_WORKERS). Run with e.g. -benchtime=3000x.
func BenchmarkSchedulerAPI(b *testing.B) {
	api := controllertest.Start(b)
	ctx := context.Background()
	for i := range envInt("SCHED_NODES", 100) {
		createNode(b, api.Client, testNode(fmt.Sprintf("node-%d", i), "4", "16Gi", 110))
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				createPod(b, api.Client, testPod(fmt.Sprintf("p%d", i), "10m", "16Mi", withOwner(fmt.Sprintf("rs%d", i/100))))
			}
		}()
	}
	for i := range b.N {
		next <- i
	}
	close(next)
	wg.Wait()

	b.ResetTimer()
	start := time.Now()
	runScheduler(b, api, envInt("SCHED_WORKERS", 16))
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := api.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=", Limit: 1})
		if err != nil {
			return false, err
		}
		return len(list.Items) == 0, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "binds/s")
}

// envInt reads a benchmark knob (SCHED_NODES, SCHED_WORKERS).
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

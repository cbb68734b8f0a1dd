package nodelifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/skiff-dev/skiff/internal/controller"
)

// BenchmarkMonitorNodeHealth is one steady-state health pass over 1,000
// healthy nodes with 30 pods each (the lead's scale target): it must stay
// far below the 5s monitor period.
func BenchmarkMonitorNodeHealth(b *testing.B) {
	const nodes, podsPerNode = 1000, 30
	objs := make([]runtime.Object, 0, nodes*(podsPerNode+2))
	for i := range nodes {
		name := fmt.Sprintf("sim-%d", i)
		objs = append(objs, readyNode(name, t0, nil), lease(name, t0))
		for j := range podsPerNode {
			objs = append(objs, readyPod(fmt.Sprintf("%s-p%d", name, j), name))
		}
	}
	client := fake.NewSimpleClientset(objs...)
	cc := controller.Context{
		Client:    client,
		Informers: informers.NewSharedInformerFactory(client, 0),
		Recorder:  func(string) record.EventRecorder { return record.NewFakeRecorder(nodes * 2) },
		Log:       slog.New(slog.DiscardHandler),
	}
	c, err := New(cc, Options{Clock: testingclock.NewFakeClock(t0)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); cc.Informers.Shutdown() }()
	cc.Informers.Start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), c.synced...)
	if err := c.monitorNodeHealth(ctx); err != nil { // first pass registers the nodes
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := c.monitorNodeHealth(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

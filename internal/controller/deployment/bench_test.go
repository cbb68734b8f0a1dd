package deployment

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// BenchmarkReconcileSteadyState measures one sync of a settled deployment
// in a namespace of 300 deployments (the benchmark's 30,000 pods in
// Deployments of 100), which is what every RS status update costs.
func BenchmarkReconcileSteadyState(b *testing.B) {
	const n = 300
	var objs []runtime.Object
	for i := range n {
		objs = append(objs, newDeployment(fmt.Sprintf("app-%d", i), 100, "img"))
	}
	f := newFixture(b, objs...)
	for i := range n {
		f.mustSync(fmt.Sprintf("app-%d", i))
	}
	f.settle(nil)
	for i := range n {
		f.mustSync(fmt.Sprintf("app-%d", i))
	}
	f.refresh()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := f.c.reconcile(ctx, fmt.Sprintf("default/app-%d", i%n)); err != nil {
			b.Fatal(err)
		}
	}
}

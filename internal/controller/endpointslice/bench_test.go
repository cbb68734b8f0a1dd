package endpointslice

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skiff-dev/skiff/internal/controller"
)

// BenchmarkSteadyStateSync measures a no-op sync of one Service of 100 pods
// in a namespace of 30,000 pods and 300 Services (the lead's scale target):
// what every pod event costs once the slices are right. The informers are
// filled directly (not started) so the setup stays cheap.
func BenchmarkSteadyStateSync(b *testing.B) {
	const services, podsPerService = 300, 100
	client := fake.NewClientset()
	var seq int64
	client.PrependReactor("create", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.CreateAction).GetObject().(*discoveryv1.EndpointSlice)
		seq++
		s.Name, s.UID, s.Generation = fmt.Sprintf("%s%d", s.GenerateName, seq), types.UID(fmt.Sprint(seq)), 1
		return false, nil, nil
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(controller.Context{Client: client, Informers: factory}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	add := func(inf interface{ Add(any) error }, obj any) {
		if err := inf.Add(obj); err != nil {
			b.Fatal(err)
		}
	}
	inf := factory.Core().V1()
	add(inf.Nodes().Informer().GetIndexer(), newNode("node-1", "z"))
	for s := range services {
		app := fmt.Sprintf("app-%d", s)
		svc := newService(fmt.Sprintf("svc-%d", s), func(sv *corev1.Service) { sv.Spec.Selector = map[string]string{"app": app} })
		add(inf.Services().Informer().GetIndexer(), svc)
		for p := range podsPerService {
			pod := newPod(fmt.Sprintf("%s-%d", app, p), fmt.Sprintf("10.%d.%d.%d", s/200, s%200, p+1), true,
				func(pod *corev1.Pod) {
					pod.Labels = map[string]string{"app": app, "pod-template-hash": fmt.Sprintf("h%d", s)}
				})
			add(inf.Pods().Informer().GetIndexer(), pod)
		}
	}
	ctx := context.Background()
	key := "default/svc-7"
	if err := c.sync(ctx, key); err != nil {
		b.Fatal(err)
	}
	created, err := client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(created.Items) != 1 {
		b.Fatalf("slices: %v %v", len(created.Items), err)
	}
	add(factory.Discovery().V1().EndpointSlices().Informer().GetIndexer(), &created.Items[0])
	writes := len(client.Actions())
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.sync(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := len(client.Actions()); n != writes {
		b.Fatalf("steady-state syncs wrote %d times", n-writes)
	}
}

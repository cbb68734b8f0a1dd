package endpoints

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skiff-dev/skiff/internal/controller"
)

// BenchmarkSteadyStateSync measures a no-op sync of one Service of 100 pods
// in a namespace of 30,000 pods and 300 Services: what each pod event costs
// once the Endpoints are right. Informers are filled directly, not started.
func BenchmarkSteadyStateSync(b *testing.B) {
	const services, podsPerService = 300, 100
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(controller.Context{Client: client, Informers: factory}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	inf := factory.Core().V1()
	for s := range services {
		app := fmt.Sprintf("app-%d", s)
		if err := inf.Services().Informer().GetIndexer().Add(newService(fmt.Sprintf("svc-%d", s), map[string]string{"app": app})); err != nil {
			b.Fatal(err)
		}
		for p := range podsPerService {
			pod := newPod(fmt.Sprintf("%s-%d", app, p), fmt.Sprintf("10.%d.%d.%d", s/200, s%200, p+1), p%7 != 0,
				func(pod *corev1.Pod) { pod.Labels = map[string]string{"app": app} })
			if err := inf.Pods().Informer().GetIndexer().Add(pod); err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	key := "default/svc-7"
	if err := c.sync(ctx, key); err != nil {
		b.Fatal(err)
	}
	ep, err := client.CoreV1().Endpoints("default").Get(ctx, "svc-7", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ep.ResourceVersion = "1"
	if err := inf.Endpoints().Informer().GetIndexer().Add(ep); err != nil {
		b.Fatal(err)
	}
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

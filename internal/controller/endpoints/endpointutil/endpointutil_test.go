package endpointutil

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

func svc(name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Spec: corev1.ServiceSpec{Selector: selector}}
}

func pod(name, rv string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: labels, ResourceVersion: rv},
		Status:     corev1.PodStatus{PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}}},
	}
}

func serviceLister(t *testing.T, svcs ...*corev1.Service) corelisters.ServiceLister {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, s := range svcs {
		if err := idx.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	return corelisters.NewServiceLister(idx)
}

func TestServicesToUpdateOnPodChange(t *testing.T) {
	lister := serviceLister(t,
		svc("a", map[string]string{"app": "a"}),
		svc("b", map[string]string{"app": "b"}),
		svc("ab", map[string]string{"tier": "x"}),
		svc("none", nil))
	base := pod("p", "1", map[string]string{"app": "a", "tier": "x"})
	tests := []struct {
		name   string
		change func(p *corev1.Pod)
		want   []string
	}{
		{"resync", func(p *corev1.Pod) { p.ResourceVersion = "1" }, nil},
		{"annotation only", func(p *corev1.Pod) { p.Annotations = map[string]string{"k": "v"} }, nil},
		{"ready", func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}, []string{"ns/a", "ns/ab"}},
		{"ip", func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.2"}} }, []string{"ns/a", "ns/ab"}},
		{"deleting", func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }, []string{"ns/a", "ns/ab"}},
		{"failed", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, []string{"ns/a", "ns/ab"}},
		// Only labels: the services that gained or lost the pod.
		{"label move", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "b", "tier": "x"} }, []string{"ns/a", "ns/b"}},
		// Labels and endpoint: every service of either.
		{"label move and ready", func(p *corev1.Pod) {
			p.Labels = map[string]string{"app": "b", "tier": "x"}
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}, []string{"ns/a", "ns/ab", "ns/b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur := base.DeepCopy()
			cur.ResourceVersion = "2"
			tc.change(cur)
			got := sets.List(ServicesToUpdateOnPodChange(lister, base, cur))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPodSelector(t *testing.T) {
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Pod{}, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := EnsurePodLabelIndex(inf); err != nil {
		t.Fatal(err)
	}
	if err := EnsurePodLabelIndex(inf); err != nil {
		t.Fatalf("second registration: %v", err)
	}
	idx := inf.GetIndexer()
	for i := range 20 {
		labels := map[string]string{"app": "web", "shard": fmt.Sprint(i % 4)}
		if i == 7 {
			labels = map[string]string{"app": "db"}
		}
		p := pod(fmt.Sprintf("p%d", i), "1", labels)
		if err := idx.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	other := pod("elsewhere", "1", map[string]string{"app": "web", "shard": "1"})
	other.Namespace = "other"
	if err := idx.Add(other); err != nil {
		t.Fatal(err)
	}
	ps := PodSelector{Indexer: idx, Lister: corelisters.NewPodLister(idx)}
	for _, tc := range []struct {
		sel  map[string]string
		want int
	}{
		{map[string]string{"app": "web"}, 19},
		{map[string]string{"app": "web", "shard": "1"}, 5},
		{map[string]string{"app": "db"}, 1},
		{map[string]string{"app": "nope"}, 0},
		{map[string]string{}, 20},
	} {
		pods, err := ps.Pods("ns", tc.sel)
		if err != nil {
			t.Fatal(err)
		}
		if len(pods) != tc.want {
			t.Errorf("selector %v: %d pods, want %d", tc.sel, len(pods), tc.want)
		}
	}
}

func TestFindPort(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	p := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
		}}},
		InitContainers: []corev1.Container{
			{RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "sidecar", ContainerPort: 9000, Protocol: corev1.ProtocolTCP}}},
			{Ports: []corev1.ContainerPort{{Name: "init", ContainerPort: 9001, Protocol: corev1.ProtocolTCP}}},
		},
	}}
	for _, tc := range []struct {
		target intstr.IntOrString
		proto  corev1.Protocol
		want   int32
		ok     bool
	}{
		{intstr.FromInt32(1234), corev1.ProtocolTCP, 1234, true},
		{intstr.FromString("http"), corev1.ProtocolTCP, 8080, true},
		{intstr.FromString("http"), corev1.ProtocolUDP, 0, false},
		{intstr.FromString("dns"), corev1.ProtocolUDP, 53, true},
		{intstr.FromString("sidecar"), corev1.ProtocolTCP, 9000, true},
		{intstr.FromString("init"), corev1.ProtocolTCP, 0, false},
		{intstr.FromString("missing"), corev1.ProtocolTCP, 0, false},
	} {
		got, err := FindPort(p, &corev1.ServicePort{TargetPort: tc.target, Protocol: tc.proto})
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("FindPort(%v/%s) = %d, %v; want %d ok=%v", tc.target.String(), tc.proto, got, err, tc.want, tc.ok)
		}
	}
}

func TestTriggerTimeTracker(t *testing.T) {
	tr := NewTriggerTimeTracker()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := svc("a", map[string]string{"app": "a"})
	s.CreationTimestamp = metav1.NewTime(t0)
	readyAt := func(name string, at time.Time) *corev1.Pod {
		p := pod(name, "1", nil)
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(at)}}
		return p
	}
	if got := tr.Compute(s, nil); !got.Equal(t0) {
		t.Errorf("new service: %v, want its creation time", got)
	}
	if got := tr.Compute(s, nil); !got.IsZero() {
		t.Errorf("nothing changed: %v, want zero", got)
	}
	p1, p2 := readyAt("p1", t0.Add(2*time.Second)), readyAt("p2", t0.Add(time.Second))
	if got := tr.Compute(s, []*corev1.Pod{p1, p2}); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("two pods changed: %v, want the earlier", got)
	}
	p1b := readyAt("p1", t0.Add(5*time.Second))
	if got := tr.Compute(s, []*corev1.Pod{p1b, p2}); !got.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("one pod changed: %v", got)
	}
	tr.DeleteService("ns", "a")
	if got := tr.Compute(s, nil); !got.Equal(t0) {
		t.Errorf("after delete: %v, want creation time again", got)
	}
}

package endpoints

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-dev/skiff/internal/controller"
)

// --- fixtures ---

type svcOpt func(*corev1.Service)

func newService(name string, selector map[string]string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("svc-" + name),
			Labels: map[string]string{"team": "a"}, CreationTimestamp: metav1.Now()},
		Spec: corev1.ServiceSpec{
			Selector:   selector,
			ClusterIP:  "10.0.0.10",
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:      []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func headless(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }

func publishNotReady(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }

type podOpt func(*corev1.Pod)

func newPod(name, ip string, ready bool, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name),
			Labels: map[string]string{"app": "web"}, ResourceVersion: "1"},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c",
			Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if ip != "" {
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func terminating(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func withPort(name string, port int32) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP}}
	}
}

type fixture struct {
	client *fake.Clientset
	c      *Controller
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	// The fake does not keep resourceVersions on objects; the controller
	// tells creates from updates by them.
	var rv atomic.Int64
	rv.Store(100)
	client.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetVerb() != "create" && a.GetVerb() != "update" {
			return false, nil, nil
		}
		obj := a.(interface{ GetObject() runtime.Object }).GetObject()
		if m, err := meta.Accessor(obj); err == nil {
			m.SetResourceVersion(fmt.Sprint(rv.Add(1)))
		}
		return false, nil, nil
	})
	// Events between an informer's list and its watch are lost with the
	// fake, so wait for the watches before anything writes.
	watching := make(chan string, 10)
	client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		watching <- a.GetResource().Resource
		return false, nil, nil
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(controller.Context{Client: client, Informers: factory}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); factory.Shutdown() })
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("cache %v did not sync", typ)
		}
	}
	for range 3 { // pods, services, endpoints
		<-watching
	}
	return &fixture{client: client, c: c}
}

// sync runs one sync of key, then waits for the informer to show what it
// wrote (as the next real sync would).
func (f *fixture) sync(t *testing.T, key string) {
	t.Helper()
	if err := f.c.sync(context.Background(), key); err != nil {
		t.Fatalf("sync %s: %v", key, err)
	}
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	deadline := time.Now().Add(10 * time.Second)
	for {
		want, err := f.client.CoreV1().Endpoints(ns).Get(context.Background(), name, metav1.GetOptions{})
		got, cerr := f.c.endpoints.Endpoints(ns).Get(name)
		switch {
		case apierrors.IsNotFound(err) && apierrors.IsNotFound(cerr):
			return
		case err == nil && cerr == nil && got.ResourceVersion == want.ResourceVersion:
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("informer never caught up with endpoints %s", key)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// drain empties the queue once n keys (the informers' initial adds) are in.
func (f *fixture) drain(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.c.queue.Len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("queue has %d keys, want %d", f.c.queue.Len(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for f.c.queue.Len() > 0 {
		k, _ := f.c.queue.Get()
		f.c.queue.Done(k)
		f.c.queue.Forget(k)
	}
}

func (f *fixture) get(t *testing.T, name string) *corev1.Endpoints {
	t.Helper()
	ep, err := f.client.CoreV1().Endpoints("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get endpoints %s: %v", name, err)
	}
	return ep
}

func writes(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		if a.GetResource().Resource == "endpoints" && a.GetVerb() != "list" && a.GetVerb() != "watch" && a.GetVerb() != "get" {
			out = append(out, a.GetVerb())
		}
	}
	return out
}

func ips(addrs []corev1.EndpointAddress) []string {
	var out []string
	for _, a := range addrs {
		out = append(out, a.IP)
	}
	return out
}

func sel() map[string]string { return map[string]string{"app": "web"} }

// --- tests ---

func TestReadyAndNotReady(t *testing.T) {
	f := newFixture(t, newService("web", sel()),
		newPod("b", "10.1.0.2", true), newPod("a", "10.1.0.1", true), newPod("c", "10.1.0.3", false),
		newPod("other", "10.1.0.9", true, func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"} }))
	f.sync(t, "default/web")
	ep := f.get(t, "web")
	if len(ep.Subsets) != 1 {
		t.Fatalf("subsets = %+v", ep.Subsets)
	}
	ss := ep.Subsets[0]
	if got := fmt.Sprint(ips(ss.Addresses)); got != "[10.1.0.1 10.1.0.2]" {
		t.Errorf("addresses = %s", got)
	}
	if got := fmt.Sprint(ips(ss.NotReadyAddresses)); got != "[10.1.0.3]" {
		t.Errorf("notReadyAddresses = %s", got)
	}
	if len(ss.Ports) != 1 || ss.Ports[0].Port != 8080 || ss.Ports[0].Name != "http" || ss.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("ports = %+v", ss.Ports)
	}
	a := ss.Addresses[0]
	if a.TargetRef == nil || a.TargetRef.Kind != "Pod" || a.TargetRef.Name != "a" || a.TargetRef.Namespace != "default" || a.TargetRef.UID != "uid-a" {
		t.Errorf("targetRef = %+v", a.TargetRef)
	}
	if a.NodeName == nil || *a.NodeName != "node-1" {
		t.Errorf("nodeName = %v", a.NodeName)
	}
	if ep.Labels["team"] != "a" {
		t.Errorf("labels = %v", ep.Labels)
	}
	if _, ok := ep.Labels[corev1.IsHeadlessService]; ok {
		t.Errorf("headless label on a ClusterIP service")
	}
	if ep.Annotations[corev1.EndpointsLastChangeTriggerTime] == "" {
		t.Errorf("no trigger time annotation: %v", ep.Annotations)
	}

	// Unchanged: a second sync writes nothing.
	before := len(writes(f.client))
	f.sync(t, "default/web")
	if after := writes(f.client); len(after) != before {
		t.Errorf("no-op sync wrote: %v", after[before:])
	}
}

func TestExclusions(t *testing.T) {
	tests := []struct {
		name      string
		svcOpts   []svcOpt
		pod       *corev1.Pod
		ready     int
		notReady  int
		noSubsets bool
	}{
		{"terminating excluded", nil, newPod("p", "10.1.0.1", true, terminating), 0, 0, true},
		{"terminating published", []svcOpt{publishNotReady}, newPod("p", "10.1.0.1", false, terminating), 1, 0, false},
		{"not ready published", []svcOpt{publishNotReady}, newPod("p", "10.1.0.1", false), 1, 0, false},
		{"succeeded excluded", nil, newPod("p", "10.1.0.1", false, phase(corev1.PodSucceeded)), 0, 0, true},
		{"failed excluded even when published", []svcOpt{publishNotReady}, newPod("p", "10.1.0.1", false, phase(corev1.PodFailed)), 0, 0, true},
		{"no ip excluded", nil, newPod("p", "", true), 0, 0, true},
		{"ipv6 pod for ipv4 service", nil, newPod("p", "fd00::1", true), 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newService("web", sel(), tc.svcOpts...), tc.pod)
			f.sync(t, "default/web")
			ep := f.get(t, "web")
			if tc.noSubsets {
				if len(ep.Subsets) != 0 {
					t.Fatalf("subsets = %+v", ep.Subsets)
				}
				return
			}
			if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != tc.ready || len(ep.Subsets[0].NotReadyAddresses) != tc.notReady {
				t.Fatalf("subsets = %+v", ep.Subsets)
			}
		})
	}
}

func TestNamedTargetPortPerPod(t *testing.T) {
	svc := newService("web", sel(), func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{
			{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web")},
			{Name: "metrics", Port: 9090, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9090)},
		}
	})
	f := newFixture(t, svc,
		newPod("a", "10.1.0.1", true, withPort("web", 8080)),
		newPod("b", "10.1.0.2", true, withPort("web", 8081)),
		newPod("c", "10.1.0.3", true, withPort("other", 7000)))
	f.sync(t, "default/web")
	ep := f.get(t, "web")
	got := map[string][]string{}
	for _, ss := range ep.Subsets {
		for _, p := range ss.Ports {
			got[fmt.Sprintf("%s:%d", p.Name, p.Port)] = ips(ss.Addresses)
		}
	}
	want := map[string][]string{
		"http:8080":    {"10.1.0.1"},
		"http:8081":    {"10.1.0.2"},
		"metrics:9090": {"10.1.0.1", "10.1.0.2", "10.1.0.3"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ports → addresses = %v, want %v", got, want)
	}
	// Pod c lacks "web": it must not appear under any http port.
	if len(ep.Subsets) != 3 {
		t.Errorf("subsets = %+v", ep.Subsets)
	}
}

func TestHeadless(t *testing.T) {
	svc := newService("db", sel(), headless, func(s *corev1.Service) { s.Spec.Ports = nil })
	withHost := func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "db-0", "db" }
	otherSub := func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "x-0", "x" }
	f := newFixture(t, svc, newPod("db-0", "10.1.0.1", true, withHost), newPod("x-0", "10.1.0.2", true, otherSub))
	f.sync(t, "default/db")
	ep := f.get(t, "db")
	if _, ok := ep.Labels[corev1.IsHeadlessService]; !ok {
		t.Errorf("labels = %v, want the headless label", ep.Labels)
	}
	if len(ep.Subsets) != 1 || len(ep.Subsets[0].Ports) != 0 || len(ep.Subsets[0].Addresses) != 2 {
		t.Fatalf("subsets = %+v", ep.Subsets)
	}
	if h := ep.Subsets[0].Addresses[0].Hostname; h != "db-0" {
		t.Errorf("hostname = %q", h)
	}
	if h := ep.Subsets[0].Addresses[1].Hostname; h != "" {
		t.Errorf("hostname of a pod in another subdomain = %q", h)
	}
	before := len(writes(f.client))
	f.sync(t, "default/db")
	if after := writes(f.client); len(after) != before {
		t.Errorf("no-op sync wrote: %v", after[before:])
	}
}

func TestNoPodsAndNoSelector(t *testing.T) {
	manual := newService("manual", nil)
	f := newFixture(t, newService("web", sel()), manual)
	f.sync(t, "default/web")
	if ep := f.get(t, "web"); len(ep.Subsets) != 0 {
		t.Errorf("subsets = %+v", ep.Subsets)
	}
	f.sync(t, "default/manual")
	if _, err := f.client.CoreV1().Endpoints("default").Get(context.Background(), "manual", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("selector-less service got endpoints (err %v)", err)
	}
}

func TestServiceDeletedAndLeftovers(t *testing.T) {
	stale := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "gone", Namespace: "default"}}
	leader := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "leader", Namespace: "default",
		Annotations: map[string]string{leaderAnnotation: "{}"}}}
	f := newFixture(t, stale, leader)
	f.drain(t, 0)
	f.c.checkLeftoverEndpoints()
	if n := f.c.queue.Len(); n != 1 {
		t.Fatalf("queued %d keys, want 1 (the leader record is skipped)", n)
	}
	key, _ := f.c.queue.Get()
	f.c.queue.Done(key)
	f.sync(t, key)
	if _, err := f.client.CoreV1().Endpoints("default").Get(context.Background(), "gone", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("endpoints of a missing service survived (err %v)", err)
	}
}

func TestStaleCache(t *testing.T) {
	f := newFixture(t, newService("web", sel()), newPod("a", "10.1.0.1", true))
	cached := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", ResourceVersion: "7"}}
	f.c.stale.markStale(cached)
	if !f.c.stale.isStale(cached) {
		t.Fatal("not stale")
	}
	cached.ResourceVersion = "8"
	if f.c.stale.isStale(cached) {
		t.Fatal("newer version reported stale")
	}
}

func TestOverCapacity(t *testing.T) {
	objs := []runtime.Object{newService("web", sel())}
	for i := range 1100 {
		objs = append(objs, newPod(fmt.Sprintf("p%04d", i), fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), i%10 != 0))
	}
	f := newFixture(t, objs...)
	f.sync(t, "default/web")
	ep := f.get(t, "web")
	if ep.Annotations[corev1.EndpointsOverCapacity] != "truncated" {
		t.Errorf("annotations = %v", ep.Annotations)
	}
	if n := countAddresses(ep.Subsets); n != maxCapacity {
		t.Errorf("%d addresses, want %d", n, maxCapacity)
	}
	// 990 ready fit; 10 of the 110 not-ready ones make up the rest.
	if r := len(ep.Subsets[0].Addresses); r != 990 {
		t.Errorf("%d ready addresses, want 990", r)
	}
	before := len(writes(f.client))
	f.sync(t, "default/web")
	if after := writes(f.client); len(after) != before+1 {
		// Upstream rewrites truncated Endpoints on every sync (the
		// computed subsets never equal the truncated ones); so do we.
		t.Logf("writes on re-sync of a truncated object: %v", after[before:])
	}
}

func TestTruncateEndpoints(t *testing.T) {
	mk := func(n int, prefix string) []corev1.EndpointAddress {
		out := make([]corev1.EndpointAddress, n)
		for i := range out {
			out[i] = corev1.EndpointAddress{IP: fmt.Sprintf("%s.%d", prefix, i)}
		}
		return out
	}
	ep := &corev1.Endpoints{Subsets: []corev1.EndpointSubset{
		{Addresses: mk(900, "a"), NotReadyAddresses: mk(50, "b")},
		{Addresses: mk(300, "c"), NotReadyAddresses: mk(50, "d")},
	}}
	if !truncateEndpoints(ep) {
		t.Fatal("not truncated")
	}
	if n := countAddresses(ep.Subsets); n != maxCapacity {
		t.Errorf("%d addresses after truncation", n)
	}
	if len(ep.Subsets[0].Addresses) != 750 || len(ep.Subsets[1].Addresses) != 250 || len(ep.Subsets[0].NotReadyAddresses) != 0 {
		t.Errorf("proportions: %d %d %d", len(ep.Subsets[0].Addresses), len(ep.Subsets[1].Addresses), len(ep.Subsets[0].NotReadyAddresses))
	}
	small := &corev1.Endpoints{Subsets: []corev1.EndpointSubset{{Addresses: mk(10, "a")}}}
	if truncateEndpoints(small) {
		t.Error("truncated a small object")
	}
}

func TestRepackSubsets(t *testing.T) {
	ref := func(uid string) *corev1.ObjectReference {
		return &corev1.ObjectReference{Kind: "Pod", UID: types.UID(uid)}
	}
	a := corev1.EndpointAddress{IP: "10.0.0.2", TargetRef: ref("a")}
	b := corev1.EndpointAddress{IP: "10.0.0.1", TargetRef: ref("b")}
	p1 := corev1.EndpointPort{Name: "x", Port: 1, Protocol: corev1.ProtocolTCP}
	p2 := corev1.EndpointPort{Name: "y", Port: 2, Protocol: corev1.ProtocolTCP}
	in := []corev1.EndpointSubset{
		{Addresses: []corev1.EndpointAddress{a}, Ports: []corev1.EndpointPort{p2}},
		{Addresses: []corev1.EndpointAddress{a}, Ports: []corev1.EndpointPort{p1}},
		{Addresses: []corev1.EndpointAddress{b}, Ports: []corev1.EndpointPort{p1}},
		{NotReadyAddresses: []corev1.EndpointAddress{b}, Ports: []corev1.EndpointPort{p2}},
		// Not ready wins over ready for the same address and port.
		{Addresses: []corev1.EndpointAddress{b}, Ports: []corev1.EndpointPort{p2}},
	}
	out := repackSubsets(in)
	want := "[{[10.0.0.1 10.0.0.2] [] [x]} {[10.0.0.2] [10.0.0.1] [y]}]"
	if got := describe(out); got != want {
		t.Errorf("repack = %s\nwant     %s", got, want)
	}
	// Order of input does not matter.
	rev := make([]corev1.EndpointSubset, len(in))
	for i := range in {
		rev[len(in)-1-i] = in[i]
	}
	if got := describe(repackSubsets(rev)); got != want {
		t.Errorf("reversed input repacks to %s", got)
	}
}

func describe(ss []corev1.EndpointSubset) string {
	var parts []string
	for _, s := range ss {
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, p.Name)
		}
		parts = append(parts, fmt.Sprintf("{%v %v %v}", nz(ips(s.Addresses)), nz(ips(s.NotReadyAddresses)), ports))
	}
	return fmt.Sprint(parts)
}

func nz(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func TestPodEventsEnqueueMatchingServices(t *testing.T) {
	f := newFixture(t, newService("web", sel()), newService("db", map[string]string{"app": "db"}), newService("manual", nil))
	f.drain(t, 3)
	old := newPod("a", "10.1.0.1", false)
	cur := old.DeepCopy()
	cur.ResourceVersion = "2"
	cur.Status.Conditions[0].Status = corev1.ConditionTrue
	f.c.podEvents.OnUpdate(old, cur)
	if n := f.c.queue.Len(); n != 1 {
		t.Fatalf("queue has %d keys, want 1", n)
	}
	// A label move touches both services.
	moved := cur.DeepCopy()
	moved.ResourceVersion = "3"
	moved.Labels = map[string]string{"app": "db"}
	f.c.podEvents.OnUpdate(cur, moved)
	if n := f.c.queue.Len(); n != 2 {
		t.Fatalf("queue has %d keys, want 2", n)
	}
	// A pod without an IP is in no endpoints: its arrival queues nothing.
	f.drain(t, 0)
	f.c.podEvents.OnAdd(newPod("new", "", false), false)
	if n := f.c.queue.Len(); n != 0 {
		t.Fatalf("IP-less pod queued %d keys", n)
	}
	f.c.podEvents.OnAdd(newPod("new", "10.1.0.5", false), false)
	if n := f.c.queue.Len(); n != 1 {
		t.Fatalf("pod with an IP queued %d keys, want 1", n)
	}
	// Irrelevant change (annotation): nothing.
	f2 := newFixture(t, newService("web", sel()))
	f2.drain(t, 1)
	ann := cur.DeepCopy()
	ann.ResourceVersion = "9"
	ann.Annotations = map[string]string{"x": "y"}
	f2.c.podEvents.OnUpdate(cur, ann)
	if n := f2.c.queue.Len(); n != 0 {
		t.Fatalf("annotation change queued %d keys", n)
	}
}

func TestUpdateConflictRetries(t *testing.T) {
	svc := newService("web", sel())
	existing := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", ResourceVersion: "5"}}
	f := newFixture(t, svc, existing, newPod("a", "10.1.0.1", true))
	f.client.PrependReactor("update", "endpoints", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(corev1.Resource("endpoints"), "web", fmt.Errorf("stale"))
	})
	err := f.c.sync(context.Background(), "default/web")
	if !apierrors.IsConflict(err) {
		t.Fatalf("err = %v, want a conflict", err)
	}
}

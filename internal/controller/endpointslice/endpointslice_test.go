package endpointslice

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skiff-dev/skiff/internal/controller"
)

// --- fixtures ---

type svcOpt func(*corev1.Service)

func newService(name string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("svc-" + name),
			Labels: map[string]string{"team": "a"}, CreationTimestamp: metav1.Now()},
		Spec: corev1.ServiceSpec{
			Selector:   map[string]string{"app": "web"},
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

func onNode(n string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = n } }

func newNode(name, zone string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if zone != "" {
		n.Labels = map[string]string{corev1.LabelTopologyZone: zone}
	}
	return n
}

type fixture struct {
	client *fake.Clientset
	c      *Controller
	seq    atomic.Int64
}

// newFixture runs the controller's informers over a fake clientset that
// behaves like the API server where the controller relies on it:
// generateName, UIDs, resourceVersions and slice generations.
func newFixture(t *testing.T, opts Options, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{client: fake.NewClientset(objs...)}
	f.seq.Store(100)
	f.client.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if s, ok := a.(k8stesting.CreateAction).GetObject().(*discoveryv1.EndpointSlice); ok {
			n := f.seq.Add(1)
			if s.Name == "" {
				s.Name = fmt.Sprintf("%s%05d", s.GenerateName, n)
			}
			s.UID = types.UID(fmt.Sprintf("slice-uid-%d", n))
			s.Generation = 1
			s.ResourceVersion = fmt.Sprint(n)
		}
		return false, nil, nil
	})
	f.client.PrependReactor("update", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if s, ok := a.(k8stesting.UpdateAction).GetObject().(*discoveryv1.EndpointSlice); ok {
			old, err := f.client.Tracker().Get(discoveryv1.SchemeGroupVersion.WithResource("endpointslices"), s.Namespace, s.Name)
			if err != nil {
				return true, nil, err
			}
			o := old.(*discoveryv1.EndpointSlice)
			if s.ResourceVersion != "" && s.ResourceVersion != o.ResourceVersion {
				return true, nil, apierrors.NewConflict(discoveryv1.Resource("endpointslices"), s.Name, fmt.Errorf("rv %s != %s", s.ResourceVersion, o.ResourceVersion))
			}
			s.UID, s.Generation = o.UID, o.Generation+1
			s.ResourceVersion = fmt.Sprint(f.seq.Add(1))
		}
		return false, nil, nil
	})
	watching := make(chan string, 10)
	f.client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		watching <- a.GetResource().Resource
		return false, nil, nil
	})
	factory := informers.NewSharedInformerFactory(f.client, 0)
	c, err := New(controller.Context{Client: f.client, Informers: factory}, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); factory.Shutdown() })
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("cache %v did not sync", typ)
		}
	}
	for range 4 { // pods, services, nodes, endpointslices
		<-watching
	}
	return f
}

// sync runs one sync and waits for the slice cache to show the result.
func (f *fixture) sync(t *testing.T, key string) error {
	t.Helper()
	err := f.c.sync(context.Background(), key)
	deadline := time.Now().Add(10 * time.Second)
	for {
		api, lerr := f.client.DiscoveryV1().EndpointSlices("default").List(context.Background(), metav1.ListOptions{})
		if lerr != nil {
			t.Fatal(lerr)
		}
		cached, _ := f.c.slices.List(labels.Everything())
		if sameVersions(api.Items, cached) {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatal("slice informer never caught up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) mustSync(t *testing.T, key string) {
	t.Helper()
	if err := f.sync(t, key); err != nil {
		t.Fatalf("sync %s: %v", key, err)
	}
}

func sameVersions(api []discoveryv1.EndpointSlice, cached []*discoveryv1.EndpointSlice) bool {
	if len(api) != len(cached) {
		return false
	}
	rv := map[string]string{}
	for _, s := range api {
		rv[s.Name] = s.ResourceVersion
	}
	for _, s := range cached {
		if rv[s.Name] != s.ResourceVersion {
			return false
		}
	}
	return true
}

func (f *fixture) slices(t *testing.T) []discoveryv1.EndpointSlice {
	t.Helper()
	l, err := f.client.DiscoveryV1().EndpointSlices("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l.Items
}

// writes returns the slice writes so far ("create", "update", "delete").
func (f *fixture) writes() []string {
	var out []string
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource != "endpointslices" {
			continue
		}
		switch a.GetVerb() {
		case "create", "update", "delete":
			out = append(out, a.GetVerb())
		}
	}
	return out
}

func (f *fixture) writesSince(n int) []string { return f.writes()[n:] }

func (f *fixture) setPods(t *testing.T, pods ...*corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	have, err := f.client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*corev1.Pod{}
	for _, p := range pods {
		want[p.Name] = p
	}
	for _, p := range have.Items {
		if _, ok := want[p.Name]; !ok {
			if err := f.client.CoreV1().Pods("default").Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range pods {
		if _, err := f.client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
			_, err = f.client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cached, _ := f.c.pods.Lister.List(labels.Everything())
		ok := len(cached) == len(pods)
		for _, p := range cached {
			w, found := want[p.Name]
			ok = ok && found && fmt.Sprint(w.Status, w.Labels, w.DeletionTimestamp) == fmt.Sprint(p.Status, p.Labels, p.DeletionTimestamp)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("pod informer never caught up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func describeEndpoints(s discoveryv1.EndpointSlice) string {
	var parts []string
	for _, ep := range s.Endpoints {
		parts = append(parts, fmt.Sprintf("%s:r=%v,s=%v,t=%v", strings.Join(ep.Addresses, "+"),
			*ep.Conditions.Ready, *ep.Conditions.Serving, *ep.Conditions.Terminating))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func countEndpoints(ss []discoveryv1.EndpointSlice) int {
	n := 0
	for _, s := range ss {
		n += len(s.Endpoints)
	}
	return n
}

// --- tests ---

func TestConditionsAndMetadata(t *testing.T) {
	f := newFixture(t, Options{}, newService("web"), newNode("node-1", "zone-a"),
		newPod("a", "10.1.0.1", true), newPod("b", "10.1.0.2", false),
		newPod("c", "10.1.0.3", true, terminating), newPod("d", "10.1.0.4", false, terminating),
		newPod("done", "10.1.0.5", false, func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		newPod("noip", "", true))
	f.mustSync(t, "default/web")
	ss := f.slices(t)
	if len(ss) != 1 {
		t.Fatalf("%d slices", len(ss))
	}
	s := ss[0]
	want := "10.1.0.1:r=true,s=true,t=false 10.1.0.2:r=false,s=false,t=false 10.1.0.3:r=false,s=true,t=true 10.1.0.4:r=false,s=false,t=true"
	if got := describeEndpoints(s); got != want {
		t.Errorf("endpoints:\n got %s\nwant %s", got, want)
	}
	if !strings.HasPrefix(s.Name, "web-") || s.GenerateName != "web-" {
		t.Errorf("name %q generateName %q", s.Name, s.GenerateName)
	}
	if s.AddressType != discoveryv1.AddressTypeIPv4 {
		t.Errorf("addressType %s", s.AddressType)
	}
	wantLabels := map[string]string{"team": "a", discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: managedBy}
	if fmt.Sprint(s.Labels) != fmt.Sprint(wantLabels) {
		t.Errorf("labels %v", s.Labels)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != "svc-web" || s.OwnerReferences[0].Kind != "Service" ||
		s.OwnerReferences[0].Controller == nil || !*s.OwnerReferences[0].Controller {
		t.Errorf("ownerReferences %+v", s.OwnerReferences)
	}
	if len(s.Ports) != 1 || *s.Ports[0].Port != 8080 || *s.Ports[0].Name != "http" || *s.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("ports %+v", s.Ports)
	}
	ep := s.Endpoints[slices.IndexFunc(s.Endpoints, func(e discoveryv1.Endpoint) bool { return e.Addresses[0] == "10.1.0.1" })]
	if ep.Zone == nil || *ep.Zone != "zone-a" || ep.NodeName == nil || *ep.NodeName != "node-1" {
		t.Errorf("zone %v node %v", ep.Zone, ep.NodeName)
	}
	if ep.TargetRef == nil || ep.TargetRef.Name != "a" || ep.TargetRef.UID != "uid-a" || ep.TargetRef.Kind != "Pod" {
		t.Errorf("targetRef %+v", ep.TargetRef)
	}
	if s.Annotations[corev1.EndpointsLastChangeTriggerTime] == "" {
		t.Errorf("annotations %v", s.Annotations)
	}

	n := len(f.writes())
	f.mustSync(t, "default/web")
	if w := f.writesSince(n); len(w) != 0 {
		t.Errorf("no-op sync wrote %v", w)
	}
}

func TestPublishNotReadyAndHeadless(t *testing.T) {
	svc := newService("db", headless, func(s *corev1.Service) {
		s.Spec.PublishNotReadyAddresses = true
		s.Spec.Ports = nil
	})
	host := func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "db-0", "db" }
	f := newFixture(t, Options{}, svc, newNode("node-1", ""),
		newPod("db-0", "10.1.0.1", false, host), newPod("db-1", "10.1.0.2", true, terminating),
		// Its node is missing, but everything is published.
		newPod("db-2", "10.1.0.3", false, onNode("gone")))
	f.mustSync(t, "default/db")
	ss := f.slices(t)
	if len(ss) != 1 {
		t.Fatalf("%d slices", len(ss))
	}
	want := "10.1.0.1:r=true,s=false,t=false 10.1.0.2:r=true,s=true,t=true 10.1.0.3:r=true,s=false,t=false"
	if got := describeEndpoints(ss[0]); got != want {
		t.Errorf("endpoints:\n got %s\nwant %s", got, want)
	}
	if _, ok := ss[0].Labels[corev1.IsHeadlessService]; !ok {
		t.Errorf("labels %v lack the headless label", ss[0].Labels)
	}
	if len(ss[0].Ports) != 0 {
		t.Errorf("ports %+v", ss[0].Ports)
	}
	for _, ep := range ss[0].Endpoints {
		if ep.TargetRef.Name == "db-0" && (ep.Hostname == nil || *ep.Hostname != "db-0") {
			t.Errorf("hostname %v", ep.Hostname)
		}
		if ep.TargetRef.Name != "db-0" && ep.Hostname != nil {
			t.Errorf("%s has hostname %v", ep.TargetRef.Name, *ep.Hostname)
		}
	}
}

func TestMissingNodeSkipsPodAndRetries(t *testing.T) {
	f := newFixture(t, Options{}, newService("web"), newNode("node-1", ""),
		newPod("a", "10.1.0.1", true), newPod("b", "10.1.0.2", true, onNode("gone")))
	err := f.sync(t, "default/web")
	if err == nil || !strings.Contains(err.Error(), "Node gone Not Found") {
		t.Fatalf("err = %v", err)
	}
	if got := describeEndpoints(f.slices(t)[0]); got != "10.1.0.1:r=true,s=true,t=false" {
		t.Errorf("endpoints %s", got)
	}
}

func TestPlaceholderForNoEndpoints(t *testing.T) {
	f := newFixture(t, Options{}, newService("web"), newNode("node-1", ""))
	f.mustSync(t, "default/web")
	ss := f.slices(t)
	if len(ss) != 1 || len(ss[0].Endpoints) != 0 || len(ss[0].Ports) != 0 {
		t.Fatalf("slices %+v", ss)
	}
	n := len(f.writes())
	f.mustSync(t, "default/web")
	if w := f.writesSince(n); len(w) != 0 {
		t.Errorf("placeholder rewritten: %v", w)
	}
	// A pod arrives: the placeholder is reused, not replaced.
	f.setPods(t, newPod("a", "10.1.0.1", true))
	f.mustSync(t, "default/web")
	after := f.slices(t)
	if len(after) != 1 || after[0].Name != ss[0].Name || len(after[0].Endpoints) != 1 || len(after[0].Ports) != 1 {
		t.Fatalf("after a pod: %+v", after)
	}
	if w := f.writesSince(n); fmt.Sprint(w) != "[update]" {
		t.Errorf("writes %v, want one update", w)
	}
	// And back to empty: a placeholder again, still the same object.
	f.setPods(t)
	f.mustSync(t, "default/web")
	if again := f.slices(t); len(again) != 1 || again[0].Name != ss[0].Name || len(again[0].Endpoints) != 0 {
		t.Fatalf("after the pod left: %+v", again)
	}
}

func TestMaxEndpointsPerSliceAndMinimalChurn(t *testing.T) {
	var pods []*corev1.Pod
	for i := range 25 {
		pods = append(pods, newPod(fmt.Sprintf("p%02d", i), fmt.Sprintf("10.1.0.%d", i+1), true))
	}
	objs := []runtime.Object{newService("web"), newNode("node-1", "")}
	for _, p := range pods {
		objs = append(objs, p)
	}
	f := newFixture(t, Options{MaxEndpointsPerSlice: 10}, objs...)
	f.mustSync(t, "default/web")
	ss := f.slices(t)
	if len(ss) != 3 || countEndpoints(ss) != 25 {
		t.Fatalf("%d slices with %d endpoints", len(ss), countEndpoints(ss))
	}
	for _, s := range ss {
		if len(s.Endpoints) > 10 {
			t.Errorf("slice %s has %d endpoints", s.Name, len(s.Endpoints))
		}
	}

	// One pod turns unready: exactly one slice is updated in place.
	n := len(f.writes())
	unready := pods[3].DeepCopy()
	unready.ResourceVersion = "2"
	unready.Status.Conditions[0].Status = corev1.ConditionFalse
	pods[3] = unready
	f.setPods(t, pods...)
	f.mustSync(t, "default/web")
	if w := f.writesSince(n); fmt.Sprint(w) != "[update]" {
		t.Errorf("writes %v, want one update", w)
	}
	names := func(ss []discoveryv1.EndpointSlice) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return out
	}
	if fmt.Sprint(names(f.slices(t))) != fmt.Sprint(names(ss)) {
		t.Errorf("slices replaced: %v → %v", names(ss), names(f.slices(t)))
	}

	// Scale down to 4 pods: surplus slices go, nothing is created.
	n = len(f.writes())
	f.setPods(t, pods[:4]...)
	f.mustSync(t, "default/web")
	after := f.slices(t)
	if countEndpoints(after) != 4 {
		t.Errorf("%d endpoints after scale down", countEndpoints(after))
	}
	for _, w := range f.writesSince(n) {
		if w == "create" {
			t.Errorf("scale down created a slice: %v", f.writesSince(n))
		}
	}
	n = len(f.writes())
	f.mustSync(t, "default/web")
	if w := f.writesSince(n); len(w) != 0 {
		t.Errorf("no-op sync wrote %v", w)
	}
}

func TestNamedPortsSplitSlices(t *testing.T) {
	svc := newService("web", func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web")}}
	})
	port := func(n int32) podOpt {
		return func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = n }
	}
	f := newFixture(t, Options{}, svc, newNode("node-1", ""),
		newPod("a", "10.1.0.1", true, port(8080)), newPod("b", "10.1.0.2", true, port(8080)),
		newPod("c", "10.1.0.3", true, port(9090)),
		newPod("d", "10.1.0.4", true, func(p *corev1.Pod) { p.Spec.Containers[0].Ports = nil }))
	f.mustSync(t, "default/web")
	got := map[string]int{}
	for _, s := range f.slices(t) {
		key := "none"
		if len(s.Ports) > 0 {
			key = fmt.Sprint(*s.Ports[0].Port)
		}
		got[key] += len(s.Endpoints)
	}
	// Pod d lacks the named port: upstream keeps it, in a slice without
	// ports.
	if fmt.Sprint(got) != "map[8080:2 9090:1 none:1]" {
		t.Errorf("endpoints by port: %v", got)
	}
}

func TestDualStackHeadless(t *testing.T) {
	svc := newService("web", headless, func(s *corev1.Service) { s.Spec.IPFamilies = nil })
	f := newFixture(t, Options{}, svc, newNode("node-1", ""),
		newPod("a", "10.1.0.1", true, func(p *corev1.Pod) {
			p.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.1"}, {IP: "fd00::1"}}
		}))
	f.mustSync(t, "default/web")
	types := map[discoveryv1.AddressType]string{}
	for _, s := range f.slices(t) {
		types[s.AddressType] = describeEndpoints(s)
	}
	if types[discoveryv1.AddressTypeIPv4] != "10.1.0.1:r=true,s=true,t=false" || types[discoveryv1.AddressTypeIPv6] != "fd00::1:r=true,s=true,t=false" {
		t.Errorf("slices by type: %v", types)
	}
}

func TestForeignSliceReplaced(t *testing.T) {
	// A slice of an older Service with the same name (different UID).
	old := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "web-old", Namespace: "default", UID: "old-uid", Generation: 1,
			Labels:          map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: managedBy},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: "web", UID: "previous"}}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	f := newFixture(t, Options{}, newService("web"), newNode("node-1", ""), old, newPod("a", "10.1.0.1", true))
	f.mustSync(t, "default/web")
	ss := f.slices(t)
	if len(ss) != 1 || ss[0].Name == "web-old" || ss[0].OwnerReferences[0].UID != "svc-web" {
		t.Fatalf("slices %+v", ss)
	}
}

func TestServiceLabelsMirrored(t *testing.T) {
	f := newFixture(t, Options{}, newService("web"), newNode("node-1", ""), newPod("a", "10.1.0.1", true))
	f.mustSync(t, "default/web")
	svc := newService("web", func(s *corev1.Service) {
		s.Labels = map[string]string{"team": "b", discoveryv1.LabelServiceName: "evil"}
	})
	if _, err := f.client.CoreV1().Services("default").Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, _ := f.c.services.Services("default").Get("web")
		if s != nil && s.Labels["team"] == "b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("service informer never caught up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.mustSync(t, "default/web")
	s := f.slices(t)[0]
	if s.Labels["team"] != "b" || s.Labels[discoveryv1.LabelServiceName] != "web" {
		t.Errorf("labels %v", s.Labels)
	}
}

func TestStaleTracker(t *testing.T) {
	tr := newSliceTracker()
	svc := newService("web")
	mk := func(uid string, gen int64) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", UID: types.UID(uid), Generation: gen,
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}}
	}
	if tr.stale(svc, nil) {
		t.Error("untracked service stale")
	}
	tr.update(mk("a", 2))
	if !tr.stale(svc, []*discoveryv1.EndpointSlice{mk("a", 1)}) {
		t.Error("older generation not stale")
	}
	if !tr.stale(svc, nil) {
		t.Error("missing written slice not stale")
	}
	if tr.stale(svc, []*discoveryv1.EndpointSlice{mk("a", 2)}) {
		t.Error("current generation stale")
	}
	if tr.shouldSync(mk("a", 2)) || !tr.shouldSync(mk("a", 3)) || !tr.shouldSync(mk("b", 1)) {
		t.Error("shouldSync")
	}
	tr.expectDeletion(mk("a", 2))
	if !tr.stale(svc, []*discoveryv1.EndpointSlice{mk("a", 2)}) {
		t.Error("deleted slice still cached not stale")
	}
	if !tr.handleDeletion(mk("a", 2)) {
		t.Error("expected deletion reported unexpected")
	}
	tr.update(mk("c", 1))
	if tr.handleDeletion(mk("c", 1)) {
		t.Error("unexpected deletion reported expected")
	}
	// A recreated Service starts afresh.
	tr.update(mk("d", 5))
	again := newService("web")
	again.UID = "new"
	tr.stale(svc, []*discoveryv1.EndpointSlice{mk("d", 5)})
	if tr.stale(again, nil) {
		t.Error("new service UID inherited old tracking")
	}
}

func TestNewValidatesOptions(t *testing.T) {
	client := fake.NewClientset()
	cc := controller.Context{Client: client, Informers: informers.NewSharedInformerFactory(client, 0)}
	for _, o := range []Options{{MaxEndpointsPerSlice: -1}, {MaxEndpointsPerSlice: 1001}, {EndpointUpdatesBatchPeriod: -time.Second}} {
		if _, err := New(cc, o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	c, err := New(cc, Options{})
	if err != nil || c.opts.MaxEndpointsPerSlice != DefaultMaxEndpointsPerSlice {
		t.Errorf("defaults: %v %+v", err, c.opts)
	}
}

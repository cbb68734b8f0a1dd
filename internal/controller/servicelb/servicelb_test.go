package servicelb

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// All addresses here exist only in API objects (TEST-NET ranges); no
// traffic is sent anywhere.

// run starts a controller over the API server and returns a function that
// stops it (also called when the test ends).
func run(t *testing.T, api *controllertest.API, opts Options) (stop func()) {
	t.Helper()
	cc := api.Context(t)
	c, err := New(cc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cc.Informers.Start(ctx.Done())
	go func() { done <- c.Run(ctx, 2) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		cc.Informers.Shutdown()
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if last = check(); last == "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %s", what, last)
}

// addr is "1.2.3.4" (InternalIP) or "ext:1.2.3.4" (ExternalIP).
func createNode(t *testing.T, c kubernetes.Interface, name string, ready bool, addrs ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setNode(t, c, name, func(n *corev1.Node) {
		for _, a := range addrs {
			typ := corev1.NodeInternalIP
			if ip, ok := strings.CutPrefix(a, "ext:"); ok {
				typ, a = corev1.NodeExternalIP, ip
			}
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: typ, Address: a})
		}
		setReady(n, ready)
	})
}

func setReady(n *corev1.Node, ready bool) {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
}

// setNode changes a node's status.
func setNode(t *testing.T, c kubernetes.Interface, name string, mutate func(*corev1.Node)) {
	t.Helper()
	ctx := context.Background()
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mutate(n)
	if _, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func cordon(t *testing.T, c kubernetes.Interface, name string, on bool) {
	t.Helper()
	ctx := context.Background()
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Unschedulable = on
	if _, err := c.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

type svcOpt func(*corev1.Service)

func withIP(ip string) svcOpt { return func(s *corev1.Service) { s.Spec.LoadBalancerIP = ip } }
func withClass(cl string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To(cl) }
}
func withType(ty corev1.ServiceType) svcOpt { return func(s *corev1.Service) { s.Spec.Type = ty } }

// ports are "80" or "53/UDP".
func createService(t *testing.T, c kubernetes.Interface, name string, ports []string, opts ...svcOpt) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name}}}
	for i, p := range ports {
		num, proto, _ := strings.Cut(p, "/")
		if proto == "" {
			proto = "TCP"
		}
		var port int32
		fmt.Sscan(num, &port)
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", i), Port: port, Protocol: corev1.Protocol(proto)})
	}
	for _, o := range opts {
		o(svc)
	}
	if _, err := c.CoreV1().Services("default").Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func deleteService(t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	if err := c.CoreV1().Services("default").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func updateService(t *testing.T, c kubernetes.Interface, name string, mutate func(*corev1.Service)) {
	t.Helper()
	ctx := context.Background()
	svc, err := c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mutate(svc)
	if _, err := c.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// ingress renders a service's ingress as "ip,ip" and fails on an entry
// without ipMode VIP.
func ingress(t *testing.T, c kubernetes.Interface, name string) string {
	t.Helper()
	svc, err := c.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeVIP {
			t.Fatalf("service %s ingress %+v: want ipMode VIP", name, in)
		}
		ips = append(ips, in.IP)
	}
	return strings.Join(ips, ",")
}

func expectIngress(t *testing.T, c kubernetes.Interface, name, want string) {
	t.Helper()
	eventually(t, "ingress of "+name, func() string {
		if got := ingress(t, c, name); got != want {
			return fmt.Sprintf("got %q, want %q", got, want)
		}
		return ""
	})
}

// events counts the events of a reason about a service.
func events(t *testing.T, c kubernetes.Interface, name, reason string) (n int, msg string) {
	t.Helper()
	list, err := c.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "Service" && e.InvolvedObject.Name == name && e.Reason == reason {
			n += int(max(e.Count, 1))
			msg = e.Message
		}
	}
	return n, msg
}

func expectEvent(t *testing.T, c kubernetes.Interface, name, reason, wantType, msgPart string, atLeast int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s event for %s", reason, name), func() string {
		list, err := c.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		n := 0
		var seen []string
		for _, e := range list.Items {
			if e.InvolvedObject.Name == name && e.Reason == reason {
				if e.Type == wantType && strings.Contains(e.Message, msgPart) {
					n += int(max(e.Count, 1))
				}
				seen = append(seen, e.Type+" "+e.Message)
			}
		}
		if n < atLeast {
			return fmt.Sprintf("%d events of type %s mentioning %q, want at least %d; seen %q", n, wantType, msgPart, atLeast, seen)
		}
		return ""
	})
}

func TestNodeAddressesFollowNodes(t *testing.T) {
	api := controllertest.Start(t)
	c := api.Client
	createNode(t, c, "a", true, "198.51.100.1")
	createNode(t, c, "b", true, "198.51.100.2")
	createNode(t, c, "notready", false, "198.51.100.3")
	run(t, api, Options{})

	createService(t, c, "web", []string{"80"})
	expectIngress(t, c, "web", "198.51.100.1,198.51.100.2")
	expectEvent(t, c, "web", reasonUpdated, corev1.EventTypeNormal, "[] -> [198.51.100.1 198.51.100.2]", 1)

	createNode(t, c, "d", true, "198.51.100.4")
	expectIngress(t, c, "web", "198.51.100.1,198.51.100.2,198.51.100.4")

	setNode(t, c, "b", func(n *corev1.Node) { setReady(n, false) })
	expectIngress(t, c, "web", "198.51.100.1,198.51.100.4")

	setNode(t, c, "notready", func(n *corev1.Node) { setReady(n, true) })
	expectIngress(t, c, "web", "198.51.100.1,198.51.100.3,198.51.100.4")

	if err := c.CoreV1().Nodes().Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cordon(t, c, "notready", true)
	expectIngress(t, c, "web", "198.51.100.4")

	// The last usable node cordoned: no address, and a Warning.
	cordon(t, c, "d", true)
	expectIngress(t, c, "web", "")
	expectEvent(t, c, "web", reasonNoNodes, corev1.EventTypeWarning, "no available nodes", 1)

	// As k3s: once any usable node has an ExternalIP, only ExternalIPs.
	cordon(t, c, "d", false)
	setNode(t, c, "d", func(n *corev1.Node) {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.4"})
	})
	expectIngress(t, c, "web", "203.0.113.4")
}

func TestPortConflictLeavesTheYoungerPending(t *testing.T) {
	api := controllertest.Start(t)
	c := api.Client
	createNode(t, c, "a", true, "198.51.100.1")
	run(t, api, Options{})

	createService(t, c, "web", []string{"80"})
	expectIngress(t, c, "web", "198.51.100.1")
	// Same port and protocol (and a free one): pending, with a Warning.
	createService(t, c, "web2", []string{"443", "80"})
	expectEvent(t, c, "web2", reasonPortInUse, corev1.EventTypeWarning, "port 80/TCP is already served on the nodes' addresses for LoadBalancer service default/web", 1)
	// Same port, other protocol: no conflict.
	createService(t, c, "dns", []string{"80/UDP"})
	// Conflicts only with the pending web2, which holds no port.
	createService(t, c, "tls", []string{"443"})
	expectIngress(t, c, "dns", "198.51.100.1")
	expectIngress(t, c, "tls", "198.51.100.1")
	if got := ingress(t, c, "web2"); got != "" {
		t.Fatalf("web2 got %q despite the conflict", got)
	}

	// web goes: web2 now conflicts with tls (443), which is older.
	deleteService(t, c, "web")
	expectEvent(t, c, "web2", reasonPortInUse, corev1.EventTypeWarning, "port 443/TCP", 1)
	updateService(t, c, "tls", func(s *corev1.Service) { s.Spec.Ports[0].Port = 8443 })
	expectIngress(t, c, "web2", "198.51.100.1")
	expectIngress(t, c, "tls", "198.51.100.1")

	// No longer a LoadBalancer: status cleared (by the API server on the
	// type change), and its port free for the next one.
	createService(t, c, "web3", []string{"80"})
	updateService(t, c, "web2", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP })
	expectIngress(t, c, "web2", "")
	expectIngress(t, c, "web3", "198.51.100.1")
}

func TestLoadBalancerClassIsLeftAlone(t *testing.T) {
	api := controllertest.Start(t)
	c := api.Client
	createNode(t, c, "a", true, "198.51.100.1")
	run(t, api, Options{})

	createService(t, c, "other", []string{"80"}, withClass("example.com/lb"))
	createService(t, c, "plain", []string{"81"}, withType(corev1.ServiceTypeNodePort))
	createService(t, c, "mine", []string{"82"})
	expectIngress(t, c, "mine", "198.51.100.1")
	// Give the controller a moment more to do anything it would.
	time.Sleep(300 * time.Millisecond)
	if got := ingress(t, c, "other"); got != "" {
		t.Fatalf("service of another loadBalancerClass got %q", got)
	}
	// Nor does a class service take ports from ours.
	createService(t, c, "mine80", []string{"80"})
	expectIngress(t, c, "mine80", "198.51.100.1")
	if n, _ := events(t, c, "other", reasonUpdated); n != 0 {
		t.Fatalf("%d events about the other class's service", n)
	}
}

func TestPoolAllocatesStablyAndReleases(t *testing.T) {
	api := controllertest.Start(t)
	c := api.Client
	// No nodes at all: the pool does not depend on them.
	opts := Options{Pool: netip.MustParsePrefix("203.0.113.0/30")} // .1 and .2
	stop := run(t, api, opts)

	createService(t, c, "a", []string{"80"})
	expectIngress(t, c, "a", "203.0.113.1")
	createService(t, c, "b", []string{"80"}, withIP("203.0.113.2"))
	expectIngress(t, c, "b", "203.0.113.2")
	createService(t, c, "c", []string{"80"})
	expectEvent(t, c, "c", reasonExhausted, corev1.EventTypeWarning, "no address left in the LoadBalancer pool 203.0.113.0/30", 1)
	if got := ingress(t, c, "c"); got != "" {
		t.Fatalf("c got %q from an exhausted pool", got)
	}
	createService(t, c, "outside", []string{"80"}, withIP("198.51.100.9"))
	expectEvent(t, c, "outside", reasonIPNotUsable, corev1.EventTypeWarning, "198.51.100.9 is not in the pool 203.0.113.0/30", 1)

	// Restart: the allocation comes back from the statuses. Without
	// that, c (or outside) could be handed a or b's address.
	stop()
	run(t, api, opts)
	expectEvent(t, c, "c", reasonExhausted, corev1.EventTypeWarning, "no address left", 2) // the new controller looked at c
	for name, want := range map[string]string{"a": "203.0.113.1", "b": "203.0.113.2", "c": "", "outside": ""} {
		if got := ingress(t, c, name); got != want {
			t.Fatalf("after restart %s has %q, want %q", name, got, want)
		}
	}

	// A delete frees the address for the pending service.
	deleteService(t, c, "a")
	expectIngress(t, c, "c", "203.0.113.1")

	// So does a change away from type LoadBalancer.
	updateService(t, c, "b", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP })
	expectIngress(t, c, "b", "")
	createService(t, c, "d", []string{"80"})
	expectIngress(t, c, "d", "203.0.113.2")

	// The requested address, once usable, is honoured.
	deleteService(t, c, "d")
	updateService(t, c, "outside", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "203.0.113.2" })
	expectIngress(t, c, "outside", "203.0.113.2")
}

func TestExternalTrafficPolicyLocalUsesNodesWithEndpoints(t *testing.T) {
	api := controllertest.Start(t)
	c := api.Client
	ctx := context.Background()
	createNode(t, c, "a", true, "198.51.100.1")
	createNode(t, c, "b", true, "198.51.100.2")
	run(t, api, Options{})

	createService(t, c, "local", []string{"80"}, func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	// No endpoints anywhere yet: no node qualifies.
	expectEvent(t, c, "local", reasonNoNodes, corev1.EventTypeWarning, "no available nodes", 1)

	endpoint := func(node string, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{
			Addresses:  []string{"10.42.0.5"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
			NodeName:   ptr.To(node),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "pod-" + node},
		}
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "local-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{endpoint("b", true)},
	}
	slice, err := c.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expectIngress(t, c, "local", "198.51.100.2")

	slice.Endpoints = []discoveryv1.Endpoint{endpoint("a", true), endpoint("b", false)}
	if _, err := c.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectIngress(t, c, "local", "198.51.100.1")

	// Back to Cluster: every usable node.
	updateService(t, c, "local", func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		s.Spec.HealthCheckNodePort = 0
	})
	expectIngress(t, c, "local", "198.51.100.1,198.51.100.2")
}

package registry

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
)

func svcMustCreate(t *testing.T, s *serviceStrategy, svc *corev1.Service) *corev1.Service {
	t.Helper()
	if _, err := svcCreate(s, svc, false); err != nil {
		t.Fatalf("create %s: %v", svc.Name, err)
	}
	return svc
}

func svcWantErr(t *testing.T, err error, code int32, msg string) {
	t.Helper()
	st, ok := err.(*apierrors.StatusError)
	if !ok {
		t.Fatalf("err = %v (%T), want StatusError", err, err)
	}
	if st.ErrStatus.Code != code || st.Error() != msg {
		t.Fatalf("err = %d %q\nwant %d %q", st.ErrStatus.Code, st.Error(), code, msg)
	}
}

func TestServiceClusterIPAllocation(t *testing.T) {
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	prefix := netip.MustParsePrefix("10.43.0.0/16")

	a := svcMustCreate(t, s, svcFixture("a", corev1.ServiceTypeClusterIP))
	ip := netip.MustParseAddr(a.Spec.ClusterIP)
	if !prefix.Contains(ip) || a.Spec.ClusterIP == "10.43.0.0" || a.Spec.ClusterIP == "10.43.255.255" || a.Spec.ClusterIP == "10.43.0.1" {
		t.Errorf("allocated %s", a.Spec.ClusterIP)
	}
	if len(a.Spec.ClusterIPs) != 1 || a.Spec.ClusterIPs[0] != a.Spec.ClusterIP {
		t.Errorf("clusterIPs = %v", a.Spec.ClusterIPs)
	}
	if len(a.Spec.IPFamilies) != 1 || a.Spec.IPFamilies[0] != corev1.IPv4Protocol || *a.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack {
		t.Errorf("families = %v policy = %v", a.Spec.IPFamilies, *a.Spec.IPFamilyPolicy)
	}

	b := svcFixture("b", corev1.ServiceTypeClusterIP)
	b.Spec.ClusterIP = "10.43.0.5"
	svcMustCreate(t, s, b)
	if b.Spec.ClusterIP != "10.43.0.5" || b.Spec.ClusterIPs[0] != "10.43.0.5" {
		t.Errorf("requested IP not honoured: %v", b.Spec.ClusterIPs)
	}

	dup := svcFixture("c", corev1.ServiceTypeClusterIP)
	dup.Spec.ClusterIP = "10.43.0.5"
	_, err := svcCreate(s, dup, false)
	svcWantErr(t, err, 422, `Service "c" is invalid: spec.clusterIPs: Invalid value: ["10.43.0.5"]: failed to allocate IP 10.43.0.5: provided IP is already allocated`)

	out := svcFixture("d", corev1.ServiceTypeClusterIP)
	out.Spec.ClusterIP = "10.44.0.5"
	_, err = svcCreate(s, out, false)
	svcWantErr(t, err, 422, `Service "d" is invalid: spec.clusterIPs: Invalid value: ["10.44.0.5"]: failed to allocate IP 10.44.0.5: the provided IP (10.44.0.5) is not in the valid range. The range of valid IPs is 10.43.0.0/16`)

	bcast := svcFixture("e", corev1.ServiceTypeClusterIP)
	bcast.Spec.ClusterIP = "10.43.255.255"
	if _, err = svcCreate(s, bcast, false); err == nil {
		t.Error("broadcast address accepted")
	}

	// The first IP belongs to default/kubernetes only.
	other := svcFixture("f", corev1.ServiceTypeClusterIP)
	other.Spec.ClusterIP = "10.43.0.1"
	_, err = svcCreate(s, other, false)
	svcWantErr(t, err, 422, `Service "f" is invalid: spec.clusterIPs: Invalid value: ["10.43.0.1"]: failed to allocate IP 10.43.0.1: provided IP is already allocated`)
	k := svcFixture("kubernetes", corev1.ServiceTypeClusterIP)
	k.Spec.Selector = nil
	svcMustCreate(t, s, k)
	if k.Spec.ClusterIP != "10.43.0.1" {
		t.Errorf("kubernetes service got %s", k.Spec.ClusterIP)
	}

	// Headless and ExternalName services get no IP.
	h := svcFixture("h", corev1.ServiceTypeClusterIP)
	h.Spec.ClusterIP = "None"
	svcMustCreate(t, s, h)
	if h.Spec.ClusterIP != "None" || len(h.Spec.ClusterIPs) != 1 || h.Spec.ClusterIPs[0] != "None" {
		t.Errorf("headless: %v", h.Spec.ClusterIPs)
	}
	x := svcFixture("x", corev1.ServiceTypeExternalName)
	x.Spec.ExternalName = "db.example.com"
	svcMustCreate(t, s, x)
	if x.Spec.ClusterIP != "" || x.Spec.ClusterIPs != nil || x.Spec.IPFamilies != nil || x.Spec.IPFamilyPolicy != nil {
		t.Errorf("externalname got %+v", x.Spec)
	}

	// Delete releases: the IP can be requested again.
	s.AfterDelete(context.Background(), b)
	again := svcFixture("g", corev1.ServiceTypeClusterIP)
	again.Spec.ClusterIP = "10.43.0.5"
	svcMustCreate(t, s, again)
}

func TestServiceHeadlessFamilies(t *testing.T) {
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	h := svcFixture("h", corev1.ServiceTypeClusterIP)
	h.Spec.ClusterIP = "None"
	svcMustCreate(t, s, h)
	if *h.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack || len(h.Spec.IPFamilies) != 1 {
		t.Errorf("headless with selector: %v %v", *h.Spec.IPFamilyPolicy, h.Spec.IPFamilies)
	}
	n := svcFixture("n", corev1.ServiceTypeClusterIP)
	n.Spec.ClusterIP, n.Spec.Selector = "None", nil
	svcMustCreate(t, s, n)
	if *n.Spec.IPFamilyPolicy != corev1.IPFamilyPolicyRequireDualStack || len(n.Spec.IPFamilies) != 2 {
		t.Errorf("headless without selector: %v %v", *n.Spec.IPFamilyPolicy, n.Spec.IPFamilies)
	}
	d := svcFixture("d", corev1.ServiceTypeClusterIP)
	p := corev1.IPFamilyPolicyRequireDualStack
	d.Spec.IPFamilyPolicy = &p
	_, err := svcCreate(s, d, false)
	svcWantErr(t, err, 422, `Service "d" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services`)
}

func TestServiceNodePortAllocation(t *testing.T) {
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)

	a := svcFixture("a", corev1.ServiceTypeNodePort,
		corev1.ServicePort{Name: "http", Port: 80, NodePort: 30080},
		corev1.ServicePort{Name: "https", Port: 443})
	svcMustCreate(t, s, a)
	if a.Spec.Ports[0].NodePort != 30080 {
		t.Errorf("requested nodePort not honoured: %d", a.Spec.Ports[0].NodePort)
	}
	if np := a.Spec.Ports[1].NodePort; np < 30000 || np > 32767 || np == 30080 {
		t.Errorf("allocated nodePort %d", np)
	}

	dup := svcFixture("b", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: 30080})
	_, err := svcCreate(s, dup, false)
	svcWantErr(t, err, 422, `Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated`)

	out := svcFixture("c", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: 8080})
	_, err = svcCreate(s, out, false)
	svcWantErr(t, err, 422, `Service "c" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767`)

	// A failed create gives back what it took (the ClusterIP here).
	if ips, ports := s.alloc.usedCounts(); ips != 1 || ports != 2 {
		t.Errorf("used after failures = %d IPs, %d ports; want 1, 2", ips, ports)
	}

	// TCP and UDP ports with the same number share one NodePort.
	dns := svcFixture("dns", corev1.ServiceTypeNodePort,
		corev1.ServicePort{Name: "dns-tcp", Port: 53},
		corev1.ServicePort{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP})
	svcMustCreate(t, s, dns)
	if dns.Spec.Ports[0].NodePort == 0 || dns.Spec.Ports[0].NodePort != dns.Spec.Ports[1].NodePort {
		t.Errorf("nodePorts %d %d", dns.Spec.Ports[0].NodePort, dns.Spec.Ports[1].NodePort)
	}

	// LoadBalancer with externalTrafficPolicy Local gets a health check port.
	lb := svcFixture("lb", corev1.ServiceTypeLoadBalancer)
	lb.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	svcMustCreate(t, s, lb)
	if lb.Spec.HealthCheckNodePort == 0 || lb.Spec.HealthCheckNodePort == lb.Spec.Ports[0].NodePort {
		t.Errorf("healthCheckNodePort %d, nodePort %d", lb.Spec.HealthCheckNodePort, lb.Spec.Ports[0].NodePort)
	}

	// LoadBalancer without node ports.
	nolb := svcFixture("nolb", corev1.ServiceTypeLoadBalancer)
	f := false
	nolb.Spec.AllocateLoadBalancerNodePorts = &f
	svcMustCreate(t, s, nolb)
	if nolb.Spec.Ports[0].NodePort != 0 {
		t.Errorf("nodePort allocated despite allocateLoadBalancerNodePorts=false")
	}

	_, before := s.alloc.usedCounts()
	s.AfterDelete(context.Background(), lb)
	if _, after := s.alloc.usedCounts(); after != before-2 {
		t.Errorf("delete released %d ports, want 2", before-after)
	}
	s.AfterDelete(context.Background(), a)
	b := svcFixture("b", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: 30080})
	svcMustCreate(t, s, b)
}

func TestServiceAllocatorExhaustion(t *testing.T) {
	// A /29 has 6 usable addresses, the first reserved for default/kubernetes.
	s := svcTestStrategy(t, "10.50.0.0/29", 30000, 30002)
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		svc := svcMustCreate(t, s, svcFixture(fmt.Sprintf("s%d", i), corev1.ServiceTypeClusterIP))
		if seen[svc.Spec.ClusterIP] || svc.Spec.ClusterIP == "10.50.0.1" {
			t.Fatalf("bad IP %s", svc.Spec.ClusterIP)
		}
		seen[svc.Spec.ClusterIP] = true
	}
	_, err := svcCreate(s, svcFixture("full", corev1.ServiceTypeClusterIP), false)
	svcWantErr(t, err, 500, "Internal error occurred: failed to allocate a serviceIP: range is full")

	s2 := svcTestStrategy(t, "10.50.0.0/24", 30000, 30002)
	svcMustCreate(t, s2, svcFixture("np", corev1.ServiceTypeNodePort,
		corev1.ServicePort{Name: "a", Port: 1}, corev1.ServicePort{Name: "b", Port: 2}, corev1.ServicePort{Name: "c", Port: 3}))
	_, err = svcCreate(s2, svcFixture("np2", corev1.ServiceTypeNodePort), false)
	svcWantErr(t, err, 500, "Internal error occurred: failed to allocate a nodePort: range is full")
	if ips, ports := s2.alloc.usedCounts(); ips != 1 || ports != 3 {
		t.Errorf("after failed create: %d IPs, %d ports; want 1, 3", ips, ports)
	}
}

func TestServiceConcurrentAllocation(t *testing.T) {
	s := svcTestStrategy(t, "10.60.0.0/24", 30000, 30300)
	const n = 200
	var wg sync.WaitGroup
	results := make([]*corev1.Service, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			svc := svcFixture(fmt.Sprintf("s%d", i), corev1.ServiceTypeNodePort)
			_, errs[i] = svcCreate(s, svc, false)
			results[i] = svc
		}(i)
	}
	wg.Wait()
	ips, ports := map[string]int{}, map[int32]int{}
	for i, svc := range results {
		if errs[i] != nil {
			t.Fatalf("create %d: %v", i, errs[i])
		}
		ips[svc.Spec.ClusterIP]++
		ports[svc.Spec.Ports[0].NodePort]++
	}
	if len(ips) != n || len(ports) != n {
		t.Errorf("distinct IPs %d, ports %d; want %d", len(ips), len(ports), n)
	}
}

func TestServiceDryRun(t *testing.T) {
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	taken := svcFixture("taken", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: 30080})
	taken.Spec.ClusterIP = "10.43.0.5"
	svcMustCreate(t, s, taken)

	svc := svcFixture("dry", corev1.ServiceTypeNodePort,
		corev1.ServicePort{Name: "a", Port: 80}, corev1.ServicePort{Name: "b", Port: 81})
	undo, err := svcCreate(s, svc, true)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.Ports[0].NodePort == 0 || svc.Spec.Ports[0].NodePort == svc.Spec.Ports[1].NodePort {
		t.Errorf("dry run result %+v", svc.Spec)
	}
	if ips, ports := s.alloc.usedCounts(); ips != 1 || ports != 1 {
		t.Errorf("dry run took %d IPs, %d ports", ips-1, ports-1)
	}
	undo()
	if ips, ports := s.alloc.usedCounts(); ips != 1 || ports != 1 {
		t.Errorf("undo of dry run released what it did not take: %d, %d", ips, ports)
	}
	// Requests are still checked.
	dup := svcFixture("dup", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: 30080})
	if _, err := svcCreate(s, dup, true); err == nil {
		t.Error("dry run accepted a taken nodePort")
	}
	// Undo of a real create gives everything back (e.g. the store write failed).
	real := svcFixture("real", corev1.ServiceTypeNodePort)
	undo, err = svcCreate(s, real, false)
	if err != nil {
		t.Fatal(err)
	}
	undo()
	if ips, ports := s.alloc.usedCounts(); ips != 1 || ports != 1 {
		t.Errorf("undo left %d IPs, %d ports", ips, ports)
	}
}

func TestServiceTypeChanges(t *testing.T) {
	ctx := context.Background()
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	np := svcMustCreate(t, s, svcFixture("web", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: 30080}))

	// NodePort -> ClusterIP: the node port is wiped and released on commit,
	// not before; undo keeps it.
	toCIP := np.DeepCopy()
	toCIP.Spec.Type = corev1.ServiceTypeClusterIP
	s.Default(toCIP)
	s.PrepareForUpdate(ctx, toCIP, np)
	if errs := s.ValidateUpdate(ctx, toCIP, np); len(errs) > 0 {
		t.Fatal(errs)
	}
	if toCIP.Spec.Ports[0].NodePort != 0 || toCIP.Spec.ExternalTrafficPolicy != "" {
		t.Errorf("type-dependent fields kept: %+v", toCIP.Spec)
	}
	commit, undo, err := s.BeforeUpdate(ctx, toCIP, np, false)
	if err != nil {
		t.Fatal(err)
	}
	undo()
	if _, ports := s.alloc.usedCounts(); ports != 1 {
		t.Errorf("undo released the port")
	}
	if commit, _, err = s.BeforeUpdate(ctx, toCIP, np, false); err != nil {
		t.Fatal(err)
	}
	commit()
	if _, ports := s.alloc.usedCounts(); ports != 0 {
		t.Errorf("commit kept %d ports", ports)
	}
	if toCIP.Spec.ClusterIP != np.Spec.ClusterIP {
		t.Errorf("clusterIP changed: %s -> %s", np.Spec.ClusterIP, toCIP.Spec.ClusterIP)
	}

	// ClusterIP -> NodePort allocates.
	back := toCIP.DeepCopy()
	back.Spec.Type = corev1.ServiceTypeNodePort
	if err := svcUpdate(s, back, toCIP); err != nil {
		t.Fatal(err)
	}
	if back.Spec.Ports[0].NodePort == 0 {
		t.Error("no nodePort on ClusterIP -> NodePort")
	}

	// ClusterIP -> ExternalName releases the IP; ExternalName -> ClusterIP allocates one.
	ips0, _ := s.alloc.usedCounts()
	ext := toCIP.DeepCopy()
	ext.Spec.Type = corev1.ServiceTypeExternalName
	ext.Spec.ExternalName = "example.com"
	if err := svcUpdate(s, ext, toCIP); err != nil {
		t.Fatal(err)
	}
	if ext.Spec.ClusterIP != "" || ext.Spec.IPFamilies != nil {
		t.Errorf("ExternalName kept %q %v", ext.Spec.ClusterIP, ext.Spec.IPFamilies)
	}
	if ips, _ := s.alloc.usedCounts(); ips != ips0-1 {
		t.Errorf("IP not released: %d -> %d", ips0, ips)
	}
	cip := ext.DeepCopy()
	cip.Spec.Type = corev1.ServiceTypeClusterIP
	cip.Spec.ExternalName = ""
	if err := svcUpdate(s, cip, ext); err != nil {
		t.Fatal(err)
	}
	if cip.Spec.ClusterIP == "" || len(cip.Spec.IPFamilies) != 1 {
		t.Errorf("ExternalName -> ClusterIP: %q %v", cip.Spec.ClusterIP, cip.Spec.IPFamilies)
	}

	// Changing a node port allocates the new one and frees the old on commit.
	n1 := svcMustCreate(t, s, svcFixture("n1", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: 30100}))
	n2 := n1.DeepCopy()
	n2.Spec.Ports[0].NodePort = 30101
	if err := svcUpdate(s, n2, n1); err != nil {
		t.Fatal(err)
	}
	svcMustCreate(t, s, svcFixture("n3", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: 30100}))
}

func TestServiceInit(t *testing.T) {
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	a := svcMustCreate(t, s, svcFixture("a", corev1.ServiceTypeNodePort, corev1.ServicePort{Name: "x", Port: 53}, corev1.ServicePort{Name: "y", Port: 53, Protocol: "UDP"}))
	lb := svcFixture("lb", corev1.ServiceTypeLoadBalancer)
	lb.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	svcMustCreate(t, s, lb)
	h := svcFixture("h", corev1.ServiceTypeClusterIP)
	h.Spec.ClusterIP = "None"
	svcMustCreate(t, s, h)
	wantIPs, wantPorts := s.alloc.usedCounts()

	// A restarted server: a fresh strategy rebuilt from the stored objects.
	r := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	if err := r.Init(context.Background(), []runtime.Object{a, lb, h}); err != nil {
		t.Fatal(err)
	}
	if ips, ports := r.alloc.usedCounts(); ips != wantIPs || ports != wantPorts {
		t.Errorf("rebuilt %d IPs, %d ports; want %d, %d", ips, ports, wantIPs, wantPorts)
	}
	c := svcFixture("c", corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: a.Spec.Ports[0].NodePort})
	c.Spec.ClusterIP = a.Spec.ClusterIP
	if _, err := svcCreate(r, c, false); err == nil {
		t.Error("held IP/port handed out again after Init")
	}
}

func BenchmarkServiceAllocate(b *testing.B) {
	r, _ := services(Config{ServiceCIDR: netip.MustParsePrefix("10.43.0.0/16"), NodePortFirst: 30000, NodePortLast: 32767})
	s := r.Strategy.(*serviceStrategy)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		svc := svcFixture("b", corev1.ServiceTypeNodePort)
		if _, err := svcCreate(s, svc, false); err != nil {
			b.Fatal(err)
		}
		s.AfterDelete(context.Background(), svc)
	}
}

func TestServiceIPv6Range(t *testing.T) {
	s := svcTestStrategy(t, "fd00:10:43::/112", 30000, 32767)
	svc := svcMustCreate(t, s, svcFixture("v6", corev1.ServiceTypeClusterIP))
	ip := netip.MustParseAddr(svc.Spec.ClusterIP)
	if !netip.MustParsePrefix("fd00:10:43::/112").Contains(ip) || svc.Spec.ClusterIP == "fd00:10:43::" || svc.Spec.ClusterIP == "fd00:10:43::1" {
		t.Errorf("allocated %s", svc.Spec.ClusterIP)
	}
	if len(svc.Spec.IPFamilies) != 1 || svc.Spec.IPFamilies[0] != corev1.IPv6Protocol {
		t.Errorf("families = %v", svc.Spec.IPFamilies)
	}
	req := svcFixture("req", corev1.ServiceTypeClusterIP)
	req.Spec.ClusterIP = "fd00:10:43::ff"
	svcMustCreate(t, s, req)
	v4 := svcFixture("v4", corev1.ServiceTypeClusterIP)
	v4.Spec.ClusterIP = "10.43.0.9"
	_, err := svcCreate(s, v4, false)
	svcWantErr(t, err, 422, `Service "v4" is invalid: spec.clusterIPs[0]: Invalid value: ["10.43.0.9"]: IPv4 is not configured on this cluster`)
}

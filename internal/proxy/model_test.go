package proxy

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

type (
	corev1Service  = corev1.Service
	discoverySlice = discoveryv1.EndpointSlice
)

func port(name string, p, nodePort int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, NodePort: nodePort, Protocol: corev1.ProtocolTCP}
}

func svc(ns, name, vip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: vip, ClusterIPs: []string{vip}, Ports: ports},
	}
}

func nodePortSvc(ns, name, vip string, ports ...corev1.ServicePort) *corev1.Service {
	s := svc(ns, name, vip, ports...)
	s.Spec.Type = corev1.ServiceTypeNodePort
	return s
}

func ep(ip string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
}

func slice(ns, svcName, portName string, p int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	proto := corev1.ProtocolTCP
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svcName + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &p, Protocol: &proto}},
		Endpoints:   eps,
	}
}

func mustParse(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestBuildGolden(t *testing.T) {
	headless := svc("default", "headless", corev1.ClusterIPNone, port("http", 80, 0))
	lb := svc("default", "lb", "203.0.113.20", port("https", 443, 30443))
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	lb.Spec.ExternalIPs = []string{"198.51.100.50"}
	lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.60"}}
	udp := svc("kube-system", "dns", "203.0.113.53", corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})
	udpProto := corev1.ProtocolUDP
	dnsSlice := slice("kube-system", "dns", "dns", 53, ep("10.244.0.5", true))
	dnsSlice.Ports[0].Protocol = &udpProto

	sticky := svc("default", "sticky", "203.0.113.30", port("http", 80, 0))
	sticky.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	timeout := int32(600)
	sticky.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	etpLocal := nodePortSvc("default", "etp-local", "203.0.113.40", port("http", 80, 30090))
	etpLocal.Spec.ExternalIPs = []string{"198.51.100.70"}
	etpLocal.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	etpNone := svc("default", "etp-nolocal", "203.0.113.44", port("http", 80, 30091))
	etpNone.Spec.Type = corev1.ServiceTypeLoadBalancer
	etpNone.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.71"}}
	etpNone.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	local := corev1.ServiceInternalTrafficPolicyLocal
	itpLocal := svc("default", "itp-local", "203.0.113.41", port("http", 80, 0))
	itpLocal.Spec.InternalTrafficPolicy = &local
	itpNone := svc("default", "itp-nolocal", "203.0.113.45", port("http", 80, 0))
	itpNone.Spec.InternalTrafficPolicy = &local
	ignored := svc("default", "ignored", "203.0.113.46", port("http", 80, 0))
	ignored.Labels = map[string]string{LabelServiceProxyName: "other"}
	opts := Options{NodeName: "n1", ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}

	svcs := []*corev1.Service{
		svc("default", "web", "203.0.113.10", port("http", 80, 0)),
		svc("default", "empty", "203.0.113.11", port("http", 80, 0)),
		nodePortSvc("default", "np", "203.0.113.13", port("http", 80, 30080)),
		nodePortSvc("default", "np-empty", "203.0.113.14", port("http", 80, 30081)),
		headless, lb, udp, sticky, etpLocal, etpNone, itpLocal, itpNone, ignored,
	}
	slices := []*discoveryv1.EndpointSlice{
		slice("default", "web", "http", 8080, ep("10.244.2.2", true), ep("10.244.3.2", true), ep("10.244.4.2", false)),
		slice("default", "np", "http", 8080, ep("10.244.2.2", true)),
		slice("default", "headless", "http", 8080, ep("10.244.2.2", true)),
		slice("default", "lb", "https", 8443, ep("10.244.3.2", true)),
		dnsSlice,
		slice("default", "sticky", "http", 8080, ep("10.244.2.2", true), ep("10.244.3.2", true)),
		slice("default", "etp-local", "http", 8080, epOn("10.244.2.2", "n1", true), epOn("10.244.3.2", "n2", true)),
		slice("default", "etp-nolocal", "http", 8080, epOn("10.244.3.2", "n2", true)),
		slice("default", "itp-local", "http", 8080, epOn("10.244.2.2", "n1", true), epOn("10.244.3.2", "n2", true)),
		slice("default", "itp-nolocal", "http", 8080, epOn("10.244.3.2", "n2", true)),
		slice("default", "ignored", "http", 8080, ep("10.244.2.2", true)),
	}
	rs := Build(svcs, slices, opts)
	got := StaticString(opts) + rs.String()
	path := filepath.Join("testdata", "ruleset.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("ruleset differs from %s (-update to accept):\n%s", path, got)
	}
	if strings.Contains(got, "headless") {
		t.Errorf("headless service programmed")
	}
	if strings.Contains(got, "10.244.4.2") {
		t.Errorf("not-ready endpoint programmed")
	}
	if strings.Contains(got, "ignored") || strings.Contains(got, "203.0.113.46") {
		t.Errorf("service of another proxy programmed")
	}
	for i := 0; i < 5; i++ { // map order must not leak into the text
		if again := StaticString(opts) + Build(svcs, slices, opts).String(); again != got {
			t.Fatalf("a second build renders differently")
		}
	}
}

func TestBuildNames(t *testing.T) {
	a := ChainName("service", "default/web/tcp/80")
	if a != ChainName("service", "default/web/tcp/80") || a == ChainName("service", "default/web/tcp/81") {
		t.Fatal("chain names not stable/distinct")
	}
	if !strings.HasPrefix(a, "service-") || !strings.HasSuffix(a, "-default/web/tcp/80") {
		t.Fatalf("chain name %q", a)
	}
}

func TestMapKeyBytes(t *testing.T) {
	got := mapKeyBytes(MapKey{Addr: mustParse("203.0.113.10"), Proto: ProtoTCP, Port: 80})
	want := []byte{203, 0, 113, 10, 6, 0, 0, 0, 0, 80, 0, 0}
	if string(got) != string(want) {
		t.Fatalf("key %v, want %v", got, want)
	}
	if n := len(mapKeyBytes(MapKey{Proto: ProtoUDP, Port: 30080})); n != int(keyNodePort.Bytes) {
		t.Fatalf("node port key %d bytes, want %d", n, keyNodePort.Bytes)
	}
}

func epOn(ip, node string, ready bool) discoveryv1.Endpoint {
	e := ep(ip, ready)
	e.NodeName = &node
	return e
}

func chainHas(t *testing.T, rs *Ruleset, chain string, want ...string) {
	t.Helper()
	c, ok := rs.Chains[chain]
	if !ok {
		t.Fatalf("no chain %s in\n%s", chain, rs)
	}
	var got []string
	for _, r := range c.Rules {
		got = append(got, r.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("chain %s:\n%s\nwant\n%s", chain, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBuildAffinity(t *testing.T) {
	s := svc("default", "sticky", "203.0.113.30", port("http", 80, 0))
	s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	rs := Build([]*corev1.Service{s}, []*discoveryv1.EndpointSlice{
		slice("default", "sticky", "http", 8080, ep("10.244.2.2", true), ep("10.244.3.2", true)),
	}, Options{})
	id := "default/sticky/tcp/80"
	a1, a2 := ChainName("affinity", id+"__10.244.2.2/8080"), ChainName("affinity", id+"__10.244.3.2/8080")
	e1, e2 := ChainName("endpoint", id+"__10.244.2.2/8080"), ChainName("endpoint", id+"__10.244.3.2/8080")
	if rs.Sets[a1] != 10800 || rs.Sets[a2] != 10800 || len(rs.Sets) != 2 {
		t.Fatalf("sets %v, want two with the default timeout 10800", rs.Sets)
	}
	chainHas(t, rs, ChainName("service", id),
		"ip saddr @"+a1+" goto "+e1,
		"ip saddr @"+a2+" goto "+e2,
		"numgen random mod 2 == 0 goto "+e1, "goto "+e2)
	chainHas(t, rs, e1, "ip saddr 10.244.2.2 jump mark-for-masquerade", "update @"+a1+" { ip saddr }", "meta l4proto tcp dnat to 10.244.2.2:8080")

	timeout := int32(60)
	s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	rs = Build([]*corev1.Service{s}, []*discoveryv1.EndpointSlice{slice("default", "sticky", "http", 8080, ep("10.244.2.2", true))}, Options{})
	if len(rs.Sets) != 1 || rs.Sets[a1] != 60 {
		t.Fatalf("sets %v, want %s with 60 s", rs.Sets, a1)
	}
}

func TestBuildExternalTrafficPolicyLocal(t *testing.T) {
	opts := Options{NodeName: "n1", ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}
	mk := func() *corev1.Service {
		s := nodePortSvc("default", "loc", "203.0.113.40", port("http", 80, 30090))
		s.Spec.ExternalIPs = []string{"198.51.100.70"}
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		return s
	}
	id := "default/loc/tcp/80"
	svcC, locC, extC := ChainName("service", id), ChainName("local", id), ChainName("external", id)
	e1, e2 := ChainName("endpoint", id+"__10.244.2.2/8080"), ChainName("endpoint", id+"__10.244.3.2/8080")

	rs := Build([]*corev1.Service{mk()}, []*discoveryv1.EndpointSlice{
		slice("default", "loc", "http", 8080, epOn("10.244.2.2", "n1", true), epOn("10.244.3.2", "n2", true)),
	}, opts)
	ext := MapKey{Addr: mustParse("198.51.100.70"), Proto: ProtoTCP, Port: 80}
	vip := MapKey{Addr: mustParse("203.0.113.40"), Proto: ProtoTCP, Port: 80}
	np := MapKey{Proto: ProtoTCP, Port: 30090}
	if rs.Maps[MapServiceIPs][vip] != svcC || rs.Maps[MapServiceIPs][ext] != extC || rs.Maps[MapServiceNodePorts][np] != extC {
		t.Fatalf("maps:\n%s", rs)
	}
	if len(rs.Maps[MapNoEndpointServices])+len(rs.Maps[MapNoEndpointNodePorts]) != 0 {
		t.Fatalf("no-endpoint elements with a local endpoint:\n%s", rs)
	}
	chainHas(t, rs, extC,
		"ip saddr 10.244.0.0/16 goto "+svcC,
		"fib saddr type local jump mark-for-masquerade",
		"fib saddr type local goto "+svcC,
		"goto "+locC)
	chainHas(t, rs, locC, "goto "+e1)
	chainHas(t, rs, svcC,
		"ip daddr 203.0.113.40 meta l4proto tcp th dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
		"numgen random mod 2 == 0 goto "+e1, "goto "+e2)

	// No local endpoint: external traffic is dropped (what the short-circuit
	// rules do not catch), the ClusterIP still works.
	rs = Build([]*corev1.Service{mk()}, []*discoveryv1.EndpointSlice{
		slice("default", "loc", "http", 8080, epOn("10.244.3.2", "n2", true)),
	}, opts)
	if rs.Maps[MapNoEndpointServices][ext] != VerdictDrop || rs.Maps[MapNoEndpointNodePorts][np] != VerdictDrop {
		t.Fatalf("want drop for external traffic:\n%s", rs)
	}
	if rs.Maps[MapServiceIPs][ext] != extC || rs.Maps[MapServiceNodePorts][np] != extC || rs.Maps[MapServiceIPs][vip] != svcC {
		t.Fatalf("want the external chain still (short-circuit) and the VIP:\n%s", rs)
	}
	chainHas(t, rs, extC, "ip saddr 10.244.0.0/16 goto "+svcC, "fib saddr type local jump mark-for-masquerade", "fib saddr type local goto "+svcC)
	if _, ok := rs.Chains[locC]; ok {
		t.Errorf("local chain without local endpoints")
	}
	if strings.Contains(rs.String(), "drop") && rs.Maps[MapNoEndpointServices][vip] != "" {
		t.Errorf("VIP in no-endpoint map")
	}
}

func TestBuildInternalTrafficPolicyLocal(t *testing.T) {
	local := corev1.ServiceInternalTrafficPolicyLocal
	s := svc("default", "itp", "203.0.113.41", port("http", 80, 0))
	s.Spec.InternalTrafficPolicy = &local
	id := "default/itp/tcp/80"
	vip := MapKey{Addr: mustParse("203.0.113.41"), Proto: ProtoTCP, Port: 80}
	rs := Build([]*corev1.Service{s}, []*discoveryv1.EndpointSlice{
		slice("default", "itp", "http", 8080, epOn("10.244.2.2", "n1", true), epOn("10.244.3.2", "n2", true)),
	}, Options{NodeName: "n1"})
	if rs.Maps[MapServiceIPs][vip] != ChainName("local", id) {
		t.Fatalf("VIP not to the local chain:\n%s", rs)
	}
	if _, ok := rs.Chains[ChainName("service", id)]; ok {
		t.Errorf("cluster chain for an internal-only Local service")
	}
	if _, ok := rs.Chains[ChainName("endpoint", id+"__10.244.3.2/8080")]; ok {
		t.Errorf("remote endpoint chain programmed")
	}
	// None local: dropped (there are endpoints elsewhere); none at all: rejected.
	rs = Build([]*corev1.Service{s}, []*discoveryv1.EndpointSlice{
		slice("default", "itp", "http", 8080, epOn("10.244.3.2", "n2", true)),
	}, Options{NodeName: "n1"})
	if rs.Maps[MapNoEndpointServices][vip] != VerdictDrop || len(rs.Chains) != 0 {
		t.Fatalf("want drop, no chains:\n%s", rs)
	}
	rs = Build([]*corev1.Service{s}, nil, Options{NodeName: "n1"})
	if rs.Maps[MapNoEndpointServices][vip] != chainRejectName {
		t.Fatalf("want reject:\n%s", rs)
	}
}

func TestBuildEndpointConditions(t *testing.T) {
	yes, no := true, false
	nilReady := discoveryv1.Endpoint{Addresses: []string{"10.244.2.2"}}
	term := discoveryv1.Endpoint{Addresses: []string{"10.244.3.2"},
		Conditions: discoveryv1.EndpointConditions{Ready: &no, Serving: &yes, Terminating: &yes}}
	termNotServing := discoveryv1.Endpoint{Addresses: []string{"10.244.4.2"},
		Conditions: discoveryv1.EndpointConditions{Ready: &no, Serving: &no, Terminating: &yes}}
	s := svc("default", "c", "203.0.113.42", port("http", 80, 0))
	id := "default/c/tcp/80"
	has := func(rs *Ruleset, ip string) bool {
		_, ok := rs.Chains[ChainName("endpoint", id+"__"+ip+"/8080")]
		return ok
	}
	rs := Build([]*corev1.Service{s}, []*discoveryv1.EndpointSlice{slice("default", "c", "http", 8080, nilReady, term, termNotServing)}, Options{})
	if !has(rs, "10.244.2.2") || has(rs, "10.244.3.2") || has(rs, "10.244.4.2") {
		t.Fatalf("ready=nil counts as ready; terminating not used while one is ready:\n%s", rs)
	}
	rs = Build([]*corev1.Service{s}, []*discoveryv1.EndpointSlice{slice("default", "c", "http", 8080, term, termNotServing)}, Options{})
	if !has(rs, "10.244.3.2") || has(rs, "10.244.4.2") {
		t.Fatalf("serving+terminating is the fallback, not-serving never:\n%s", rs)
	}
}

func TestBuildIgnoresOtherProxies(t *testing.T) {
	s := svc("default", "other-proxy", "203.0.113.43", port("http", 80, 0))
	s.Labels = map[string]string{LabelServiceProxyName: "someone-else"}
	rs := Build([]*corev1.Service{s}, []*discoveryv1.EndpointSlice{slice("default", "other-proxy", "http", 8080, ep("10.244.2.2", true))}, Options{})
	if len(rs.Chains) != 0 || len(rs.Maps[MapServiceIPs]) != 0 || len(rs.Maps[MapNoEndpointServices]) != 0 {
		t.Fatalf("service of another proxy programmed:\n%s", rs)
	}
}

func TestBuildLocalTerminatingFallback(t *testing.T) {
	yes, no := true, false
	n1 := "n1"
	localTerm := discoveryv1.Endpoint{Addresses: []string{"10.244.2.2"}, NodeName: &n1,
		Conditions: discoveryv1.EndpointConditions{Ready: &no, Serving: &yes, Terminating: &yes}}
	s := nodePortSvc("default", "lt", "203.0.113.47", port("http", 80, 30092))
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	rs := Build([]*corev1.Service{s}, []*discoveryv1.EndpointSlice{
		slice("default", "lt", "http", 8080, localTerm, epOn("10.244.3.2", "n2", true)),
	}, Options{NodeName: "n1"})
	id := "default/lt/tcp/80"
	e1, e2 := ChainName("endpoint", id+"__10.244.2.2/8080"), ChainName("endpoint", id+"__10.244.3.2/8080")
	chainHas(t, rs, ChainName("local", id), "goto "+e1)
	chainHas(t, rs, ChainName("service", id), "goto "+e2)
	if _, ok := rs.Chains[e1]; !ok {
		t.Fatalf("terminating local endpoint has no chain:\n%s", rs)
	}
	if _, ok := rs.Chains[e2]; !ok {
		t.Fatalf("ready remote endpoint has no chain:\n%s", rs)
	}
}

func TestBuildIPv6ClusterCIDRIgnored(t *testing.T) {
	opts := Options{ClusterCIDR: netip.MustParsePrefix("fd00::/48")}
	rs := Build([]*corev1.Service{svc("default", "web", "203.0.113.10", port("http", 80, 0))},
		[]*discoveryv1.EndpointSlice{slice("default", "web", "http", 8080, ep("10.244.2.2", true))}, opts)
	if strings.Contains(rs.String()+StaticString(opts), "fd00") {
		t.Fatalf("IPv6 cluster CIDR used in an IPv4 table")
	}
}

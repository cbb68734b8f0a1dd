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

	rs := Build(
		[]*corev1.Service{
			svc("default", "web", "203.0.113.10", port("http", 80, 0)),
			svc("default", "empty", "203.0.113.11", port("http", 80, 0)),
			nodePortSvc("default", "np", "203.0.113.13", port("http", 80, 30080)),
			nodePortSvc("default", "np-empty", "203.0.113.14", port("http", 80, 30081)),
			headless, lb, udp,
		},
		[]*discoveryv1.EndpointSlice{
			slice("default", "web", "http", 8080, ep("10.244.2.2", true), ep("10.244.3.2", true), ep("10.244.4.2", false)),
			slice("default", "np", "http", 8080, ep("10.244.2.2", true)),
			slice("default", "headless", "http", 8080, ep("10.244.2.2", true)),
			slice("default", "lb", "https", 8443, ep("10.244.3.2", true)),
			dnsSlice,
		}, Options{})
	got := rs.String()
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

package registry

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func epFixture(subsets ...corev1.EndpointSubset) *corev1.Endpoints {
	return &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", ResourceVersion: "1"}, Subsets: subsets}
}

func epAddrs(ips ...string) []corev1.EndpointAddress {
	out := make([]corev1.EndpointAddress, len(ips))
	for i, ip := range ips {
		out[i] = corev1.EndpointAddress{IP: ip}
	}
	return out
}

func TestEndpointsValidation(t *testing.T) {
	st := endpoints().Strategy
	tests := []struct {
		name string
		ep   *corev1.Endpoints
		want []string
	}{
		{"valid", epFixture(corev1.EndpointSubset{Addresses: epAddrs("10.42.0.5"), Ports: []corev1.EndpointPort{{Port: 80}}}), nil},
		{"no addresses", epFixture(corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Port: 80}}}),
			[]string{"subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"}},
		{"bad ip", epFixture(corev1.EndpointSubset{Addresses: epAddrs("10.42.0")}), []string{
			`subsets[0].addresses[0].ip: Invalid value: "10.42.0": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`,
			`subsets[0].addresses[0].ip: Invalid value: "10.42.0": must be a valid IP address`}},
		{"loopback", epFixture(corev1.EndpointSubset{NotReadyAddresses: epAddrs("127.0.0.1")}),
			[]string{`subsets[0].notReadyAddresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)`}},
		{"two ports need names", epFixture(corev1.EndpointSubset{Addresses: epAddrs("10.42.0.5"),
			Ports: []corev1.EndpointPort{{Name: "a", Port: 80}, {Port: 0}}}), []string{
			"subsets[0].ports[1].name: Required value",
			"subsets[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive"}},
		{"bad hostname", epFixture(corev1.EndpointSubset{Addresses: []corev1.EndpointAddress{{IP: "10.42.0.5", Hostname: "A_B"}}}),
			[]string{`subsets[0].addresses[0].hostname: Invalid value: "A_B": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st.Default(tt.ep)
			st.PrepareForCreate(context.Background(), tt.ep)
			got := svcErrStrings(st.Validate(context.Background(), tt.ep))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	ep := epFixture(corev1.EndpointSubset{Addresses: epAddrs("10.42.0.5"), Ports: []corev1.EndpointPort{{Port: 80}}})
	st.Default(ep)
	if ep.Subsets[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("protocol not defaulted")
	}
}

func TestEndpointsTable(t *testing.T) {
	st := endpoints().Strategy
	now := time.Now()
	tests := []struct {
		name string
		ep   *corev1.Endpoints
		want string
	}{
		{"none", epFixture(), "<none>"},
		{"two", epFixture(corev1.EndpointSubset{Addresses: epAddrs("10.42.0.5", "10.42.0.6"), Ports: []corev1.EndpointPort{{Port: 80}}}),
			"10.42.0.5:80,10.42.0.6:80"},
		{"more", epFixture(corev1.EndpointSubset{Addresses: epAddrs("10.42.0.5", "10.42.0.6"), Ports: []corev1.EndpointPort{{Name: "a", Port: 80}, {Name: "b", Port: 443}}}),
			"10.42.0.5:80,10.42.0.6:80,10.42.0.5:443 + 1 more..."},
		{"headless no ports", epFixture(corev1.EndpointSubset{Addresses: epAddrs("10.42.0.5")}), "10.42.0.5"},
		{"ipv6", epFixture(corev1.EndpointSubset{Addresses: epAddrs("fd00::5"), Ports: []corev1.EndpointPort{{Port: 80}}}), "[fd00::5]:80"},
		{"only not ready", epFixture(corev1.EndpointSubset{NotReadyAddresses: epAddrs("10.42.0.5"), Ports: []corev1.EndpointPort{{Port: 80}}}), "<none>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.ep.CreationTimestamp = metav1.NewTime(now.Add(-3 * time.Minute))
			row := st.TableRow(tt.ep, now)
			if row[0] != "web" || row[1] != tt.want || row[2] != "3m" {
				t.Errorf("row = %q, want endpoints %q", row, tt.want)
			}
		})
	}
}

func epsFixture(addrType discoveryv1.AddressType, addrs ...string) *discoveryv1.EndpointSlice {
	port, name := int32(80), "http"
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "default", ResourceVersion: "1"},
		AddressType: addrType,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: addrs}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
}

func TestEndpointSliceValidation(t *testing.T) {
	st := endpointSlices().Strategy
	ctx := context.Background()
	tests := []struct {
		name string
		eps  *discoveryv1.EndpointSlice
		want []string
	}{
		{"valid", epsFixture(discoveryv1.AddressTypeIPv4, "10.42.0.5"), nil},
		{"addressType required", epsFixture("", "10.42.0.5"), []string{"addressType: Required value"}},
		{"addressType unsupported", epsFixture("IP", "10.42.0.5"),
			[]string{`addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6"`}},
		{"v6 in v4 slice", epsFixture(discoveryv1.AddressTypeIPv4, "fd00::1"),
			[]string{`endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address`}},
		{"v6", epsFixture(discoveryv1.AddressTypeIPv6, "fd00::1"), nil},
		{"fqdn", epsFixture(discoveryv1.AddressTypeFQDN, "db.example.com"), nil},
		{"no addresses", epsFixture(discoveryv1.AddressTypeIPv4),
			[]string{"endpoints[0].addresses: Required value: must contain at least 1 address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st.Default(tt.eps)
			st.PrepareForCreate(ctx, tt.eps)
			got := svcErrStrings(st.Validate(ctx, tt.eps))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}

	old := epsFixture(discoveryv1.AddressTypeIPv4, "10.42.0.5")
	st.Default(old)
	st.PrepareForCreate(ctx, old)
	if old.Generation != 1 || *old.Ports[0].Protocol != "TCP" {
		t.Errorf("create: generation %d protocol %v", old.Generation, *old.Ports[0].Protocol)
	}
	upd := old.DeepCopy()
	upd.AddressType = discoveryv1.AddressTypeIPv6
	upd.Endpoints[0].Addresses = []string{"fd00::5"}
	st.PrepareForUpdate(ctx, upd, old)
	got := svcErrStrings(st.ValidateUpdate(ctx, upd, old))
	if len(got) != 1 || got[0] != `addressType: Invalid value: "IPv6": field is immutable` {
		t.Errorf("update errors = %q", got)
	}
	if upd.Generation != 2 {
		t.Errorf("generation = %d, want 2", upd.Generation)
	}
	same := old.DeepCopy()
	same.Annotations = map[string]string{"a": "b"}
	st.PrepareForUpdate(ctx, same, old)
	if same.Generation != 1 {
		t.Errorf("annotation change bumped generation to %d", same.Generation)
	}
}

func TestEndpointSliceTable(t *testing.T) {
	st := endpointSlices().Strategy
	eps := epsFixture(discoveryv1.AddressTypeIPv4, "10.42.0.5", "10.42.0.6")
	eps.Endpoints = append(eps.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.42.0.7", "10.42.0.8"}})
	row := st.TableRow(eps, time.Now())
	want := []interface{}{"web-abc", "IPv4", "80", "10.42.0.5,10.42.0.6,10.42.0.7 + 1 more..."}
	for i, w := range want {
		if row[i] != w {
			t.Errorf("cell %d = %q, want %q", i, row[i], w)
		}
	}
	empty := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "e"}, AddressType: discoveryv1.AddressTypeIPv4}
	if row := st.TableRow(empty, time.Now()); row[2] != "<unset>" || row[3] != "<unset>" {
		t.Errorf("empty row = %q", row)
	}
	var ports []discoveryv1.EndpointPort
	for i := 0; i < 5; i++ {
		p := int32(8000 + i)
		ports = append(ports, discoveryv1.EndpointPort{Port: &p})
	}
	if got := epsFormatPorts(ports); got != "8000,8001,8002 + 2 more..." {
		t.Errorf("ports = %q", got)
	}
	if got := fmt.Sprint(len(st.TableColumns())); got != "5" {
		t.Errorf("columns = %s", got)
	}
}

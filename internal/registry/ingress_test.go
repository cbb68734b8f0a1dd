package registry

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ingFixture(rules ...networkingv1.IngressRule) *networkingv1.Ingress {
	return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", ResourceVersion: "1"},
		Spec: networkingv1.IngressSpec{Rules: rules}}
}

func ingRule(host, path string, pt *networkingv1.PathType, backend networkingv1.IngressBackend) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{Path: path, PathType: pt, Backend: backend}}}}}
}

func ingSvcBackend(name string, port int32) networkingv1.IngressBackend {
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Number: port}}}
}

func TestIngressValidation(t *testing.T) {
	st := ingresses().Strategy
	ctx := context.Background()
	prefix, exact, bogus := networkingv1.PathTypePrefix, networkingv1.PathTypeExact, networkingv1.PathType("Regex")
	tests := []struct {
		name string
		ing  *networkingv1.Ingress
		want []string
	}{
		{"valid", ingFixture(ingRule("foo.example.com", "/", &prefix, ingSvcBackend("web", 80))), nil},
		{"wildcard host", ingFixture(ingRule("*.example.com", "/", &prefix, ingSvcBackend("web", 80))), nil},
		{"nothing", ingFixture(), []string{"spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"}},
		{"pathType required", ingFixture(ingRule("", "/", nil, ingSvcBackend("web", 80))),
			[]string{"spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"}},
		{"relative path", ingFixture(ingRule("", "api", &exact, ingSvcBackend("web", 80))),
			[]string{`spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path`}},
		{"bad path seq", ingFixture(ingRule("", "/a//b", &prefix, ingSvcBackend("web", 80))),
			[]string{`spec.rules[0].http.paths[0].path: Invalid value: "/a//b": must not contain '//'`}},
		{"bad pathType", ingFixture(ingRule("", "/", &bogus, ingSvcBackend("web", 80))),
			[]string{`spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: "Exact", "ImplementationSpecific", "Prefix"`}},
		{"ip host", ingFixture(ingRule("10.0.0.1", "/", &prefix, ingSvcBackend("web", 80))),
			[]string{`spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address`}},
		{"bad wildcard", ingFixture(ingRule("foo.*.com", "/", &prefix, ingSvcBackend("web", 80))),
			[]string{`spec.rules[0].host: Invalid value: "foo.*.com": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`}},
		{"backend port missing", ingFixture(ingRule("", "/", &prefix, ingSvcBackend("web", 0))),
			[]string{"spec.rules[0].http.paths[0].backend: Required value: port name or number is required"}},
		{"backend name missing", ingFixture(ingRule("", "/", &prefix, ingSvcBackend("", 80))),
			[]string{"spec.rules[0].http.paths[0].backend.service.name: Required value"}},
		{"no backend", ingFixture(ingRule("", "/", &prefix, networkingv1.IngressBackend{})),
			[]string{`spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is required`}},
		{"no paths", ingFixture(networkingv1.IngressRule{Host: "a.b", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}),
			[]string{"spec.rules[0].http.paths: Required value"}},
		{"tls host", func() *networkingv1.Ingress {
			ing := ingFixture(ingRule("", "/", &prefix, ingSvcBackend("web", 80)))
			ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"Bad_Host"}, SecretName: "tls"}}
			return ing
		}(), []string{`spec.tls[0].hosts[0]: Invalid value: "Bad_Host": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st.Default(tt.ing)
			st.PrepareForCreate(ctx, tt.ing)
			got := svcErrStrings(st.Validate(ctx, tt.ing))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestIngressGenerationAndStatus(t *testing.T) {
	st := ingresses().Strategy
	ctx := context.Background()
	prefix := networkingv1.PathTypePrefix
	ing := ingFixture(ingRule("a.example.com", "/", &prefix, ingSvcBackend("web", 80)))
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.1"}}
	st.PrepareForCreate(ctx, ing)
	if ing.Generation != 1 || len(ing.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("create: generation %d, status %+v", ing.Generation, ing.Status)
	}
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.1"}}
	upd := ing.DeepCopy()
	upd.Spec.Rules[0].Host = "b.example.com"
	upd.Status = networkingv1.IngressStatus{}
	st.PrepareForUpdate(ctx, upd, ing)
	if upd.Generation != 2 || len(upd.Status.LoadBalancer.Ingress) != 1 {
		t.Errorf("update: generation %d, status %+v", upd.Generation, upd.Status)
	}
	bad := ing.DeepCopy()
	bad.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{Hostname: "10.0.0.1"}}
	got := svcErrStrings(st.ValidateStatusUpdate(ctx, bad, ing))
	if len(got) != 1 || got[0] != `status.loadBalancer.ingress[0].hostname: Invalid value: "10.0.0.1": must be a DNS name, not an IP address` {
		t.Errorf("status errors = %q", got)
	}
}

func TestIngressTable(t *testing.T) {
	st := ingresses().Strategy
	prefix := networkingv1.PathTypePrefix
	class := "nginx"
	now := time.Now()
	ing := ingFixture(
		ingRule("a.example.com", "/", &prefix, ingSvcBackend("web", 80)),
		ingRule("b.example.com", "/", &prefix, ingSvcBackend("web", 80)),
		ingRule("c.example.com", "/", &prefix, ingSvcBackend("web", 80)),
		ingRule("d.example.com", "/", &prefix, ingSvcBackend("web", 80)))
	ing.CreationTimestamp = metav1.NewTime(now.Add(-2 * time.Hour))
	ing.Spec.IngressClassName = &class
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"a.example.com"}}}
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.2"}, {Hostname: "lb.example.com"}}
	want := []interface{}{"web", "nginx", "a.example.com,b.example.com,c.example.com + 1 more...", "192.0.2.2,lb.example.com", "80, 443", "120m"}
	row := st.TableRow(ing, now)
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d = %q, want %q", i, row[i], want[i])
		}
	}
	plain := ingFixture()
	plain.Spec.DefaultBackend = &networkingv1.IngressBackend{}
	row = st.TableRow(plain, now)
	if row[1] != "<none>" || row[2] != "*" || row[3] != "" || row[4] != "80" {
		t.Errorf("plain row = %q", row)
	}
}

func TestIngressClass(t *testing.T) {
	r := ingressClasses()
	st := r.Strategy
	ctx := context.Background()
	if r.Namespaced {
		t.Fatal("ingressclasses must be cluster-scoped")
	}
	ic := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx", ResourceVersion: "1"}}
	st.PrepareForCreate(ctx, ic)
	if got := svcErrStrings(st.Validate(ctx, ic)); len(got) != 1 || got[0] != "spec.controller: Required value" {
		t.Errorf("errors = %q", got)
	}
	ic.Spec.Controller = "k8s.io/ingress-nginx"
	if got := st.Validate(ctx, ic); len(got) != 0 {
		t.Errorf("errors = %v", got)
	}
	if ic.Generation != 1 {
		t.Errorf("generation = %d", ic.Generation)
	}
	upd := ic.DeepCopy()
	upd.Spec.Controller = "example.com/other"
	got := svcErrStrings(st.ValidateUpdate(ctx, upd, ic))
	if len(got) != 1 || got[0] != `spec.controller: Invalid value: "example.com/other": field is immutable` {
		t.Errorf("update errors = %q", got)
	}
	group := "example.com"
	ns := "default"
	scope := networkingv1.IngressClassParametersReferenceScopeCluster
	ic.Spec.Parameters = &networkingv1.IngressClassParametersReference{APIGroup: &group, Kind: "Params", Name: "p", Scope: &scope, Namespace: &ns}
	if got := svcErrStrings(st.Validate(ctx, ic)); len(got) != 1 || got[0] != "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'" {
		t.Errorf("parameters errors = %q", got)
	}
	row := st.TableRow(ic, time.Now())
	if row[1] != "k8s.io/ingress-nginx" || row[2] != "Params.example.com/p" {
		t.Errorf("row = %q", row)
	}
	ic.Spec.Parameters = nil
	if row := st.TableRow(ic, time.Now()); row[2] != "<none>" {
		t.Errorf("row = %q", row)
	}
}

func TestLease(t *testing.T) {
	st := leases().Strategy
	ctx := context.Background()
	zero, neg := int32(0), int32(-1)
	holder := "node-1"
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Namespace: "kube-node-lease", ResourceVersion: "1"},
		Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: &zero, LeaseTransitions: &neg, HolderIdentity: &holder}}
	st.PrepareForCreate(ctx, l)
	got := svcErrStrings(st.Validate(ctx, l))
	want := []string{
		"spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
		"spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n got %q\nwant %q", got, want)
	}
	now := time.Now()
	l.CreationTimestamp = metav1.NewTime(now.Add(-5 * time.Second))
	if row := st.TableRow(l, now); row[0] != "node-1" || row[1] != "node-1" || row[2] != "5s" {
		t.Errorf("row = %q", row)
	}
	l.Spec.HolderIdentity = nil
	if row := st.TableRow(l, now); row[1] != "" {
		t.Errorf("row = %q", row)
	}
}

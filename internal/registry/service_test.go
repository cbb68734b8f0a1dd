package registry

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// svcTestStrategy builds the Service strategy with a given CIDR and ports.
func svcTestStrategy(t *testing.T, cidr string, first, last int) *serviceStrategy {
	t.Helper()
	r, err := services(Config{ServiceCIDR: netip.MustParsePrefix(cidr), NodePortFirst: first, NodePortLast: last})
	if err != nil {
		t.Fatal(err)
	}
	return r.Strategy.(*serviceStrategy)
}

// svcFixture is a builder for test Services.
func svcFixture(name string, typ corev1.ServiceType, ports ...corev1.ServicePort) *corev1.Service {
	if len(ports) == 0 && typ != corev1.ServiceTypeExternalName {
		ports = []corev1.ServicePort{{Port: 80}}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", ResourceVersion: "1"},
		Spec:       corev1.ServiceSpec{Type: typ, Selector: map[string]string{"app": name}, Ports: ports},
	}
}

// svcCreate runs a create through the strategy as the apiserver does.
func svcCreate(s *serviceStrategy, svc *corev1.Service, dryRun bool) (func(), error) {
	ctx := context.Background()
	s.Default(svc)
	s.PrepareForCreate(ctx, svc)
	if errs := s.Validate(ctx, svc); len(errs) > 0 {
		return nil, apierrors.NewInvalid(svcGroupKind, svc.Name, errs)
	}
	return s.BeforeCreate(ctx, svc, dryRun)
}

// svcUpdate runs an update (validation, allocation, commit) and returns
// the stored result.
func svcUpdate(s *serviceStrategy, svc, old *corev1.Service) error {
	ctx := context.Background()
	s.Default(svc)
	s.PrepareForUpdate(ctx, svc, old)
	if errs := s.ValidateUpdate(ctx, svc, old); len(errs) > 0 {
		return apierrors.NewInvalid(svcGroupKind, svc.Name, errs)
	}
	commit, _, err := s.BeforeUpdate(ctx, svc, old, false)
	if err != nil {
		return err
	}
	commit()
	return nil
}

func svcErrStrings(errs field.ErrorList) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func TestServiceDefaults(t *testing.T) {
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	cluster := corev1.ServiceInternalTrafficPolicyCluster
	tests := []struct {
		name  string
		in    *corev1.Service
		check func(t *testing.T, svc *corev1.Service)
	}{
		{"clusterip", &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, func(t *testing.T, svc *corev1.Service) {
			if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.SessionAffinity != corev1.ServiceAffinityNone {
				t.Errorf("type/affinity = %q/%q", svc.Spec.Type, svc.Spec.SessionAffinity)
			}
			p := svc.Spec.Ports[0]
			if p.Protocol != corev1.ProtocolTCP || p.TargetPort != intstr.FromInt32(80) {
				t.Errorf("port = %+v", p)
			}
			if svc.Spec.InternalTrafficPolicy == nil || *svc.Spec.InternalTrafficPolicy != cluster {
				t.Errorf("internalTrafficPolicy = %v", svc.Spec.InternalTrafficPolicy)
			}
			if svc.Spec.ExternalTrafficPolicy != "" || svc.Spec.AllocateLoadBalancerNodePorts != nil {
				t.Errorf("unexpected externalTrafficPolicy/allocateLoadBalancerNodePorts")
			}
		}},
		{"named target port kept", &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}}}}, func(t *testing.T, svc *corev1.Service) {
			if svc.Spec.Ports[0].TargetPort != intstr.FromString("http") {
				t.Errorf("targetPort = %v", svc.Spec.Ports[0].TargetPort)
			}
		}},
		{"nodeport", &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort}}, func(t *testing.T, svc *corev1.Service) {
			if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
				t.Errorf("externalTrafficPolicy = %q", svc.Spec.ExternalTrafficPolicy)
			}
		}},
		{"loadbalancer", &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}, func(t *testing.T, svc *corev1.Service) {
			if svc.Spec.AllocateLoadBalancerNodePorts == nil || !*svc.Spec.AllocateLoadBalancerNodePorts {
				t.Errorf("allocateLoadBalancerNodePorts = %v", svc.Spec.AllocateLoadBalancerNodePorts)
			}
			if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
				t.Errorf("externalTrafficPolicy = %q", svc.Spec.ExternalTrafficPolicy)
			}
		}},
		{"externalname has no internalTrafficPolicy", &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName}}, func(t *testing.T, svc *corev1.Service) {
			if svc.Spec.InternalTrafficPolicy != nil {
				t.Errorf("internalTrafficPolicy = %v", *svc.Spec.InternalTrafficPolicy)
			}
		}},
		{"clientip timeout", &corev1.Service{Spec: corev1.ServiceSpec{SessionAffinity: corev1.ServiceAffinityClientIP}}, func(t *testing.T, svc *corev1.Service) {
			c := svc.Spec.SessionAffinityConfig
			if c == nil || c.ClientIP == nil || c.ClientIP.TimeoutSeconds == nil || *c.ClientIP.TimeoutSeconds != 10800 {
				t.Errorf("sessionAffinityConfig = %+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Default(tt.in)
			tt.check(t, tt.in)
		})
	}
}

func TestServiceValidation(t *testing.T) {
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	tests := []struct {
		name   string
		mutate func(*corev1.Service)
		want   []string // exact error strings, in order
	}{
		{"valid", func(*corev1.Service) {}, nil},
		{"no ports", func(s *corev1.Service) { s.Spec.Ports = nil }, []string{"spec.ports: Required value"}},
		{"headless without ports is fine", func(s *corev1.Service) { s.Spec.Ports = nil; s.Spec.ClusterIP = "None" }, nil},
		{"two ports need names", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Port: 443}}
		}, []string{"spec.ports[1].name: Required value"}},
		{"duplicate port name", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 80}, {Name: "a", Port: 443}}
		}, []string{`spec.ports[1].name: Duplicate value: "a"`}},
		{"port out of range", func(s *corev1.Service) {
			s.Spec.Ports[0].Port = 70000
			s.Spec.Ports[0].TargetPort = intstr.FromInt32(80)
		},
			[]string{"spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"}},
		{"bad protocol", func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "HTTP" },
			[]string{`spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"`}},
		{"nodePort on ClusterIP", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 },
			[]string{"spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"}},
		{"None on NodePort", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort; s.Spec.ClusterIP = "None" },
			[]string{`spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services`}},
		{"None on LoadBalancer", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer; s.Spec.ClusterIP = "None" },
			[]string{`spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for LoadBalancer services`}},
		{"externalName required", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName },
			[]string{"spec.externalName: Required value"}},
		{"externalName with trailing dot", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "example.com."
		}, nil},
		{"externalName with clusterIP", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "example.com"
			s.Spec.ClusterIP = "10.43.0.9"
		}, []string{"spec.clusterIPs: Forbidden: may not be set for ExternalName services"}},
		{"bad clusterIP", func(s *corev1.Service) { s.Spec.ClusterIP = "abc" },
			[]string{`spec.clusterIPs[0]: Invalid value: "abc": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`}},
		{"bad selector", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "-x"} },
			[]string{`spec.selector: Invalid value: "-x": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`}},
		{"bad type", func(s *corev1.Service) { s.Spec.Type = "Foo" },
			[]string{`spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"`}},
		{"duplicate port", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 80}, {Name: "b", Port: 80}}
		}, []string{`spec.ports[1]: Duplicate value: {"protocol":"TCP","port":80,"targetPort":0}`}},
		{"same port TCP and UDP", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 53}, {Name: "b", Port: 53, Protocol: corev1.ProtocolUDP}}
		}, nil},
		{"name not DNS-1035", func(s *corev1.Service) { s.Name = "1abc" },
			[]string{`metadata.name: Invalid value: "1abc": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`}},
		{"affinity timeout", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			t := int32(90000)
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &t}}
		}, []string{"spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 90000: must be greater than 0 and less than 86400"}},
		{"externalTrafficPolicy on ClusterIP", func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal },
			[]string{`spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services`}},
		{"loopback externalIP", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"127.0.0.1"} },
			[]string{`spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)`}},
		{"source ranges off LoadBalancer", func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/8"} },
			[]string{"spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := svcFixture("web", corev1.ServiceTypeClusterIP)
			tt.mutate(svc)
			s.Default(svc)
			s.PrepareForCreate(context.Background(), svc)
			got := svcErrStrings(s.Validate(context.Background(), svc))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestServiceUpdateValidation(t *testing.T) {
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	old := svcFixture("web", corev1.ServiceTypeClusterIP)
	old.Spec.ClusterIP = "10.43.0.8"
	if _, err := svcCreate(s, old, false); err != nil {
		t.Fatal(err)
	}

	t.Run("clusterIP may not change", func(t *testing.T) {
		svc := old.DeepCopy()
		svc.Spec.ClusterIP = "10.43.0.9"
		err := svcUpdate(s, svc, old)
		want := `Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ["10.43.0.9"]: may not change once set`
		if err == nil || err.Error() != want {
			t.Fatalf("err = %v\nwant %s", err, want)
		}
	})
	t.Run("resubmitting without allocated values keeps them", func(t *testing.T) {
		svc := svcFixture("web", corev1.ServiceTypeClusterIP)
		if err := svcUpdate(s, svc, old); err != nil {
			t.Fatal(err)
		}
		if svc.Spec.ClusterIP != "10.43.0.8" || len(svc.Spec.ClusterIPs) != 1 || svc.Spec.ClusterIPs[0] != "10.43.0.8" {
			t.Errorf("clusterIP = %q %v", svc.Spec.ClusterIP, svc.Spec.ClusterIPs)
		}
		if len(svc.Spec.IPFamilies) != 1 || svc.Spec.IPFamilyPolicy == nil || *svc.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack {
			t.Errorf("families = %v policy = %v", svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy)
		}
	})
	t.Run("status is kept on spec writes", func(t *testing.T) {
		o := old.DeepCopy()
		o.Spec.Type = corev1.ServiceTypeLoadBalancer
		o.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
		svc := o.DeepCopy()
		svc.Status = corev1.ServiceStatus{}
		s.PrepareForUpdate(context.Background(), svc, o)
		if len(svc.Status.LoadBalancer.Ingress) != 1 {
			t.Errorf("status lost: %+v", svc.Status)
		}
	})
	t.Run("status write validation", func(t *testing.T) {
		svc := old.DeepCopy()
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
		s.Default(svc)
		got := svcErrStrings(s.ValidateStatusUpdate(context.Background(), svc, old))
		want := "status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"
		if len(got) != 1 || got[0] != want {
			t.Errorf("got %q", got)
		}
	})
}

func TestServiceTable(t *testing.T) {
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	created := metav1.NewTime(now.Add(-90 * time.Second))
	mk := func(typ corev1.ServiceType, f func(*corev1.Service)) *corev1.Service {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", CreationTimestamp: created},
			Spec: corev1.ServiceSpec{Type: typ, ClusterIP: "10.43.12.7", ClusterIPs: []string{"10.43.12.7"},
				Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
		f(svc)
		return svc
	}
	tests := []struct {
		name string
		svc  *corev1.Service
		want []interface{}
	}{
		{"clusterip", mk(corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "web", "tier": "fe"} }),
			[]interface{}{"web", "ClusterIP", "10.43.12.7", "<none>", "80/TCP", "90s", "app=web,tier=fe"}},
		{"nodeport", mk(corev1.ServiceTypeNodePort, func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: "TCP"}, {Port: 443, Protocol: "TCP"}}
		}), []interface{}{"web", "NodePort", "10.43.12.7", "<none>", "80:30080/TCP,443/TCP", "90s", "<none>"}},
		{"loadbalancer pending", mk(corev1.ServiceTypeLoadBalancer, func(*corev1.Service) {}),
			[]interface{}{"web", "LoadBalancer", "10.43.12.7", "<pending>", "80/TCP", "90s", "<none>"}},
		{"loadbalancer with ingress and externalIPs", mk(corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.20"}, {Hostname: "lb.example.com"}, {IP: "192.0.2.10"}}
			s.Spec.ExternalIPs = []string{"198.51.100.1"}
		}), []interface{}{"web", "LoadBalancer", "10.43.12.7", "192.0.2.10,192.0.2.20,lb.example.com,198.51.100.1", "80/TCP", "90s", "<none>"}},
		{"externalname", mk(corev1.ServiceTypeExternalName, func(s *corev1.Service) {
			s.Spec.ExternalName = "db.example.com"
			s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.Ports = "", nil, nil
		}), []interface{}{"web", "ExternalName", "<none>", "db.example.com", "<none>", "90s", "<none>"}},
		{"headless", mk(corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }),
			[]interface{}{"web", "ClusterIP", "None", "<none>", "80/TCP", "90s", "<none>"}},
	}
	if cols := s.TableColumns(); len(cols) != 7 || cols[4].Name != "Port(s)" || cols[6].Priority != 1 {
		t.Fatalf("columns = %+v", cols)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.TableRow(tt.svc, now)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v", got)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("cell %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestServiceSelectableFields(t *testing.T) {
	s := svcTestStrategy(t, "10.43.0.0/16", 30000, 32767)
	svc := svcFixture("web", corev1.ServiceTypeNodePort)
	svc.Spec.ClusterIP = "10.43.0.10"
	f := s.SelectableFields(svc)
	if f["spec.clusterIP"] != "10.43.0.10" || f["spec.type"] != "NodePort" {
		t.Errorf("fields = %v", f)
	}
}

package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

const (
	svcAnnotationTopologyHints        = "service.kubernetes.io/topology-aware-hints"
	svcAnnotationTopologyMode         = "service.kubernetes.io/topology-mode"
	svcAnnotationLBSourceRanges       = "service.beta.kubernetes.io/load-balancer-source-ranges"
	svcDefaultClientIPAffinitySeconds = int32(10800)
	svcMaxClientIPAffinitySeconds     = 86400
	svcLoadBalancerWidth              = 16
)

var (
	netSupportedProtocols        = sets.New(corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)
	svcSupportedSessionAffinity  = sets.New(corev1.ServiceAffinityClientIP, corev1.ServiceAffinityNone)
	svcSupportedTypes            = sets.New(corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName)
	svcSupportedInternalTraffic  = sets.New(corev1.ServiceInternalTrafficPolicyCluster, corev1.ServiceInternalTrafficPolicyLocal)
	svcSupportedExternalTraffic  = sets.New(corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal)
	svcSupportedIPFamilies       = sets.New(corev1.IPv4Protocol, corev1.IPv6Protocol)
	svcSupportedIPFamilyPolicies = sets.New(corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack)
	svcSupportedLBIPModes        = sets.New(corev1.LoadBalancerIPModeVIP, corev1.LoadBalancerIPModeProxy)
	svcGroupKind                 = schema.GroupKind{Kind: "Service"}
)

func services(cfg Config) (*Resource, error) {
	alloc, err := newSvcAllocator(cfg.ServiceCIDR, cfg.NodePortFirst, cfg.NodePortLast)
	if err != nil {
		return nil, err
	}
	return &Resource{Version: "v1", Resource: "services", Singular: "service", Kind: "Service", ListKind: "ServiceList", Namespaced: true,
		ShortNames: []string{"svc"}, Categories: []string{"all"}, Subresources: []string{"status"},
		New:     func() runtime.Object { return &corev1.Service{} },
		NewList: func() runtime.Object { return &corev1.ServiceList{} },
		Strategy: &serviceStrategy{
			BaseStrategy: BaseStrategy{Namespaced: true, HasStatus: true, NameFn: apivalidation.NameIsDNS1035Label},
			alloc:        alloc,
		}}, nil
}

// serviceStrategy is the Service strategy. It owns the ClusterIP/NodePort
// allocator of the server.
type serviceStrategy struct {
	BaseStrategy
	alloc *svcAllocator
}

var (
	_ Strategy    = (*serviceStrategy)(nil)
	_ CreateHook  = (*serviceStrategy)(nil)
	_ UpdateHook  = (*serviceStrategy)(nil)
	_ DeleteHook  = (*serviceStrategy)(nil)
	_ Initializer = (*serviceStrategy)(nil)
)

// Default is SetDefaults_Service of pkg/apis/core/v1/defaults.go.
func (s *serviceStrategy) Default(obj runtime.Object) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	spec := &svc.Spec
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if spec.SessionAffinity == corev1.ServiceAffinityNone {
		spec.SessionAffinityConfig = nil
	}
	if spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		c := spec.SessionAffinityConfig
		if c == nil || c.ClientIP == nil || c.ClientIP.TimeoutSeconds == nil {
			t := svcDefaultClientIPAffinitySeconds
			spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &t}}
		}
	}
	if spec.Type == "" {
		spec.Type = corev1.ServiceTypeClusterIP
	}
	for i := range spec.Ports {
		sp := &spec.Ports[i]
		if sp.Protocol == "" {
			sp.Protocol = corev1.ProtocolTCP
		}
		if sp.TargetPort == intstr.FromInt32(0) || sp.TargetPort == intstr.FromString("") {
			sp.TargetPort = intstr.FromInt32(sp.Port)
		}
	}
	if svcExternallyAccessible(svc) && spec.ExternalTrafficPolicy == "" {
		spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if spec.InternalTrafficPolicy == nil {
		switch spec.Type {
		case corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeClusterIP:
			p := corev1.ServiceInternalTrafficPolicyCluster
			spec.InternalTrafficPolicy = &p
		}
	}
	if spec.Type == corev1.ServiceTypeLoadBalancer {
		if spec.AllocateLoadBalancerNodePorts == nil {
			t := true
			spec.AllocateLoadBalancerNodePorts = &t
		}
		vip := corev1.LoadBalancerIPModeVIP
		for i, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP != "" && ing.IPMode == nil {
				svc.Status.LoadBalancer.Ingress[i].IPMode = &vip
			}
		}
	}
}

func (s *serviceStrategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	svc := obj.(*corev1.Service)
	svc.Status = corev1.ServiceStatus{}
	svcNormalizeClusterIPs(svc, nil)
}

func (s *serviceStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	svc, oldSvc := obj.(*corev1.Service), old.(*corev1.Service)
	svc.Status = oldSvc.Status
	// As Kubernetes' beginUpdate: keep what was allocated when the client
	// resubmits without it, then keep clusterIP/clusterIPs in step.
	svcPatchAllocatedValues(svc, oldSvc)
	svcNormalizeClusterIPs(svc, oldSvc)
	svcDropTypeDependentFields(svc, oldSvc)
}

func (s *serviceStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return svcValidate(obj.(*corev1.Service))
}

func (s *serviceStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	svc, oldSvc := obj.(*corev1.Service), old.(*corev1.Service)
	allErrs := apivalidation.ValidateObjectMetaUpdate(&svc.ObjectMeta, &oldSvc.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, svcValidateUpgradeDowngradeClusterIPs(oldSvc, svc)...)
	allErrs = append(allErrs, svcValidateUpgradeDowngradeIPFamilies(oldSvc, svc)...)
	allErrs = append(allErrs, svcValidateLoadBalancerClass(oldSvc, svc)...)
	if svcNeedsHealthCheck(oldSvc) && svcNeedsHealthCheck(svc) && svc.Spec.HealthCheckNodePort != oldSvc.Spec.HealthCheckNodePort {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("spec", "healthCheckNodePort"), "field is immutable"))
	}
	return append(allErrs, svcValidate(svc)...)
}

func (s *serviceStrategy) ValidateStatusUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	svc, oldSvc := obj.(*corev1.Service), old.(*corev1.Service)
	allErrs := apivalidation.ValidateObjectMetaUpdate(&svc.ObjectMeta, &oldSvc.ObjectMeta, field.NewPath("metadata"))
	return append(allErrs, svcValidateLoadBalancerStatus(&svc.Status.LoadBalancer, field.NewPath("status", "loadBalancer"), &svc.Spec)...)
}

// SelectableFields: Kubernetes (1.30+) allows spec.clusterIP and spec.type.
func (s *serviceStrategy) SelectableFields(obj runtime.Object) fields.Set {
	svc := obj.(*corev1.Service)
	return fields.Set{"spec.clusterIP": svc.Spec.ClusterIP, "spec.type": string(svc.Spec.Type)}
}

func (s *serviceStrategy) TableColumns() []metav1.TableColumnDefinition {
	spec := corev1.ServiceSpec{}.SwaggerDoc()
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Type", Type: "string", Description: spec["type"]},
		{Name: "Cluster-IP", Type: "string", Description: spec["clusterIP"]},
		{Name: "External-IP", Type: "string", Description: spec["externalIPs"]},
		{Name: "Port(s)", Type: "string", Description: spec["ports"]},
		AgeColumn(),
		{Name: "Selector", Type: "string", Priority: 1, Description: spec["selector"]},
	}
}

// TableRow is printService of pkg/printers/internalversion (server-side
// tables are always generated wide).
func (s *serviceStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	svc := obj.(*corev1.Service)
	internalIP := "<none>"
	if len(svc.Spec.ClusterIPs) > 0 {
		internalIP = svc.Spec.ClusterIPs[0]
	}
	ports := svcPortString(svc.Spec.Ports)
	if ports == "" {
		ports = "<none>"
	}
	return []interface{}{svc.Name, string(svc.Spec.Type), internalIP, svcExternalIP(svc, true), ports,
		Age(svc.CreationTimestamp, now), labels.FormatLabels(svc.Spec.Selector)}
}

func svcPortString(ports []corev1.ServicePort) string {
	pieces := make([]string, len(ports))
	for i, p := range ports {
		pieces[i] = fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if p.NodePort > 0 {
			pieces[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol)
		}
	}
	return strings.Join(pieces, ",")
}

func svcExternalIP(svc *corev1.Service, wide bool) string {
	switch svc.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(svc.Spec.ExternalIPs) > 0 {
			return strings.Join(svc.Spec.ExternalIPs, ",")
		}
		return "<none>"
	case corev1.ServiceTypeLoadBalancer:
		lb := netLoadBalancerString(svc.Status.LoadBalancer.Ingress, wide)
		if len(svc.Spec.ExternalIPs) > 0 {
			var out []string
			if lb != "" {
				out = append(out, strings.Split(lb, ",")...)
			}
			return strings.Join(append(out, svc.Spec.ExternalIPs...), ",")
		}
		if lb != "" {
			return lb
		}
		return "<pending>"
	case corev1.ServiceTypeExternalName:
		return svc.Spec.ExternalName
	}
	return "<unknown>"
}

// netLoadBalancerString is loadBalancerStatusStringer: the sorted, unique
// IPs (or hostnames) of the ingress points.
func netLoadBalancerString(ingress []corev1.LoadBalancerIngress, wide bool) string {
	set := sets.New[string]()
	for _, ing := range ingress {
		if ing.IP != "" {
			set.Insert(ing.IP)
		} else if ing.Hostname != "" {
			set.Insert(ing.Hostname)
		}
	}
	r := strings.Join(sets.List(set), ",")
	if !wide && len(r) > svcLoadBalancerWidth {
		r = r[0:(svcLoadBalancerWidth-3)] + "..."
	}
	return r
}

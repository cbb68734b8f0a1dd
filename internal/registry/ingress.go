package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
)

const ingAnnotationClass = "kubernetes.io/ingress.class"

var (
	ingSupportedPathTypes = sets.New(networkingv1.PathTypeExact, networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific)
	ingInvalidPathSeqs    = []string{"//", "/./", "/../", "%2f", "%2F"}
	ingInvalidPathSuffix  = []string{"/..", "/."}
)

func ingresses() *Resource {
	return &Resource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses", Singular: "ingress", Kind: "Ingress", ListKind: "IngressList", Namespaced: true,
		ShortNames: []string{"ing"}, Subresources: []string{"status"},
		New:      func() runtime.Object { return &networkingv1.Ingress{} },
		NewList:  func() runtime.Object { return &networkingv1.IngressList{} },
		Strategy: ingressStrategy{BaseStrategy{Namespaced: true, HasStatus: true, Generation: true}}}
}

type ingressStrategy struct{ BaseStrategy }

var _ Strategy = ingressStrategy{}

// ingOptions carries the ratchets Kubernetes applies on update so stored,
// formerly valid objects stay updatable.
type ingOptions struct {
	allowInvalidSecretName       bool
	allowInvalidWildcardHostRule bool
}

func (ingressStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	ing := obj.(*networkingv1.Ingress)
	allErrs := ingValidate(ing, ingOptions{})
	if v, ok := ing.Annotations[ingAnnotationClass]; ok && ing.Spec.IngressClassName != nil && v != *ing.Spec.IngressClassName {
		allErrs = append(allErrs, field.Invalid(field.NewPath("annotations").Child(ingAnnotationClass), v, "must match `ingressClassName` when both are specified"))
	}
	return allErrs
}

func (ingressStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	ing, oldIng := obj.(*networkingv1.Ingress), old.(*networkingv1.Ingress)
	allErrs := apivalidation.ValidateObjectMetaUpdate(&ing.ObjectMeta, &oldIng.ObjectMeta, field.NewPath("metadata"))
	opts := ingOptions{}
	for _, tls := range oldIng.Spec.TLS {
		if len(ingValidateTLSSecretName(tls.SecretName)) > 0 {
			opts.allowInvalidSecretName = true
		}
	}
	for _, r := range oldIng.Spec.Rules {
		if strings.Contains(r.Host, "*") && len(ingValidateRuleValue(&r.IngressRuleValue, field.NewPath("x"), ingOptions{})) > 0 {
			opts.allowInvalidWildcardHostRule = true
		}
	}
	return append(allErrs, ingValidate(ing, opts)...)
}

func (ingressStrategy) ValidateStatusUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	ing, oldIng := obj.(*networkingv1.Ingress), old.(*networkingv1.Ingress)
	allErrs := apivalidation.ValidateObjectMetaUpdate(&ing.ObjectMeta, &oldIng.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("status", "loadBalancer")
	var existing []string
	for _, in := range oldIng.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			existing = append(existing, in.IP)
		}
	}
	for i, in := range ing.Status.LoadBalancer.Ingress {
		idxPath := fldPath.Child("ingress").Index(i)
		if in.IP != "" {
			allErrs = append(allErrs, validation.IsValidIPForLegacyField(idxPath.Child("ip"), in.IP, false, existing)...)
		}
		if in.Hostname != "" {
			for _, msg := range validation.IsDNS1123Subdomain(in.Hostname) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("hostname"), in.Hostname, msg))
			}
			if netutils.ParseIPSloppy(in.Hostname) != nil {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("hostname"), in.Hostname, "must be a DNS name, not an IP address"))
			}
		}
	}
	return allErrs
}

// ingValidate is validateIngress of pkg/apis/networking/validation.
func ingValidate(ing *networkingv1.Ingress, opts ingOptions) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMeta(&ing.ObjectMeta, true, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	spec := &ing.Spec
	fldPath := field.NewPath("spec")
	if len(spec.Rules) == 0 && spec.DefaultBackend == nil {
		allErrs = append(allErrs, field.Invalid(fldPath, spec.Rules, "either `defaultBackend` or `rules` must be specified"))
	}
	if spec.DefaultBackend != nil {
		allErrs = append(allErrs, ingValidateBackend(spec.DefaultBackend, fldPath.Child("defaultBackend"))...)
	}
	for i, r := range spec.Rules {
		rulePath := fldPath.Child("rules").Index(i)
		wildcard := false
		if r.Host != "" {
			if netutils.ParseIPSloppy(r.Host) != nil {
				allErrs = append(allErrs, field.Invalid(rulePath.Child("host"), r.Host, "must be a DNS name, not an IP address"))
			}
			if strings.Contains(r.Host, "*") {
				for _, msg := range validation.IsWildcardDNS1123Subdomain(r.Host) {
					allErrs = append(allErrs, field.Invalid(rulePath.Child("host"), r.Host, msg))
				}
				wildcard = true
			} else {
				allErrs = append(allErrs, coreDNS1123Subdomain(r.Host, rulePath.Child("host"))...)
			}
		}
		if !wildcard || !opts.allowInvalidWildcardHostRule {
			allErrs = append(allErrs, ingValidateRuleValue(&spec.Rules[i].IngressRuleValue, rulePath, opts)...)
		}
	}
	tlsPath := fldPath.Child("tls")
	for i, tls := range spec.TLS {
		for j, host := range tls.Hosts {
			hostPath := tlsPath.Index(i).Child("hosts").Index(j)
			if strings.Contains(host, "*") {
				for _, msg := range validation.IsWildcardDNS1123Subdomain(host) {
					allErrs = append(allErrs, field.Invalid(hostPath, host, msg))
				}
				continue
			}
			allErrs = append(allErrs, coreDNS1123Subdomain(host, hostPath)...)
		}
		if !opts.allowInvalidSecretName {
			for _, msg := range ingValidateTLSSecretName(tls.SecretName) {
				allErrs = append(allErrs, field.Invalid(tlsPath.Index(i).Child("secretName"), tls.SecretName, msg))
			}
		}
	}
	if spec.IngressClassName != nil {
		for _, msg := range apivalidation.NameIsDNSSubdomain(*spec.IngressClassName, false) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("ingressClassName"), *spec.IngressClassName, msg))
		}
	}
	return allErrs
}

func ingValidateTLSSecretName(name string) []string {
	if name == "" {
		return nil
	}
	return apivalidation.NameIsDNSSubdomain(name, false)
}

func ingValidateRuleValue(rv *networkingv1.IngressRuleValue, fldPath *field.Path, _ ingOptions) field.ErrorList {
	var allErrs field.ErrorList
	if rv.HTTP == nil {
		return nil
	}
	httpPath := fldPath.Child("http")
	if len(rv.HTTP.Paths) == 0 {
		allErrs = append(allErrs, field.Required(httpPath.Child("paths"), ""))
	}
	for i := range rv.HTTP.Paths {
		allErrs = append(allErrs, ingValidatePath(&rv.HTTP.Paths[i], httpPath.Child("paths").Index(i))...)
	}
	return allErrs
}

func ingValidatePath(p *networkingv1.HTTPIngressPath, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if p.PathType == nil {
		return append(allErrs, field.Required(fldPath.Child("pathType"), "pathType must be specified"))
	}
	switch *p.PathType {
	case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
		if !strings.HasPrefix(p.Path, "/") {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("path"), p.Path, "must be an absolute path"))
		}
		if p.Path != "" {
			for _, seq := range ingInvalidPathSeqs {
				if strings.Contains(p.Path, seq) {
					allErrs = append(allErrs, field.Invalid(fldPath.Child("path"), p.Path, fmt.Sprintf("must not contain '%s'", seq)))
				}
			}
			for _, suf := range ingInvalidPathSuffix {
				if strings.HasSuffix(p.Path, suf) {
					allErrs = append(allErrs, field.Invalid(fldPath.Child("path"), p.Path, fmt.Sprintf("cannot end with '%s'", suf)))
				}
			}
		}
	case networkingv1.PathTypeImplementationSpecific:
		if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("path"), p.Path, "must be an absolute path"))
		}
	default:
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("pathType"), *p.PathType, sets.List(ingSupportedPathTypes)))
	}
	return append(allErrs, ingValidateBackend(&p.Backend, fldPath.Child("backend"))...)
}

func ingValidateBackend(b *networkingv1.IngressBackend, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	switch {
	case b.Resource != nil && b.Service != nil:
		return append(allErrs, field.Invalid(fldPath, "", "cannot set both resource and service backends"))
	case b.Resource != nil:
		r := b.Resource
		rPath := fldPath.Child("resource")
		if r.APIGroup != nil {
			allErrs = append(allErrs, coreDNS1123Subdomain(*r.APIGroup, rPath.Child("apiGroup"))...)
		}
		allErrs = append(allErrs, ingValidatePathSegment(r.Kind, rPath.Child("kind"))...)
		allErrs = append(allErrs, ingValidatePathSegment(r.Name, rPath.Child("name"))...)
	case b.Service != nil:
		s := b.Service
		if s.Name == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child("service", "name"), ""))
		} else {
			for _, msg := range apivalidation.NameIsDNS1035Label(s.Name, false) {
				allErrs = append(allErrs, field.Invalid(fldPath.Child("service", "name"), s.Name, msg))
			}
		}
		hasName, hasNumber := s.Port.Name != "", s.Port.Number != 0
		switch {
		case hasName && hasNumber:
			allErrs = append(allErrs, field.Invalid(fldPath, "", "cannot set both port name & port number"))
		case hasName:
			for _, msg := range validation.IsValidPortName(s.Port.Name) {
				allErrs = append(allErrs, field.Invalid(fldPath.Child("service", "port", "name"), s.Port.Name, msg))
			}
		case hasNumber:
			for _, msg := range validation.IsValidPortNum(int(s.Port.Number)) {
				allErrs = append(allErrs, field.Invalid(fldPath.Child("service", "port", "number"), s.Port.Number, msg))
			}
		default:
			allErrs = append(allErrs, field.Required(fldPath, "port name or number is required"))
		}
	default:
		allErrs = append(allErrs, field.Invalid(fldPath, "", "resource or service backend is required"))
	}
	return allErrs
}

// ingValidatePathSegment requires a value usable as one URL path segment.
func ingValidatePathSegment(v string, fldPath *field.Path) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	var errs field.ErrorList
	for _, msg := range path.IsValidPathSegmentName(v) {
		errs = append(errs, field.Invalid(fldPath, v, msg))
	}
	return errs
}

func (ingressStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Class", Type: "string", Description: "The name of the IngressClass resource that should be used for additional configuration"},
		{Name: "Hosts", Type: "string", Description: "Hosts that incoming requests are matched against before the ingress rule"},
		{Name: "Address", Type: "string", Description: "Address is a list containing ingress points for the load-balancer"},
		{Name: "Ports", Type: "string", Description: "Ports of TLS configurations that open"},
		AgeColumn(),
	}
}

func (ingressStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	ing := obj.(*networkingv1.Ingress)
	class := "<none>"
	if ing.Spec.IngressClassName != nil {
		class = *ing.Spec.IngressClassName
	}
	ports := "80"
	if len(ing.Spec.TLS) != 0 {
		ports = "80, 443"
	}
	return []interface{}{ing.Name, class, ingFormatHosts(ing.Spec.Rules), ingAddress(ing.Status.LoadBalancer.Ingress), ports, Age(ing.CreationTimestamp, now)}
}

// ingFormatHosts is formatHosts: up to three hosts, "*" when none.
func ingFormatHosts(rules []networkingv1.IngressRule) string {
	const max = 3
	var list []string
	more := false
	for _, r := range rules {
		if len(list) == max {
			more = true
		}
		if !more && r.Host != "" {
			list = append(list, r.Host)
		}
	}
	if len(list) == 0 {
		return "*"
	}
	ret := strings.Join(list, ",")
	if more {
		return fmt.Sprintf("%s + %d more...", ret, len(rules)-max)
	}
	return ret
}

// ingAddress is ingressLoadBalancerStatusStringer, wide (server-side tables).
func ingAddress(ingress []networkingv1.IngressLoadBalancerIngress) string {
	set := sets.New[string]()
	for _, in := range ingress {
		if in.IP != "" {
			set.Insert(in.IP)
		} else if in.Hostname != "" {
			set.Insert(in.Hostname)
		}
	}
	return strings.Join(sets.List(set), ",")
}

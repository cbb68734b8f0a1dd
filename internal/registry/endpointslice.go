package registry

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
)

const (
	epsMaxTopologyLabels = 16
	epsMaxAddresses      = 100
	epsMaxPorts          = 100
	epsMaxEndpoints      = 1000
	epsMaxHints          = 8
)

var epsSupportedAddressTypes = sets.New(discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN)

func endpointSlices() *Resource {
	return &Resource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices", Singular: "endpointslice", Kind: "EndpointSlice", ListKind: "EndpointSliceList", Namespaced: true,
		New:      func() runtime.Object { return &discoveryv1.EndpointSlice{} },
		NewList:  func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		Strategy: endpointSliceStrategy{BaseStrategy{Namespaced: true}}}
}

type endpointSliceStrategy struct{ BaseStrategy }

var _ Strategy = endpointSliceStrategy{}

// Default is SetDefaults_EndpointPort of discovery/v1: name "" and TCP.
func (endpointSliceStrategy) Default(obj runtime.Object) {
	eps, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	for i := range eps.Ports {
		p := &eps.Ports[i]
		if p.Name == nil {
			name := ""
			p.Name = &name
		}
		if p.Protocol == nil {
			tcp := corev1.ProtocolTCP
			p.Protocol = &tcp
		}
	}
}

func (endpointSliceStrategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	obj.(*discoveryv1.EndpointSlice).Generation = 1
}

// PrepareForUpdate bumps generation when anything but metadata changed (or
// the labels did), as Kubernetes' endpointslice strategy does.
func (endpointSliceStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	eps, oldEps := obj.(*discoveryv1.EndpointSlice), old.(*discoveryv1.EndpointSlice)
	eps.Generation = oldEps.Generation
	a, b := *eps, *oldEps
	a.ObjectMeta, b.ObjectMeta = metav1.ObjectMeta{}, metav1.ObjectMeta{}
	a.TypeMeta, b.TypeMeta = metav1.TypeMeta{}, metav1.TypeMeta{}
	if !apiequality.Semantic.DeepEqual(a, b) || !apiequality.Semantic.DeepEqual(eps.Labels, oldEps.Labels) {
		eps.Generation = oldEps.Generation + 1
	}
}

func (endpointSliceStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return epsValidate(obj.(*discoveryv1.EndpointSlice))
}

func (endpointSliceStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	eps, oldEps := obj.(*discoveryv1.EndpointSlice), old.(*discoveryv1.EndpointSlice)
	allErrs := apivalidation.ValidateObjectMetaUpdate(&eps.ObjectMeta, &oldEps.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, epsValidate(eps)...)
	return append(allErrs, apivalidation.ValidateImmutableField(eps.AddressType, oldEps.AddressType, field.NewPath("addressType"))...)
}

// epsValidate is ValidateEndpointSlice of pkg/apis/discovery/validation.
func epsValidate(eps *discoveryv1.EndpointSlice) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMeta(&eps.ObjectMeta, true, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	if eps.AddressType == "" {
		allErrs = append(allErrs, field.Required(field.NewPath("addressType"), ""))
	} else if !epsSupportedAddressTypes.Has(eps.AddressType) {
		allErrs = append(allErrs, field.NotSupported(field.NewPath("addressType"), eps.AddressType, sets.List(epsSupportedAddressTypes)))
	}
	allErrs = append(allErrs, epsValidateEndpoints(eps.Endpoints, eps.AddressType, field.NewPath("endpoints"))...)
	return append(allErrs, epsValidatePorts(eps.Ports, field.NewPath("ports"))...)
}

func epsValidateEndpoints(endpoints []discoveryv1.Endpoint, addrType discoveryv1.AddressType, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(endpoints) > epsMaxEndpoints {
		return append(allErrs, field.TooMany(fldPath, len(endpoints), epsMaxEndpoints))
	}
	for i, ep := range endpoints {
		idxPath := fldPath.Index(i)
		addressPath := idxPath.Child("addresses")
		if len(ep.Addresses) == 0 {
			allErrs = append(allErrs, field.Required(addressPath, "must contain at least 1 address"))
		} else if len(ep.Addresses) > epsMaxAddresses {
			allErrs = append(allErrs, field.TooMany(addressPath, len(ep.Addresses), epsMaxAddresses))
		}
		for j, address := range ep.Addresses {
			p := addressPath.Index(j)
			switch addrType {
			case discoveryv1.AddressTypeIPv4:
				allErrs = append(allErrs, epsValidateIPFamily(p, address, false)...)
				allErrs = append(allErrs, netValidateNonSpecialIP(address, p)...)
			case discoveryv1.AddressTypeIPv6:
				allErrs = append(allErrs, epsValidateIPFamily(p, address, true)...)
				allErrs = append(allErrs, netValidateNonSpecialIP(address, p)...)
			case discoveryv1.AddressTypeFQDN:
				allErrs = append(allErrs, validation.IsFullyQualifiedDomainName(p, address)...)
			}
		}
		if ep.NodeName != nil {
			for _, msg := range apivalidation.NameIsDNSSubdomain(*ep.NodeName, false) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("nodeName"), *ep.NodeName, msg))
			}
		}
		topologyPath := idxPath.Child("deprecatedTopology")
		if len(ep.DeprecatedTopology) > epsMaxTopologyLabels {
			allErrs = append(allErrs, field.TooMany(topologyPath, len(ep.DeprecatedTopology), epsMaxTopologyLabels))
		}
		allErrs = append(allErrs, metavalidation.ValidateLabels(ep.DeprecatedTopology, topologyPath)...)
		if ep.Hostname != nil {
			allErrs = append(allErrs, coreDNS1123Label(*ep.Hostname, idxPath.Child("hostname"))...)
		}
		if ep.Hints != nil {
			allErrs = append(allErrs, epsValidateHints(ep.Hints, idxPath.Child("hints"))...)
		}
	}
	return allErrs
}

// epsValidateIPFamily is 1.32's IsValidIPv4Address / IsValidIPv6Address.
func epsValidateIPFamily(fldPath *field.Path, value string, v6 bool) field.ErrorList {
	ip := netutils.ParseIPSloppy(value)
	switch {
	case !v6 && (ip == nil || ip.To4() == nil):
		return field.ErrorList{field.Invalid(fldPath, value, "must be a valid IPv4 address")}
	case v6 && (ip == nil || ip.To4() != nil):
		return field.ErrorList{field.Invalid(fldPath, value, "must be a valid IPv6 address")}
	}
	return nil
}

func epsValidateHints(hints *discoveryv1.EndpointHints, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	fzPath := fldPath.Child("forZones")
	if len(hints.ForZones) > epsMaxHints {
		return append(allErrs, field.TooMany(fzPath, len(hints.ForZones), epsMaxHints))
	}
	zones := sets.New[string]()
	for i, z := range hints.ForZones {
		zonePath := fzPath.Index(i).Child("name")
		if zones.Has(z.Name) {
			allErrs = append(allErrs, field.Duplicate(zonePath, z.Name))
		} else {
			zones.Insert(z.Name)
		}
		for _, msg := range validation.IsValidLabelValue(z.Name) {
			allErrs = append(allErrs, field.Invalid(zonePath, z.Name, msg))
		}
	}
	return allErrs
}

func epsValidatePorts(ports []discoveryv1.EndpointPort, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(ports) > epsMaxPorts {
		return append(allErrs, field.TooMany(fldPath, len(ports), epsMaxPorts))
	}
	names := sets.New[string]()
	for i, p := range ports {
		idxPath := fldPath.Index(i)
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if name != "" {
			allErrs = append(allErrs, coreDNS1123Label(name, idxPath.Child("name"))...)
		}
		if names.Has(name) {
			allErrs = append(allErrs, field.Duplicate(idxPath.Child("name"), name))
		} else {
			names.Insert(name)
		}
		if p.Protocol == nil {
			allErrs = append(allErrs, field.Required(idxPath.Child("protocol"), ""))
		} else if !netSupportedProtocols.Has(*p.Protocol) {
			allErrs = append(allErrs, field.NotSupported(idxPath.Child("protocol"), *p.Protocol, sets.List(netSupportedProtocols)))
		}
		if p.AppProtocol != nil {
			allErrs = append(allErrs, coreQualifiedName(*p.AppProtocol, idxPath.Child("appProtocol"))...)
		}
	}
	return allErrs
}

func (endpointSliceStrategy) TableColumns() []metav1.TableColumnDefinition {
	doc := discoveryv1.EndpointSlice{}.SwaggerDoc()
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "AddressType", Type: "string", Description: doc["addressType"]},
		{Name: "Ports", Type: "string", Description: doc["ports"]},
		{Name: "Endpoints", Type: "string", Description: doc["endpoints"]},
		AgeColumn(),
	}
}

func (endpointSliceStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	eps := obj.(*discoveryv1.EndpointSlice)
	return []interface{}{eps.Name, string(eps.AddressType), epsFormatPorts(eps.Ports), epsFormatEndpoints(eps.Endpoints), Age(eps.CreationTimestamp, now)}
}

func epsFormatPorts(ports []discoveryv1.EndpointPort) string {
	const max = 3
	var list []string
	more := false
	for _, p := range ports {
		if len(list) < max {
			s := "*"
			if p.Port != nil {
				s = strconv.Itoa(int(*p.Port))
			} else if p.Name != nil {
				s = *p.Name
			}
			list = append(list, s)
		} else if len(list) == max {
			more = true
		}
	}
	return epsListWithMore(list, more, len(ports), max)
}

func epsFormatEndpoints(endpoints []discoveryv1.Endpoint) string {
	const max = 3
	var list []string
	more := false
	count := 0
	for _, ep := range endpoints {
		for _, a := range ep.Addresses {
			if len(list) < max {
				list = append(list, a)
			} else if len(list) == max {
				more = true
			}
			count++
		}
	}
	return epsListWithMore(list, more, count, max)
}

func epsListWithMore(list []string, more bool, count, max int) string {
	ret := strings.Join(list, ",")
	if more {
		return fmt.Sprintf("%s + %d more...", ret, count-max)
	}
	if ret == "" {
		ret = "<unset>"
	}
	return ret
}

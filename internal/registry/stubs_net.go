package registry

// STUB: replaced by the real strategies for services, endpoints,
// endpointslices, ingresses, ingressclasses and leases.

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func services(cfg Config) (*Resource, error) {
	return &Resource{Version: "v1", Resource: "services", Singular: "service", Kind: "Service", ListKind: "ServiceList", Namespaced: true,
		ShortNames: []string{"svc"}, Categories: []string{"all"}, Subresources: []string{"status"},
		New: func() runtime.Object { return &corev1.Service{} }, NewList: func() runtime.Object { return &corev1.ServiceList{} },
		Strategy: BaseStrategy{Namespaced: true, HasStatus: true}}, nil
}
func endpoints() *Resource {
	return &Resource{Version: "v1", Resource: "endpoints", Singular: "endpoints", Kind: "Endpoints", ListKind: "EndpointsList", Namespaced: true,
		ShortNames: []string{"ep"},
		New: func() runtime.Object { return &corev1.Endpoints{} }, NewList: func() runtime.Object { return &corev1.EndpointsList{} },
		Strategy: BaseStrategy{Namespaced: true}}
}
func endpointSlices() *Resource {
	return &Resource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices", Singular: "endpointslice", Kind: "EndpointSlice", ListKind: "EndpointSliceList", Namespaced: true,
		New: func() runtime.Object { return &discoveryv1.EndpointSlice{} }, NewList: func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		Strategy: BaseStrategy{Namespaced: true}}
}
func ingresses() *Resource {
	return &Resource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses", Singular: "ingress", Kind: "Ingress", ListKind: "IngressList", Namespaced: true,
		ShortNames: []string{"ing"}, Subresources: []string{"status"},
		New: func() runtime.Object { return &networkingv1.Ingress{} }, NewList: func() runtime.Object { return &networkingv1.IngressList{} },
		Strategy: BaseStrategy{Namespaced: true, HasStatus: true, Generation: true}}
}
func ingressClasses() *Resource {
	return &Resource{Group: "networking.k8s.io", Version: "v1", Resource: "ingressclasses", Singular: "ingressclass", Kind: "IngressClass", ListKind: "IngressClassList",
		New: func() runtime.Object { return &networkingv1.IngressClass{} }, NewList: func() runtime.Object { return &networkingv1.IngressClassList{} },
		Strategy: BaseStrategy{}}
}
func leases() *Resource {
	return &Resource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases", Singular: "lease", Kind: "Lease", ListKind: "LeaseList", Namespaced: true,
		New: func() runtime.Object { return &coordinationv1.Lease{} }, NewList: func() runtime.Object { return &coordinationv1.LeaseList{} },
		Strategy: BaseStrategy{Namespaced: true}}
}

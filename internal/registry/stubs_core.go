package registry

// STUB: replaced by the real core/v1 strategies (one file per resource).

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func namespaces() *Resource {
	return &Resource{Version: "v1", Resource: "namespaces", Singular: "namespace", Kind: "Namespace", ListKind: "NamespaceList",
		ShortNames: []string{"ns"}, Subresources: []string{"status", "finalize"},
		New: func() runtime.Object { return &corev1.Namespace{} }, NewList: func() runtime.Object { return &corev1.NamespaceList{} },
		Strategy: BaseStrategy{HasStatus: true, NameFn: nil}}
}
func pods() *Resource {
	return &Resource{Version: "v1", Resource: "pods", Singular: "pod", Kind: "Pod", ListKind: "PodList", Namespaced: true,
		ShortNames: []string{"po"}, Categories: []string{"all"}, Subresources: []string{"status", "binding"},
		New: func() runtime.Object { return &corev1.Pod{} }, NewList: func() runtime.Object { return &corev1.PodList{} },
		Strategy: BaseStrategy{Namespaced: true, HasStatus: true}}
}
func nodes() *Resource {
	return &Resource{Version: "v1", Resource: "nodes", Singular: "node", Kind: "Node", ListKind: "NodeList",
		ShortNames: []string{"no"}, Subresources: []string{"status"},
		New: func() runtime.Object { return &corev1.Node{} }, NewList: func() runtime.Object { return &corev1.NodeList{} },
		Strategy: BaseStrategy{HasStatus: true}}
}
func events() *Resource {
	return &Resource{Version: "v1", Resource: "events", Singular: "event", Kind: "Event", ListKind: "EventList", Namespaced: true,
		ShortNames: []string{"ev"},
		New: func() runtime.Object { return &corev1.Event{} }, NewList: func() runtime.Object { return &corev1.EventList{} },
		Strategy: BaseStrategy{Namespaced: true}}
}
func configMaps() *Resource {
	return &Resource{Version: "v1", Resource: "configmaps", Singular: "configmap", Kind: "ConfigMap", ListKind: "ConfigMapList", Namespaced: true,
		ShortNames: []string{"cm"},
		New: func() runtime.Object { return &corev1.ConfigMap{} }, NewList: func() runtime.Object { return &corev1.ConfigMapList{} },
		Strategy: BaseStrategy{Namespaced: true}}
}
func secrets() *Resource {
	return &Resource{Version: "v1", Resource: "secrets", Singular: "secret", Kind: "Secret", ListKind: "SecretList", Namespaced: true,
		New: func() runtime.Object { return &corev1.Secret{} }, NewList: func() runtime.Object { return &corev1.SecretList{} },
		Strategy: BaseStrategy{Namespaced: true}}
}
func serviceAccounts() *Resource {
	return &Resource{Version: "v1", Resource: "serviceaccounts", Singular: "serviceaccount", Kind: "ServiceAccount", ListKind: "ServiceAccountList", Namespaced: true,
		ShortNames: []string{"sa"},
		New: func() runtime.Object { return &corev1.ServiceAccount{} }, NewList: func() runtime.Object { return &corev1.ServiceAccountList{} },
		Strategy: BaseStrategy{Namespaced: true}}
}

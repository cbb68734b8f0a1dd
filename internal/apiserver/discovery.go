package apiserver

import (
	"encoding/json"
	"net/http"
	"sort"

	"github.com/munnerz/goautoneg"
	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-dev/skiff/internal/registry"
)

var allVerbs = metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// resourceVerbs are the verbs r's collection serves.
func resourceVerbs(r *registry.Resource) metav1.Verbs {
	if r.NoDeleteCollection {
		return metav1.Verbs{"create", "delete", "get", "list", "patch", "update", "watch"}
	}
	return allVerbs
}

// subresourceInfo describes a subresource for discovery.
func subresourceInfo(r *registry.Resource, sub string) (kind schema.GroupVersionKind, verbs metav1.Verbs) {
	switch sub {
	case "status":
		return r.GVK(), metav1.Verbs{"get", "patch", "update"}
	case "scale":
		return scaleGVK, metav1.Verbs{"get", "patch", "update"}
	case "binding":
		return schema.GroupVersionKind{Version: "v1", Kind: "Binding"}, metav1.Verbs{"create"}
	case "finalize":
		return r.GVK(), metav1.Verbs{"update"}
	case tokenSubresource:
		return tokenRequestGVK, metav1.Verbs{"create"}
	}
	return r.GVK(), metav1.Verbs{"get"}
}

func (s *Server) resourceList(gv schema.GroupVersion) *metav1.APIResourceList {
	l := &metav1.APIResourceList{GroupVersion: gv.String()}
	l.Kind, l.APIVersion = "APIResourceList", "v1"
	g := s.group(gv.Group)
	if g == nil {
		return l
	}
	for _, r := range g.resources[gv.Version] {
		l.APIResources = append(l.APIResources, metav1.APIResource{
			Name: r.Resource, SingularName: r.Singular, Namespaced: r.Namespaced, Kind: r.Kind,
			Verbs: resourceVerbs(r), ShortNames: r.ShortNames, Categories: r.Categories,
		})
		for _, sub := range r.Subresources {
			kind, verbs := subresourceInfo(r, sub)
			ar := metav1.APIResource{Name: r.Resource + "/" + sub, Namespaced: r.Namespaced, Kind: kind.Kind, Verbs: verbs}
			if kind.GroupVersion() != gv {
				ar.Group, ar.Version = kind.Group, kind.Version
			}
			l.APIResources = append(l.APIResources, ar)
		}
	}
	return l
}

func (s *Server) group(name string) *groupInfo {
	for _, g := range s.groups {
		if g.name == name {
			return g
		}
	}
	return nil
}

func (s *Server) apiGroup(g *groupInfo) metav1.APIGroup {
	ag := metav1.APIGroup{Name: g.name}
	for _, v := range g.versions {
		ag.Versions = append(ag.Versions, metav1.GroupVersionForDiscovery{GroupVersion: g.name + "/" + v, Version: v})
	}
	ag.PreferredVersion = ag.Versions[0]
	return ag
}

func (s *Server) serveResourceList(w http.ResponseWriter, r *http.Request, gv schema.GroupVersion) {
	s.writeJSON(w, http.StatusOK, s.resourceList(gv))
}

func (s *Server) serveAPIVersions(w http.ResponseWriter, r *http.Request) {
	if v, ok := wantsAggregated(r); ok {
		s.writeAggregated(w, v, true)
		return
	}
	av := &metav1.APIVersions{Versions: []string{"v1"}, ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
		{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}}}
	av.Kind = "APIVersions"
	s.writeJSON(w, http.StatusOK, av)
}

func (s *Server) serveAPIGroupList(w http.ResponseWriter, r *http.Request) {
	if v, ok := wantsAggregated(r); ok {
		s.writeAggregated(w, v, false)
		return
	}
	l := &metav1.APIGroupList{Groups: []metav1.APIGroup{}}
	l.Kind, l.APIVersion = "APIGroupList", "v1"
	for _, g := range s.groups {
		if g.name != "" {
			l.Groups = append(l.Groups, s.apiGroup(g))
		}
	}
	s.writeJSON(w, http.StatusOK, l)
}

func (s *Server) serveAPIGroup(w http.ResponseWriter, r *http.Request, name string) {
	g := s.group(name)
	if g == nil || name == "" {
		s.writeError(w, r, errNotFoundPath())
		return
	}
	ag := s.apiGroup(g)
	ag.Kind, ag.APIVersion = "APIGroup", "v1"
	s.writeJSON(w, http.StatusOK, ag)
}

// wantsAggregated reports whether the client asked for aggregated discovery
// (kubectl ≥ 1.26 does, first), and which version (v2 or v2beta1).
func wantsAggregated(r *http.Request) (string, bool) {
	for _, a := range goautoneg.ParseAccept(r.Header.Get("Accept")) {
		if a.Q == 0 {
			continue
		}
		if a.Type == "application" && a.SubType == "json" && a.Params["g"] == "apidiscovery.k8s.io" &&
			a.Params["as"] == "APIGroupDiscoveryList" && (a.Params["v"] == "v2" || a.Params["v"] == "v2beta1") {
			return a.Params["v"], true
		}
		if a.Params["as"] == "" && (a.Type == "application" && a.SubType == "json" || a.Type == "*") {
			return "", false // plain JSON preferred
		}
	}
	return "", false
}

func (s *Server) aggregated(core bool) *apidiscoveryv2.APIGroupDiscoveryList {
	l := &apidiscoveryv2.APIGroupDiscoveryList{Items: []apidiscoveryv2.APIGroupDiscovery{}}
	for _, g := range s.groups {
		if (g.name == "") != core {
			continue
		}
		gd := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: g.name}}
		for _, v := range g.versions {
			vd := apidiscoveryv2.APIVersionDiscovery{Version: v, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
				Resources: []apidiscoveryv2.APIResourceDiscovery{}}
			for _, r := range g.resources[v] {
				scope := apidiscoveryv2.ScopeCluster
				if r.Namespaced {
					scope = apidiscoveryv2.ScopeNamespace
				}
				gvk := r.GVK()
				rd := apidiscoveryv2.APIResourceDiscovery{Resource: r.Resource, SingularResource: r.Singular,
					ResponseKind: &metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
					Scope:        scope, Verbs: resourceVerbs(r), ShortNames: r.ShortNames, Categories: r.Categories}
				for _, sub := range r.Subresources {
					kind, verbs := subresourceInfo(r, sub)
					rd.Subresources = append(rd.Subresources, apidiscoveryv2.APISubresourceDiscovery{Subresource: sub,
						ResponseKind: &metav1.GroupVersionKind{Group: kind.Group, Version: kind.Version, Kind: kind.Kind}, Verbs: verbs})
				}
				vd.Resources = append(vd.Resources, rd)
			}
			sort.SliceStable(vd.Resources, func(i, j int) bool { return vd.Resources[i].Resource < vd.Resources[j].Resource })
			gd.Versions = append(gd.Versions, vd)
		}
		l.Items = append(l.Items, gd)
	}
	return l
}

func (s *Server) writeAggregated(w http.ResponseWriter, version string, core bool) {
	l := s.aggregated(core)
	l.APIVersion, l.Kind = "apidiscovery.k8s.io/"+version, "APIGroupDiscoveryList"
	data, err := json.Marshal(l)
	if err != nil {
		s.writeError(w, nil, err)
		return
	}
	w.Header().Set("Content-Type", "application/json;g=apidiscovery.k8s.io;v="+version+";as=APIGroupDiscoveryList")
	w.Header().Set("Vary", "Accept")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

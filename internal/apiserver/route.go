package apiserver

import (
	"net/http"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-dev/skiff/internal/registry"
)

// reqInfo is a parsed resource request path.
type reqInfo struct {
	res       *registry.Resource
	namespace string // "" for cluster-scoped resources and all-namespace lists
	name      string // "" for collections
	sub       string // "status", "scale", "binding", "finalize"
	watchPath bool   // legacy /watch/ path prefix
}

func (ri *reqInfo) gr() schema.GroupResource { return ri.res.GVR().GroupResource() }

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	segs := splitPath(r.URL.Path)
	if isDiscoveryPath(segs) && !s.readOnlyMethod(w, r) {
		return
	}
	if len(segs) == 0 {
		s.serveRootPaths(w, r)
		return
	}
	var gv schema.GroupVersion
	var rest []string
	switch segs[0] {
	case "api":
		switch len(segs) {
		case 1:
			s.serveAPIVersions(w, r)
			return
		case 2:
			if segs[1] != "v1" || s.byGVR[schema.GroupVersion{Version: "v1"}] == nil {
				s.writeError(w, r, errNotFoundPath())
				return
			}
			s.serveResourceList(w, r, schema.GroupVersion{Version: "v1"})
			return
		}
		gv, rest = schema.GroupVersion{Version: segs[1]}, segs[2:]
	case "apis":
		switch len(segs) {
		case 1:
			s.serveAPIGroupList(w, r)
			return
		case 2:
			s.serveAPIGroup(w, r, segs[1])
			return
		case 3:
			gv := schema.GroupVersion{Group: segs[1], Version: segs[2]}
			if gv.Group == "" || s.byGVR[gv] == nil {
				s.writeError(w, r, errNotFoundPath())
				return
			}
			s.serveResourceList(w, r, gv)
			return
		}
		gv, rest = schema.GroupVersion{Group: segs[1], Version: segs[2]}, segs[3:]
		if gv.Group == "" {
			s.writeError(w, r, errNotFoundPath())
			return
		}
	default:
		s.writeError(w, r, errNotFoundPath())
		return
	}
	resources := s.byGVR[gv]
	if resources == nil {
		s.writeError(w, r, errNotFoundPath())
		return
	}
	ri, ok := parseResourcePath(resources, rest)
	if !ok {
		s.writeError(w, r, errNotFoundPath())
		return
	}
	s.serveResource(w, r, ri)
}

// parseResourcePath understands, after /api/v1 or /apis/g/v:
//
//	[watch/] {resource}[/{name}[/{sub}]]                       cluster-scoped, or all namespaces
//	[watch/] namespaces/{ns}/{resource}[/{name}[/{sub}]]      namespaced
//	namespaces/{name}/{status|finalize}                        namespace subresources
func parseResourcePath(resources map[string]*registry.Resource, segs []string) (*reqInfo, bool) {
	ri := &reqInfo{}
	if len(segs) > 0 && segs[0] == "watch" {
		ri.watchPath = true
		segs = segs[1:]
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		if res, ok := resources[segs[2]]; ok && res.Namespaced {
			ri.res, ri.namespace = res, segs[1]
			segs = segs[3:]
			return finishPath(ri, segs)
		}
		if len(segs) == 3 {
			if ns, ok := resources["namespaces"]; ok && ns.HasSubresource(segs[2]) && !ri.watchPath {
				ri.res, ri.name, ri.sub = ns, segs[1], segs[2]
				return ri, true
			}
		}
		return nil, false
	}
	if len(segs) == 0 {
		return nil, false
	}
	res, ok := resources[segs[0]]
	if !ok {
		return nil, false
	}
	ri.res = res
	return finishPath(ri, segs[1:])
}

func finishPath(ri *reqInfo, segs []string) (*reqInfo, bool) {
	switch len(segs) {
	case 0:
	case 1:
		ri.name = segs[0]
	case 2:
		ri.name, ri.sub = segs[0], segs[1]
		if !ri.res.HasSubresource(ri.sub) || ri.watchPath {
			return nil, false
		}
	default:
		return nil, false
	}
	if ri.name == "" && len(segs) > 0 {
		return nil, false
	}
	// Cluster-scoped items have no namespace; namespaced items need one
	// (an all-namespace path only serves collections).
	if ri.res.Namespaced && ri.namespace == "" && ri.name != "" {
		return nil, false
	}
	return ri, true
}

// isDiscoveryPath tells the read-only documents: /, /api, /api/v1, /apis,
// /apis/{group} and /apis/{group}/{version}.
func isDiscoveryPath(segs []string) bool {
	switch {
	case len(segs) == 0:
		return true
	case segs[0] == "api":
		return len(segs) <= 2
	case segs[0] == "apis":
		return len(segs) <= 3
	}
	return false
}

// readOnlyMethod answers 405 (as a Status) to anything but GET and HEAD.
func (s *Server) readOnlyMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusMethodNotAllowed, verbOf(r.Method), schema.GroupResource{}, "", "", 0, false))
	return false
}

// isWatchParam reads ?watch= as kube-apiserver's request-info resolver
// does: present and not "false" or "0" means watch.
func isWatchParam(q url.Values) bool {
	v, ok := q["watch"]
	if !ok || len(v) == 0 {
		return false
	}
	switch strings.ToLower(v[0]) {
	case "false", "0":
		return false
	}
	return true
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func (s *Server) serveRootPaths(w http.ResponseWriter, r *http.Request) {
	paths := []string{"/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"}
	if _, ok := s.cfg.TokenIssuer.(OpenIDMetadata); ok {
		paths = append(paths, openIDConfigPath, jwksPath)
	}
	for _, g := range s.groups {
		if g.name == "" {
			continue
		}
		paths = append(paths, "/apis/"+g.name)
		for _, v := range g.versions {
			paths = append(paths, "/apis/"+g.name+"/"+v)
		}
	}
	s.writeJSON(w, http.StatusOK, map[string][]string{"paths": paths})
}

// serveResource dispatches a resource request to its verb.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	q := r.URL.Query()
	isWatch := ri.watchPath || isWatchParam(q)
	if ri.watchPath && r.Method != http.MethodGet {
		// The /watch/ prefix serves only watches.
		s.writeError(w, r, errMethodNotAllowed(ri.gr(), verbOf(r.Method)))
		return
	}
	switch ri.sub {
	case "":
	case "status":
		switch r.Method {
		case http.MethodGet:
			s.get(w, r, ri)
		case http.MethodPut:
			s.update(w, r, ri)
		case http.MethodPatch:
			s.patch(w, r, ri)
		default:
			s.writeError(w, r, errMethodNotAllowed(ri.gr(), verbOf(r.Method)))
		}
		return
	case "scale":
		s.serveScale(w, r, ri)
		return
	case "binding":
		if r.Method != http.MethodPost {
			s.writeError(w, r, errMethodNotAllowed(ri.gr(), verbOf(r.Method)))
			return
		}
		s.bind(w, r, ri)
		return
	case tokenSubresource:
		s.serveToken(w, r, ri)
		return
	case logSubresource, execSubresource, attachSubresource, portForwardSubresource:
		s.servePodStream(w, r, ri)
		return
	case "finalize":
		if r.Method != http.MethodPut {
			s.writeError(w, r, errMethodNotAllowed(ri.gr(), verbOf(r.Method)))
			return
		}
		s.update(w, r, ri)
		return
	default:
		s.writeError(w, r, errNotFoundPath())
		return
	}
	if ri.name == "" {
		switch {
		case r.Method == http.MethodGet && isWatch:
			s.watch(w, r, ri)
		case r.Method == http.MethodGet:
			s.list(w, r, ri)
		case r.Method == http.MethodPost && (ri.namespace != "" || !ri.res.Namespaced):
			s.create(w, r, ri)
		case r.Method == http.MethodDelete && (ri.namespace != "" || !ri.res.Namespaced) && !ri.res.NoDeleteCollection:
			s.deleteCollection(w, r, ri)
		default:
			s.writeError(w, r, errMethodNotAllowed(ri.gr(), verbOf(r.Method)))
		}
		return
	}
	switch r.Method {
	case http.MethodGet:
		if isWatch {
			// Watching one object is a watch with a name field selector.
			s.watch(w, r, ri)
			return
		}
		s.get(w, r, ri)
	case http.MethodPut:
		s.update(w, r, ri)
	case http.MethodPatch:
		s.patch(w, r, ri)
	case http.MethodDelete:
		s.delete(w, r, ri)
	default:
		s.writeError(w, r, errMethodNotAllowed(ri.gr(), verbOf(r.Method)))
	}
}

func verbOf(method string) string {
	switch method {
	case http.MethodGet:
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(method)
}

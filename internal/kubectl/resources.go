package kubectl

import (
	"encoding/json"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
)

// target is one request the builder resolved from the command line: a
// whole collection (name == "") or one named object.
type target struct {
	mapping   *meta.RESTMapping
	namespace string // "" for cluster-scoped resources or all namespaces
	name      string
}

func namespaced(m *meta.RESTMapping) bool {
	return m.Scope.Name() == meta.RESTScopeNameNamespace
}

// mappingFor resolves a resource or kind argument the way kubectl's
// resource.Builder does: plural, singular, short name, kind, and the
// resource.version.group / kind.version.group forms.
func (e *env) mappingFor(arg string) (*meta.RESTMapping, error) {
	mapper, err := e.restMapper()
	if err != nil {
		return nil, err
	}
	fullySpecifiedGVR, groupResource := schema.ParseResourceArg(arg)
	gvk := schema.GroupVersionKind{}
	if fullySpecifiedGVR != nil {
		gvk, _ = mapper.KindFor(*fullySpecifiedGVR)
	}
	if gvk.Empty() {
		gvk, _ = mapper.KindFor(groupResource.WithVersion(""))
	}
	if !gvk.Empty() {
		return mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	fullySpecifiedGVK, groupKind := schema.ParseKindArg(arg)
	if fullySpecifiedGVK == nil {
		k := groupKind.WithVersion("")
		fullySpecifiedGVK = &k
	}
	if !fullySpecifiedGVK.Empty() {
		if m, err := mapper.RESTMapping(fullySpecifiedGVK.GroupKind(), fullySpecifiedGVK.Version); err == nil {
			return m, nil
		}
	}
	m, err := mapper.RESTMapping(groupKind, gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("the server doesn't have a resource type %q", groupResource.Resource)
		}
		return nil, err
	}
	return m, nil
}

// expandTypes splits "pods,svc" and replaces categories such as "all".
func (e *env) expandTypes(arg string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, t := range strings.Split(arg, ",") {
		if t == "" {
			continue
		}
		names := []string{t}
		grs, err := e.expandCategory(t)
		if err != nil {
			return nil, err
		}
		if len(grs) > 0 {
			names = names[:0]
			for _, gr := range grs {
				if gr.Group == "" {
					names = append(names, gr.Resource)
				} else {
					names = append(names, gr.Resource+"."+gr.Group)
				}
			}
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// expandCategory lists the resources in a discovery category ("all") in
// the server's group and resource order. restmapper's category expander
// would do, but its order follows map iteration when discovery is
// aggregated, and `get all` must print types in a stable order.
func (e *env) expandCategory(category string) ([]schema.GroupResource, error) {
	dc, err := e.discovery()
	if err != nil {
		return nil, err
	}
	groups, err := dc.ServerGroups()
	if err != nil {
		return nil, err
	}
	var out []schema.GroupResource
	for _, g := range groups.Groups {
		for _, v := range g.Versions {
			list, err := dc.ServerResourcesForGroupVersion(v.GroupVersion)
			if err != nil {
				continue
			}
			for _, r := range list.APIResources {
				for _, c := range r.Categories {
					if c == category {
						out = append(out, schema.GroupResource{Group: g.Name, Resource: r.Name})
					}
				}
			}
		}
	}
	return out, nil
}

// targetsFromArgs implements ResourceTypeOrNameArgs: "TYPE[,TYPE] [NAME…]"
// or "TYPE/NAME…". allNamespaces only applies to collections.
func (e *env) targetsFromArgs(args []string, allNamespaces bool) ([]target, error) {
	ns, err := e.ns()
	if err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, nil
	}
	var out []target
	if strings.Contains(args[0], "/") {
		for _, a := range args {
			parts := strings.SplitN(a, "/", 2)
			if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
				if !strings.Contains(a, "/") {
					return nil, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of 'kubectl get resource resource/<resource_name>'")
				}
				return nil, fmt.Errorf("arguments in resource/name form must have a single resource and name")
			}
			m, err := e.mappingFor(parts[0])
			if err != nil {
				return nil, err
			}
			out = append(out, target{mapping: m, namespace: scopedNS(m, ns), name: parts[1]})
		}
		return out, nil
	}
	types, err := e.expandTypes(args[0])
	if err != nil {
		return nil, err
	}
	names := args[1:]
	for _, n := range names {
		if strings.Contains(n, "/") {
			return nil, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of 'kubectl get resource resource/<resource_name>'")
		}
	}
	for _, t := range types {
		m, err := e.mappingFor(t)
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			tns := scopedNS(m, ns)
			if allNamespaces {
				tns = ""
			}
			out = append(out, target{mapping: m, namespace: tns})
			continue
		}
		for _, n := range names {
			out = append(out, target{mapping: m, namespace: scopedNS(m, ns), name: n})
		}
	}
	return out, nil
}

func scopedNS(m *meta.RESTMapping, ns string) string {
	if namespaced(m) {
		return ns
	}
	return ""
}

// request builds a request for a mapping's collection or object.
func request(rc *rest.RESTClient, verb string, m *meta.RESTMapping, ns, name string) *rest.Request {
	gv := m.Resource.GroupVersion()
	var req *rest.Request
	switch verb {
	case "GET":
		req = rc.Get()
	case "POST":
		req = rc.Post()
	case "PUT":
		req = rc.Put()
	case "PATCH":
		req = rc.Verb("PATCH")
	case "DELETE":
		req = rc.Delete()
	}
	if gv.Group == "" {
		req = req.AbsPath("/api", gv.Version)
	} else {
		req = req.AbsPath("/apis", gv.Group, gv.Version)
	}
	if namespaced(m) && ns != "" {
		req = req.Namespace(ns)
	}
	req = req.Resource(m.Resource.Resource)
	if name != "" {
		req = req.Name(name)
	}
	return req
}

// getObject fetches one object as unstructured JSON.
func (e *env) getObject(m *meta.RESTMapping, ns, name string) (*unstructured.Unstructured, error) {
	rc, err := e.client()
	if err != nil {
		return nil, err
	}
	body, err := doRaw(request(rc, "GET", m, ns, name).SetHeader("Accept", "application/json").Do(e.ctx))
	if err != nil {
		return nil, err
	}
	return decodeUnstructured(body)
}

func (e *env) patchObject(m *meta.RESTMapping, ns, name string, pt types.PatchType, patch []byte, params map[string]string) (*unstructured.Unstructured, error) {
	rc, err := e.client()
	if err != nil {
		return nil, err
	}
	req := request(rc, "PATCH", m, ns, name).SetHeader("Content-Type", string(pt)).Body(patch)
	for k, v := range params {
		req = req.Param(k, v)
	}
	body, err := doRaw(req.Do(e.ctx))
	if err != nil {
		return nil, err
	}
	return decodeUnstructured(body)
}

func decodeUnstructured(body []byte) (*unstructured.Unstructured, error) {
	obj, err := runtime.Decode(unstructured.UnstructuredJSONScheme, body)
	if err != nil {
		return nil, err
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("unexpected list in response")
	}
	return u, nil
}

// listObjects lists a collection, following continue tokens, and returns
// the items with apiVersion and kind filled in.
func (e *env) listObjects(t target, labelSel, fieldSel string) ([]unstructured.Unstructured, string, error) {
	rc, err := e.client()
	if err != nil {
		return nil, "", err
	}
	var items []unstructured.Unstructured
	cont := ""
	rv := ""
	for {
		req := request(rc, "GET", t.mapping, t.namespace, "").SetHeader("Accept", "application/json").Param("limit", "500")
		if labelSel != "" {
			req = req.Param("labelSelector", labelSel)
		}
		if fieldSel != "" {
			req = req.Param("fieldSelector", fieldSel)
		}
		if cont != "" {
			req = req.Param("continue", cont)
		}
		body, err := doRaw(req.Do(e.ctx))
		if err != nil {
			return nil, "", err
		}
		obj, err := runtime.Decode(unstructured.UnstructuredJSONScheme, body)
		if err != nil {
			return nil, "", err
		}
		list, ok := obj.(*unstructured.UnstructuredList)
		if !ok {
			return nil, "", fmt.Errorf("expected a list from %s", t.mapping.Resource.Resource)
		}
		items = append(items, list.Items...)
		rv = list.GetResourceVersion()
		cont = list.GetContinue()
		if cont == "" {
			break
		}
	}
	return items, rv, nil
}

// objectName is kubectl's info.ObjectName(): "pods/x", "deployments/x".
func objectName(m *meta.RESTMapping, name string) string {
	return m.Resource.Resource + "/" + name
}

// kindName is how the name printer shows an object: "pod/x", "deployment.apps/x".
func kindName(gk schema.GroupKind, name string) string {
	if gk.Group == "" {
		return strings.ToLower(gk.Kind) + "/" + name
	}
	return strings.ToLower(gk.Kind) + "." + gk.Group + "/" + name
}

// kindString is "pod" or "deployment.apps" (delete's output).
func kindString(gk schema.GroupKind) string {
	if gk.Group == "" {
		return strings.ToLower(gk.Kind)
	}
	return strings.ToLower(gk.Kind) + "." + gk.Group
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// doRaw returns the response body, or the server's Status as a typed
// *StatusError (Result.Raw alone returns a generic error).
func doRaw(res rest.Result) ([]byte, error) {
	body, err := res.Raw()
	if err != nil {
		return nil, res.Error()
	}
	return body, nil
}

// reduceErrs returns nil, the only error, or an aggregate, like the error
// kubectl's ContinueOnError visitor returns.
func reduceErrs(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return utilerrors.NewAggregate(errs)
}

package openapi

import (
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-dev/skiff/internal/registry"
)

// param is a path or query parameter.
type param struct {
	name, in, typ, desc string
	required            bool
}

// Parameters, described as Kubernetes describes them (shortened).
var (
	pName      = param{name: "name", in: "path", typ: "string", required: true, desc: "name of the "}
	pNamespace = param{name: "namespace", in: "path", typ: "string", required: true, desc: "object name and auth scope, such as for teams and projects"}
	pPretty    = param{name: "pretty", in: "query", typ: "string", desc: "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget)."}

	pDryRun          = param{name: "dryRun", in: "query", typ: "string", desc: "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed"}
	pFieldManager    = param{name: "fieldManager", in: "query", typ: "string", desc: "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint."}
	pFieldValidation = param{name: "fieldValidation", in: "query", typ: "string", desc: "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered."}
	pForce           = param{name: "force", in: "query", typ: "boolean", desc: "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."}

	pGracePeriod       = param{name: "gracePeriodSeconds", in: "query", typ: "integer", desc: "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately."}
	pOrphanDependents  = param{name: "orphanDependents", in: "query", typ: "boolean", desc: "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both."}
	pPropagationPolicy = param{name: "propagationPolicy", in: "query", typ: "string", desc: "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground."}

	pAllowWatchBookmarks = param{name: "allowWatchBookmarks", in: "query", typ: "boolean", desc: "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session."}
	pContinue            = param{name: "continue", in: "query", typ: "string", desc: "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize."}
	pFieldSelector       = param{name: "fieldSelector", in: "query", typ: "string", desc: "A selector to restrict the list of returned objects by their fields. Defaults to everything."}
	pLabelSelector       = param{name: "labelSelector", in: "query", typ: "string", desc: "A selector to restrict the list of returned objects by their labels. Defaults to everything."}
	pLimit               = param{name: "limit", in: "query", typ: "integer", desc: "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results."}
	pResourceVersion     = param{name: "resourceVersion", in: "query", typ: "string", desc: "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset"}
	pRVMatch             = param{name: "resourceVersionMatch", in: "query", typ: "string", desc: "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset"}
	pSendInitialEvents   = param{name: "sendInitialEvents", in: "query", typ: "boolean", desc: "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection."}
	pTimeoutSeconds      = param{name: "timeoutSeconds", in: "query", typ: "integer", desc: "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."}
	pWatch               = param{name: "watch", in: "query", typ: "boolean", desc: "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion."}
)

var (
	listParams   = []param{pAllowWatchBookmarks, pContinue, pFieldSelector, pLabelSelector, pLimit, pResourceVersion, pRVMatch, pSendInitialEvents, pTimeoutSeconds, pWatch}
	writeParams  = []param{pDryRun, pFieldManager, pFieldValidation}
	patchParams  = []param{pDryRun, pFieldManager, pFieldValidation, pForce}
	deleteParams = []param{pDryRun, pGracePeriod, pOrphanDependents, pPropagationPolicy}
	// deletecollection takes the list and the delete options.
	deleteCollectionParams = []param{pContinue, pDryRun, pFieldSelector, pGracePeriod, pLabelSelector, pLimit, pOrphanDependents, pPropagationPolicy, pResourceVersion, pRVMatch, pSendInitialEvents, pTimeoutSeconds}
)

// Media types of request and response bodies.
var (
	mediaObject  = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"}
	mediaList    = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch"}
	mediaWatch   = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch"}
	mediaPatches = []string{"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
)

// Definition names the paths refer to outside the resources' own types.
const (
	defStatus        = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
	defDeleteOptions = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
	defPatch         = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
	defWatchEvent    = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent"
	defScale         = "io.k8s.api.autoscaling.v1.Scale"
	defBinding       = "io.k8s.api.core.v1.Binding"
)

// operation is one HTTP operation of a path, in neither dialect yet.
type operation struct {
	method    string // get, put, post, patch, delete
	id        string
	desc      string
	action    string // x-kubernetes-action
	gvk       schema.GroupVersionKind
	params    []param
	body      string         // definition name of the request body ("" none)
	patch     bool           // body is a patch (Patch schema, patch media types)
	responses map[int]string // status → definition name
	produces  []string
}

// pathItem is the operations and path-level parameters of one path.
type pathItem struct {
	params []param
	ops    []operation
}

// resourcePaths returns the paths serving r, keyed by URL path.
func resourcePaths(r *registry.Resource, kindDef, listDef string) map[string]pathItem {
	prefix := "/api/" + r.Version
	if r.Group != "" {
		prefix = "/apis/" + r.Group + "/" + r.Version
	}
	gvk := r.GVK()
	opName := gvName(r.GroupVersion())
	kind := r.Kind
	coll := prefix + "/" + r.Resource
	watchColl := prefix + "/watch/" + r.Resource
	if r.Namespaced {
		kind = "Namespaced" + r.Kind
		coll = prefix + "/namespaces/{namespace}/" + r.Resource
		watchColl = prefix + "/watch/namespaces/{namespace}/" + r.Resource
	}
	nameParam := pName
	nameParam.desc += r.Kind
	scope := []param{pPretty}
	if r.Namespaced {
		scope = []param{pNamespace, pPretty}
	}
	named := append([]param{nameParam}, scope...)
	op := func(method, verb, action, suffix, desc string) operation {
		return operation{method: method, id: verb + opName + kind + suffix, desc: desc, action: action, gvk: gvk, produces: mediaObject}
	}
	paths := map[string]pathItem{}

	list := op("get", "list", "list", "", "list or watch objects of kind "+r.Kind)
	list.params, list.responses, list.produces = listParams, map[int]string{200: listDef}, mediaList
	create := op("post", "create", "post", "", "create "+article(r.Kind))
	create.params, create.body = writeParams, kindDef
	create.responses = map[int]string{200: kindDef, 201: kindDef, 202: kindDef}
	delColl := op("delete", "delete", "deletecollection", "", "delete collection of "+r.Kind)
	delColl.id = "delete" + opName + "Collection" + kind
	delColl.params, delColl.body, delColl.responses = deleteCollectionParams, defDeleteOptions, map[int]string{200: defStatus}
	collOps := []operation{list, create, delColl}
	if r.NoDeleteCollection {
		collOps = collOps[:2]
	}
	paths[coll] = pathItem{params: scope, ops: collOps}

	read := op("get", "read", "get", "", "read the specified "+r.Kind)
	read.responses = map[int]string{200: kindDef}
	replace := op("put", "replace", "put", "", "replace the specified "+r.Kind)
	replace.params, replace.body, replace.responses = writeParams, kindDef, map[int]string{200: kindDef, 201: kindDef}
	patch := op("patch", "patch", "patch", "", "partially update the specified "+r.Kind)
	patch.params, patch.body, patch.patch, patch.responses = patchParams, defPatch, true, map[int]string{200: kindDef, 201: kindDef}
	del := op("delete", "delete", "delete", "", "delete "+article(r.Kind))
	del.params, del.body, del.responses = deleteParams, defDeleteOptions, map[int]string{200: kindDef, 202: kindDef}
	paths[coll+"/{name}"] = pathItem{params: named, ops: []operation{read, replace, patch, del}}

	watchList := op("get", "watch", "watchlist", "List", "watch individual changes to a list of "+r.Kind+". deprecated: use the 'watch' parameter with a list operation instead.")
	watchList.params, watchList.responses, watchList.produces = listParams, map[int]string{200: defWatchEvent}, mediaWatch
	paths[watchColl] = pathItem{params: scope, ops: []operation{watchList}}
	watch := op("get", "watch", "watch", "", "watch changes to an object of kind "+r.Kind+". deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter.")
	watch.params, watch.responses, watch.produces = listParams, map[int]string{200: defWatchEvent}, mediaWatch
	paths[watchColl+"/{name}"] = pathItem{params: named, ops: []operation{watch}}

	if r.Namespaced {
		all := op("get", "list", "list", "ForAllNamespaces", "list or watch objects of kind "+r.Kind)
		all.id = "list" + opName + r.Kind + "ForAllNamespaces"
		all.params, all.responses, all.produces = listParams, map[int]string{200: listDef}, mediaList
		paths[prefix+"/"+r.Resource] = pathItem{params: []param{pPretty}, ops: []operation{all}}
		watchAll := op("get", "watch", "watchlist", "", "watch individual changes to a list of "+r.Kind+". deprecated: use the 'watch' parameter with a list operation instead.")
		watchAll.id = "watch" + opName + r.Kind + "ListForAllNamespaces"
		watchAll.params, watchAll.responses, watchAll.produces = listParams, map[int]string{200: defWatchEvent}, mediaWatch
		paths[prefix+"/watch/"+r.Resource] = pathItem{params: []param{pPretty}, ops: []operation{watchAll}}
	}

	for _, sub := range r.Subresources {
		suffix := strings.ToUpper(sub[:1]) + sub[1:]
		path := coll + "/{name}/" + sub
		subParams := named
		switch sub {
		case "status", "scale", "ephemeralcontainers", "resize":
			def, subGVK := kindDef, gvk
			if sub == "scale" {
				def, subGVK = defScale, schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}
			}
			get := op("get", "read", "get", suffix, "read "+sub+" of the specified "+r.Kind)
			get.gvk, get.responses = subGVK, map[int]string{200: def}
			put := op("put", "replace", "put", suffix, "replace "+sub+" of the specified "+r.Kind)
			put.gvk, put.params, put.body, put.responses = subGVK, writeParams, def, map[int]string{200: def, 201: def}
			pat := op("patch", "patch", "patch", suffix, "partially update "+sub+" of the specified "+r.Kind)
			pat.gvk, pat.params, pat.body, pat.patch, pat.responses = subGVK, patchParams, defPatch, true, map[int]string{200: def, 201: def}
			paths[path] = pathItem{params: subParams, ops: []operation{get, put, pat}}
		case "binding":
			post := op("post", "create", "post", suffix, "create binding of a "+r.Kind)
			post.gvk = schema.GroupVersionKind{Version: "v1", Kind: "Binding"}
			post.params, post.body = writeParams, defBinding
			post.responses = map[int]string{200: defBinding, 201: defBinding, 202: defBinding}
			paths[path] = pathItem{params: subParams, ops: []operation{post}}
		case "finalize":
			put := op("put", "replace", "put", suffix, "replace finalize of the specified "+r.Kind)
			put.params, put.body, put.responses = writeParams, kindDef, map[int]string{200: kindDef, 201: kindDef}
			paths[path] = pathItem{params: subParams, ops: []operation{put}}
		}
	}
	return paths
}

// gvName is the group-version part of operation IDs: "CoreV1",
// "NetworkingV1", "RbacAuthorizationV1".
func gvName(gv schema.GroupVersion) string {
	group := strings.TrimSuffix(gv.Group, ".k8s.io")
	if group == "" {
		group = "core"
	}
	var b strings.Builder
	for _, part := range strings.Split(group, ".") {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String() + strings.ToUpper(gv.Version[:1]) + gv.Version[1:]
}

// tagName is the operations' tag: "core_v1", "networking_v1".
func tagName(gv schema.GroupVersion) string {
	group := strings.TrimSuffix(gv.Group, ".k8s.io")
	if group == "" {
		group = "core"
	}
	return strings.ReplaceAll(group, ".", "_") + "_" + gv.Version
}

func article(kind string) string {
	if strings.ContainsRune("AEIOU", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

func gvkObj(gvk schema.GroupVersionKind) obj {
	return obj{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind}
}

var statusText = map[int]string{200: "OK", 201: "Created", 202: "Accepted"}

// renderV2 renders p as a Swagger 2.0 path item.
func (p pathItem) renderV2(tag string, c paramCache) obj {
	item := obj{}
	if len(p.params) > 0 {
		item["parameters"] = c.render(p.params, v2)
	}
	for _, o := range p.ops {
		op := obj{
			"description": o.desc,
			"operationId": o.id,
			"produces":    o.produces,
			"schemes":     []string{"https"},
			"tags":        []string{tag},
			extAction:     o.action,
			extGVK:        gvkObj(o.gvk),
			"consumes":    []string{"*/*"},
			"responses":   obj{"401": obj{"description": "Unauthorized"}},
		}
		params := c.render(o.params, v2)
		if o.body != "" {
			body := obj{"in": "body", "name": "body", "schema": obj{"$ref": v2.refPrefix() + o.body}}
			if o.method != "delete" {
				body["required"] = true
			}
			params = append([]any{body}, params...)
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if o.patch {
			op["consumes"] = mediaPatches
		}
		resp := op["responses"].(obj)
		for code, def := range o.responses {
			resp[strconv.Itoa(code)] = obj{"description": statusText[code], "schema": obj{"$ref": v2.refPrefix() + def}}
		}
		item[o.method] = op
	}
	return item
}

// renderV3 renders p as an OpenAPI 3.0 path item.
func (p pathItem) renderV3(tag string, c paramCache) obj {
	item := obj{}
	if len(p.params) > 0 {
		item["parameters"] = c.render(p.params, v3)
	}
	for _, o := range p.ops {
		op := obj{
			"description": o.desc,
			"operationId": o.id,
			"tags":        []string{tag},
			extAction:     o.action,
			extGVK:        gvkObj(o.gvk),
			"responses":   obj{"401": obj{"description": "Unauthorized"}},
		}
		if len(o.params) > 0 {
			op["parameters"] = c.render(o.params, v3)
		}
		if o.body != "" {
			types := []string{"*/*"}
			if o.patch {
				types = mediaPatches
			}
			content := obj{}
			for _, t := range types {
				content[t] = obj{"schema": obj{"$ref": v3.refPrefix() + o.body}}
			}
			body := obj{"content": content}
			if o.method != "delete" {
				body["required"] = true
			}
			op["requestBody"] = body
		}
		resp := op["responses"].(obj)
		for code, def := range o.responses {
			content := obj{}
			for _, t := range o.produces {
				content[t] = obj{"schema": obj{"$ref": v3.refPrefix() + def}}
			}
			resp[strconv.Itoa(code)] = obj{"description": statusText[code], "content": content}
		}
		item[o.method] = op
	}
	return item
}

// paramCache encodes each parameter once per dialect: the same long
// descriptions recur on every path.
type paramCache map[paramKey]*pre

type paramKey struct {
	p param
	v version
}

func (c paramCache) render(ps []param, v version) []any {
	out := make([]any, 0, len(ps))
	for _, p := range ps {
		enc, ok := c[paramKey{p, v}]
		if !ok {
			o := obj{"name": p.name, "in": p.in, "description": p.desc}
			if v == v3 {
				o["schema"] = obj{"type": p.typ, "uniqueItems": true}
			} else {
				o["type"], o["uniqueItems"] = p.typ, true
			}
			if p.required {
				o["required"] = true
			}
			b, _ := marshal(o) // obj of strings and bools: cannot fail
			enc = &pre{o, b}
			c[paramKey{p, v}] = enc
		}
		out = append(out, enc)
	}
	return out
}

// Package openapi builds and serves the OpenAPI documents kubectl reads:
// /openapi/v2 (one Swagger 2.0 document, JSON or protobuf; client-side
// validation and strategic-merge-patch metadata) and /openapi/v3 (an index
// of one OpenAPI 3.0 document per group-version; `kubectl explain`, the
// fieldValidation support check, and apply's patch computation).
//
// Kubernetes generates its documents from Go comments at build time
// (openapi-gen). skiff builds them at start-up by reflection over the
// k8s.io/api Go types it serves: json tags give the fields, SwaggerDoc()
// the descriptions, patchStrategy/patchMergeKey tags the patch extensions,
// and zz_generated_markers.go the comment markers reflection cannot see
// (+optional, +listType, +enum). Definition names, operation IDs,
// parameters and extensions follow Kubernetes' documents, since kubectl
// looks things up by them.
package openapi

import (
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-dev/skiff/internal/registry"
)

// Handler serves the documents built by New.
type Handler struct {
	v2      *document
	v3Index *document
	v3      map[string]*document // "api/v1", "apis/apps/v1" → document
}

// New builds the documents once from the served resources' Go types.
func New(resources []*registry.Resource) (*Handler, error) {
	b := newSchemaBuilder()
	type gvPaths struct {
		gv    schema.GroupVersion
		paths map[string]pathItem
	}
	byGV := map[string]*gvPaths{}
	var gvOrder []string
	gvkOf := map[string][]schema.GroupVersionKind{}
	addGVK := func(def string, gvk schema.GroupVersionKind) {
		for _, have := range gvkOf[def] {
			if have == gvk {
				return
			}
		}
		gvkOf[def] = append(gvkOf[def], gvk)
	}
	define := func(v any) (string, error) { return b.define(typeOf(v)) }

	for _, r := range resources {
		if r.New == nil || r.NewList == nil {
			return nil, fmt.Errorf("openapi: resource %s has no New/NewList", r.GVR())
		}
		kindDef, err := define(r.New())
		if err != nil {
			return nil, err
		}
		listDef, err := define(r.NewList())
		if err != nil {
			return nil, err
		}
		addGVK(kindDef, r.GVK())
		addGVK(listDef, r.GroupVersion().WithKind(r.ListKind))
		key := gvPath(r.GroupVersion())
		g := byGV[key]
		if g == nil {
			g = &gvPaths{gv: r.GroupVersion(), paths: map[string]pathItem{}}
			byGV[key] = g
			gvOrder = append(gvOrder, key)
		}
		for p, item := range resourcePaths(r, kindDef, listDef) {
			g.paths[p] = item
		}
	}

	// The request and response types every group-version refers to.
	for _, v := range []any{&metav1Status, &metav1DeleteOptions, &metav1Patch, &metav1WatchEvent, &autoscalingScale, &coreBinding} {
		if _, err := define(v); err != nil {
			return nil, err
		}
	}
	addGVK(defStatus, schema.GroupVersionKind{Version: "v1", Kind: "Status"})
	addGVK(defScale, schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"})
	addGVK(defBinding, schema.GroupVersionKind{Version: "v1", Kind: "Binding"})
	for _, key := range gvOrder {
		gv := byGV[key].gv
		addGVK(defDeleteOptions, gv.WithKind("DeleteOptions"))
		addGVK(defWatchEvent, gv.WithKind("WatchEvent"))
	}
	for def, gvks := range gvkOf {
		list := make([]any, len(gvks))
		for i, gvk := range gvks {
			list[i] = gvkObj(gvk)
		}
		b.defs[def].v2[extGVK] = list
		b.defs[def].v3[extGVK] = list
	}
	// Encode every definition once; documents splice the bytes in.
	for _, d := range b.defs {
		var err error
		if d.v2raw, err = marshal(d.v2); err != nil {
			return nil, err
		}
		if d.v3raw, err = marshal(d.v3); err != nil {
			return nil, err
		}
	}

	h := &Handler{v3: map[string]*document{}}

	// v2: one document with everything.
	v2Defs := obj{}
	for name, d := range b.defs {
		v2Defs[name] = &pre{d.v2, d.v2raw}
	}
	params := paramCache{}
	v2Paths := obj{}
	for _, key := range gvOrder {
		g := byGV[key]
		for p, item := range g.paths {
			v2Paths[p] = item.renderV2(tagName(g.gv), params)
		}
	}
	v2Doc := obj{
		"swagger":             "2.0",
		"info":                obj{"title": "Kubernetes", "version": "unversioned"},
		"paths":               v2Paths,
		"definitions":         v2Defs,
		"securityDefinitions": obj{"BearerToken": obj{"type": "apiKey", "name": "authorization", "in": "header", "description": "Bearer Token authentication"}},
		"security":            []any{obj{"BearerToken": []string{}}},
	}
	var err error
	// The tree stays referenced until the first protobuf request.
	v2Proto := func([]byte) ([]byte, error) { return protoV2Tree(v2Doc) }
	if h.v2, err = newDocument(v2Doc, v2Proto); err != nil {
		return nil, err
	}

	// v3: one document per group-version, with the definitions it reaches.
	index := obj{}
	for _, key := range gvOrder {
		g := byGV[key]
		paths := obj{}
		roots := map[string]bool{}
		for p, item := range g.paths {
			paths[p] = item.renderV3(tagName(g.gv), params)
			for _, op := range item.ops {
				if op.body != "" {
					roots[op.body] = true
				}
				for _, def := range op.responses {
					roots[def] = true
				}
			}
		}
		schemas := obj{}
		for _, name := range b.closure(roots) {
			schemas[name] = raw(b.defs[name].v3raw)
		}
		doc := obj{
			"openapi":    "3.0.0",
			"info":       obj{"title": "Kubernetes", "version": "unversioned"},
			"paths":      paths,
			"components": obj{"schemas": schemas, "securitySchemes": obj{"BearerToken": obj{"type": "apiKey", "name": "authorization", "in": "header", "description": "Bearer Token authentication"}}},
			"security":   []any{obj{"BearerToken": []string{}}},
		}
		d, err := newDocument(doc, protoV3)
		if err != nil {
			return nil, err
		}
		h.v3[key] = d
		index[key] = obj{"serverRelativeURL": "/openapi/v3/" + key + "?hash=" + d.etag}
	}
	if h.v3Index, err = newDocument(obj{"paths": index}, nil); err != nil {
		return nil, err
	}
	return h, nil
}

// closure returns the names of roots and every definition they reach, sorted.
func (b *schemaBuilder) closure(roots map[string]bool) []string {
	seen := map[string]bool{}
	var stack []string
	for r := range roots {
		stack = append(stack, r)
	}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[n] {
			continue
		}
		seen[n] = true
		stack = append(stack, b.defs[n].deps...)
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// gvPath is the group-version's key in the v3 index: "api/v1", "apis/apps/v1".
func gvPath(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "api/" + gv.Version
	}
	return "apis/" + gv.Group + "/" + gv.Version
}

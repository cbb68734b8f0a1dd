package openapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	openapi_v3 "github.com/google/gnostic-models/openapiv3"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/openapi3"
	"k8s.io/client-go/rest"
	kproto "k8s.io/kube-openapi/pkg/util/proto"

	"github.com/skiff-dev/skiff/internal/registry"
)

var (
	handlerOnce sync.Once
	testHandler *Handler
	handlerErr  error
)

// handler builds the documents for every served resource once per run.
func handler(t testing.TB) *Handler {
	t.Helper()
	handlerOnce.Do(func() {
		rs, err := registry.Resources(registry.Config{})
		if err != nil {
			handlerErr = err
			return
		}
		testHandler, handlerErr = New(rs)
	})
	if handlerErr != nil {
		t.Fatal(handlerErr)
	}
	return testHandler
}

func get(t *testing.T, h http.Handler, url string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// jsonDoc fetches and decodes a JSON document.
func jsonDoc(t *testing.T, h http.Handler, url string) map[string]any {
	t.Helper()
	rec := get(t, h, url, "Accept", "application/json")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, rec.Code, rec.Body)
	}
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// at walks a decoded JSON document along keys.
func at(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: not an object at %q", strings.Join(keys, "."), k)
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("%s: no %q", strings.Join(keys, "."), k)
		}
	}
	return v
}

func TestSchemas(t *testing.T) {
	h := handler(t)
	v2doc := jsonDoc(t, h, "/openapi/v2")
	defs := at(t, v2doc, "definitions")
	v3doc := jsonDoc(t, h, "/openapi/v3/api/v1")
	schemas := at(t, v3doc, "components", "schemas")

	tests := []struct {
		name string
		doc  any
		path []string
		want any
	}{
		{"pod gvk", defs, []string{"io.k8s.api.core.v1.Pod", extGVK}, []any{map[string]any{"group": "", "version": "v1", "kind": "Pod"}}},
		{"list gvk", defs, []string{"io.k8s.api.apps.v1.DeploymentList", extGVK}, []any{map[string]any{"group": "apps", "version": "v1", "kind": "DeploymentList"}}},
		{"containers array", defs, []string{"io.k8s.api.core.v1.PodSpec", "properties", "containers", "type"}, "array"},
		{"containers items", defs, []string{"io.k8s.api.core.v1.PodSpec", "properties", "containers", "items", "$ref"}, "#/definitions/io.k8s.api.core.v1.Container"},
		{"containers merge key", defs, []string{"io.k8s.api.core.v1.PodSpec", "properties", "containers", extPatchMergeKey}, "name"},
		{"containers strategy", defs, []string{"io.k8s.api.core.v1.PodSpec", "properties", "containers", extPatchStrategy}, "merge"},
		{"containers list type", defs, []string{"io.k8s.api.core.v1.PodSpec", "properties", "containers", extListType}, "map"},
		{"podspec required", defs, []string{"io.k8s.api.core.v1.PodSpec", "required"}, []any{"containers"}},
		{"container required", defs, []string{"io.k8s.api.core.v1.Container", "required"}, []any{"name"}},
		{"int32", defs, []string{"io.k8s.api.core.v1.ContainerPort", "properties", "containerPort", "format"}, "int32"},
		{"int64", defs, []string{"io.k8s.api.core.v1.PodSpec", "properties", "activeDeadlineSeconds", "format"}, "int64"},
		{"bytes", defs, []string{"io.k8s.api.core.v1.Secret", "properties", "data", "additionalProperties", "format"}, "byte"},
		{"map", defs, []string{"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "properties", "labels", "additionalProperties", "type"}, "string"},
		{"uid", defs, []string{"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "properties", "uid", "type"}, "string"},
		{"time ref", defs, []string{"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "properties", "creationTimestamp", "$ref"}, "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Time"},
		{"time", defs, []string{"io.k8s.apimachinery.pkg.apis.meta.v1.Time", "format"}, "date-time"},
		{"microtime", defs, []string{"io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime", "format"}, "date-time"},
		{"quantity", defs, []string{"io.k8s.apimachinery.pkg.api.resource.Quantity", extIntOrString}, true},
		{"quantity ref", defs, []string{"io.k8s.api.core.v1.ResourceRequirements", "properties", "limits", "additionalProperties", "$ref"}, "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
		{"intorstring", defs, []string{"io.k8s.apimachinery.pkg.util.intstr.IntOrString", extIntOrString}, true},
		{"intorstring format", defs, []string{"io.k8s.apimachinery.pkg.util.intstr.IntOrString", "format"}, "int-or-string"},
		{"rawextension", defs, []string{"io.k8s.apimachinery.pkg.runtime.RawExtension", "type"}, "object"},
		{"fieldsv1", defs, []string{"io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "type"}, "object"},
		{"inline typemeta", defs, []string{"io.k8s.api.core.v1.Pod", "properties", "kind", "type"}, "string"},
		{"enum", defs, []string{"io.k8s.api.core.v1.PodSpec", "properties", "restartPolicy", "enum"}, []any{"Always", "Never", "OnFailure"}},
		{"description", defs, []string{"io.k8s.api.core.v1.Service", "description"}, "Service is a named abstraction of software service (for example, mysql) consisting of local port (for example 3306) that the proxy listens on, and the selector that determines which pods will answer requests sent through the proxy."},
		{"v3 allOf ref", schemas, []string{"io.k8s.api.core.v1.Pod", "properties", "spec", "allOf"}, []any{map[string]any{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}}},
		{"v3 quantity oneOf", schemas, []string{"io.k8s.apimachinery.pkg.api.resource.Quantity", "oneOf"}, []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}},
		{"v3 items", schemas, []string{"io.k8s.api.core.v1.PodSpec", "properties", "containers", "items", "allOf"}, []any{map[string]any{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := json.Marshal(at(t, tc.doc, tc.path...))
			want, _ := json.Marshal(tc.want)
			if string(got) != string(want) {
				t.Errorf("%s = %s, want %s", strings.Join(tc.path, "."), got, want)
			}
		})
	}
	// Every definition a document refers to is in it.
	checkRefs(t, v2doc, "#/definitions/", defs.(map[string]any))
	for _, gv := range []string{"api/v1", "apis/apps/v1", "apis/networking.k8s.io/v1", "apis/coordination.k8s.io/v1", "apis/discovery.k8s.io/v1"} {
		doc := jsonDoc(t, h, "/openapi/v3/"+gv)
		checkRefs(t, doc, "#/components/schemas/", at(t, doc, "components", "schemas").(map[string]any))
	}
}

func checkRefs(t *testing.T, v any, prefix string, defs map[string]any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok {
			if _, ok := defs[strings.TrimPrefix(ref, prefix)]; !ok || !strings.HasPrefix(ref, prefix) {
				t.Errorf("dangling $ref %s", ref)
			}
		}
		for _, e := range v {
			checkRefs(t, e, prefix, defs)
		}
	case []any:
		for _, e := range v {
			checkRefs(t, e, prefix, defs)
		}
	}
}

// TestV2Protobuf decodes the protobuf document as client-go does and
// builds the models kubectl validates with.
// TestProtoFromTree: building the protobuf from the document tree gives
// what gnostic's own parse of the JSON gives.
func TestProtoFromTree(t *testing.T) {
	rs, err := registry.Resources(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(rs)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := protoV2(h.v2.json.data)
	if err != nil {
		t.Fatal(err)
	}
	fromTree, err := h.v2.protobuf()
	if err != nil {
		t.Fatal(err)
	}
	a, b := &openapi_v2.Document{}, &openapi_v2.Document{}
	if err := proto.Unmarshal(fromJSON, a); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(fromTree.data, b); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(a, b) {
		t.Error("protobuf from the tree differs from gnostic's parse of the JSON")
	}
}

func TestV2Protobuf(t *testing.T) {
	h := handler(t)
	rec := get(t, h, "/openapi/v2", "Accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" {
		t.Errorf("Content-Type %q", ct)
	}
	doc := &openapi_v2.Document{}
	if err := proto.Unmarshal(rec.Body.Bytes(), doc); err != nil {
		t.Fatal(err)
	}
	models, err := kproto.NewOpenAPIData(doc)
	if err != nil {
		t.Fatal(err)
	}
	pod, ok := models.LookupModel("io.k8s.api.core.v1.Pod").(*kproto.Kind)
	if !ok {
		t.Fatalf("Pod model: %T", models.LookupModel("io.k8s.api.core.v1.Pod"))
	}
	if _, ok := pod.Fields["spec"]; !ok {
		t.Errorf("Pod model has no spec")
	}
	if pod.GetExtensions()[extGVK] == nil {
		t.Errorf("Pod model has no %s", extGVK)
	}
	// kubectl's v2 fieldValidation check reads the PATCH parameters.
	var found bool
	for _, p := range doc.GetPaths().GetPath() {
		if p.GetName() != "/api/v1/namespaces/{namespace}/pods/{name}" {
			continue
		}
		for _, param := range p.GetValue().GetPatch().GetParameters() {
			if param.GetParameter().GetNonBodyParameter().GetQueryParameterSubSchema().GetName() == "fieldValidation" {
				found = true
			}
		}
		if got := p.GetValue().GetPatch().GetConsumes(); !contains(got, "application/strategic-merge-patch+json") {
			t.Errorf("patch consumes %v", got)
		}
	}
	if !found {
		t.Error("no fieldValidation parameter on the pod PATCH")
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// TestClientGo reads the documents through the client-go code kubectl uses.
func TestClientGo(t *testing.T) {
	srv := httptest.NewServer(handler(t))
	defer srv.Close()
	dc, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dc.OpenAPISchema(); err != nil {
		t.Fatalf("OpenAPISchema: %v", err)
	}
	paths, err := dc.OpenAPIV3().Paths()
	if err != nil {
		t.Fatal(err)
	}
	for _, gv := range []string{"api/v1", "apis/apps/v1"} {
		if _, ok := paths[gv]; !ok {
			t.Fatalf("v3 index lacks %s: %v", gv, paths)
		}
		pb, err := paths[gv].Schema("application/com.github.proto-openapi.spec.v3@v1.0+protobuf")
		if err != nil {
			t.Fatal(err)
		}
		doc := &openapi_v3.Document{}
		if err := proto.Unmarshal(pb, doc); err != nil {
			t.Fatal(err)
		}
		if _, err := kproto.NewOpenAPIV3Data(doc); err != nil {
			t.Fatalf("%s: %v", gv, err)
		}
	}

	root := openapi3.NewRoot(dc.OpenAPIV3())
	spec, err := root.GVSpec(schema.GroupVersion{Group: "apps", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	// cli-runtime's queryParamVerifierV3: the first PATCH with the GVK
	// must take fieldValidation.
	gvk := schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	patches := 0
	for path, item := range spec.Paths.Paths {
		if item.Patch == nil {
			continue
		}
		patches++
		var got map[string]string
		if err := item.Patch.Extensions.GetObject(extGVK, &got); err != nil {
			t.Fatal(err)
		}
		if got["group"] != gvk.Group && got["kind"] != "Scale" || got["version"] != gvk.Version || got["kind"] == "" {
			t.Errorf("%s: PATCH gvk %v", path, got)
		}
		var names []string
		for _, p := range item.Patch.Parameters {
			names = append(names, p.Name)
		}
		if !contains(names, "fieldValidation") {
			t.Errorf("%s: PATCH parameters %v", path, names)
		}
		if _, ok := item.Patch.RequestBody.Content["application/strategic-merge-patch+json"]; !ok {
			t.Errorf("%s: PATCH does not take strategic merge patches", path)
		}
	}
	// deployments, replicasets, each with status and scale.
	if patches < 6 {
		t.Errorf("apps/v1 has %d PATCH operations, want at least 6", patches)
	}
	// apply's strategic merge patch from the v3 document.
	for _, s := range spec.Components.Schemas {
		var gvks []map[string]string
		if s.Extensions.GetObject(extGVK, &gvks) != nil || len(gvks) == 0 || gvks[0]["kind"] != "Deployment" {
			continue
		}
		meta := strategicpatch.PatchMetaFromOpenAPIV3{Schema: s, SchemaList: spec.Components.Schemas}
		original := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"x"},{"name":"b","image":"y"}]}}}}`)
		modified := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"z"},{"name":"b","image":"y"}]}}}}`)
		patch, err := strategicpatch.CreateThreeWayMergePatch(original, modified, original, meta, false)
		if err != nil {
			t.Fatal(err)
		}
		want := `{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],"containers":[{"image":"z","name":"a"}]}}}}`
		if string(patch) != want {
			t.Errorf("patch %s, want %s", patch, want)
		}
		return
	}
	t.Error("no Deployment schema in apps/v1")
}

func TestServeHTTP(t *testing.T) {
	h := handler(t)
	index := jsonDoc(t, h, "/openapi/v3")
	url := at(t, index, "paths", "api/v1", "serverRelativeURL").(string)
	if !strings.HasPrefix(url, "/openapi/v3/api/v1?hash=") {
		t.Fatalf("serverRelativeURL %q", url)
	}

	rec := get(t, h, url)
	if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "public, immutable" || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("hashed GET: %d %v", rec.Code, rec.Header())
	}
	etag := rec.Header().Get("Etag")
	if exp, err := time.Parse(http.TimeFormat, rec.Header().Get("Expires")); err != nil || time.Until(exp) < 300*24*time.Hour {
		t.Errorf("Expires %q", rec.Header().Get("Expires"))
	}
	if rec := get(t, h, "/openapi/v3/api/v1"); rec.Header().Get("Cache-Control") != "" || rec.Header().Get("Etag") != etag {
		t.Errorf("unhashed GET: %v", rec.Header())
	}
	if rec := get(t, h, "/openapi/v3/api/v1", "If-None-Match", etag); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", rec.Code)
	}
	if rec := get(t, h, "/openapi/v3/api/v1?hash=STALE"); rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != url {
		t.Errorf("stale hash: %d %v", rec.Code, rec.Header())
	}
	if rec := get(t, h, "/openapi/v3/apis/nope/v1"); rec.Code != http.StatusNotFound {
		t.Errorf("unknown gv: %d", rec.Code)
	}
	if rec := get(t, h, "/openapi/v2", "Accept", "text/html"); rec.Code != http.StatusNotAcceptable {
		t.Errorf("text/html: %d", rec.Code)
	}
	rec = get(t, h, "/openapi/v3/api/v1", "Accept", "application/com.github.proto-openapi.spec.v3@v1.0+protobuf")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/com.github.proto-openapi.spec.v3.v1.0+protobuf" {
		t.Errorf("v3 protobuf: %d %v", rec.Code, rec.Header())
	}
	if err := proto.Unmarshal(rec.Body.Bytes(), &openapi_v3.Document{}); err != nil {
		t.Error(err)
	}
	rec = get(t, h, "/openapi/v2", "Accept-Encoding", "gzip")
	if rec.Header().Get("Content-Encoding") != "gzip" {
		t.Errorf("no gzip: %v", rec.Header())
	}
	srv := httptest.NewServer(h) // Go's client unzips transparently
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/openapi/v2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !json.Valid(body) {
		t.Errorf("gzipped v2 does not decode to JSON")
	}
	req := httptest.NewRequest(http.MethodPost, "/openapi/v2", nil)
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	if rr.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rr.Code)
	}
}

// TestDeterministic: the same resources give the same bytes, so hashes
// (and clients' caches) survive restarts.
func TestDeterministic(t *testing.T) {
	rs, err := registry.Resources(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(rs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(rs)
	if err != nil {
		t.Fatal(err)
	}
	if a.v2.etag != b.v2.etag || string(a.v3Index.json.data) != string(b.v3Index.json.data) {
		t.Error("documents differ between builds")
	}
}

func TestDefName(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{registry.Resource{}, "com.github.skiff-dev.skiff.internal.registry.Resource"},
		{metav1Status, "io.k8s.apimachinery.pkg.apis.meta.v1.Status"},
		{coreBinding, "io.k8s.api.core.v1.Binding"},
	} {
		if got := defName(typeOf(tc.in)); got != tc.want {
			t.Errorf("defName = %q, want %q", got, tc.want)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	rs, err := registry.Resources(registry.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start, cpu0 := time.Now(), cpuTime()
	for b.Loop() {
		if _, err := New(rs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/build")
	// CPU time (GC included) is steadier than wall time on a busy machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/build")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProtoV2 is the one-off cost of the first protobuf download.
func BenchmarkProtoV2(b *testing.B) {
	rs, err := registry.Resources(registry.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var total, cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		h, err := New(rs)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime()
		if _, err := h.v2.protobuf(); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		cpu += cpuTime() - cpu0
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/convert")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/convert")
}

// TestEncoder: the hand-written encoder writes what encoding/json writes.
func TestEncoder(t *testing.T) {
	h := handler(t)
	var doc any
	if err := json.Unmarshal(h.v2.json.data, &doc); err != nil {
		t.Fatal(err)
	}
	doc = toObj(doc)
	doc.(obj)["odd"] = "a\"b\\c\n\t\x01<>&\u2028é\xff"
	got, err := marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
		t.Errorf("encoder differs from encoding/json")
	}
}

// toObj converts decoded JSON to the types the encoder takes.
func toObj(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := obj{}
		for k, e := range v {
			m[k] = toObj(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = toObj(e)
		}
		return v
	case float64:
		return int(v)
	}
	return v
}

// TestConcurrentFirstRequests: the lazily built protobuf and gzip bodies
// are made once however many requests race for them.
func TestConcurrentFirstRequests(t *testing.T) {
	rs, err := registry.Resources(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(rs)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	sizes := make([]int, 8)
	for i := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodGet, "/openapi/v2", nil)
			req.Header.Set("Accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
			if i%2 == 0 {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code == http.StatusOK {
				sizes[i] = rec.Body.Len()
			}
		}()
	}
	wg.Wait()
	for i, n := range sizes {
		if n == 0 || n != sizes[i%2] {
			t.Fatalf("response sizes %v", sizes)
		}
	}
}

package kubectl

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes/scheme"
)

// fakeServer is a small in-memory Kubernetes API: discovery, Table output,
// CRUD, patch and watch, answering the way a real apiserver does for the
// requests kubectl makes. Both upstream kubectl and Run talk to it.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	rv       int
	uid      int
	objects  map[string]map[string]any // key: resource/ns/name
	watchers []*fakeWatcher
	patches  []string // bodies of PATCH requests, in order

	watchTimeout time.Duration // how long a watch stays open (default 5s)
}

type fakeWatcher struct {
	res    *fakeResource
	ns     string
	name   string
	labels labels.Selector
	ch     chan fakeEvent
}

type fakeEvent struct {
	typ string
	obj map[string]any
}

type fakeResource struct {
	group, version, name, singular, kind string
	namespaced                           bool
	short, categories                    []string
}

var fakeResources = []*fakeResource{
	{version: "v1", name: "configmaps", singular: "configmap", kind: "ConfigMap", namespaced: true, short: []string{"cm"}},
	{version: "v1", name: "namespaces", singular: "namespace", kind: "Namespace", short: []string{"ns"}},
	{version: "v1", name: "nodes", singular: "node", kind: "Node", short: []string{"no"}},
	{version: "v1", name: "pods", singular: "pod", kind: "Pod", namespaced: true, short: []string{"po"}, categories: []string{"all"}},
	{version: "v1", name: "services", singular: "service", kind: "Service", namespaced: true, short: []string{"svc"}, categories: []string{"all"}},
	{group: "apps", version: "v1", name: "deployments", singular: "deployment", kind: "Deployment", namespaced: true, short: []string{"deploy"}, categories: []string{"all"}},
	{group: "apps", version: "v1", name: "replicasets", singular: "replicaset", kind: "ReplicaSet", namespaced: true, short: []string{"rs"}, categories: []string{"all"}},
	{group: "example.com", version: "v1", name: "widgets", singular: "widget", kind: "Widget", namespaced: true},
}

var fakeVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// fakeNow is the server's clock for the AGE column, so output is stable.
var fakeNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{t: t, objects: map[string]map[string]any{}, rv: 100}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.mu.Lock()
		for _, w := range f.watchers {
			close(w.ch)
		}
		f.watchers = nil
		f.mu.Unlock()
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

// kubeconfig writes a kubeconfig for the server into a temp dir.
func (f *fakeServer) kubeconfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: %s
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
current-context: fake
users:
- name: fake
  user:
    token: fake-token
`, f.srv.URL)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *fakeResource) gv() string {
	if r.group == "" {
		return r.version
	}
	return r.group + "/" + r.version
}

// add stores an object as-is (plus server-set metadata).
func (f *fakeServer) add(obj map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.resourceForKind(obj["kind"].(string))
	f.storeLocked(r, obj, "ADDED")
}

func (f *fakeServer) resourceForKind(kind string) *fakeResource {
	for _, r := range fakeResources {
		if r.kind == kind {
			return r
		}
	}
	f.t.Fatalf("fake server: unknown kind %s", kind)
	return nil
}

func key(r *fakeResource, ns, name string) string { return r.name + "/" + ns + "/" + name }

func (f *fakeServer) storeLocked(r *fakeResource, obj map[string]any, event string) {
	md := obj["metadata"].(map[string]any)
	f.rv++
	md["resourceVersion"] = strconv.Itoa(f.rv)
	if _, ok := md["uid"]; !ok {
		f.uid++
		md["uid"] = fmt.Sprintf("00000000-0000-0000-0000-%012d", f.uid)
	}
	if _, ok := md["creationTimestamp"]; !ok {
		md["creationTimestamp"] = fakeNow.Add(-90 * time.Second).Format(time.RFC3339)
	}
	ns, _ := md["namespace"].(string)
	f.objects[key(r, ns, md["name"].(string))] = obj
	f.notifyLocked(r, event, obj)
}

func (f *fakeServer) notifyLocked(r *fakeResource, typ string, obj map[string]any) {
	md := obj["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	for _, w := range f.watchers {
		if w.res != r || (w.ns != "" && w.ns != ns) || (w.name != "" && w.name != md["name"]) {
			continue
		}
		if !w.labels.Matches(labels.Set(stringMapOf(md["labels"]))) {
			continue
		}
		w.ch <- fakeEvent{typ: typ, obj: deepCopy(obj)}
	}
}

func (f *fakeServer) get(resource, ns, name string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range fakeResources {
		if r.name == resource {
			return deepCopy(f.objects[key(r, ns, name)])
		}
	}
	return nil
}

func deepCopy(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, _ := json.Marshal(m)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

func stringMapOf(v any) map[string]string {
	out := map[string]string{}
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			out[k], _ = x.(string)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	writeJSON(w, int(st.Code), st)
}

func (f *fakeServer) serve(w http.ResponseWriter, req *http.Request) {
	p := strings.Trim(req.URL.Path, "/")
	parts := strings.Split(p, "/")
	switch {
	case p == "api":
		writeJSON(w, 200, map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
			"serverAddressByClientCIDRs": []any{map[string]any{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}}})
		return
	case p == "apis":
		var groups []any
		for _, g := range []string{"apps", "example.com"} {
			gv := map[string]any{"groupVersion": g + "/v1", "version": "v1"}
			groups = append(groups, map[string]any{"name": g, "versions": []any{gv}, "preferredVersion": gv})
		}
		writeJSON(w, 200, map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
		return
	case p == "version":
		writeJSON(w, 200, map[string]any{"major": "1", "minor": "32", "gitVersion": "v1.32.0-skiff"})
		return
	case p == "api/v1" || (len(parts) == 3 && parts[0] == "apis"):
		gv := "v1"
		if parts[0] == "apis" {
			gv = parts[1] + "/" + parts[2]
		}
		var list []any
		for _, r := range fakeResources {
			if r.gv() != gv {
				continue
			}
			ar := map[string]any{"name": r.name, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": fakeVerbs}
			if len(r.short) > 0 {
				ar["shortNames"] = r.short
			}
			if len(r.categories) > 0 {
				ar["categories"] = r.categories
			}
			list = append(list, ar)
		}
		if list == nil {
			writeStatus(w, apierrors.NewNotFound(schema.GroupResource{}, ""))
			return
		}
		writeJSON(w, 200, map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
		return
	}
	// Resource paths.
	var gv string
	var rest []string
	switch {
	case parts[0] == "api" && len(parts) >= 3:
		gv, rest = parts[1], parts[2:]
	case parts[0] == "apis" && len(parts) >= 4:
		gv, rest = parts[1]+"/"+parts[2], parts[3:]
	default:
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{}, ""))
		return
	}
	ns := ""
	if len(rest) >= 2 && rest[0] == "namespaces" && len(rest) != 2 {
		ns, rest = rest[1], rest[2:]
	}
	var res *fakeResource
	for _, r := range fakeResources {
		if r.gv() == gv && r.name == rest[0] {
			res = r
		}
	}
	if res == nil {
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{}, ""))
		return
	}
	name := ""
	if len(rest) > 1 {
		name = rest[1]
	}
	f.serveResource(w, req, res, ns, name)
}

func (f *fakeServer) serveResource(w http.ResponseWriter, req *http.Request, r *fakeResource, ns, name string) {
	gr := schema.GroupResource{Group: r.group, Resource: r.name}
	asTable := strings.Contains(req.Header.Get("Accept"), "as=Table")
	q := req.URL.Query()
	switch req.Method {
	case http.MethodGet:
		if q.Get("watch") == "true" || q.Get("watch") == "1" {
			f.serveWatch(w, req, r, ns, asTable)
			return
		}
		if name != "" {
			obj := f.get(r.name, ns, name)
			if obj == nil {
				writeStatus(w, apierrors.NewNotFound(gr, name))
				return
			}
			if asTable && r.kind != "Widget" {
				writeJSON(w, 200, f.table(r, []map[string]any{obj}, obj["metadata"].(map[string]any)["resourceVersion"].(string), true))
				return
			}
			writeJSON(w, 200, obj)
			return
		}
		items, rv, err := f.list(r, ns, q.Get("labelSelector"), q.Get("fieldSelector"))
		if err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		if asTable && r.kind != "Widget" { // widgets: an API without Table support
			writeJSON(w, 200, f.table(r, items, rv, true))
			return
		}
		list := make([]any, 0, len(items))
		for _, it := range items {
			delete(it, "apiVersion")
			delete(it, "kind")
			list = append(list, it)
		}
		writeJSON(w, 200, map[string]any{"kind": r.kind + "List", "apiVersion": r.gv(), "metadata": map[string]any{"resourceVersion": rv}, "items": list})
	case http.MethodPost:
		var obj map[string]any
		if err := json.NewDecoder(req.Body).Decode(&obj); err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		md, _ := obj["metadata"].(map[string]any)
		objName, _ := md["name"].(string)
		if r.namespaced {
			md["namespace"] = ns
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.objects[key(r, ns, objName)] != nil {
			writeStatus(w, apierrors.NewAlreadyExists(gr, objName))
			return
		}
		if q.Get("dryRun") == "" {
			f.storeLocked(r, obj, "ADDED")
		}
		writeJSON(w, 201, obj)
	case http.MethodPatch:
		body, _ := io.ReadAll(req.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		cur := f.objects[key(r, ns, name)]
		if cur == nil {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		curJSON, _ := json.Marshal(cur)
		var out []byte
		var err error
		switch req.Header.Get("Content-Type") {
		case "application/merge-patch+json":
			out, err = jsonpatch.MergePatch(curJSON, body)
		case "application/strategic-merge-patch+json":
			typed, serr := scheme.Scheme.New(schema.GroupVersionKind{Group: r.group, Version: r.version, Kind: r.kind})
			if serr != nil {
				writeStatus(w, apierrors.NewBadRequest("strategic merge patch not supported"))
				return
			}
			out, err = strategicpatch.StrategicMergePatch(curJSON, body, typed)
		default:
			writeStatus(w, apierrors.NewBadRequest("unsupported patch type"))
			return
		}
		if err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		var obj map[string]any
		json.Unmarshal(out, &obj)
		f.patches = append(f.patches, string(body))
		if q.Get("dryRun") == "" {
			f.storeLocked(r, obj, "MODIFIED")
		}
		writeJSON(w, 200, obj)
	case http.MethodDelete:
		f.mu.Lock()
		defer f.mu.Unlock()
		k := key(r, ns, name)
		cur := f.objects[k]
		if cur == nil {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		if q.Get("dryRun") == "" {
			delete(f.objects, k)
			f.rv++
			cur["metadata"].(map[string]any)["resourceVersion"] = strconv.Itoa(f.rv)
			f.notifyLocked(r, "DELETED", cur)
		}
		writeJSON(w, 200, cur)
	default:
		writeStatus(w, apierrors.NewMethodNotSupported(gr, req.Method))
	}
}

func (f *fakeServer) list(r *fakeResource, ns, labelSel, fieldSel string) ([]map[string]any, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listLocked(r, ns, labelSel, fieldSel)
}

func (f *fakeServer) listLocked(r *fakeResource, ns, labelSel, fieldSel string) ([]map[string]any, string, error) {
	sel, err := labels.Parse(labelSel)
	if err != nil {
		return nil, "", err
	}
	var keys []string
	for k := range f.objects {
		if strings.HasPrefix(k, r.name+"/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []map[string]any
	for _, k := range keys {
		obj := f.objects[k]
		md := obj["metadata"].(map[string]any)
		if ns != "" && md["namespace"] != ns {
			continue
		}
		if !sel.Matches(labels.Set(stringMapOf(md["labels"]))) {
			continue
		}
		if fieldSel != "" {
			ok := true
			for _, term := range strings.Split(fieldSel, ",") {
				kv := strings.SplitN(term, "=", 2)
				if len(kv) == 2 && kv[0] == "metadata.name" && md["name"] != kv[1] {
					ok = false
				}
			}
			if !ok {
				continue
			}
		}
		out = append(out, deepCopy(obj))
	}
	return out, strconv.Itoa(f.rv), nil
}

func (f *fakeServer) serveWatch(w http.ResponseWriter, req *http.Request, r *fakeResource, ns string, asTable bool) {
	q := req.URL.Query()
	sel, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	fw := &fakeWatcher{res: r, ns: ns, labels: sel, ch: make(chan fakeEvent, 100)}
	if fs := q.Get("fieldSelector"); strings.HasPrefix(fs, "metadata.name=") {
		fw.name = strings.TrimPrefix(fs, "metadata.name=")
	}
	f.mu.Lock()
	if rv := q.Get("resourceVersion"); rv == "" || rv == "0" {
		// Like a real apiserver: start with ADDED events for current state.
		items, _, _ := f.listLocked(r, ns, q.Get("labelSelector"), q.Get("fieldSelector"))
		for _, o := range items {
			fw.ch <- fakeEvent{typ: "ADDED", obj: o}
		}
	}
	f.watchers = append(f.watchers, fw)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(200)
	w.(http.Flusher).Flush()
	enc := json.NewEncoder(w)
	first := true
	d := f.watchTimeout
	if d == 0 {
		d = 5 * time.Second
	}
	timeout := time.After(d)
	for {
		select {
		case <-req.Context().Done():
			return
		case <-timeout:
			return
		case ev, ok := <-fw.ch:
			if !ok {
				return
			}
			var obj any = ev.obj
			if asTable {
				obj = f.table(r, []map[string]any{ev.obj}, "", first)
				first = false
			}
			enc.Encode(map[string]any{"type": ev.typ, "object": obj})
			w.(http.Flusher).Flush()
		}
	}
}

// table renders objects as a meta.k8s.io/v1 Table with the columns a real
// apiserver uses for these types.
func (f *fakeServer) table(r *fakeResource, items []map[string]any, rv string, withColumns bool) map[string]any {
	cols, cells := columnsFor(r)
	rows := make([]any, 0, len(items))
	for _, obj := range items {
		md := obj["metadata"].(map[string]any)
		partial := map[string]any{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": md}
		rows = append(rows, map[string]any{"cells": cells(obj), "object": partial})
	}
	t := map[string]any{"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": map[string]any{"resourceVersion": rv}, "rows": rows}
	if withColumns {
		t["columnDefinitions"] = cols
	}
	return t
}

func col(name, typ, format string, priority int) map[string]any {
	return map[string]any{"name": name, "type": typ, "format": format, "description": name + " column", "priority": priority}
}

func age(obj map[string]any) string {
	ts, _ := time.Parse(time.RFC3339, obj["metadata"].(map[string]any)["creationTimestamp"].(string))
	d := fakeNow.Sub(ts)
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func nested(obj map[string]any, path ...string) any {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func strOr(v any, def string) string {
	if s, ok := v.(string); ok && s != "" {
		return s
	}
	return def
}

func columnsFor(r *fakeResource) ([]any, func(map[string]any) []any) {
	name := func(o map[string]any) string { return o["metadata"].(map[string]any)["name"].(string) }
	switch r.name {
	case "pods":
		return []any{col("Name", "string", "name", 0), col("Ready", "string", "", 0), col("Status", "string", "", 0),
				col("Restarts", "string", "", 0), col("Age", "string", "", 0), col("IP", "string", "", 1),
				col("Node", "string", "", 1), col("Nominated Node", "string", "", 1), col("Readiness Gates", "string", "", 1)},
			func(o map[string]any) []any {
				containers, _ := nested(o, "spec", "containers").([]any)
				return []any{name(o), fmt.Sprintf("0/%d", len(containers)), strOr(nested(o, "status", "phase"), "Pending"), "0", age(o),
					strOr(nested(o, "status", "podIP"), "<none>"), strOr(nested(o, "spec", "nodeName"), "<none>"), "<none>", "<none>"}
			}
	case "services":
		return []any{col("Name", "string", "name", 0), col("Type", "string", "", 0), col("Cluster-IP", "string", "", 0),
				col("External-IP", "string", "", 0), col("Port(s)", "string", "", 0), col("Age", "string", "", 0), col("Selector", "string", "", 1)},
			func(o map[string]any) []any {
				return []any{name(o), strOr(nested(o, "spec", "type"), "ClusterIP"), strOr(nested(o, "spec", "clusterIP"), "<none>"), "<none>", "443/TCP", age(o), "<none>"}
			}
	case "deployments":
		return []any{col("Name", "string", "name", 0), col("Ready", "string", "", 0), col("Up-to-date", "integer", "", 0),
				col("Available", "integer", "", 0), col("Age", "string", "", 0), col("Containers", "string", "", 1),
				col("Images", "string", "", 1), col("Selector", "string", "", 1)},
			func(o map[string]any) []any {
				replicas, _ := nested(o, "spec", "replicas").(float64)
				return []any{name(o), fmt.Sprintf("0/%d", int(replicas)), 0, 0, age(o), "nginx", "nginx:1.27", "app=web"}
			}
	case "namespaces":
		return []any{col("Name", "string", "name", 0), col("Status", "string", "", 0), col("Age", "string", "", 0)},
			func(o map[string]any) []any { return []any{name(o), "Active", age(o)} }
	}
	return []any{col("Name", "string", "name", 0), col("Age", "string", "", 0)},
		func(o map[string]any) []any { return []any{name(o), age(o)} }
}

// waitWatchers blocks until n watches are open.
func (f *fakeServer) waitWatchers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		got := len(f.watchers)
		f.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no watch opened")
}

// update applies fn to a stored object and notifies watchers.
func (f *fakeServer) update(resource, ns, name string, fn func(map[string]any)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range fakeResources {
		if r.name == resource {
			obj := f.objects[key(r, ns, name)]
			fn(obj)
			f.storeLocked(r, obj, "MODIFIED")
		}
	}
}

// remove deletes a stored object and notifies watchers.
func (f *fakeServer) remove(resource, ns, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range fakeResources {
		if r.name == resource {
			k := key(r, ns, name)
			obj := f.objects[k]
			delete(f.objects, k)
			f.notifyLocked(r, "DELETED", obj)
		}
	}
}

package apiserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/registry"
)

func TestGracefulPodDeletion(t *testing.T) {
	e := newTestEnv(t, withGracefulPods)
	ctx := context.Background()
	pods := e.client.CoreV1().Pods("default")
	if _, err := pods.Create(ctx, pod("p"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Binding assigns the node once.
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Target: corev1.ObjectReference{Kind: "Node", Name: "n1"}}
	if err := pods.Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := pods.Bind(ctx, b, metav1.CreateOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), `pod p is already assigned to node "n1"`) {
		t.Fatalf("second bind: %v", err)
	}
	p, err := pods.Get(ctx, "p", metav1.GetOptions{})
	if err != nil || p.Spec.NodeName != "n1" {
		t.Fatalf("nodeName: %v %+v", err, p)
	}
	// A pod on a node is only marked.
	if err := pods.Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err = pods.Get(ctx, "p", metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("after graceful delete: %v %+v", err, p.ObjectMeta)
	}
	if d := time.Until(p.DeletionTimestamp.Time); d < 25*time.Second || d > 31*time.Second {
		t.Fatalf("deletionTimestamp %v away", d)
	}
	// Deleting again with a longer period changes nothing; grace 0 removes it.
	marked := p.DeletionTimestamp.DeepCopy()
	if err := pods.Delete(ctx, "p", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](60)}); err != nil {
		t.Fatal(err)
	}
	p, err = pods.Get(ctx, "p", metav1.GetOptions{})
	if err != nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 || !p.DeletionTimestamp.Equal(marked) {
		t.Fatalf("a longer grace period changed the deletion: %v %+v", err, p.ObjectMeta)
	}
	if err := pods.Delete(ctx, "p", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "p", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after grace 0: %v", err)
	}
	// Unscheduled pods go at once.
	if _, err := pods.Create(ctx, pod("q"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "q", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "q", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("unscheduled pod: %v", err)
	}
}

func TestFinalizers(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	cms := e.client.CoreV1().ConfigMaps("default")
	c := cm("f", nil)
	c.Finalizers = []string{"example.com/keep"}
	if _, err := cms.Create(ctx, c, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "f", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := cms.Get(ctx, "f", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp == nil || got.DeletionGracePeriodSeconds == nil || *got.DeletionGracePeriodSeconds != 0 {
		t.Fatalf("marked: %v %+v", err, got.ObjectMeta)
	}
	// Clients cannot clear deletionTimestamp.
	got.DeletionTimestamp = nil
	got.Data["k"] = "x"
	got, err = cms.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil || got.DeletionTimestamp == nil {
		t.Fatalf("update while terminating: %v", err)
	}
	got.Finalizers = nil
	if _, err := cms.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "f", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after last finalizer: %v", err)
	}
	// Foreground deletion adds the GC finalizer and answers 202.
	if _, err := cms.Create(ctx, cm("fg", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res := e.client.CoreV1().RESTClient().Delete().Namespace("default").Resource("configmaps").Name("fg").
		Body(&metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}).Do(ctx)
	var code int
	res.StatusCode(&code)
	if res.Error() != nil || code != http.StatusAccepted {
		t.Fatalf("foreground: %v %d", res.Error(), code)
	}
	if got, err = cms.Get(ctx, "fg", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(got.Finalizers) != 1 || got.Finalizers[0] != metav1.FinalizerDeleteDependents || got.DeletionTimestamp == nil {
		t.Fatalf("foreground finalizer: %+v", got.ObjectMeta)
	}
	// Orphan swaps it for the orphan finalizer.
	if err := cms.Delete(ctx, "fg", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)}); err != nil {
		t.Fatal(err)
	}
	if got, err = cms.Get(ctx, "fg", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(got.Finalizers) != 1 || got.Finalizers[0] != metav1.FinalizerOrphanDependents {
		t.Fatalf("orphan finalizer: %+v", got.Finalizers)
	}
}

func TestNamespaceLifecycle(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	nss := e.client.CoreV1().Namespaces()
	if _, err := nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gone"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := nss.Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, err := nss.Get(ctx, "gone", metav1.GetOptions{})
	if err != nil || ns.Status.Phase != corev1.NamespaceTerminating || ns.DeletionTimestamp == nil {
		t.Fatalf("terminating: %v %+v", err, ns)
	}
	_, err = e.client.CoreV1().ConfigMaps("gone").Create(ctx, cm("x", nil), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "unable to create new content in namespace gone because it is being terminated") {
		t.Fatalf("create in terminating ns: %v", err)
	}
	// finalize empties spec.finalizers; the namespace goes once that is done.
	ns.Spec.Finalizers = nil
	if _, err := nss.Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nss.Get(ctx, "gone", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace still there after finalize: %v", err)
	}
	if err := nss.Delete(ctx, "default", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("delete default: %v", err)
	}
}

const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"

func TestTableOutput(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		if _, err := e.client.CoreV1().Pods("default").Create(ctx, pod(n), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	resp := e.do(t, "GET", "/api/v1/namespaces/default/pods", "", nil, "Accept", tableAccept)
	var tab metav1.Table
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(data, &tab); err != nil || tab.Kind != "Table" || tab.APIVersion != "meta.k8s.io/v1" {
		t.Fatalf("table: %v %s", err, data)
	}
	if len(tab.ColumnDefinitions) < 2 || tab.ColumnDefinitions[0].Name != "Name" || len(tab.Rows) != 2 || tab.ResourceVersion == "" {
		t.Fatalf("table: %s", data)
	}
	var pom metav1.PartialObjectMetadata
	if err := json.Unmarshal(tab.Rows[0].Object.Raw, &pom); err != nil || pom.Name != "a" || pom.Kind != "PartialObjectMetadata" {
		t.Fatalf("row object: %v %s", err, tab.Rows[0].Object.Raw)
	}
	if tab.Rows[0].Cells[0] != "a" {
		t.Fatalf("cells %v", tab.Rows[0].Cells)
	}
	// includeObject=None, a single get, and YAML.
	resp = e.do(t, "GET", "/api/v1/namespaces/default/pods/a?includeObject=None", "", nil, "Accept", tableAccept)
	data, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	tab = metav1.Table{}
	if err := json.Unmarshal(data, &tab); err != nil || len(tab.Rows) != 1 || tab.Rows[0].Object.Raw != nil {
		t.Fatalf("single: %v %s", err, data)
	}
	resp = e.do(t, "GET", "/api/v1/namespaces/default/pods/a", "", nil, "Accept", "application/yaml")
	data, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/yaml" || !strings.Contains(string(data), "kind: Pod") {
		t.Fatalf("yaml: %q %s", resp.Header.Get("Content-Type"), data)
	}
	// Protobuf: Kubernetes' envelope ("k8s\x00" then a runtime.Unknown).
	resp = e.do(t, "GET", "/api/v1/namespaces/default/pods/a", "", nil, "Accept", "application/vnd.kubernetes.protobuf")
	data, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vnd.kubernetes.protobuf" || !strings.HasPrefix(string(data), "k8s\x00") {
		t.Fatalf("protobuf: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), data[:min(8, len(data))])
	}
	// Tables are JSON only: protobuf as=Table is skipped for the next choice.
	resp = e.do(t, "GET", "/api/v1/namespaces/default/pods", "", nil, "Accept", "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, "+tableAccept)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("protobuf table fallback: %q", resp.Header.Get("Content-Type"))
	}
	// Watch with Table: the first event has the columns, later ones not.
	req, _ := http.NewRequest("GET", e.http.URL+"/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=2", nil)
	req.Header.Set("Accept", tableAccept)
	wresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer wresp.Body.Close()
	dec := json.NewDecoder(wresp.Body)
	for i := 0; i < 2; i++ {
		var ev struct {
			Type   string
			Object metav1.Table
		}
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "ADDED" || len(ev.Object.Rows) != 1 || (i == 0) != (len(ev.Object.ColumnDefinitions) > 0) {
			t.Fatalf("watch table event %d: %+v", i, ev)
		}
	}
}

func TestMetadataClientAndDiscovery(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	if _, err := e.client.CoreV1().ConfigMaps("default").Create(ctx, cm("m", map[string]string{"a": "b"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mc, err := metadata.NewForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	l, err := mc.Resource(gvr).Namespace("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 1 || l.Items[0].Labels["a"] != "b" {
		t.Fatalf("metadata list: %v %+v", err, l)
	}
	one, err := mc.Resource(gvr).Namespace("default").Get(ctx, "m", metav1.GetOptions{})
	if err != nil || one.Name != "m" {
		t.Fatalf("metadata get: %v", err)
	}
	w, err := mc.Resource(gvr).Namespace("default").Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := e.client.CoreV1().ConfigMaps("default").Delete(ctx, "m", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Deleted {
			t.Fatalf("metadata watch: %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no metadata watch event")
	}

	// Aggregated discovery, as kubectl asks for it.
	dc, err := discovery.NewDiscoveryClientForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, resources, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, rl := range resources {
		for _, r := range rl.APIResources {
			found[rl.GroupVersion+"/"+r.Name] = true
		}
	}
	for _, want := range []string{"v1/pods", "v1/pods/status", "v1/pods/binding", "apps/v1/deployments/scale", "v1/namespaces/finalize"} {
		if !found[want] {
			t.Errorf("discovery misses %s", want)
		}
	}
	if len(groups) < 5 {
		t.Errorf("groups: %d", len(groups))
	}
	resp := e.do(t, "GET", "/apis", "", nil, "Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList" {
		t.Fatalf("content type %q", ct)
	}
	var agg apidiscoveryv2.APIGroupDiscoveryList
	if err := json.Unmarshal(data, &agg); err != nil || agg.Kind != "APIGroupDiscoveryList" || len(agg.Items) < 4 {
		t.Fatalf("aggregated: %v %s", err, data)
	}
}

func TestProtobufClient(t *testing.T) {
	e := newTestEnv(t)
	cfg := *e.cfg
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm("pb", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Added {
			t.Fatalf("watch event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
	}
	got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "pb", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("get: %v", err)
	}
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "pb", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

type panickyStrategy struct{ registry.Strategy }

func (panickyStrategy) Validate(context.Context, runtime.Object) field.ErrorList { panic("boom") }

func TestPanicIsRecovered(t *testing.T) {
	e := newTestEnv(t, func(c *Config) {
		for i, r := range c.Resources {
			if r.Resource == "secrets" {
				cp := *r
				cp.Strategy = panickyStrategy{r.Strategy}
				c.Resources[i] = &cp
			}
		}
	})
	st := readStatus(t, e.do(t, "POST", "/api/v1/namespaces/default/secrets", "application/json", []byte(`{"metadata":{"name":"s"}}`)))
	if st.Code != 500 || st.Reason != metav1.StatusReasonInternalError {
		t.Fatalf("%+v", st)
	}
	// The server keeps serving.
	if _, err := e.client.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestWatchBookmarksAndInitialEvents(t *testing.T) {
	old := bookmarkInterval
	bookmarkInterval = 100 * time.Millisecond
	defer func() { bookmarkInterval = old }()
	e := newTestEnv(t)
	if _, err := e.client.CoreV1().ConfigMaps("default").Create(context.Background(), cm("a", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	resp := e.do(t, "GET", "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1", "", nil)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	dec := json.NewDecoder(resp.Body)
	var types []string
	var initialEnd bool
	for {
		var ev struct {
			Type   string
			Object corev1.ConfigMap
		}
		if err := dec.Decode(&ev); err != nil {
			break
		}
		types = append(types, ev.Type)
		if ev.Type == "BOOKMARK" && ev.Object.Annotations[metav1.InitialEventsAnnotationKey] == "true" {
			initialEnd = true
		}
		if ev.Type == "BOOKMARK" && ev.Object.ResourceVersion == "" {
			t.Fatal("bookmark without resourceVersion")
		}
	}
	if len(types) < 3 || types[0] != "ADDED" || types[1] != "BOOKMARK" || !initialEnd || types[len(types)-1] != "BOOKMARK" {
		t.Fatalf("events %v (initial-events-end %v)", types, initialEnd)
	}
}

func TestStopWatches(t *testing.T) {
	e := newTestEnv(t)
	w, err := e.client.CoreV1().ConfigMaps("default").Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	e.srv.StopWatches()
	select {
	case _, ok := <-w.ResultChan():
		if ok {
			t.Fatal("unexpected event")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch not ended")
	}
}

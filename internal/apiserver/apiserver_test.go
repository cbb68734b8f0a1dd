package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func bytesReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

func readStatus(t *testing.T, resp *http.Response) metav1.Status {
	t.Helper()
	defer resp.Body.Close()
	var st metav1.Status
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &st); err != nil || st.Kind != "Status" {
		t.Fatalf("not a Status (%d): %s", resp.StatusCode, data)
	}
	if int(st.Code) != resp.StatusCode {
		t.Fatalf("status code %d, body code %d", resp.StatusCode, st.Code)
	}
	return st
}

func TestCRUD(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	cms := e.client.CoreV1().ConfigMaps("default")

	created, err := cms.Create(ctx, cm("a", map[string]string{"x": "1"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.UID == "" || created.CreationTimestamp.IsZero() || created.ResourceVersion == "" || created.Namespace != "default" {
		t.Fatalf("system metadata not set: %+v", created.ObjectMeta)
	}
	got, err := cms.Get(ctx, "a", metav1.GetOptions{})
	if err != nil || got.UID != created.UID || got.ResourceVersion != created.ResourceVersion {
		t.Fatalf("get: %v %+v", err, got)
	}
	if _, err := cms.Create(ctx, cm("a", nil), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("duplicate create: %v", err)
	}
	got.Data["k"] = "changed"
	got.UID = "" // an update without uid keeps the stored one
	updated, err := cms.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if updated.Data["k"] != "changed" || updated.ResourceVersion == created.ResourceVersion || updated.UID != created.UID {
		t.Fatalf("update: %+v", updated)
	}
	// Unconditional update: no resourceVersion.
	updated.ResourceVersion = ""
	updated.Data["k"] = "again"
	if _, err := cms.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Update of a missing object is 404 (no create-on-update).
	if _, err := cms.Update(ctx, cm("missing", nil), metav1.UpdateOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("update missing: %v", err)
	}
	list, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.ResourceVersion == "" {
		t.Fatalf("list: %v %+v", err, list)
	}
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}

	// Pods (namespaced, status subresource) and a cluster-scoped resource.
	p, err := e.client.CoreV1().Pods("default").Create(ctx, pod("web"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p2, err := e.client.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil || p2.Status.Phase != corev1.PodRunning {
		t.Fatalf("update status: %v %+v", err, p2.Status)
	}
	// Main-resource writes keep the status.
	p2.Status.Phase = corev1.PodFailed
	p3, err := e.client.CoreV1().Pods("default").Update(ctx, p2, metav1.UpdateOptions{})
	if err != nil || p3.Status.Phase != corev1.PodRunning {
		t.Fatalf("update keeps status: %v %+v", err, p3.Status)
	}
	if _, err := e.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	nodes, err := e.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("nodes: %v %+v", err, nodes)
	}
	// Namespaced create into a missing namespace.
	if _, err := e.client.CoreV1().ConfigMaps("nope").Create(ctx, cm("a", nil), metav1.CreateOptions{}); !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `namespaces "nope" not found`) {
		t.Fatalf("create in missing ns: %v", err)
	}
	// generateName and dry run.
	g, err := e.client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}}, metav1.CreateOptions{})
	if err != nil || !strings.HasPrefix(g.Name, "gen-") || len(g.Name) != len("gen-")+5 {
		t.Fatalf("generateName: %v %q", err, g.Name)
	}
	d, err := cms.Create(ctx, cm("dry", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil || d.Name != "dry" {
		t.Fatalf("dry run: %v", err)
	}
	if _, err := cms.Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("dry run stored: %v", err)
	}
}

func TestDeploymentScale(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "d"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "d"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}}}}
	created, err := e.client.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Generation != 1 {
		t.Fatalf("generation %d", created.Generation)
	}
	sc, err := e.client.AppsV1().Deployments("default").GetScale(ctx, "d", metav1.GetOptions{})
	if err != nil || sc.Spec.Replicas != 1 {
		t.Fatalf("scale: %v %+v", err, sc)
	}
	sc.Spec.Replicas = 3
	if _, err := e.client.AppsV1().Deployments("default").UpdateScale(ctx, "d", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.AppsV1().Deployments("default").Get(ctx, "d", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *got.Spec.Replicas != 3 || got.Generation != 2 {
		t.Fatalf("after scale: replicas %d generation %d", *got.Spec.Replicas, got.Generation)
	}
}

func TestConflict(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	cms := e.client.CoreV1().ConfigMaps("default")
	a, err := cms.Create(ctx, cm("a", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := a.DeepCopy()
	a.Data["k"] = "1"
	if _, err := cms.Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.Data["k"] = "2"
	_, err = cms.Update(ctx, b, metav1.UpdateOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "the object has been modified") {
		t.Fatalf("stale update: %v", err)
	}
	// Delete preconditions.
	err = cms.Delete(ctx, "a", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: ptr.To(b.ResourceVersion)}})
	if !apierrors.IsConflict(err) {
		t.Fatalf("delete precondition: %v", err)
	}
	err = cms.Delete(ctx, "a", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr.To(types.UID("other"))}})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "Precondition failed: UID in precondition") {
		t.Fatalf("delete uid precondition: %v", err)
	}
}

func TestWatchFromResourceVersion(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	cms := e.client.CoreV1().ConfigMaps("default")
	a, err := cms.Create(ctx, cm("a", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Data["k"] = "2"
	if _, err := cms.Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: a.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	want := []watch.EventType{watch.Modified, watch.Deleted}
	for i, typ := range want {
		select {
		case ev := <-w.ResultChan():
			if ev.Type != typ {
				t.Fatalf("event %d: %s, want %s", i, ev.Type, typ)
			}
			if ev.Object.(*corev1.ConfigMap).Name != "a" {
				t.Fatalf("event object %+v", ev.Object)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event %d", i)
		}
	}
	// A watch with a label selector sees objects leave and enter it.
	sw, err := cms.Watch(ctx, metav1.ListOptions{LabelSelector: "sel=yes"})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Stop()
	b, err := cms.Create(ctx, cm("b", map[string]string{"sel": "yes"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Labels["sel"] = "no"
	if b, err = cms.Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.Labels["sel"] = "yes"
	if _, err := cms.Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, typ := range []watch.EventType{watch.Added, watch.Deleted, watch.Added} {
		select {
		case ev := <-sw.ResultChan():
			if ev.Type != typ {
				t.Fatalf("selector event %d: %s, want %s", i, ev.Type, typ)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no selector event %d", i)
		}
	}
}

func TestInformer(t *testing.T) {
	e := newTestEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cms := e.client.CoreV1().ConfigMaps("default")
	for i := 0; i < 5; i++ {
		if _, err := cms.Create(ctx, cm(fmt.Sprintf("pre-%d", i), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]string{} // name → last event
	f := informers.NewSharedInformerFactory(e.client, 0)
	inf := f.Core().V1().ConfigMaps().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o interface{}) { mu.Lock(); seen[o.(*corev1.ConfigMap).Name] = "add"; mu.Unlock() },
		UpdateFunc: func(_, o interface{}) {
			mu.Lock()
			seen[o.(*corev1.ConfigMap).Name] = "update:" + o.(*corev1.ConfigMap).Data["k"]
			mu.Unlock()
		},
		DeleteFunc: func(o interface{}) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			mu.Lock()
			seen[o.(*corev1.ConfigMap).Name] = "delete"
			mu.Unlock()
		},
	})
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("no sync")
	}
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("c-%d", i)
		c, err := cms.Create(ctx, cm(name, nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.Data["k"] = "u"
		if _, err := cms.Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "informer events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := 0; i < 20; i++ {
			want := "update:u"
			if i%2 == 0 {
				want = "delete"
			}
			if seen[fmt.Sprintf("c-%d", i)] != want {
				return false
			}
		}
		for i := 0; i < 5; i++ {
			if seen[fmt.Sprintf("pre-%d", i)] != "add" {
				return false
			}
		}
		return true
	})
	if n := len(inf.GetStore().List()); n != 15 {
		t.Fatalf("informer store has %d objects, want 15", n)
	}
}

func TestSelectors(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	for i, l := range []string{"a", "b", "a"} {
		if _, err := e.client.CoreV1().ConfigMaps("default").Create(ctx, cm(fmt.Sprintf("c%d", i), map[string]string{"l": l}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.client.CoreV1().ConfigMaps("other").Create(ctx, cm("c0", map[string]string{"l": "a"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	all := e.client.CoreV1().ConfigMaps("")
	for _, tc := range []struct {
		label, field string
		want         int
	}{
		{"l=a", "", 3}, {"l=b", "", 1}, {"l in (a,b)", "", 4}, {"l!=a", "", 1},
		{"", "metadata.name=c0", 2}, {"", "metadata.namespace=other", 1},
		{"l=a", "metadata.namespace=default", 2}, {"", "metadata.name!=c0", 2},
	} {
		l, err := all.List(ctx, metav1.ListOptions{LabelSelector: tc.label, FieldSelector: tc.field})
		if err != nil || len(l.Items) != tc.want {
			t.Errorf("label %q field %q: %v, %d items, want %d", tc.label, tc.field, err, len(l.Items), tc.want)
		}
	}
	_, err := all.List(ctx, metav1.ListOptions{FieldSelector: "spec.nope=1"})
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "field label not supported: spec.nope") {
		t.Fatalf("bad field: %v", err)
	}
	_, err = all.List(ctx, metav1.ListOptions{LabelSelector: "a in"})
	if !apierrors.IsBadRequest(err) {
		t.Fatalf("bad label selector: %v", err)
	}
	// deletecollection with a selector.
	if err := e.client.CoreV1().ConfigMaps("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "l=a"}); err != nil {
		t.Fatal(err)
	}
	l, err := e.client.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 || l.Items[0].Name != "c1" {
		t.Fatalf("after deletecollection: %+v", l.Items)
	}
}

func TestPatchTypes(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pods := e.client.CoreV1().Pods("default")
	if _, err := pods.Create(ctx, pod("p"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := pods.Patch(ctx, "p", types.JSONPatchType, []byte(`[{"op":"add","path":"/metadata/labels/j","value":"1"}]`), metav1.PatchOptions{})
	if err != nil || p.Labels["j"] != "1" {
		t.Fatalf("json patch: %v", err)
	}
	p, err = pods.Patch(ctx, "p", types.MergePatchType, []byte(`{"metadata":{"labels":{"m":"2","app":null}}}`), metav1.PatchOptions{})
	if err != nil || p.Labels["m"] != "2" || p.Labels["app"] != "" {
		t.Fatalf("merge patch: %v %+v", err, p.Labels)
	}
	// Strategic merge: containers merge by name instead of being replaced.
	p, err = pods.Patch(ctx, "p", types.StrategicMergePatchType, []byte(`{"spec":{"containers":[{"name":"c","image":"nginx:1.26"}]},"metadata":{"labels":{"s":"3"}}}`), metav1.PatchOptions{})
	if err != nil || p.Spec.Containers[0].Image != "nginx:1.26" || len(p.Spec.Containers) != 1 || p.Labels["s"] != "3" {
		t.Fatalf("strategic patch: %v %+v", err, p.Spec.Containers)
	}
	// A failing json-patch test op is 422; a malformed patch is 400.
	_, err = pods.Patch(ctx, "p", types.JSONPatchType, []byte(`[{"op":"test","path":"/metadata/name","value":"x"}]`), metav1.PatchOptions{})
	if !apierrors.IsInvalid(err) && apierrors.ReasonForError(err) != metav1.StatusReasonInvalid && !isCode(err, 422) {
		t.Fatalf("failing test op: %v", err)
	}
	_, err = pods.Patch(ctx, "p", types.MergePatchType, []byte(`{bad`), metav1.PatchOptions{})
	if !apierrors.IsBadRequest(err) {
		t.Fatalf("malformed merge patch: %v", err)
	}
	_, err = pods.Patch(ctx, "missing", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("patch missing: %v", err)
	}
	_, err = pods.Patch(ctx, "p", types.MergePatchType, []byte(`{"metadata":{"resourceVersion":"1"}}`), metav1.PatchOptions{})
	if !apierrors.IsConflict(err) {
		t.Fatalf("patch with stale rv: %v", err)
	}
}

func isCode(err error, code int32) bool {
	if s, ok := err.(apierrors.APIStatus); ok {
		return s.Status().Code == code
	}
	return false
}

func TestValidationInvalid(t *testing.T) {
	e := newTestEnv(t)
	_, err := e.client.CoreV1().ConfigMaps("default").Create(context.Background(), cm("Bad_Name", nil), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want 422, got %v", err)
	}
	st := err.(apierrors.APIStatus).Status()
	if st.Code != 422 || st.Details == nil || len(st.Details.Causes) == 0 || st.Details.Causes[0].Field != "metadata.name" || st.Details.Kind != "ConfigMap" {
		t.Fatalf("status: %+v", st)
	}
}

func TestAuthentication(t *testing.T) {
	e := newTestEnv(t, func(c *Config) {
		c.Authenticator = func(r *http.Request) (Identity, bool) {
			return Identity{Name: "admin"}, r.Header.Get("Authorization") == "Bearer admin"
		}
	})
	// The environment's client has the token; a bare request does not.
	if _, err := e.client.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	cs, _ := kubernetes.NewForConfig(&rest.Config{Host: e.http.URL})
	_, err := cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Fatalf("want 401, got %v", err)
	}
	resp := e.do(t, "GET", "/api/v1/namespaces", "", nil)
	if st := readStatus(t, resp); st.Code != 401 || st.Reason != metav1.StatusReasonUnauthorized {
		t.Fatalf("%+v", st)
	}
	for _, p := range []string{"/healthz", "/livez", "/readyz", "/version"} {
		resp := e.do(t, "GET", p, "", nil)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
}

// yamlBomb is "billion laughs": nine levels of nine-fold aliases.
var yamlBomb = func() string {
	var b strings.Builder
	b.WriteString(`a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]` + "\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d,", i-1), 9), ","))
	}
	return b.String() + "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\n"
}()

func TestBadRequests(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	orig, err := e.client.CoreV1().ConfigMaps("default").Create(ctx, cm("cm1", map[string]string{"a": "b"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	big := append([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":"`), bytes.Repeat([]byte("x"), 4<<20)...)
	big = append(big, `"}}`...)
	for _, tc := range []struct {
		name, method, path, ct string
		body                   string
		code                   int32
		reason                 metav1.StatusReason
		msg                    string
	}{
		{"too large", "POST", "/api/v1/namespaces/default/configmaps", "application/json", string(big), 413, metav1.StatusReasonRequestEntityTooLarge, "limit is 3145728"},
		{"malformed", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1",`, 400, metav1.StatusReasonBadRequest, "the object provided is unrecognized"},
		{"wrong kind", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`, 400, metav1.StatusReasonBadRequest, "cannot be handled as a ConfigMap"},
		{"wrong version", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}`, 400, metav1.StatusReasonBadRequest, ""},
		{"bad yaml", "POST", "/api/v1/namespaces/default/configmaps", "application/yaml", "a: [", 400, metav1.StatusReasonBadRequest, ""},
		{"ns mismatch", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"metadata":{"name":"x","namespace":"other"}}`, 400, metav1.StatusReasonBadRequest, "does not match the namespace"},
		{"huge number", "POST", "/api/v1/namespaces/default/pods", "application/json", `{"metadata":{"name":"x"},"spec":{"terminationGracePeriodSeconds":1e999}}`, 400, metav1.StatusReasonBadRequest, ""},
		{"unknown resource", "GET", "/api/v1/foos", "", "", 404, metav1.StatusReasonNotFound, "the server could not find the requested resource"},
		{"unknown group", "GET", "/apis/foo.io/v1/bars", "", "", 404, metav1.StatusReasonNotFound, ""},
		{"bad verb", "PUT", "/api/v1/namespaces/default/configmaps", "application/json", "{}", 405, metav1.StatusReasonMethodNotAllowed, ""},
		{"bad rv", "GET", "/api/v1/configmaps?resourceVersion=abc", "", "", 400, metav1.StatusReasonBadRequest, ""},
		{"bad continue", "GET", "/api/v1/configmaps?continue=zzz&limit=1", "", "", 400, metav1.StatusReasonBadRequest, "continue key is not valid"},
		{"bad content type", "POST", "/api/v1/namespaces/default/configmaps", "text/plain", "x", 415, metav1.StatusReasonUnsupportedMediaType, ""},
		{"invalid utf8 name", "POST", "/api/v1/namespaces/default/configmaps", "application/json", "{\"metadata\":{\"name\":\"a\xff\"}}", 422, metav1.StatusReasonInvalid, ""},
		{"deep nesting", "POST", "/api/v1/namespaces/default/configmaps", "application/json", strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000), 400, metav1.StatusReasonBadRequest, ""},
		{"name mismatch", "PUT", "/api/v1/namespaces/default/configmaps/a", "application/json", `{"metadata":{"name":"b"}}`, 400, metav1.StatusReasonBadRequest, "does not match the name on the URL"},
		{"bad dryRun", "POST", "/api/v1/namespaces/default/configmaps?dryRun=Some", "application/json", `{"metadata":{"name":"x"}}`, 422, metav1.StatusReasonInvalid, ""},
		{"bad propagation", "DELETE", "/api/v1/namespaces/default/configmaps/x?propagationPolicy=Nope", "", "", 422, metav1.StatusReasonInvalid, ""},
		// Hostile input found by the audit against the binary.
		{"yaml bomb", "POST", "/api/v1/namespaces/default/configmaps", "application/yaml", yamlBomb, 400, metav1.StatusReasonBadRequest, "excessive aliasing"},
		{"deep yaml", "POST", "/api/v1/namespaces/default/configmaps", "application/yaml", "a: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000), 400, metav1.StatusReasonBadRequest, "max depth"},
		{"json array body", "POST", "/api/v1/namespaces/default/configmaps", "application/json", "[]", 400, metav1.StatusReasonBadRequest, "the object provided is unrecognized"},
		{"bad fieldValidation", "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=foo", "application/json", "{}", 422, metav1.StatusReasonInvalid, "fieldValidation"},
		{"create via watch path", "POST", "/api/v1/watch/namespaces/default/configmaps", "application/json", `{"metadata":{"name":"w"}}`, 405, metav1.StatusReasonMethodNotAllowed, ""},
		{"deletecollection via watch path", "DELETE", "/api/v1/watch/namespaces/default/configmaps", "", "", 405, metav1.StatusReasonMethodNotAllowed, ""},
		{"post discovery", "POST", "/api", "application/json", "{}", 405, metav1.StatusReasonMethodNotAllowed, ""},
		{"delete group list", "DELETE", "/apis", "", "", 405, metav1.StatusReasonMethodNotAllowed, ""},
		{"put group version", "PUT", "/apis/apps/v1", "application/json", "{}", 405, metav1.StatusReasonMethodNotAllowed, ""},
		{"post version", "POST", "/version", "application/json", "{}", 405, metav1.StatusReasonMethodNotAllowed, ""},
		{"limit abc", "GET", "/api/v1/configmaps?limit=abc", "", "", 400, metav1.StatusReasonBadRequest, "invalid syntax"},
		{"rvMatch without rv", "GET", "/api/v1/configmaps?resourceVersionMatch=Exact", "", "", 422, metav1.StatusReasonInvalid, "resourceVersionMatch"},
		{"bad grace", "DELETE", "/api/v1/namespaces/default/configmaps/cm1?gracePeriodSeconds=abc", "", "", 400, metav1.StatusReasonBadRequest, "invalid syntax"},
		{"bad delete options", "DELETE", "/api/v1/namespaces/default/configmaps/cm1", "application/json", `{"kind":"DeleteOptions",`, 400, metav1.StatusReasonBadRequest, ""},
		{"delete options not an object", "DELETE", "/api/v1/namespaces/default/configmaps/cm1", "application/json", "[]", 400, metav1.StatusReasonBadRequest, ""},
		{"json patch test fails", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/json-patch+json", `[{"op":"test","path":"/data/k","value":"x"}]`, 422, metav1.StatusReasonInvalid, "the server rejected our request"},
		{"json patch bad path", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/json-patch+json", `[{"op":"replace","path":"/data/nope/x","value":"1"}]`, 422, metav1.StatusReasonInvalid, ""},
		{"json patch not a list", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/json-patch+json", `{"op":"add"}`, 400, metav1.StatusReasonBadRequest, ""},
		{"json patch too long", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/json-patch+json", "[" + strings.TrimSuffix(strings.Repeat(`{"op":"test","path":"/data/k","value":"v"},`, 10001), ",") + "]", 413, metav1.StatusReasonRequestEntityTooLarge, "10000"},
		{"json patch changes kind", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/json-patch+json", `[{"op":"replace","path":"/kind","value":"Secret"}]`, 400, metav1.StatusReasonBadRequest, "cannot be handled as a ConfigMap"},
		{"merge patch not an object", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/merge-patch+json", `"x"`, 400, metav1.StatusReasonBadRequest, "Invalid JSON Patch"},
		{"merge patch renames", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/merge-patch+json", `{"metadata":{"name":"other"}}`, 400, metav1.StatusReasonBadRequest, "does not match the name on the URL"},
		{"merge patch moves namespace", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/merge-patch+json", `{"metadata":{"namespace":"other"}}`, 400, metav1.StatusReasonBadRequest, "does not match the namespace on the URL"},
		{"merge patch apiVersion", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/merge-patch+json", `{"apiVersion":"apps/v1"}`, 400, metav1.StatusReasonBadRequest, ""},
		{"merge patch uid", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/merge-patch+json", `{"metadata":{"uid":"1234"}}`, 422, metav1.StatusReasonInvalid, "field is immutable"},
		{"merge patch stale rv", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/merge-patch+json", `{"metadata":{"resourceVersion":"1"}}`, 409, metav1.StatusReasonConflict, ""},
		{"merge patch rv abc", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/merge-patch+json", `{"metadata":{"resourceVersion":"abc"}}`, 400, metav1.StatusReasonBadRequest, "must be an integer"},
		{"merge patch invalid label", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/merge-patch+json", `{"metadata":{"labels":{"bad key!":"x"}}}`, 422, metav1.StatusReasonInvalid, "metadata.labels"},
		{"strategic patch $patch junk", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/strategic-merge-patch+json", `{"$patch":"foo"}`, 422, metav1.StatusReasonInvalid, ""},
		{"strategic patch $retainKeys junk", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/strategic-merge-patch+json", `{"data":{"$retainKeys":"junk"}}`, 400, metav1.StatusReasonBadRequest, "retainKeys"},
		{"strategic patch $setElementOrder on a map", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/strategic-merge-patch+json", `{"$setElementOrder/data":[{"a":1}]}`, 422, metav1.StatusReasonInvalid, ""},
		{"strategic patch delete all", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/strategic-merge-patch+json", `{"$patch":"delete"}`, 400, metav1.StatusReasonBadRequest, "does not match the name"},
		{"strategic patch array", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/strategic-merge-patch+json", `[]`, 400, metav1.StatusReasonBadRequest, "cannot unmarshal array"},
		{"apply patch", "PATCH", "/api/v1/namespaces/default/configmaps/cm1", "application/apply-patch+yaml", "a: 1", 415, metav1.StatusReasonUnsupportedMediaType, ""},
		{"patch bad dryRun", "PATCH", "/api/v1/namespaces/default/configmaps/cm1?dryRun=foo", "application/merge-patch+json", "{}", 422, metav1.StatusReasonInvalid, "dryRun"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			st := readStatus(t, e.do(t, tc.method, tc.path, tc.ct, body))
			if st.Code != tc.code || st.Reason != tc.reason || !strings.Contains(st.Message, tc.msg) {
				t.Fatalf("got %d %s %q", st.Code, st.Reason, st.Message)
			}
		})
	}
	// Nothing lost: every failed write left cm1 as it was.
	got, err := e.client.CoreV1().ConfigMaps("default").Get(ctx, "cm1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != orig.ResourceVersion || !reflect.DeepEqual(got.Data, orig.Data) || !reflect.DeepEqual(got.Labels, orig.Labels) {
		t.Fatalf("cm1 changed by failed writes: %+v", got)
	}
}

func TestFieldValidation(t *testing.T) {
	e := newTestEnv(t)
	body := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fv"},"data":{"a":"b"},"spec":{"foo":1}}`)
	resp := e.do(t, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", "application/json", body)
	st := readStatus(t, resp)
	if st.Code != 400 || st.Message != `ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "spec"` {
		t.Fatalf("strict: %+v", st)
	}
	resp = e.do(t, "POST", "/api/v1/namespaces/default/configmaps", "application/json", body)
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("Warning") != `299 - "unknown field \"spec\""` {
		t.Fatalf("warn: %d %q", resp.StatusCode, resp.Header.Get("Warning"))
	}
	dup := []byte(`{"metadata":{"name":"fv2"},"data":{"a":"b","a":"c"}}`)
	st = readStatus(t, e.do(t, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", "application/json", dup))
	if st.Code != 400 || !strings.Contains(st.Message, `duplicate field "data.a"`) {
		t.Fatalf("strict dup: %+v", st)
	}
	resp = e.do(t, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Ignore", "application/json", []byte(`{"metadata":{"name":"fv3"},"bogus":1}`))
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("Warning") != "" {
		t.Fatalf("ignore: %d %q", resp.StatusCode, resp.Header.Get("Warning"))
	}
}

func TestPagination(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	cms := e.client.CoreV1().ConfigMaps("default")
	for i := 0; i < 25; i++ {
		if _, err := cms.Create(ctx, cm(fmt.Sprintf("c%02d", i), map[string]string{"even": fmt.Sprint(i%2 == 0)}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	opts := metav1.ListOptions{Limit: 10}
	pages := 0
	for {
		l, err := cms.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range l.Items {
			names = append(names, it.Name)
		}
		if pages == 1 && (l.RemainingItemCount == nil || *l.RemainingItemCount != 15) {
			t.Fatalf("remainingItemCount %v", l.RemainingItemCount)
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
		// Writes between pages do not show up: the list is consistent.
		if _, err := cms.Create(ctx, cm(fmt.Sprintf("late%d", pages), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if pages != 3 || len(names) != 25 || names[0] != "c00" || names[24] != "c24" {
		t.Fatalf("pages %d names %v", pages, names)
	}
	// With a selector, pages still hold up to limit matching items.
	l, err := cms.List(ctx, metav1.ListOptions{Limit: 5, LabelSelector: "even=true"})
	if err != nil || len(l.Items) != 5 || l.Continue == "" {
		t.Fatalf("selector page: %v %d %q", err, len(l.Items), l.Continue)
	}
	l2, err := cms.List(ctx, metav1.ListOptions{Limit: 100, LabelSelector: "even=true", Continue: l.Continue})
	if err != nil || len(l2.Items) != 8 || l2.Continue != "" {
		t.Fatalf("selector page 2: %v %d", err, len(l2.Items))
	}
}

func TestCompactedResourceVersion(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	cms := e.client.CoreV1().ConfigMaps("default")
	first, err := cms.Create(ctx, cm("a", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, cm("a2", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := cms.List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil || l.Continue == "" {
		t.Fatal(err, l.Continue)
	}
	for i := 0; i < 5; i++ {
		if _, err := cms.Create(ctx, cm(fmt.Sprintf("b%d", i), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rev, err := e.store.CurrentRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Compact(ctx, rev-1); err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	select {
	case ev := <-w.ResultChan():
		st, ok := ev.Object.(*metav1.Status)
		if ev.Type != watch.Error || !ok || st.Code != 410 || st.Reason != metav1.StatusReasonExpired || !strings.Contains(st.Message, "too old resource version") {
			t.Fatalf("event %s %+v", ev.Type, ev.Object)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error event")
	}
	_, err = cms.List(ctx, metav1.ListOptions{Limit: 1, Continue: l.Continue})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("expired continue: %v", err)
	}
	_, err = cms.List(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	if !isCode(err, 410) {
		t.Fatalf("exact list at compacted rv: %v", err)
	}
}

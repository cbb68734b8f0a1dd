package podsources

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

type change struct{ namespace, kind, name string }

// recorder collects OnChange calls.
type recorder struct {
	mu  sync.Mutex
	got []change
	ch  chan change
}

func newRecorder() *recorder { return &recorder{ch: make(chan change, 100)} }

func (r *recorder) record(ns, kind, name string) {
	r.mu.Lock()
	r.got = append(r.got, change{ns, kind, name})
	r.mu.Unlock()
	r.ch <- change{ns, kind, name}
}

func (r *recorder) wait(t *testing.T, want change) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c := <-r.ch:
			if c == want {
				return
			}
		case <-deadline:
			t.Fatalf("no OnChange %+v; got %+v", want, r.got)
		}
	}
}

func start(t *testing.T) (*controllertest.API, *Manager) {
	t.Helper()
	api := controllertest.Start(t)
	m, err := New(Config{Client: api.Client})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return api, m
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-1"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: "busybox",
				EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
				Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "later"}, Key: "k"}}}},
			}},
			Volumes: []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}}},
		},
	}
}

func TestConfigMapsAndSecrets(t *testing.T) {
	api, m := start(t)
	ctx := context.Background()
	cms := api.Client.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"p": []byte("x")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	m.OnChange(rec.record)

	if _, err := m.ConfigMap("default", "cfg"); err == nil || err.Error() != `object "default"/"cfg" not registered` {
		t.Fatalf("unregistered object: %v", err)
	}
	pod := testPod()
	m.RegisterPod(pod)
	if n := m.Watching(); n != 3 {
		t.Errorf("watching %d objects, want 3", n)
	}
	// Right after registering, the getter waits for the first list.
	cm, err := m.ConfigMap("default", "cfg")
	if err != nil || cm.Data["a"] != "1" {
		t.Fatalf("ConfigMap: %v %+v", err, cm)
	}
	if s, err := m.Secret("default", "sec"); err != nil || string(s.Data["p"]) != "x" {
		t.Fatalf("Secret: %v %+v", err, s)
	}
	_, err = m.ConfigMap("default", "later")
	if !apierrors.IsNotFound(err) || err.Error() != `configmap "later" not found` {
		t.Fatalf("missing ConfigMap: %v", err)
	}

	// An update reaches the getter and OnChange.
	cm = cm.DeepCopy()
	cm.Data["a"] = "2"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, change{"default", KindConfigMap, "cfg"})
	if got, err := m.ConfigMap("default", "cfg"); err != nil || got.Data["a"] != "2" {
		t.Fatalf("after update: %v %+v", err, got)
	}
	// So does the creation of a missing object.
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "later"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, change{"default", KindConfigMap, "later"})
	if got, err := m.ConfigMap("default", "later"); err != nil || got.Data["k"] != "v" {
		t.Fatalf("after create: %v %+v", err, got)
	}
	if got := m.PodsUsing(KindConfigMap, "default", "later"); len(got) != 1 || got[0] != pod.UID {
		t.Errorf("PodsUsing: %v", got)
	}
	// Deletion too.
	if err := api.Client.CoreV1().Secrets("default").Delete(ctx, "sec", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, change{"default", KindSecret, "sec"})
	if _, err := m.Secret("default", "sec"); !apierrors.IsNotFound(err) || err.Error() != `secret "sec" not found` {
		t.Fatalf("deleted Secret: %v", err)
	}

	// A second pod shares the watches; unregistering the first keeps them.
	other := testPod()
	other.Name, other.UID = "web2", "uid-2"
	other.Spec.Volumes = nil
	m.RegisterPod(other)
	m.UnregisterPod(pod)
	if n := m.Watching(); n != 2 {
		t.Errorf("watching %d objects after one of two pods went, want 2", n)
	}
	if _, err := m.Secret("default", "sec"); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("secret of the unregistered pod: %v", err)
	}
	// Re-registering with fewer references drops the rest.
	other.Spec.Containers[0].Env = nil
	m.RegisterPod(other)
	if n := m.Watching(); n != 1 {
		t.Errorf("watching %d objects after the pod's references shrank, want 1", n)
	}
	m.UnregisterPod(other)
	if n := m.Watching(); n != 0 {
		t.Errorf("watching %d objects with no pods", n)
	}
	// No more notifications once nobody watches.
	time.Sleep(100 * time.Millisecond)
	rec.mu.Lock()
	before := len(rec.got)
	rec.mu.Unlock()
	cm, _ = cms.Get(ctx, "cfg", metav1.GetOptions{})
	cm.Data["a"] = "3"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != before {
		t.Errorf("OnChange after unregister: %+v", rec.got[before:])
	}
}

func TestServices(t *testing.T) {
	api, m := start(t)
	ctx := context.Background()
	if _, err := api.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ ns, name string }{{"default", "kubernetes"}, {"default", "other"}, {"app", "db"}, {"app", "web"}} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 443}}}}
		if _, err := api.Client.CoreV1().Services(s.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	names := func(ns string) []string {
		var out []string
		for _, s := range m.Services(ns) {
			out = append(out, s.Namespace+"/"+s.Name)
		}
		sort.Strings(out)
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := names("app")
		if reflect.DeepEqual(got, []string{"app/db", "app/web", "default/kubernetes"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Services(app) = %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !m.ServicesSynced() {
		t.Error("not synced")
	}
	if got := names("default"); !reflect.DeepEqual(got, []string{"default/kubernetes", "default/other"}) {
		t.Errorf("Services(default) = %v", got)
	}
}

func TestPodRefs(t *testing.T) {
	pod := testPod()
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "pull"}}
	pod.Spec.InitContainers = []corev1.Container{{Name: "i", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "init-sec"}}}}}}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
		{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
		{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
	}}}})
	var got []string
	for _, r := range podRefs(pod) {
		got = append(got, r.kind+":"+r.namespace+"/"+r.name)
	}
	sort.Strings(got)
	want := []string{"ConfigMap:default/cfg", "ConfigMap:default/kube-root-ca.crt", "ConfigMap:default/later",
		"Secret:default/init-sec", "Secret:default/pull", "Secret:default/sec"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("podRefs:\n got %v\nwant %v", got, want)
	}
}

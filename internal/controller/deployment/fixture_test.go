package deployment

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
)

// fixture drives the controller synchronously: informers are not started;
// before each reconcile their stores are refilled from the fake clientset,
// so every step sees the previous step's writes.
type fixture struct {
	t        testing.TB
	client   *fake.Clientset
	factory  informers.SharedInformerFactory
	c        *Controller
	recorder *record.FakeRecorder
	now      time.Time
	events   []string
}

func newFixture(t testing.TB, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{t: t, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f.client = fake.NewSimpleClientset(objs...)
	var seq atomic.Int64
	// The fake tracker sets no UID, creation time or generation.
	f.client.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.CreateAction).GetObject()
		m, err := meta.Accessor(obj)
		if err == nil {
			n := seq.Add(1)
			if m.GetUID() == "" {
				m.SetUID(types.UID(fmt.Sprintf("uid-%d", n)))
			}
			m.SetCreationTimestamp(metav1.NewTime(f.now.Add(time.Duration(n) * time.Second)))
			m.SetGeneration(1)
		}
		return false, nil, nil
	})
	f.factory = informers.NewSharedInformerFactory(f.client, 0)
	f.recorder = record.NewFakeRecorder(1000)
	cc := controller.Context{
		Client:    f.client,
		Informers: f.factory,
		Recorder:  func(string) record.EventRecorder { return f.recorder },
	}
	c, err := New(cc, Options{Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	t.Cleanup(c.queue.ShutDown) // the delaying queue runs a goroutine
	return f
}

// refresh copies the clientset's objects into the informer stores.
func (f *fixture) refresh() {
	f.t.Helper()
	ctx := context.Background()
	ds, err := f.client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var items []any
	for i := range ds.Items {
		items = append(items, &ds.Items[i])
	}
	_ = f.factory.Apps().V1().Deployments().Informer().GetStore().Replace(items, "")
	rss, err := f.client.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	items = nil
	for i := range rss.Items {
		items = append(items, &rss.Items[i])
	}
	_ = f.factory.Apps().V1().ReplicaSets().Informer().GetStore().Replace(items, "")
	pods, err := f.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	items = nil
	for i := range pods.Items {
		items = append(items, &pods.Items[i])
	}
	_ = f.factory.Core().V1().Pods().Informer().GetStore().Replace(items, "")
}

// sync runs one reconcile of ns/name and returns its error.
func (f *fixture) sync(name string) error {
	f.t.Helper()
	f.refresh()
	err := f.c.reconcile(context.Background(), "default/"+name)
	f.drainEvents()
	return err
}

func (f *fixture) mustSync(name string) {
	f.t.Helper()
	if err := f.sync(name); err != nil {
		var after controller.RequeueAfter
		if !asRequeue(err, &after) {
			f.t.Fatalf("sync %s: %v", name, err)
		}
	}
}

func asRequeue(err error, out *controller.RequeueAfter) bool {
	r, ok := err.(controller.RequeueAfter)
	if ok {
		*out = r
	}
	return ok
}

func (f *fixture) drainEvents() {
	for {
		select {
		case e := <-f.recorder.Events:
			f.events = append(f.events, e)
		default:
			return
		}
	}
}

func (f *fixture) deployment(name string) *appsv1.Deployment {
	f.t.Helper()
	d, err := f.client.AppsV1().Deployments("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) update(d *appsv1.Deployment) {
	f.t.Helper()
	d.Generation++
	if _, err := f.client.AppsV1().Deployments("default").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// replicaSets returns the namespace's RSes, oldest first.
func (f *fixture) replicaSets() []*appsv1.ReplicaSet {
	f.t.Helper()
	l, err := f.client.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*appsv1.ReplicaSet
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	sortByCreation(out)
	return out
}

// settle plays the ReplicaSet controller: every RS runs exactly its
// replicas, all available when avail says so for that RS.
func (f *fixture) settle(avail func(rs *appsv1.ReplicaSet) bool) {
	f.t.Helper()
	for _, rs := range f.replicaSets() {
		n := *rs.Spec.Replicas
		rs.Status.Replicas, rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = n, n, n
		if avail != nil && !avail(rs) {
			rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = 0, 0
		}
		rs.Status.ObservedGeneration = rs.Generation
		if _, err := f.client.AppsV1().ReplicaSets("default").UpdateStatus(context.Background(), rs, metav1.UpdateOptions{}); err != nil {
			f.t.Fatal(err)
		}
	}
}

// sizes renders the RSes' replicas, oldest first: "3,0".
func (f *fixture) sizes() string {
	var s []string
	for _, rs := range f.replicaSets() {
		s = append(s, fmt.Sprint(*rs.Spec.Replicas))
	}
	return strings.Join(s, ",")
}

func (f *fixture) eventsWith(reason string) []string {
	var out []string
	for _, e := range f.events {
		if strings.Contains(e, reason) {
			out = append(out, e)
		}
	}
	return out
}

func newDeployment(name string, replicas int32, image string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("d-" + name), Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge:       ptr.To(intstr.FromString("25%")),
					MaxUnavailable: ptr.To(intstr.FromString("25%")),
				},
			},
			RevisionHistoryLimit:    ptr.To[int32](10),
			ProgressDeadlineSeconds: ptr.To[int32](600),
		},
	}
}

func setRolling(d *appsv1.Deployment, surge, unavailable intstr.IntOrString) {
	d.Spec.Strategy = appsv1.DeploymentStrategy{
		Type:          appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable},
	}
}

func revisions(rss []*appsv1.ReplicaSet) []string {
	var out []string
	for _, rs := range rss {
		out = append(out, rs.Annotations[RevisionAnnotation])
	}
	sort.Strings(out)
	return out
}

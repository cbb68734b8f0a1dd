package replicaset

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// fixture is a controller over a fake clientset whose informer caches are
// filled by hand (nothing runs): tests call reconcile and the handlers
// directly and look at the client's actions.
type fixture struct {
	t        testing.TB
	client   *fake.Clientset
	factory  informers.SharedInformerFactory
	c        *Controller
	recorder *record.FakeRecorder
	clock    *testingclock.FakePassiveClock
}

func newFixture(t testing.TB, opts Options, objs ...runtime.Object) *fixture {
	t.Helper()
	// NewSimpleClientset, not NewClientset: the field-managed tracker costs
	// seconds per fixture under -race on this shared machine.
	client := fake.NewSimpleClientset(objs...)
	var n atomic.Int64
	// The fake does not generate names.
	client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if pod.Name == "" {
			pod.Name = fmt.Sprintf("%s%05d", pod.GenerateName, n.Add(1))
		}
		return false, nil, nil
	})
	f := &fixture{
		t:        t,
		client:   client,
		factory:  informers.NewSharedInformerFactory(client, 0),
		recorder: record.NewFakeRecorder(1000),
		clock:    testingclock.NewFakePassiveClock(t0),
	}
	opts.Clock = f.clock
	cc := controller.Context{
		Client:    client,
		Informers: f.factory,
		Recorder:  func(string) record.EventRecorder { return f.recorder },
	}
	c, err := New(cc, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	t.Cleanup(c.queue.ShutDown)
	for _, o := range objs {
		f.cache(o)
	}
	client.ClearActions()
	return f
}

// cache puts an object into the informer caches.
func (f *fixture) cache(o runtime.Object) {
	f.t.Helper()
	var err error
	switch o := o.(type) {
	case *appsv1.ReplicaSet:
		err = f.factory.Apps().V1().ReplicaSets().Informer().GetIndexer().Add(o)
	case *corev1.Pod:
		err = f.factory.Core().V1().Pods().Informer().GetIndexer().Add(o)
	}
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) sync(key string) error {
	f.t.Helper()
	return f.c.reconcile(context.Background(), key)
}

// actions returns the client's actions as "verb resource[/sub]" plus
// the name (created pods have theirs), excluding reads.
func (f *fixture) writes() []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range f.client.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
			continue
		}
		out = append(out, a)
	}
	return out
}

func (f *fixture) writesOf(verb, resource string) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range f.writes() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource && a.GetSubresource() == "" {
			out = append(out, a)
		}
	}
	return out
}

func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// lastStatus returns the last status written.
func (f *fixture) lastStatus() *appsv1.ReplicaSetStatus {
	var st *appsv1.ReplicaSetStatus
	for _, a := range f.writes() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			st = &a.(k8stesting.UpdateAction).GetObject().(*appsv1.ReplicaSet).Status
		}
	}
	return st
}

var selLabels = map[string]string{"app": "web"}

func newRS(name string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "default", UID: types.UID("uid-" + name),
			Generation: 1, ResourceVersion: "1",
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: selLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      map[string]string{"app": "web", "tier": "front"},
					Annotations: map[string]string{"note": "x"},
					Finalizers:  []string{"example.com/keep"},
				},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
}

type podOpt func(*corev1.Pod)

func newPod(name string, owner *appsv1.ReplicaSet, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "default", UID: types.UID("uid-" + name),
			Labels:            map[string]string{"app": "web", "tier": "front"},
			CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour)),
			ResourceVersion:   "1",
		},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, rsKind)}
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func onNode(n string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func phase(ph corev1.PodPhase) podOpt {
	return func(p *corev1.Pod) { p.Status.Phase = ph }
}
func readySince(t time.Time) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t)}}
	}
}
func created(t time.Time) podOpt {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t) }
}
func restarts(n int32) podOpt {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", RestartCount: n}}
	}
}
func withLabels(l map[string]string) podOpt { return func(p *corev1.Pod) { p.Labels = l } }
func deleting() podOpt {
	return func(p *corev1.Pod) { p.DeletionTimestamp = ptr.To(metav1.NewTime(t0)) }
}

func TestNewValidates(t *testing.T) {
	client := fake.NewSimpleClientset()
	cc := controller.Context{Client: client, Informers: informers.NewSharedInformerFactory(client, 0)}
	if _, err := New(cc, Options{BurstReplicas: -1}); err == nil {
		t.Error("negative BurstReplicas accepted")
	}
	if _, err := New(controller.Context{}, Options{}); err == nil {
		t.Error("empty context accepted")
	}
	c, err := New(cc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.queue.ShutDown()
	if c.burst != DefaultBurstReplicas || !c.terminating {
		t.Errorf("defaults: burst %d terminating %v", c.burst, c.terminating)
	}
	// A second controller on the same informers reuses the indexes.
	c2, err := New(cc, Options{})
	if err != nil {
		t.Fatalf("second controller: %v", err)
	}
	c2.queue.ShutDown()
}

func TestCreatesPodsFromTemplate(t *testing.T) {
	rs := newRS("web", 3)
	f := newFixture(t, Options{}, rs)
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	creates := f.writesOf("create", "pods")
	if len(creates) != 3 {
		t.Fatalf("creates = %d, want 3", len(creates))
	}
	pod := creates[0].(k8stesting.CreateAction).GetObject().(*corev1.Pod)
	if pod.GenerateName != "web-" || pod.Labels["tier"] != "front" || pod.Annotations["note"] != "x" ||
		len(pod.Finalizers) != 1 || pod.Spec.Containers[0].Image != "nginx" {
		t.Errorf("pod from template: %+v", pod.ObjectMeta)
	}
	if len(pod.OwnerReferences) != 1 {
		t.Fatalf("ownerReferences: %+v", pod.OwnerReferences)
	}
	ref := pod.OwnerReferences[0]
	if ref.APIVersion != "apps/v1" || ref.Kind != "ReplicaSet" || ref.Name != "web" || ref.UID != rs.UID ||
		!ptr.Deref(ref.Controller, false) || !ptr.Deref(ref.BlockOwnerDeletion, false) {
		t.Errorf("ownerReference: %+v", ref)
	}
	ev := f.events()
	if len(ev) != 3 || !strings.HasPrefix(ev[0], "Normal SuccessfulCreate Created pod: web-") {
		t.Errorf("events: %q", ev)
	}
	if adds, _, _ := f.c.exp.pending("default/web"); adds != 3 {
		t.Errorf("expected creations = %d, want 3", adds)
	}
	st := f.lastStatus()
	if st == nil || st.Replicas != 0 || st.ObservedGeneration != 1 || ptr.Deref(st.TerminatingReplicas, -1) != 0 {
		t.Errorf("status: %+v", st)
	}

	// The cache has not seen the pods yet: no second round of creates.
	f.client.ClearActions()
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.writesOf("create", "pods")); n != 0 {
		t.Fatalf("created %d more pods before the first ones were observed", n)
	}

	// The watch delivers them: expectations are met and the ReplicaSet is
	// at its size.
	pods, _ := f.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	for i := range pods.Items {
		f.cache(&pods.Items[i])
		f.c.addPod(&pods.Items[i])
	}
	if !f.c.exp.satisfied("default/web") {
		t.Fatal("expectations not satisfied after observing the pods")
	}
	f.client.ClearActions()
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.writesOf("create", "pods")); n != 0 {
		t.Fatalf("created %d pods at size", n)
	}
}

func TestExpectationsExpire(t *testing.T) {
	f := newFixture(t, Options{}, newRS("web", 2))
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	f.client.ClearActions()
	// The creates' watch events were lost; after the timeout the
	// controller looks again (and, as the cache is empty, creates again).
	f.clock.SetTime(t0.Add(expectationsTimeout + time.Second))
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.writesOf("create", "pods")); n != 2 {
		t.Fatalf("creates after expiry = %d, want 2", n)
	}
}

func TestBurstReplicas(t *testing.T) {
	f := newFixture(t, Options{BurstReplicas: 5}, newRS("web", 20))
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.writesOf("create", "pods")); n != 5 {
		t.Fatalf("creates = %d, want burst 5", n)
	}
}

func TestSlowStartStopsOnFailure(t *testing.T) {
	f := newFixture(t, Options{}, newRS("web", 10))
	var calls atomic.Int32
	f.client.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if calls.Add(1) > 3 {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("exceeded quota: q"))
		}
		return false, nil, nil
	})
	err := f.sync("default/web")
	if err == nil {
		t.Fatal("sync succeeded despite failing creates")
	}
	// Batches 1 and 2 succeed; the batch of 4 fails; 3 pods are never tried.
	if got := calls.Load(); got != 7 {
		t.Errorf("create calls = %d, want 7 (1+2+4)", got)
	}
	if adds, _, _ := f.c.exp.pending("default/web"); adds != 3 {
		t.Errorf("expected creations = %d, want the 3 that succeeded", adds)
	}
	var failed int
	for _, e := range f.events() {
		if strings.HasPrefix(e, "Warning FailedCreate Error creating: ") && strings.Contains(e, "exceeded quota") {
			failed++
		}
	}
	if failed != 4 {
		t.Errorf("FailedCreate events = %d, want 4", failed)
	}
	st := f.lastStatus()
	c := getCondition(*st, appsv1.ReplicaSetReplicaFailure)
	if c == nil || c.Status != corev1.ConditionTrue || c.Reason != "FailedCreate" || !strings.Contains(c.Message, "exceeded quota") {
		t.Fatalf("ReplicaFailure condition: %+v", st.Conditions)
	}
}

func TestSlowStartBatch(t *testing.T) {
	for _, tc := range []struct {
		count, failAfter, wantCalls, wantOK int
	}{
		{count: 0, failAfter: 100, wantCalls: 0, wantOK: 0},
		{count: 10, failAfter: 100, wantCalls: 10, wantOK: 10},
		{count: 10, failAfter: 0, wantCalls: 1, wantOK: 0},
		{count: 10, failAfter: 1, wantCalls: 3, wantOK: 1},
		{count: 10, failAfter: 3, wantCalls: 7, wantOK: 3},
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.count, tc.failAfter), func(t *testing.T) {
			var calls atomic.Int32
			ok, err := slowStartBatch(tc.count, 1, func() error {
				if int(calls.Add(1)) > tc.failAfter {
					return errors.New("boom")
				}
				return nil
			})
			if int(calls.Load()) != tc.wantCalls || ok != tc.wantOK || (err != nil) != (tc.wantOK < tc.count) {
				t.Errorf("calls %d ok %d err %v", calls.Load(), ok, err)
			}
		})
	}
}

func TestScaleDownDeletesLeastValuable(t *testing.T) {
	rs := newRS("web", 2)
	pods := []*corev1.Pod{
		newPod("ready-old", rs, onNode("n1"), readySince(t0.Add(-time.Hour)), created(t0.Add(-2*time.Hour))),
		newPod("ready-new", rs, onNode("n2"), readySince(t0.Add(-time.Hour)), created(t0.Add(-time.Hour))),
		newPod("unscheduled", rs),
		newPod("pending", rs, onNode("n1")),
	}
	f := newFixture(t, Options{}, rs, pods[0], pods[1], pods[2], pods[3])
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, a := range f.writesOf("delete", "pods") {
		deleted = append(deleted, a.(k8stesting.DeleteAction).GetName())
	}
	sort.Strings(deleted)
	if strings.Join(deleted, ",") != "pending,unscheduled" {
		t.Fatalf("deleted %v, want the unscheduled and the pending pod", deleted)
	}
	if _, dels, _ := f.c.exp.pending("default/web"); dels != 2 {
		t.Errorf("expected deletions = %d, want 2", dels)
	}
	ev := f.events()
	sort.Strings(ev)
	if len(ev) != 2 || ev[0] != "Normal SuccessfulDelete Deleted pod: pending" {
		t.Errorf("events: %q", ev)
	}

	// A graceful deletion's update and the final delete count once.
	f.c.deletePod(pods[2])
	f.c.deletePod(pods[2])
	if _, dels, _ := f.c.exp.pending("default/web"); dels != 1 {
		t.Errorf("expected deletions after one observed twice = %d, want 1", dels)
	}
	upd := pods[3].DeepCopy()
	upd.ResourceVersion = "2"
	upd.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
	f.c.updatePod(pods[3], upd)
	if !f.c.exp.satisfied("default/web") {
		t.Error("expectations not satisfied after both deletions were observed")
	}
}

func TestDeleteErrorSetsCondition(t *testing.T) {
	rs := newRS("web", 0)
	f := newFixture(t, Options{}, rs, newPod("a", rs))
	f.client.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("disk on fire"))
	})
	if err := f.sync("default/web"); err == nil {
		t.Fatal("sync succeeded despite a failing delete")
	}
	if ev := f.events(); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning FailedDelete Error deleting: ") {
		t.Errorf("events: %q", ev)
	}
	if !f.c.exp.satisfied("default/web") {
		t.Error("failed deletion still expected")
	}
	c := getCondition(*f.lastStatus(), appsv1.ReplicaSetReplicaFailure)
	if c == nil || c.Reason != "FailedDelete" {
		t.Fatalf("condition: %+v", c)
	}
	// Once syncing works again the condition goes away.
	f.c.exp.forget("default/web")
	rs2 := rs.DeepCopy()
	rs2.Status = *f.lastStatus()
	rs2.Spec.Replicas = ptr.To[int32](1)
	f.cache(rs2)
	f.client.ClearActions()
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	if st := f.lastStatus(); st == nil || getCondition(*st, appsv1.ReplicaSetReplicaFailure) != nil {
		t.Fatalf("condition not removed: %+v", st)
	}
}

func TestRanking(t *testing.T) {
	now := metav1.NewTime(t0)
	for _, tc := range []struct {
		name  string
		a, b  *corev1.Pod // a should be deleted before b
		ranks [2]int
	}{
		{name: "unassigned first", a: newPod("a", nil), b: newPod("b", nil, onNode("n"))},
		{name: "pending before unknown", a: newPod("a", nil, onNode("n")), b: newPod("b", nil, onNode("n"), phase(corev1.PodUnknown))},
		{name: "unknown before running", a: newPod("a", nil, onNode("n"), phase(corev1.PodUnknown)), b: newPod("b", nil, onNode("n"), phase(corev1.PodRunning))},
		{name: "not ready before ready", a: newPod("a", nil, onNode("n"), phase(corev1.PodRunning)), b: newPod("b", nil, onNode("n"), readySince(t0))},
		{name: "lower deletion cost first",
			a: newPod("a", nil, onNode("n"), func(p *corev1.Pod) { p.Annotations = map[string]string{podDeletionCostAnnotation: "-5"} }),
			b: newPod("b", nil, onNode("n"))},
		{name: "crowded node first", a: newPod("a", nil, onNode("n")), b: newPod("b", nil, onNode("m")), ranks: [2]int{3, 1}},
		{name: "ready for less time first",
			a: newPod("a", nil, onNode("n"), readySince(t0.Add(-time.Minute))),
			b: newPod("b", nil, onNode("n"), readySince(t0.Add(-time.Hour)))},
		{name: "more restarts first", a: newPod("a", nil, onNode("n"), restarts(5)), b: newPod("b", nil, onNode("n"), restarts(1))},
		{name: "newer first", a: newPod("a", nil, onNode("n"), created(t0.Add(-time.Minute))), b: newPod("b", nil, onNode("n"), created(t0.Add(-time.Hour)))},
		{name: "zero creation time first", a: newPod("a", nil, onNode("n"), created(time.Time{})), b: newPod("b", nil, onNode("n"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := rankedPods{pods: []*corev1.Pod{tc.a, tc.b}, rank: tc.ranks[:], now: now}
			if !s.Less(0, 1) || s.Less(1, 0) {
				t.Errorf("order wrong: Less(a,b)=%v Less(b,a)=%v", s.Less(0, 1), s.Less(1, 0))
			}
		})
	}
	// Pods of similar age (same power of two) tie and go by UID.
	a := newPod("a", nil, onNode("n"), created(t0.Add(-70*time.Minute)))
	b := newPod("b", nil, onNode("n"), created(t0.Add(-65*time.Minute)))
	s := rankedPods{pods: []*corev1.Pod{b, a}, rank: []int{0, 0}, now: now}
	if !s.Less(1, 0) {
		t.Error("log-scale tie not broken by UID")
	}
	// Invalid costs count as zero.
	for _, v := range []string{"+1", "007", "x", "99999999999"} {
		p := newPod("p", nil, func(p *corev1.Pod) { p.Annotations = map[string]string{podDeletionCostAnnotation: v} })
		if deletionCost(p) != 0 {
			t.Errorf("cost %q = %d, want 0", v, deletionCost(p))
		}
	}
}

func TestColocatedPodsRankedBySiblings(t *testing.T) {
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "d", UID: "uid-d", Controller: ptr.To(true)}
	newer, older := newRS("new", 1), newRS("old", 3)
	older.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "v": "1"}}
	newer.OwnerReferences, older.OwnerReferences = []metav1.OwnerReference{owner}, []metav1.OwnerReference{owner}
	// new has one pod on n1 and one on n2; old has two more on n2, so the
	// pod on n2 goes.
	objs := []runtime.Object{newer, older,
		newPod("new-1", newer, onNode("n1"), readySince(t0.Add(-time.Hour))),
		newPod("new-2", newer, onNode("n2"), readySince(t0.Add(-time.Hour))),
		newPod("old-1", older, onNode("n2"), readySince(t0.Add(-time.Hour)), withLabels(map[string]string{"app": "web", "v": "1"})),
		newPod("old-2", older, onNode("n2"), readySince(t0.Add(-time.Hour)), withLabels(map[string]string{"app": "web", "v": "1"})),
	}
	f := newFixture(t, Options{}, objs...)
	if err := f.sync("default/new"); err != nil {
		t.Fatal(err)
	}
	dels := f.writesOf("delete", "pods")
	if len(dels) != 1 || dels[0].(k8stesting.DeleteAction).GetName() != "new-2" {
		t.Fatalf("deleted %v, want new-2 (crowded node)", dels)
	}
}

func TestAdoptAndRelease(t *testing.T) {
	rs := newRS("web", 2)
	orphan := newPod("orphan", nil)
	stray := newPod("stray", rs, withLabels(map[string]string{"app": "other"}))
	otherOwner := newPod("theirs", newRS("other", 1))
	f := newFixture(t, Options{}, rs, orphan, stray, otherOwner)
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	var gotRSGet bool
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "replicasets" {
			gotRSGet = true
		}
	}
	if !gotRSGet {
		t.Error("adoption without an uncached read of the ReplicaSet")
	}
	patches := map[string]string{}
	for _, a := range f.writes() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			patches[p.GetName()] = string(p.GetPatch())
		}
	}
	if p := patches["orphan"]; !strings.Contains(p, `"controller":true`) || !strings.Contains(p, `"uid":"uid-web"`) {
		t.Errorf("adoption patch: %s", p)
	}
	if p := patches["stray"]; !strings.Contains(p, `"$patch":"delete"`) {
		t.Errorf("release patch: %s", p)
	}
	if _, ok := patches["theirs"]; ok {
		t.Error("patched another controller's pod")
	}
	// The orphan counts; the released pod does not, so one is created.
	if n := len(f.writesOf("create", "pods")); n != 1 {
		t.Errorf("creates = %d, want 1", n)
	}
	adopted, err := f.client.CoreV1().Pods("default").Get(context.Background(), "orphan", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(adopted); ref == nil || ref.UID != rs.UID {
		t.Errorf("orphan not adopted: %+v", adopted.OwnerReferences)
	}
	released, _ := f.client.CoreV1().Pods("default").Get(context.Background(), "stray", metav1.GetOptions{})
	if len(released.OwnerReferences) != 0 {
		t.Errorf("stray not released: %+v", released.OwnerReferences)
	}
}

func TestDeletingReplicaSet(t *testing.T) {
	rs := newRS("web", 3)
	rs.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
	rs.Finalizers = []string{"foregroundDeletion"}
	f := newFixture(t, Options{}, rs, newPod("orphan", nil), newPod("mine", rs))
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	for _, a := range f.writes() {
		if a.GetResource().Resource == "pods" {
			t.Errorf("touched pods of a ReplicaSet being deleted: %s %s", a.GetVerb(), a.GetResource())
		}
	}
	if st := f.lastStatus(); st == nil || st.Replicas != 1 {
		t.Errorf("status: %+v", st)
	}
}

func TestInactivePodsDoNotCount(t *testing.T) {
	rs := newRS("web", 2)
	f := newFixture(t, Options{}, rs,
		newPod("running", rs, onNode("n"), readySince(t0.Add(-time.Hour))),
		newPod("done", rs, onNode("n"), phase(corev1.PodSucceeded)),
		newPod("failed", rs, onNode("n"), phase(corev1.PodFailed)),
		newPod("terminating", rs, onNode("n"), readySince(t0.Add(-time.Hour)), deleting()),
		newPod("terminating-other", nil, onNode("n"), deleting()),
	)
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.writesOf("create", "pods")); n != 1 {
		t.Errorf("creates = %d, want 1 replacement", n)
	}
	st := f.lastStatus()
	if st.Replicas != 1 || st.ReadyReplicas != 1 || ptr.Deref(st.TerminatingReplicas, -1) != 1 {
		t.Errorf("status: replicas %d ready %d terminating %v", st.Replicas, st.ReadyReplicas, st.TerminatingReplicas)
	}

	off := newFixture(t, Options{DisableTerminatingReplicas: true}, rs, newPod("terminating", rs, onNode("n"), deleting()))
	if err := off.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	if st := off.lastStatus(); st.TerminatingReplicas != nil {
		t.Errorf("terminatingReplicas with the feature off: %v", *st.TerminatingReplicas)
	}
}

func TestStatusAndMinReadySeconds(t *testing.T) {
	rs := newRS("web", 3)
	rs.Spec.MinReadySeconds = 10
	f := newFixture(t, Options{}, rs,
		newPod("a", rs, onNode("n"), readySince(t0.Add(-time.Minute))),
		newPod("b", rs, onNode("n"), readySince(t0.Add(-4*time.Second))),
		newPod("c", rs, onNode("n"), phase(corev1.PodRunning), withLabels(map[string]string{"app": "web"})),
	)
	err := f.sync("default/web")
	var after controller.RequeueAfter
	if !errors.As(err, &after) {
		t.Fatalf("sync = %v, want a RequeueAfter", err)
	}
	if d := time.Duration(after); d < 6*time.Second || d > 7*time.Second {
		t.Errorf("requeue after %s, want ~6s (when b becomes available)", d)
	}
	st := f.lastStatus()
	if st == nil || st.Replicas != 3 || st.FullyLabeledReplicas != 2 || st.ReadyReplicas != 2 || st.AvailableReplicas != 1 ||
		ptr.Deref(st.TerminatingReplicas, -1) != 0 || st.ObservedGeneration != 1 || len(st.Conditions) != 0 {
		t.Fatalf("status = %+v", st)
	}

	// Later b is available; the status follows and no recheck is needed.
	rs2 := rs.DeepCopy()
	rs2.Status = *st
	f.cache(rs2)
	f.clock.SetTime(t0.Add(7 * time.Second))
	f.client.ClearActions()
	if err := f.sync("default/web"); err != nil {
		t.Fatalf("sync = %v", err)
	}
	if st := f.lastStatus(); st == nil || st.AvailableReplicas != 2 {
		t.Fatalf("status = %+v, want 2 available", st)
	}

	// Nothing changed: no write.
	rs3 := rs2.DeepCopy()
	rs3.Status = *f.lastStatus()
	f.cache(rs3)
	f.client.ClearActions()
	if err := f.sync("default/web"); err != nil {
		t.Fatal(err)
	}
	if st := f.lastStatus(); st != nil {
		t.Errorf("unchanged status written: %+v", st)
	}
}

func TestHandlersEnqueue(t *testing.T) {
	rs, other := newRS("web", 1), newRS("db", 1)
	other.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}
	f := newFixture(t, Options{}, rs, other)
	drain := func() []string {
		var keys []string
		for f.c.queue.Len() > 0 {
			k, _ := f.c.queue.Get()
			keys = append(keys, k)
			f.c.queue.Done(k)
		}
		sort.Strings(keys)
		return keys
	}

	// An orphan wakes the ReplicaSets that select it.
	f.c.addPod(newPod("o", nil))
	if got := drain(); fmt.Sprint(got) != "[default/web]" {
		t.Errorf("orphan add enqueued %v", got)
	}
	// An owned pod wakes its owner and counts as an observed creation.
	f.c.exp.expectCreations("default/web", 1)
	f.c.addPod(newPod("p", rs))
	if got := drain(); fmt.Sprint(got) != "[default/web]" || !f.c.exp.satisfied("default/web") {
		t.Errorf("owned add enqueued %v", got)
	}
	// A pod of an unknown owner wakes nobody.
	f.c.addPod(newPod("q", newRS("gone", 1)))
	if got := drain(); len(got) != 0 {
		t.Errorf("unknown owner enqueued %v", got)
	}
	// A relabelled orphan wakes the ReplicaSets that match it now.
	old := newPod("o", nil)
	cur := old.DeepCopy()
	cur.ResourceVersion = "2"
	cur.Labels = map[string]string{"app": "db"}
	f.c.updatePod(old, cur)
	if got := drain(); fmt.Sprint(got) != "[default/db]" {
		t.Errorf("relabel enqueued %v", got)
	}
	// A released pod wakes its former owner.
	owned := newPod("p", rs)
	released := owned.DeepCopy()
	released.ResourceVersion = "2"
	released.OwnerReferences = nil
	released.Labels = map[string]string{"app": "none"}
	f.c.updatePod(owned, released)
	if got := drain(); fmt.Sprint(got) != "[default/web]" {
		t.Errorf("release enqueued %v", got)
	}
	// Resyncs (same resourceVersion) are ignored.
	f.c.updatePod(owned, owned)
	if got := drain(); len(got) != 0 {
		t.Errorf("resync enqueued %v", got)
	}
	// A pod first seen already terminating is a deletion, not a creation.
	f.c.exp.expectDeletions("default/web", []string{"default/gone"})
	f.c.addPod(newPod("gone", rs, deleting()))
	if got := drain(); fmt.Sprint(got) != "[default/web]" || !f.c.exp.satisfied("default/web") {
		t.Errorf("terminating add enqueued %v, satisfied %v", got, f.c.exp.satisfied("default/web"))
	}
	// A tombstone counts like a delete.
	f.c.exp.expectDeletions("default/web", []string{"default/t"})
	f.c.deletePod(cache.DeletedFinalStateUnknown{Key: "default/t", Obj: newPod("t", rs)})
	if got := drain(); fmt.Sprint(got) != "[default/web]" || !f.c.exp.satisfied("default/web") {
		t.Errorf("tombstone enqueued %v", got)
	}
	// A ReplicaSet recreated under the same name starts clean.
	f.c.exp.expectCreations("default/web", 3)
	recreated := rs.DeepCopy()
	recreated.UID = "uid-web-2"
	f.c.updateRS(rs, recreated)
	if got := drain(); fmt.Sprint(got) != "[default/web]" || !f.c.exp.satisfied("default/web") {
		t.Errorf("recreate enqueued %v", got)
	}
	// Deleting a ReplicaSet drops its expectations.
	f.c.exp.expectCreations("default/web", 3)
	f.c.deleteRS(rs)
	if got := drain(); fmt.Sprint(got) != "[default/web]" {
		t.Errorf("delete enqueued %v", got)
	}
	if _, _, ok := f.c.exp.pending("default/web"); ok {
		t.Error("expectations kept after delete")
	}
}

func TestPodPrefix(t *testing.T) {
	if p := podPrefix("web"); p != "web-" {
		t.Errorf("prefix %q", p)
	}
	// Upstream masks the dash when validating, so any valid name gets one.
	long := strings.Repeat("a", 253)
	if p := podPrefix(long); p != long+"-" {
		t.Errorf("long name prefix %q", p)
	}
}

func TestNextAvailabilityCheck(t *testing.T) {
	pods := []*corev1.Pod{
		newPod("a", nil, readySince(t0.Add(-3*time.Second))),
		newPod("b", nil, readySince(t0.Add(-8*time.Second))),
		newPod("c", nil, readySince(t0.Add(-time.Hour))),
		newPod("d", nil),
	}
	d := nextAvailabilityCheck(pods, 10, t0)
	if d == nil || *d < 2*time.Second || *d > 3*time.Second {
		t.Fatalf("next check %v, want ~2s", d)
	}
	if d := nextAvailabilityCheck(pods[2:], 10, t0); d != nil {
		t.Errorf("next check %v for available pods", *d)
	}
}

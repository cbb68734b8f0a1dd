package garbagecollector

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

var cmGVK = schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}

// newTestGC is a collector with only the graph side: events go straight
// into processGraphChange and the queues are inspected.
func newTestGC(t *testing.T) (*Controller, *record.FakeRecorder) {
	rec := record.NewFakeRecorder(10)
	gc := &Controller{
		recorder:        rec,
		log:             slog.New(slog.DiscardHandler),
		graph:           newGraph(),
		absent:          newAbsentCache(10),
		graphChanges:    workqueue.NewTyped[*event](),
		attemptToDelete: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.UID]()),
		attemptToOrphan: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.UID]()),
	}
	t.Cleanup(func() {
		gc.graphChanges.ShutDown()
		gc.attemptToDelete.ShutDown()
		gc.attemptToOrphan.ShutDown()
	})
	return gc, rec
}

func drain(q workqueue.TypedRateLimitingInterface[types.UID]) []string {
	var out []string
	for q.Len() > 0 {
		uid, _ := q.Get()
		out = append(out, string(uid))
		q.Done(uid)
		q.Forget(uid)
	}
	slices.Sort(out)
	return out
}

type objOpt func(*metav1.ObjectMeta)

func obj(ns, name, uid string, opts ...objOpt) *metav1.ObjectMeta {
	m := &metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}
	for _, o := range opts {
		o(m)
	}
	return m
}

func ownedBy(name, uid string, block bool) objOpt {
	return func(m *metav1.ObjectMeta) {
		m.OwnerReferences = append(m.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap",
			Name: name, UID: types.UID(uid), BlockOwnerDeletion: ptr.To(block)})
	}
}

func deleting(finalizer string) objOpt {
	return func(m *metav1.ObjectMeta) {
		now := metav1.Now()
		m.DeletionTimestamp = &now
		m.Finalizers = append(m.Finalizers, finalizer)
	}
}

func (gc *Controller) apply(t eventType, cur, old *metav1.ObjectMeta) {
	ev := &event{eventType: t, obj: cur, gvk: cmGVK}
	if old != nil {
		ev.oldObj = old
	}
	gc.processGraphChange(ev)
}

func TestGraphVirtualOwnerBecomesObserved(t *testing.T) {
	gc, _ := newTestGC(t)
	gc.apply(addEvent, obj("ns", "dep", "d1", ownedBy("owner", "o1", false)), nil)
	if got := drain(gc.attemptToDelete); !slices.Equal(got, []string{"o1"}) {
		t.Fatalf("attemptToDelete = %v, want the virtual owner o1 checked", got)
	}
	v, ok := gc.graph.view("o1")
	if !ok || !v.virtual || len(v.dependents) != 1 || v.identity.Namespace != "ns" {
		t.Fatalf("virtual owner = %+v (found %v)", v, ok)
	}
	gc.apply(addEvent, obj("ns", "owner", "o1"), nil)
	v, _ = gc.graph.view("o1")
	if v.virtual || len(v.dependents) != 1 {
		t.Fatalf("observed owner = %+v", v)
	}
	if got := drain(gc.attemptToDelete); len(got) != 0 {
		t.Errorf("matching owner observed, yet attemptToDelete = %v", got)
	}
}

func TestGraphOwnerDeletedQueuesDependents(t *testing.T) {
	gc, _ := newTestGC(t)
	owner := obj("ns", "owner", "o1")
	gc.apply(addEvent, owner, nil)
	gc.apply(addEvent, obj("ns", "a", "d1", ownedBy("owner", "o1", false)), nil)
	gc.apply(addEvent, obj("ns", "b", "d2", ownedBy("owner", "o1", false)), nil)
	drain(gc.attemptToDelete)
	gc.apply(deleteEvent, owner, nil)
	if got := drain(gc.attemptToDelete); !slices.Equal(got, []string{"d1", "d2"}) {
		t.Fatalf("attemptToDelete = %v, want both dependents", got)
	}
	if gc.graph.has("o1") {
		t.Error("deleted owner still in the graph")
	}
	if !gc.absent.has(objectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: "ns", Name: "owner", UID: "o1"}) {
		t.Error("deleted owner not remembered as absent")
	}
}

func TestGraphTransitions(t *testing.T) {
	tests := []struct {
		name              string
		finalizer         string
		wantDelete        []string
		wantOrphan        []string
		deletingDependent bool
	}{
		{"orphan", metav1.FinalizerOrphanDependents, nil, []string{"o1"}, false},
		{"foreground", metav1.FinalizerDeleteDependents, []string{"d1", "o1"}, nil, true},
		{"other finalizer", "example.com/x", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gc, _ := newTestGC(t)
			owner := obj("ns", "owner", "o1")
			gc.apply(addEvent, owner, nil)
			gc.apply(addEvent, obj("ns", "a", "d1", ownedBy("owner", "o1", true)), nil)
			drain(gc.attemptToDelete)
			gc.apply(updateEvent, obj("ns", "owner", "o1", deleting(tt.finalizer)), owner)
			if got := drain(gc.attemptToDelete); !slices.Equal(got, tt.wantDelete) {
				t.Errorf("attemptToDelete = %v, want %v", got, tt.wantDelete)
			}
			if got := drain(gc.attemptToOrphan); !slices.Equal(got, tt.wantOrphan) {
				t.Errorf("attemptToOrphan = %v, want %v", got, tt.wantOrphan)
			}
			v, _ := gc.graph.view("o1")
			if v.deletingDependents != tt.deletingDependent || !v.beingDeleted {
				t.Errorf("owner deletingDependents=%v beingDeleted=%v", v.deletingDependents, v.beingDeleted)
			}
			// A repeat of the same state starts nothing new.
			cur := obj("ns", "owner", "o1", deleting(tt.finalizer))
			gc.apply(updateEvent, cur, cur)
			if got := append(drain(gc.attemptToDelete), drain(gc.attemptToOrphan)...); len(got) != 0 {
				t.Errorf("unchanged update queued %v", got)
			}
		})
	}
}

func TestGraphForegroundOwnerRequeuedWhenUnblocked(t *testing.T) {
	gc, _ := newTestGC(t)
	gc.apply(addEvent, obj("ns", "owner", "o1", deleting(metav1.FinalizerDeleteDependents)), nil)
	dep := obj("ns", "a", "d1", ownedBy("owner", "o1", true))
	gc.apply(addEvent, dep, nil)
	v, _ := gc.graph.view("o1")
	if len(v.dependents) != 1 || !v.dependents[0].blocking {
		t.Fatalf("dependents = %+v, want one blocking", v.dependents)
	}
	drain(gc.attemptToDelete)

	// The reference stops blocking.
	gc.apply(updateEvent, obj("ns", "a", "d1", ownedBy("owner", "o1", false)), dep)
	if got := drain(gc.attemptToDelete); !slices.Equal(got, []string{"o1"}) {
		t.Fatalf("after unblocking attemptToDelete = %v, want o1", got)
	}
	v, _ = gc.graph.view("o1")
	if v.dependents[0].blocking {
		t.Error("dependent still counted as blocking")
	}
	// The dependent goes: the owner is looked at again.
	gc.apply(deleteEvent, obj("ns", "a", "d1", ownedBy("owner", "o1", false)), nil)
	if got := drain(gc.attemptToDelete); !slices.Equal(got, []string{"o1"}) {
		t.Fatalf("after dependent deletion attemptToDelete = %v, want o1", got)
	}
}

func TestGraphOwnerReferencesChange(t *testing.T) {
	gc, _ := newTestGC(t)
	gc.apply(addEvent, obj("ns", "o1", "o1"), nil)
	gc.apply(addEvent, obj("ns", "o2", "o2"), nil)
	dep := obj("ns", "a", "d1", ownedBy("o1", "o1", false))
	gc.apply(addEvent, dep, nil)
	gc.apply(updateEvent, obj("ns", "a", "d1", ownedBy("o2", "o2", false)), dep)
	v1, _ := gc.graph.view("o1")
	v2, _ := gc.graph.view("o2")
	if len(v1.dependents) != 0 || len(v2.dependents) != 1 {
		t.Fatalf("after re-parenting: o1 has %d dependents, o2 %d", len(v1.dependents), len(v2.dependents))
	}
}

func TestGraphInvalidNamespaceOwnerRef(t *testing.T) {
	gc, rec := newTestGC(t)
	gc.apply(addEvent, obj("default", "owner", "o1"), nil)
	gc.apply(addEvent, obj("other", "dep", "d1", ownedBy("owner", "o1", false)), nil)
	if got := drain(gc.attemptToDelete); !slices.Equal(got, []string{"d1"}) {
		t.Fatalf("attemptToDelete = %v, want the dependent checked", got)
	}
	select {
	case ev := <-rec.Events:
		want := `Warning OwnerRefInvalidNamespace ownerRef [v1/ConfigMap, namespace: other, name: owner, uid: o1] does not exist in namespace "other"`
		if ev != want {
			t.Errorf("event\n got %q\nwant %q", ev, want)
		}
	default:
		t.Fatal("no OwnerRefInvalidNamespace event")
	}

	// The other order: dependent first (virtual owner in its namespace),
	// then the owner is observed elsewhere.
	gc2, rec2 := newTestGC(t)
	gc2.apply(addEvent, obj("other", "dep", "d1", ownedBy("owner", "o1", false)), nil)
	drain(gc2.attemptToDelete)
	gc2.apply(addEvent, obj("default", "owner", "o1"), nil)
	if got := drain(gc2.attemptToDelete); !slices.Equal(got, []string{"d1"}) {
		t.Fatalf("attemptToDelete = %v, want the dependent checked", got)
	}
	select {
	case ev := <-rec2.Events:
		if !strings.Contains(ev, "OwnerRefInvalidNamespace") {
			t.Errorf("event %q", ev)
		}
	default:
		t.Fatal("no OwnerRefInvalidNamespace event")
	}
}

func TestGraphVirtualDelete(t *testing.T) {
	gc, _ := newTestGC(t)
	gc.apply(addEvent, obj("ns", "dep", "d1", ownedBy("ghost", "g1", false)), nil)
	drain(gc.attemptToDelete)
	// A worker found that g1 does not exist.
	gc.enqueueVirtualDelete(objectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: "ns", Name: "ghost", UID: "g1"})
	ev, _ := gc.graphChanges.Get()
	gc.processGraphChange(ev)
	gc.graphChanges.Done(ev)
	if gc.graph.has("g1") {
		t.Error("virtual owner still in the graph")
	}
	if got := drain(gc.attemptToDelete); !slices.Equal(got, []string{"d1"}) {
		t.Fatalf("attemptToDelete = %v, want the dependent", got)
	}
}

func TestReferenceDiffs(t *testing.T) {
	ref := func(uid string, block bool) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: uid, UID: types.UID(uid), BlockOwnerDeletion: ptr.To(block)}
	}
	old := []metav1.OwnerReference{ref("a", true), ref("b", false), ref("c", false)}
	cur := []metav1.OwnerReference{ref("a", false), ref("c", false), ref("d", false)}
	added, removed, changed := referenceDiffs(old, cur)
	if len(added) != 1 || added[0].UID != "d" {
		t.Errorf("added = %v", added)
	}
	if len(removed) != 1 || removed[0].UID != "b" {
		t.Errorf("removed = %v", removed)
	}
	if len(changed) != 1 || changed[0].old.UID != "a" || isTrue(changed[0].cur.BlockOwnerDeletion) {
		t.Errorf("changed = %v", changed)
	}
}

func TestPatches(t *testing.T) {
	got := string(deleteOwnerRefsSMP("dep", []types.UID{"o1", "o2"}))
	want := `{"metadata":{"ownerReferences":[{"$patch":"delete","uid":"o1"},{"$patch":"delete","uid":"o2"}],"uid":"dep"}}`
	if got != want {
		t.Errorf("delete SMP\n got %s\nwant %s", got, want)
	}
	live := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{UID: "dep", ResourceVersion: "7",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "a", UID: "o1"}}}}
	b, err := deleteOwnerRefsJMP(live, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"metadata":{"ownerReferences":[],"resourceVersion":"7","uid":"dep"}}`; string(b) != want {
		t.Errorf("delete JMP\n got %s\nwant %s", b, want)
	}
}

// BenchmarkGraphBuild measures the graph builder's share of a 30,000-pod
// cluster: 300 ReplicaSet-like owners with 100 dependents each, then one
// status-like update per dependent.
func BenchmarkGraphBuild(b *testing.B) {
	for b.Loop() {
		gc := &Controller{
			recorder:        &record.FakeRecorder{},
			log:             slog.New(slog.DiscardHandler),
			graph:           newGraph(),
			absent:          newAbsentCache(500),
			attemptToDelete: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.UID]()),
			attemptToOrphan: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.UID]()),
		}
		for o := range 300 {
			owner := fmt.Sprintf("rs-%d", o)
			gc.apply(addEvent, obj("ns", owner, owner), nil)
			for d := range 100 {
				name := fmt.Sprintf("%s-%d", owner, d)
				dep := obj("ns", name, name, ownedBy(owner, owner, true))
				gc.apply(addEvent, dep, nil)
				gc.apply(updateEvent, dep, dep)
			}
		}
		gc.attemptToDelete.ShutDown()
		gc.attemptToOrphan.ShutDown()
	}
}

func TestDeletableResources(t *testing.T) {
	lists := []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "pods", Kind: "Pod", Namespaced: true, Verbs: metav1.Verbs{"create", "delete", "get", "list", "watch"}},
			{Name: "pods/status", Kind: "Pod", Namespaced: true, Verbs: metav1.Verbs{"get", "update"}},
			{Name: "events", Kind: "Event", Namespaced: true, Verbs: metav1.Verbs{"delete", "list", "watch"}},
			{Name: "bindings", Kind: "Binding", Namespaced: true, Verbs: metav1.Verbs{"create"}},
		}},
		{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
			{Name: "replicasets", Kind: "ReplicaSet", Namespaced: true, Verbs: metav1.Verbs{"delete", "list", "watch"}},
			{Name: "unwatchable", Kind: "X", Namespaced: true, Verbs: metav1.Verbs{"delete", "list"}},
		}},
	}
	got := deletableResources(lists, map[schema.GroupResource]bool{{Resource: "events"}: true})
	var names []string
	for gvr := range got {
		names = append(names, gvr.String())
	}
	slices.Sort(names)
	want := []string{"/v1, Resource=pods", "apps/v1, Resource=replicasets"}
	if !slices.Equal(names, want) {
		t.Errorf("deletable = %v, want %v", names, want)
	}
}

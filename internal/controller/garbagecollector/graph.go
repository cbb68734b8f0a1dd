package garbagecollector

import (
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/lru"
)

// objectReference identifies an object in the graph: an owner reference's
// coordinates plus the namespace (empty for cluster-scoped objects).
type objectReference struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	UID        types.UID
}

// String is upstream's format; it appears in OwnerRefInvalidNamespace events.
func (r objectReference) String() string {
	return fmt.Sprintf("[%s/%s, namespace: %s, name: %s, uid: %s]", r.APIVersion, r.Kind, r.Namespace, r.Name, r.UID)
}

// refToOwner is how a dependent in namespace ns sees one of its owners
// before the owner is observed (upstream assumes the dependent's namespace).
func refToOwner(ref metav1.OwnerReference, ns string) objectReference {
	return objectReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID, Namespace: ns}
}

// matchesCoordinates: does ref name the same apiVersion/kind/name/uid?
func matchesCoordinates(ref metav1.OwnerReference, id objectReference) bool {
	return ref.UID == id.UID && ref.Name == id.Name && ref.Kind == id.Kind && ref.APIVersion == id.APIVersion
}

// node is one object (or a "virtual" owner only known from references).
// All fields are guarded by graph.mu.
type node struct {
	identity objectReference
	// dependents are the nodes whose ownerReferences name this node's UID.
	dependents map[*node]struct{}
	owners     []metav1.OwnerReference
	// virtual: known only from someone's ownerReferences, not yet seen by
	// an informer; the GC checks with the API whether it exists.
	virtual            bool
	beingDeleted       bool
	deletingDependents bool
}

// blockingDependents are the dependents whose reference to n sets
// blockOwnerDeletion: a foreground deletion of n waits for them.
func (n *node) blockingDependents() []*node {
	var out []*node
	for dep := range n.dependents {
		for _, ref := range dep.owners {
			if ref.UID == n.identity.UID && ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion {
				out = append(out, dep)
				break
			}
		}
	}
	return out
}

// graph is the dependency graph: one writer (the graph builder), many
// readers (the workers), one lock.
type graph struct {
	mu        sync.RWMutex
	uidToNode map[types.UID]*node
}

func newGraph() *graph { return &graph{uidToNode: map[types.UID]*node{}} }

// nodeView is a copy of what a worker needs from a node.
type nodeView struct {
	identity           objectReference
	owners             []metav1.OwnerReference
	virtual            bool
	beingDeleted       bool
	deletingDependents bool
	dependents         []depView
}

type depView struct {
	identity           objectReference
	deletingDependents bool
	// blocking: its reference to the viewed node sets blockOwnerDeletion.
	blocking bool
}

// view copies node uid out of the graph.
func (g *graph) view(uid types.UID) (nodeView, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	n, ok := g.uidToNode[uid]
	if !ok {
		return nodeView{}, false
	}
	v := nodeView{
		identity:           n.identity,
		owners:             append([]metav1.OwnerReference(nil), n.owners...),
		virtual:            n.virtual,
		beingDeleted:       n.beingDeleted,
		deletingDependents: n.deletingDependents,
	}
	blocking := map[*node]bool{}
	for _, d := range n.blockingDependents() {
		blocking[d] = true
	}
	for d := range n.dependents {
		v.dependents = append(v.dependents, depView{identity: d.identity, deletingDependents: d.deletingDependents, blocking: blocking[d]})
	}
	return v, true
}

// has reports whether uid is in the graph (tests).
func (g *graph) has(uid types.UID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	_, ok := g.uidToNode[uid]
	return ok
}

// referenceDiffs compares two ownerReference lists by UID.
func referenceDiffs(old, cur []metav1.OwnerReference) (added, removed []metav1.OwnerReference, changed []refPair) {
	oldByUID := make(map[types.UID]metav1.OwnerReference, len(old))
	for _, r := range old {
		oldByUID[r.UID] = r
	}
	for _, r := range cur {
		o, ok := oldByUID[r.UID]
		if !ok {
			added = append(added, r)
			continue
		}
		if !refEqual(o, r) {
			changed = append(changed, refPair{old: o, cur: r})
		}
		delete(oldByUID, r.UID)
	}
	for _, r := range old {
		if _, ok := oldByUID[r.UID]; ok {
			removed = append(removed, r)
		}
	}
	return added, removed, changed
}

type refPair struct{ old, cur metav1.OwnerReference }

func refEqual(a, b metav1.OwnerReference) bool {
	return a.APIVersion == b.APIVersion && a.Kind == b.Kind && a.Name == b.Name && a.UID == b.UID &&
		boolPtrEqual(a.Controller, b.Controller) && boolPtrEqual(a.BlockOwnerDeletion, b.BlockOwnerDeletion)
}

func boolPtrEqual(a, b *bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func isTrue(b *bool) bool { return b != nil && *b }

// absentCache remembers owners the API said do not exist (upstream's
// ReferenceCache, 500 entries), saving GETs when many dependents share a
// deleted owner.
type absentCache struct{ c *lru.Cache }

func newAbsentCache(size int) *absentCache { return &absentCache{c: lru.New(size)} }

func (a *absentCache) add(r objectReference) { a.c.Add(r, nil) }

func (a *absentCache) has(r objectReference) bool {
	_, ok := a.c.Get(r)
	return ok
}

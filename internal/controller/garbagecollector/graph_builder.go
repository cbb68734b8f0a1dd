package garbagecollector

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

type eventType int

const (
	addEvent eventType = iota
	updateEvent
	deleteEvent
)

// event is one informer notification (or a "virtual" delete the GC makes
// up after the API said an object is gone).
type event struct {
	virtual   bool
	eventType eventType
	obj       metav1.Object
	oldObj    metav1.Object
	gvk       schema.GroupVersionKind
}

// handlers feed one resource's informer into the graph changes queue.
func (gc *Controller) handlers(gvk schema.GroupVersionKind) cache.ResourceEventHandlerFuncs {
	acc := func(obj any) metav1.Object {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil
		}
		return m
	}
	push := func(t eventType, obj, old any) {
		m := acc(obj)
		if m == nil {
			return
		}
		ev := &event{eventType: t, obj: m, gvk: gvk}
		if old != nil {
			ev.oldObj = acc(old)
		}
		gc.graphChanges.Add(ev)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { push(addEvent, obj, nil) },
		UpdateFunc: func(old, obj any) { push(updateEvent, obj, old) },
		DeleteFunc: func(obj any) { push(deleteEvent, obj, nil) },
	}
}

// enqueueVirtualDelete tells the graph builder that the API no longer has
// the object ref (so the graph drops it and its dependents are checked).
func (gc *Controller) enqueueVirtualDelete(ref objectReference) {
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	gc.graphChanges.Add(&event{
		virtual:   true,
		eventType: deleteEvent,
		gvk:       gv.WithKind(ref.Kind),
		obj:       &metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID},
	})
}

func identityFromEvent(ev *event) objectReference {
	return objectReference{
		APIVersion: ev.gvk.GroupVersion().String(),
		Kind:       ev.gvk.Kind,
		Namespace:  ev.obj.GetNamespace(),
		Name:       ev.obj.GetName(),
		UID:        ev.obj.GetUID(),
	}
}

func beingDeleted(m metav1.Object) bool { return m.GetDeletionTimestamp() != nil }

func hasFinalizer(m metav1.Object, f string) bool { return slices.Contains(m.GetFinalizers(), f) }

// deletionStartsWithFinalizer: does this event start a deletion that waits
// on finalizer f (the first event that shows both)?
func deletionStartsWithFinalizer(old, cur metav1.Object, f string) bool {
	if !beingDeleted(cur) || !hasFinalizer(cur, f) {
		return false
	}
	return old == nil || !beingDeleted(old) || !hasFinalizer(old, f)
}

// processGraphChange applies one event to the graph and queues the work it
// implies. Only the graph builder goroutine calls it.
func (gc *Controller) processGraphChange(ev *event) {
	g := gc.graph
	g.mu.Lock()
	defer g.mu.Unlock()
	obj := ev.obj
	uid := obj.GetUID()
	existing, found := g.uidToNode[uid]
	if found && !ev.virtual && existing.virtual {
		// First sighting of an object so far known only from references.
		observed := identityFromEvent(ev)
		if observed != existing.identity {
			// Dependents that named it with other coordinates (or from
			// another namespace) may be dangling: have them checked.
			for dep := range existing.dependents {
				if !dependentMatches(dep, observed) {
					if observed.Namespace != "" && dep.identity.Namespace != observed.Namespace {
						gc.reportInvalidNamespaceOwnerRef(dep, observed.UID)
					}
					gc.attemptToDelete.Add(dep.identity.UID)
				}
			}
			existing.identity = observed
		}
		existing.virtual = false
	}
	switch {
	case (ev.eventType == addEvent || ev.eventType == updateEvent) && !found:
		n := &node{
			identity:           identityFromEvent(ev),
			dependents:         map[*node]struct{}{},
			owners:             obj.GetOwnerReferences(),
			beingDeleted:       beingDeleted(obj),
			deletingDependents: beingDeleted(obj) && hasFinalizer(obj, metav1.FinalizerDeleteDependents),
		}
		g.uidToNode[uid] = n
		gc.addDependentToOwners(n, n.owners)
		gc.processTransitions(ev.oldObj, obj, n)
	case ev.eventType == addEvent || ev.eventType == updateEvent:
		if !ev.virtual {
			id := identityFromEvent(ev)
			existing.identity.APIVersion, existing.identity.Kind = id.APIVersion, id.Kind
		}
		added, removed, changed := referenceDiffs(existing.owners, obj.GetOwnerReferences())
		if len(added)+len(removed)+len(changed) > 0 {
			// An owner waiting in foreground deletion may be unblocked.
			gc.addUnblockedOwnersToDeleteQueue(removed, changed)
			existing.owners = obj.GetOwnerReferences()
			gc.addDependentToOwners(existing, added)
			gc.removeDependentFromOwners(existing, removed)
		}
		if beingDeleted(obj) {
			existing.beingDeleted = true
		}
		gc.processTransitions(ev.oldObj, obj, existing)
	case ev.eventType == deleteEvent:
		if !found {
			return
		}
		remove := true
		if ev.virtual {
			deleted := identityFromEvent(ev)
			if !existing.virtual && existing.identity != deleted {
				// The real object lives on; only references with the
				// deleted coordinates are dangling.
				remove = false
				gc.absent.add(deleted)
				for dep := range existing.dependents {
					if dependentMatches(dep, deleted) {
						gc.attemptToDelete.Add(dep.identity.UID)
					}
				}
			}
		}
		if !remove {
			return
		}
		delete(g.uidToNode, uid)
		gc.removeDependentFromOwners(existing, existing.owners)
		if len(existing.dependents) > 0 {
			gc.absent.add(identityFromEvent(ev))
		}
		for dep := range existing.dependents {
			gc.attemptToDelete.Add(dep.identity.UID)
		}
		for _, ref := range existing.owners {
			if owner, ok := g.uidToNode[ref.UID]; ok && owner.deletingDependents {
				// Maybe the owner's last blocking dependent just went.
				gc.attemptToDelete.Add(owner.identity.UID)
			}
		}
	}
}

// dependentMatches: does dep reference owner with exactly these
// coordinates, from a namespace the owner can be seen in?
func dependentMatches(dep *node, owner objectReference) bool {
	if owner.Namespace != "" && owner.Namespace != dep.identity.Namespace {
		return false
	}
	for _, ref := range dep.owners {
		if ref.UID == owner.UID && matchesCoordinates(ref, owner) {
			return true
		}
	}
	return false
}

// addDependentToOwners links n under each owner, creating virtual owner
// nodes (checked against the API by a worker) for owners not seen yet.
// Holds g.mu.
func (gc *Controller) addDependentToOwners(n *node, owners []metav1.OwnerReference) {
	g := gc.graph
	suspicious := false
	for _, ref := range owners {
		owner, ok := g.uidToNode[ref.UID]
		if !ok {
			owner = &node{identity: refToOwner(ref, n.identity.Namespace), dependents: map[*node]struct{}{}, virtual: true}
			g.uidToNode[ref.UID] = owner
			owner.dependents[n] = struct{}{}
			gc.attemptToDelete.Add(ref.UID)
			continue
		}
		owner.dependents[n] = struct{}{}
		if suspicious {
			continue
		}
		ownerNamespaced := owner.identity.Namespace != ""
		switch {
		case ownerNamespaced && owner.identity.Namespace != n.identity.Namespace:
			// A namespaced dependent may only have owners in its own
			// namespace (or cluster-scoped ones).
			if !owner.virtual {
				gc.reportInvalidNamespaceOwnerRef(n, ref.UID)
			}
			suspicious = true
		case !matchesCoordinates(ref, owner.identity):
			suspicious = true
		case !ownerNamespaced && owner.identity.Namespace != n.identity.Namespace && owner.virtual:
			suspicious = true
		}
	}
	if suspicious {
		gc.attemptToDelete.Add(n.identity.UID)
	}
}

// removeDependentFromOwners unlinks n from the given owners. Holds g.mu.
func (gc *Controller) removeDependentFromOwners(n *node, owners []metav1.OwnerReference) {
	for _, ref := range owners {
		if owner, ok := gc.graph.uidToNode[ref.UID]; ok {
			delete(owner.dependents, n)
		}
	}
}

// addUnblockedOwnersToDeleteQueue: an owner whose blocking reference went
// away (or stopped blocking) may finish its foreground deletion.
func (gc *Controller) addUnblockedOwnersToDeleteQueue(removed []metav1.OwnerReference, changed []refPair) {
	for _, ref := range removed {
		if isTrue(ref.BlockOwnerDeletion) {
			if _, ok := gc.graph.uidToNode[ref.UID]; ok {
				gc.attemptToDelete.Add(ref.UID)
			}
		}
	}
	for _, c := range changed {
		if isTrue(c.old.BlockOwnerDeletion) && !isTrue(c.cur.BlockOwnerDeletion) {
			if _, ok := gc.graph.uidToNode[c.cur.UID]; ok {
				gc.attemptToDelete.Add(c.cur.UID)
			}
		}
	}
}

// processTransitions queues owners that just started an orphan or a
// foreground deletion. Holds g.mu.
func (gc *Controller) processTransitions(old, cur metav1.Object, n *node) {
	if deletionStartsWithFinalizer(old, cur, metav1.FinalizerOrphanDependents) {
		gc.attemptToOrphan.Add(n.identity.UID)
		return
	}
	if deletionStartsWithFinalizer(old, cur, metav1.FinalizerDeleteDependents) {
		n.deletingDependents = true
		for dep := range n.dependents {
			gc.attemptToDelete.Add(dep.identity.UID)
		}
		gc.attemptToDelete.Add(n.identity.UID)
	}
}

// reportInvalidNamespaceOwnerRef records upstream's warning on a dependent
// that names an owner from another namespace.
func (gc *Controller) reportInvalidNamespaceOwnerRef(n *node, ownerUID types.UID) {
	for _, ref := range n.owners {
		if ref.UID != ownerUID {
			continue
		}
		invalid := objectReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID, Namespace: n.identity.Namespace}
		obj := &corev1.ObjectReference{Kind: n.identity.Kind, APIVersion: n.identity.APIVersion,
			Namespace: n.identity.Namespace, Name: n.identity.Name, UID: n.identity.UID}
		gc.recorder.Eventf(obj, corev1.EventTypeWarning, "OwnerRefInvalidNamespace",
			"ownerRef %s does not exist in namespace %q", invalid, n.identity.Namespace)
		gc.log.Info("item references an owner but does not match namespaces", "item", n.identity.String(), "owner", fmt.Sprint(ownerUID))
		return
	}
}

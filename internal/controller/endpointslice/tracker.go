package endpointslice

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// deletionExpected marks a slice this controller deleted.
const deletionExpected = -1

// sliceTracker remembers the generation of every EndpointSlice this
// controller wrote, per Service (upstream's EndpointSliceTracker). It tells
// whether an informer event is our own write echoing back (no sync needed)
// and whether the informer cache still lags behind our writes (sync later,
// or we would act on old state and churn).
type sliceTracker struct {
	mu sync.Mutex
	// generations[service][slice UID] = generation we wrote, or
	// deletionExpected.
	generations map[types.NamespacedName]map[types.UID]int64
	serviceUIDs map[types.NamespacedName]types.UID
}

func newSliceTracker() *sliceTracker {
	return &sliceTracker{
		generations: map[types.NamespacedName]map[types.UID]int64{},
		serviceUIDs: map[types.NamespacedName]types.UID{},
	}
}

func serviceOfSlice(s *discoveryv1.EndpointSlice) types.NamespacedName {
	return types.NamespacedName{Namespace: s.Namespace, Name: s.Labels[discoveryv1.LabelServiceName]}
}

// has reports whether the slice is tracked.
func (t *sliceTracker) has(s *discoveryv1.EndpointSlice) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.generations[serviceOfSlice(s)][s.UID]
	return ok
}

// shouldSync reports whether the slice is newer than what we wrote (or not
// ours at all): someone else changed it.
func (t *sliceTracker) shouldSync(s *discoveryv1.EndpointSlice) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	g, ok := t.generations[serviceOfSlice(s)][s.UID]
	return !ok || s.Generation > g
}

// stale reports whether the cached slices of svc lag behind our writes: a
// slice older than we wrote, one we deleted still present, or one we wrote
// missing. A recreated Service (new UID) starts afresh.
func (t *sliceTracker) stale(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	if uid, ok := t.serviceUIDs[nn]; ok && uid != "" && svc.UID != "" && uid != svc.UID {
		delete(t.generations, nn)
	}
	t.serviceUIDs[nn] = svc.UID
	gens, ok := t.generations[nn]
	if !ok {
		return false
	}
	seen := make(map[types.UID]struct{}, len(slices))
	for _, s := range slices {
		seen[s.UID] = struct{}{}
		if g, ok := gens[s.UID]; ok && (g == deletionExpected || g > s.Generation) {
			return true
		}
	}
	for uid, g := range gens {
		if g == deletionExpected {
			continue
		}
		if _, ok := seen[uid]; !ok {
			return true
		}
	}
	return false
}

func (t *sliceTracker) set(s *discoveryv1.EndpointSlice, g int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	nn := serviceOfSlice(s)
	gens := t.generations[nn]
	if gens == nil {
		gens = map[types.UID]int64{}
		t.generations[nn] = gens
	}
	gens[s.UID] = g
}

// update records a slice as written by us.
func (t *sliceTracker) update(s *discoveryv1.EndpointSlice) { t.set(s, s.Generation) }

// expectDeletion records a slice as deleted by us.
func (t *sliceTracker) expectDeletion(s *discoveryv1.EndpointSlice) { t.set(s, deletionExpected) }

// handleDeletion forgets a deleted slice and reports whether we expected
// the deletion.
func (t *sliceTracker) handleDeletion(s *discoveryv1.EndpointSlice) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	gens, ok := t.generations[serviceOfSlice(s)]
	if !ok {
		return true
	}
	g, ok := gens[s.UID]
	delete(gens, s.UID)
	return !ok || g == deletionExpected
}

// deleteService forgets a deleted Service.
func (t *sliceTracker) deleteService(namespace, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	nn := types.NamespacedName{Namespace: namespace, Name: name}
	delete(t.generations, nn)
	delete(t.serviceUIDs, nn)
}

package replicaset

import (
	"sync"
	"time"
)

// expectationsTimeout is how long a ReplicaSet waits for the watch to
// report the pods it created or deleted before it syncs anyway (upstream's
// ExpectationsTimeout): a dropped watch event must not stall it forever.
const expectationsTimeout = 5 * time.Minute

// expectations remembers, per ReplicaSet key, the pod creations and
// deletions this controller made and has not yet seen in the informer
// cache. While any are outstanding the ReplicaSet is not scaled again, so a
// lagging cache never causes double creates or deletes (upstream's
// UIDTrackingControllerExpectations: deletions are tracked by pod key, so
// a graceful delete's deletionTimestamp update and the final delete event
// count once).
type expectations struct {
	now func() time.Time

	mu sync.Mutex
	m  map[string]*expectation
}

type expectation struct {
	adds int
	dels int
	// pending deletions by pod key ("ns/name").
	delKeys map[string]struct{}
	at      time.Time
}

func newExpectations(now func() time.Time) *expectations {
	return &expectations{now: now, m: map[string]*expectation{}}
}

// satisfied reports whether the key may be synced: it has no
// expectations, they were all observed, or they expired.
func (e *expectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return true
	}
	if x.adds <= 0 && x.dels <= 0 {
		return true
	}
	return e.now().Sub(x.at) > expectationsTimeout
}

// expectCreations replaces the key's expectations with n creations.
func (e *expectations) expectCreations(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{adds: n, at: e.now()}
}

// expectDeletions replaces the key's expectations with the deletion of
// the pods with the given keys.
func (e *expectations) expectDeletions(key string, podKeys []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	set := make(map[string]struct{}, len(podKeys))
	for _, k := range podKeys {
		set[k] = struct{}{}
	}
	e.m[key] = &expectation{dels: len(set), delKeys: set, at: e.now()}
}

// creationObserved lowers the key's expected creations by one.
func (e *expectations) creationObserved(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		x.adds--
	}
}

// deletionObserved lowers the key's expected deletions by one if podKey
// was among them, and only the first time it is seen.
func (e *expectations) deletionObserved(key, podKey string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return
	}
	if _, ok := x.delKeys[podKey]; ok {
		delete(x.delKeys, podKey)
		x.dels--
	}
}

// forget drops the key's expectations (its ReplicaSet was deleted, so a
// new one of the same name starts clean).
func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}

// pending returns the outstanding creations and deletions (tests).
func (e *expectations) pending(key string) (adds, dels int, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return 0, 0, false
	}
	return x.adds, x.dels, true
}

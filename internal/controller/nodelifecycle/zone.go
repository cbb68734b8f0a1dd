package nodelifecycle

import (
	"container/heap"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

// Zones and the rate at which unhealthy nodes get NoExecute taints, after
// upstream's pkg/controller/nodelifecycle/scheduler/rate_limited_queue.go
// and handleDisruption: each zone (region+zone labels) has a queue of
// nodes to taint drained through a token bucket; a zone with many
// unhealthy nodes slows down (or stops), and when every node of every zone
// is unhealthy nothing is tainted at all (the control plane, not the
// nodes, is probably the problem).

type zoneState string

const (
	stateInitial           zoneState = "Initial"
	stateNormal            zoneState = "Normal"
	stateFullDisruption    zoneState = "FullDisruption"
	statePartialDisruption zoneState = "PartialDisruption"
)

// evictionRateLimiterBurst is upstream's EvictionRateLimiterBurst.
const evictionRateLimiterBurst = 1

// zoneKey is component-helpers' topology.GetZoneKey.
func zoneKey(node *corev1.Node) string {
	l := node.Labels
	if l == nil {
		return ""
	}
	zone, ok := l[corev1.LabelTopologyZone]
	if !ok {
		zone = l[corev1.LabelFailureDomainBetaZone]
	}
	region, ok := l[corev1.LabelTopologyRegion]
	if !ok {
		region = l[corev1.LabelFailureDomainBetaRegion]
	}
	if region == "" && zone == "" {
		return ""
	}
	return region + ":\x00:" + zone
}

// tokenBucket is a rate limiter on an injectable clock; qps <= 0 never
// accepts.
type tokenBucket struct {
	clock  clock.PassiveClock
	qps    float32
	tokens float64
	last   time.Time
}

func newTokenBucket(clk clock.PassiveClock, qps float32) *tokenBucket {
	return &tokenBucket{clock: clk, qps: qps, tokens: evictionRateLimiterBurst, last: clk.Now()}
}

func (b *tokenBucket) tryAccept() bool {
	if b.qps <= 0 {
		return false
	}
	now := b.clock.Now()
	b.tokens += now.Sub(b.last).Seconds() * float64(b.qps)
	if b.tokens > evictionRateLimiterBurst {
		b.tokens = evictionRateLimiterBurst
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// timedValue is a node waiting to be tainted.
type timedValue struct {
	name      string
	processAt time.Time
	seq       uint64 // FIFO among equal times
	index     int
}

type timedHeap []*timedValue

func (h timedHeap) Len() int { return len(h) }
func (h timedHeap) Less(i, j int) bool {
	if !h[i].processAt.Equal(h[j].processAt) {
		return h[i].processAt.Before(h[j].processAt)
	}
	return h[i].seq < h[j].seq
}
func (h timedHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *timedHeap) Push(x any)   { v := x.(*timedValue); v.index = len(*h); *h = append(*h, v) }
func (h *timedHeap) Pop() any {
	old := *h
	v := old[len(old)-1]
	*h = old[:len(old)-1]
	return v
}

// taintQueue is upstream's RateLimitedTimedQueue: a unique queue of nodes
// ordered by when to process them, drained through a token bucket. A node
// stays in the set after it was processed, so it is not queued again until
// remove (the node became healthy).
type taintQueue struct {
	clock clock.PassiveClock

	mu     sync.Mutex
	heap   timedHeap
	queued map[string]*timedValue
	set    map[string]bool
	seq    uint64

	limiterMu sync.Mutex // held through try, so the rate holds
	limiter   *tokenBucket
}

func newTaintQueue(clk clock.PassiveClock, qps float32) *taintQueue {
	return &taintQueue{clock: clk, queued: map[string]*timedValue{}, set: map[string]bool{}, limiter: newTokenBucket(clk, qps)}
}

// add queues the node unless it is in the set; it reports whether it did.
func (q *taintQueue) add(name string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.set[name] {
		return false
	}
	q.set[name] = true
	q.seq++
	v := &timedValue{name: name, processAt: q.clock.Now(), seq: q.seq}
	heap.Push(&q.heap, v)
	q.queued[name] = v
	return true
}

// remove drops the node from the queue and the set; it reports whether the
// node was in the set.
func (q *taintQueue) remove(name string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if v, ok := q.queued[name]; ok {
		heap.Remove(&q.heap, v.index)
		delete(q.queued, name)
	}
	had := q.set[name]
	delete(q.set, name)
	return had
}

// try hands due nodes to fn while the limiter allows; fn returns false and
// a delay to be retried later. fn runs without the queue's lock, so add and
// remove do not wait for its API calls.
func (q *taintQueue) try(fn func(name string) (bool, time.Duration)) {
	q.limiterMu.Lock()
	defer q.limiterMu.Unlock()
	for {
		q.mu.Lock()
		if len(q.heap) == 0 || !q.limiter.tryAccept() {
			q.mu.Unlock()
			return
		}
		v := q.heap[0]
		now := q.clock.Now()
		if now.Before(v.processAt) {
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		ok, wait := fn(v.name)
		q.mu.Lock()
		if q.queued[v.name] == v { // not removed meanwhile
			if ok {
				heap.Remove(&q.heap, v.index)
				delete(q.queued, v.name) // stays in set
			} else {
				v.processAt = now.Add(wait + 1)
				heap.Fix(&q.heap, v.index)
			}
		}
		q.mu.Unlock()
	}
}

// swapLimiter changes the rate; as upstream, a new bucket starts drained
// when the old one had no token.
func (q *taintQueue) swapLimiter(qps float32) {
	q.limiterMu.Lock()
	defer q.limiterMu.Unlock()
	if q.limiter.qps == qps {
		return
	}
	nb := newTokenBucket(q.clock, qps)
	if qps > 0 && !q.limiter.tryAccept() {
		nb.tryAccept()
	}
	q.limiter = nb
}

package scheduler

import (
	"container/heap"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Where a queued pod is.
const (
	inActive = iota
	inBackoff
	inUnschedulable
	inFlight // popped: being decided or bound
)

// queuedPod is a pod waiting for (or going through) a scheduling attempt.
type queuedPod struct {
	info *PodInfo
	// attempts counts the decisions made for the pod; backoff doubles
	// with each.
	attempts int
	// timestamp orders equal-priority pods (FIFO) and starts the
	// backoff: it is reset when a failed pod returns to the queue.
	timestamp time.Time
	where     int
	heapIndex int
	// cycle is the scheduling cycle that popped the pod; a move request
	// after it sends a failed pod to backoff instead of the unschedulable
	// pool (the event that might have helped it came while it was out).
	cycle int64
	// changed records an update of the pod's spec while it was in flight;
	// newer is the latest object seen then. info stays as popped so that
	// the attempt reads it without the lock.
	changed bool
	newer   *PodInfo
	deleted bool
}

// podHeap is a binary heap of queued pods under a less function.
type podHeap struct {
	items []*queuedPod
	less  func(a, b *queuedPod) bool
}

func (h *podHeap) Len() int           { return len(h.items) }
func (h *podHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *podHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].heapIndex, h.items[j].heapIndex = i, j
}
func (h *podHeap) Push(x any) {
	qp := x.(*queuedPod)
	qp.heapIndex = len(h.items)
	h.items = append(h.items, qp)
}
func (h *podHeap) Pop() any {
	n := len(h.items) - 1
	qp := h.items[n]
	h.items[n] = nil
	h.items = h.items[:n]
	qp.heapIndex = -1
	return qp
}
func (h *podHeap) peek() *queuedPod {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

func podPriority(p *corev1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

// schedulingQueue is kube-scheduler's PriorityQueue in small: an active
// heap (priority, then FIFO), a backoff heap (by backoff expiry) and a pool
// of unschedulable pods that only cluster events (or the periodic flush)
// return to the others. Pods never loop hot: every return after a failure
// waits out its backoff.
type schedulingQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	clock  clock.Clock
	closed bool

	initialBackoff, maxBackoff time.Duration
	maxUnschedulable           time.Duration

	pods          map[types.UID]*queuedPod
	active        podHeap
	backoff       podHeap
	unschedulable map[types.UID]*queuedPod
	// unschedulableSince is when each pod entered the pool.
	unschedulableSince map[types.UID]time.Time

	cycle, moveRequestCycle int64
}

func newSchedulingQueue(clk clock.Clock, initialBackoff, maxBackoff, maxUnschedulable time.Duration) *schedulingQueue {
	q := &schedulingQueue{
		clock:              clk,
		initialBackoff:     initialBackoff,
		maxBackoff:         maxBackoff,
		maxUnschedulable:   maxUnschedulable,
		pods:               map[types.UID]*queuedPod{},
		unschedulable:      map[types.UID]*queuedPod{},
		unschedulableSince: map[types.UID]time.Time{},
		moveRequestCycle:   -1,
	}
	q.cond = sync.NewCond(&q.mu)
	q.active.less = func(a, b *queuedPod) bool {
		pa, pb := podPriority(a.info.Pod), podPriority(b.info.Pod)
		if pa != pb {
			return pa > pb
		}
		return a.timestamp.Before(b.timestamp)
	}
	q.backoff.less = func(a, b *queuedPod) bool { return q.backoffExpiry(a).Before(q.backoffExpiry(b)) }
	return q
}

// backoffDuration is initial·2^(attempts-1), at most max.
func (q *schedulingQueue) backoffDuration(attempts int) time.Duration {
	d := q.initialBackoff
	for i := 1; i < attempts; i++ {
		d *= 2
		if d >= q.maxBackoff {
			return q.maxBackoff
		}
	}
	return d
}

func (q *schedulingQueue) backoffExpiry(qp *queuedPod) time.Time {
	if qp.attempts == 0 {
		return qp.timestamp
	}
	return qp.timestamp.Add(q.backoffDuration(qp.attempts))
}

// add queues a new pending pod, or updates it when known.
func (q *schedulingQueue) add(p *PodInfo) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qp, ok := q.pods[p.Pod.UID]; ok {
		q.updateLocked(qp, p, true)
		return
	}
	qp := &queuedPod{info: p, timestamp: q.clock.Now()}
	q.pods[p.Pod.UID] = qp
	q.toActiveLocked(qp)
}

// update replaces a queued pod's object. specChanged (anything but status
// and bookkeeping changed) sends an unschedulable pod back to be tried, as
// the user may have fixed what kept it from fitting.
func (q *schedulingQueue) update(p *PodInfo, specChanged bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qp, ok := q.pods[p.Pod.UID]
	if !ok {
		qp = &queuedPod{info: p, timestamp: q.clock.Now()}
		q.pods[p.Pod.UID] = qp
		q.toActiveLocked(qp)
		return
	}
	q.updateLocked(qp, p, specChanged)
}

func (q *schedulingQueue) updateLocked(qp *queuedPod, p *PodInfo, specChanged bool) {
	if qp.where == inFlight {
		qp.newer = p
		qp.changed = qp.changed || specChanged
		return
	}
	qp.info = p
	switch qp.where {
	case inActive:
		heap.Fix(&q.active, qp.heapIndex)
	case inBackoff:
		heap.Fix(&q.backoff, qp.heapIndex)
	case inUnschedulable:
		if specChanged {
			q.moveLocked(qp, q.clock.Now())
		}
	}
}

// delete drops a pod (deleted, bound elsewhere, or no longer ours).
func (q *schedulingQueue) delete(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qp, ok := q.pods[uid]
	if !ok {
		return
	}
	q.detachLocked(qp)
	qp.deleted = true
	delete(q.pods, uid)
}

func (q *schedulingQueue) detachLocked(qp *queuedPod) {
	switch qp.where {
	case inActive:
		heap.Remove(&q.active, qp.heapIndex)
	case inBackoff:
		heap.Remove(&q.backoff, qp.heapIndex)
	case inUnschedulable:
		delete(q.unschedulable, qp.info.Pod.UID)
		delete(q.unschedulableSince, qp.info.Pod.UID)
	}
}

func (q *schedulingQueue) toActiveLocked(qp *queuedPod) {
	qp.where = inActive
	heap.Push(&q.active, qp)
	q.cond.Signal()
}

// moveLocked returns a detached or unschedulable pod to the backoff heap
// when its backoff has not expired at now, else to the active heap.
func (q *schedulingQueue) moveLocked(qp *queuedPod, now time.Time) {
	q.detachLocked(qp)
	if q.backoffExpiry(qp).After(now) {
		qp.where = inBackoff
		heap.Push(&q.backoff, qp)
		return
	}
	q.toActiveLocked(qp)
}

// pop blocks until a pod is active (or the queue closes) and hands it out
// for one attempt.
func (q *schedulingQueue) pop() (*queuedPod, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.active.Len() == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, false
	}
	qp := heap.Pop(&q.active).(*queuedPod)
	qp.where = inFlight
	qp.attempts++
	q.cycle++
	qp.cycle = q.cycle
	qp.changed = false
	qp.newer = nil
	return qp, true
}

// done removes a pod whose attempt succeeded (it is bound).
func (q *schedulingQueue) done(qp *queuedPod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if cur, ok := q.pods[qp.info.Pod.UID]; ok && cur == qp {
		delete(q.pods, qp.info.Pod.UID)
	}
}

// unschedulableAgain returns a pod that fit nowhere: to the unschedulable
// pool, or to backoff when something that may help it happened while it
// was being decided.
func (q *schedulingQueue) unschedulableAgain(qp *queuedPod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qp.deleted || qp.where != inFlight {
		return
	}
	q.landLocked(qp)
	now := q.clock.Now()
	qp.timestamp = now
	if qp.changed || q.moveRequestCycle >= qp.cycle {
		qp.where = inBackoff
		heap.Push(&q.backoff, qp)
		return
	}
	qp.where = inUnschedulable
	q.unschedulable[qp.info.Pod.UID] = qp
	q.unschedulableSince[qp.info.Pod.UID] = now
}

// retry returns a pod whose attempt failed for another reason (a bind
// error) to the backoff heap.
func (q *schedulingQueue) retry(qp *queuedPod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qp.deleted || qp.where != inFlight {
		return
	}
	q.landLocked(qp)
	qp.timestamp = q.clock.Now()
	qp.where = inBackoff
	heap.Push(&q.backoff, qp)
}

// landLocked applies the update that came while the pod was in flight.
func (q *schedulingQueue) landLocked(qp *queuedPod) {
	if qp.newer != nil {
		qp.info, qp.newer = qp.newer, nil
	}
}

// moveAll is the reaction to a cluster event that may make pods fit (a
// node added or changed, a pod gone): every unschedulable pod goes back,
// through backoff when it is still backing off.
func (q *schedulingQueue) moveAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock.Now()
	for _, qp := range q.unschedulable {
		q.moveLocked(qp, now)
	}
	q.moveRequestCycle = q.cycle
}

// flushBackoff moves pods whose backoff expired to the active heap.
func (q *schedulingQueue) flushBackoff() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock.Now()
	for {
		qp := q.backoff.peek()
		if qp == nil || q.backoffExpiry(qp).After(now) {
			return
		}
		heap.Pop(&q.backoff)
		q.toActiveLocked(qp)
	}
}

// flushUnschedulable retries pods that stayed unschedulable longer than
// maxUnschedulable without any event moving them.
func (q *schedulingQueue) flushUnschedulable() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock.Now()
	for uid, qp := range q.unschedulable {
		if now.Sub(q.unschedulableSince[uid]) > q.maxUnschedulable {
			q.moveLocked(qp, now)
		}
	}
}

// close wakes pop for good.
func (q *schedulingQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

// lens reports the sizes of the active heap, backoff heap and
// unschedulable pool (tests and logs).
func (q *schedulingQueue) lens() (active, backoff, unschedulable int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active.Len(), q.backoff.Len(), len(q.unschedulable)
}

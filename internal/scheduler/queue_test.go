package scheduler

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func newTestQueue() (*schedulingQueue, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	return newSchedulingQueue(clk, time.Second, 10*time.Second, 5*time.Minute), clk
}

func mustPop(t *testing.T, q *schedulingQueue, want string) *queuedPod {
	t.Helper()
	if a, _, _ := q.lens(); a == 0 {
		t.Fatalf("active queue empty, want %s", want)
	}
	qp, ok := q.pop()
	if !ok || qp.info.Pod.Name != want {
		t.Fatalf("popped %v, want %s", qp.info.Pod.Name, want)
	}
	return qp
}

func wantLens(t *testing.T, q *schedulingQueue, active, backoff, unsched int) {
	t.Helper()
	a, b, u := q.lens()
	if a != active || b != backoff || u != unsched {
		t.Fatalf("active/backoff/unschedulable = %d/%d/%d, want %d/%d/%d", a, b, u, active, backoff, unsched)
	}
}

func TestQueueOrder(t *testing.T) {
	q, clk := newTestQueue()
	hi := int32(100)
	q.add(NewPodInfo(testPod("first", "", "")))
	clk.Step(time.Millisecond)
	q.add(NewPodInfo(testPod("second", "", "")))
	clk.Step(time.Millisecond)
	q.add(NewPodInfo(testPod("urgent", "", "", func(p *corev1.Pod) { p.Spec.Priority = &hi })))
	mustPop(t, q, "urgent")
	mustPop(t, q, "first")
	mustPop(t, q, "second")
}

func TestBackoffDuration(t *testing.T) {
	q, _ := newTestQueue()
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 30: 10 * time.Second} {
		if got := q.backoffDuration(attempts); got != want {
			t.Errorf("backoffDuration(%d) = %v, want %v", attempts, got, want)
		}
	}
}

// TestUnschedulableWaitsForEvent: a failed pod is parked, returns through
// backoff on a cluster event, and never loops by itself.
func TestUnschedulableWaitsForEvent(t *testing.T) {
	q, clk := newTestQueue()
	q.add(NewPodInfo(testPod("p", "", "")))
	qp := mustPop(t, q, "p")
	q.unschedulableAgain(qp)
	wantLens(t, q, 0, 0, 1)

	clk.Step(time.Minute)
	q.flushBackoff()
	wantLens(t, q, 0, 0, 1) // no event, no retry

	q.moveAll()
	wantLens(t, q, 1, 0, 0) // backoff (1s) long over: straight to active
	qp = mustPop(t, q, "p")
	q.unschedulableAgain(qp)
	wantLens(t, q, 0, 0, 1)

	// An event right after the second failure: the pod waits out 2s.
	q.moveAll()
	wantLens(t, q, 0, 1, 0)
	clk.Step(1500 * time.Millisecond)
	q.flushBackoff()
	wantLens(t, q, 0, 1, 0)
	clk.Step(600 * time.Millisecond)
	q.flushBackoff()
	wantLens(t, q, 1, 0, 0)
}

// TestMoveDuringAttempt: an event while the pod was being decided sends
// the failed pod to backoff rather than the unschedulable pool.
func TestMoveDuringAttempt(t *testing.T) {
	q, clk := newTestQueue()
	q.add(NewPodInfo(testPod("p", "", "")))
	qp := mustPop(t, q, "p")
	q.moveAll()
	q.unschedulableAgain(qp)
	wantLens(t, q, 0, 1, 0)
	clk.Step(time.Second)
	q.flushBackoff()
	wantLens(t, q, 1, 0, 0)
}

func TestUnschedulableLeftoverFlush(t *testing.T) {
	q, clk := newTestQueue()
	q.add(NewPodInfo(testPod("p", "", "")))
	q.unschedulableAgain(mustPop(t, q, "p"))
	clk.Step(4 * time.Minute)
	q.flushUnschedulable()
	wantLens(t, q, 0, 0, 1)
	clk.Step(2 * time.Minute)
	q.flushUnschedulable()
	wantLens(t, q, 1, 0, 0)
}

func TestQueueUpdateAndDelete(t *testing.T) {
	q, _ := newTestQueue()
	p := testPod("p", "", "")
	q.add(NewPodInfo(p))
	q.unschedulableAgain(mustPop(t, q, "p"))

	// A status-only update leaves it parked; a spec change retries it.
	q.update(NewPodInfo(p), false)
	wantLens(t, q, 0, 0, 1)
	q.update(NewPodInfo(p), true)
	wantLens(t, q, 0, 1, 0)

	q.delete(p.UID)
	wantLens(t, q, 0, 0, 0)

	// A pod deleted while in flight is not requeued.
	q.add(NewPodInfo(p))
	qp := mustPop(t, q, "p")
	q.delete(p.UID)
	q.unschedulableAgain(qp)
	q.retry(qp)
	wantLens(t, q, 0, 0, 0)
}

func TestPopBlocksUntilAddOrClose(t *testing.T) {
	q, _ := newTestQueue()
	got := make(chan string)
	go func() {
		qp, ok := q.pop()
		if ok {
			got <- qp.info.Pod.Name
		}
		close(got)
	}()
	q.add(NewPodInfo(testPod("p", "", "")))
	if name := <-got; name != "p" {
		t.Fatalf("popped %q", name)
	}
	q2, _ := newTestQueue()
	done := make(chan bool)
	go func() { _, ok := q2.pop(); done <- ok }()
	q2.close()
	if <-done {
		t.Fatal("pop after close returned a pod")
	}
}

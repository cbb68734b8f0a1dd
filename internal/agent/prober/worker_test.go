package prober

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"
)

// harness drives a Manager with a fake clock and exec probes whose exit
// code the test sets per probe type (by the probe's first arg).
type harness struct {
	t      *testing.T
	clk    *testingclock.FakeClock
	m      *Manager
	probed chan ProbeType
	codes  sync.Map // arg → *atomic.Int32 exit code
	calls  sync.Map // arg → *atomic.Int32 number of runs
}

func newHarness(t *testing.T, jitter float64) *harness {
	h := &harness{t: t, clk: testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), probed: make(chan ProbeType, 100)}
	m, err := New(Config{
		Clock: h.clk,
		Rand:  func() float64 { return jitter },
		Exec: func(ctx context.Context, id string, args []string, out, _ io.Writer) (int, error) {
			n, _ := h.calls.LoadOrStore(args[0], new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			c, _ := h.codes.LoadOrStore(args[0], new(atomic.Int32))
			return int(c.(*atomic.Int32).Load()), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.probed = func(pt ProbeType) { h.probed <- pt }
	h.m = m
	t.Cleanup(m.Close)
	return h
}

func (h *harness) setCode(arg string, code int32) {
	c, _ := h.codes.LoadOrStore(arg, new(atomic.Int32))
	c.(*atomic.Int32).Store(code)
}

func (h *harness) nCalls(arg string) int {
	n, _ := h.calls.LoadOrStore(arg, new(atomic.Int32))
	return int(n.(*atomic.Int32).Load())
}

// waitProbed waits for n doProbe rounds (of any worker).
func (h *harness) waitProbed(n int) {
	h.t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-h.probed:
		case <-time.After(10 * time.Second):
			h.t.Fatalf("worker did not run (round %d of %d)", i+1, n)
		}
	}
}

// step advances the clock by d and waits for n worker rounds.
func (h *harness) step(d time.Duration, n int) {
	h.t.Helper()
	h.clk.Step(d)
	h.waitProbed(n)
}

func (h *harness) nextUpdate() Update {
	h.t.Helper()
	select {
	case u := <-h.m.Updates():
		return u
	case <-time.After(10 * time.Second):
		h.t.Fatal("no update")
	}
	return Update{}
}

func (h *harness) noUpdate() {
	h.t.Helper()
	select {
	case u := <-h.m.Updates():
		h.t.Fatalf("unexpected update %+v", u)
	default:
	}
}

func execProbeSpec(name string, period, initialDelay, success, failure int32) *v1.Probe {
	return &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{name}}},
		PeriodSeconds: period, InitialDelaySeconds: initialDelay, SuccessThreshold: success, FailureThreshold: failure, TimeoutSeconds: 1}
}

func (h *harness) add(c *v1.Container) {
	h.t.Helper()
	grace := int64(30)
	if err := h.m.AddContainer(Target{PodUID: types.UID("uid1"), Namespace: "ns", PodName: "p", Container: c,
		ContainerID: "cid-" + c.Name, StartedAt: h.clk.Now(), PodGracePeriod: &grace}); err != nil {
		h.t.Fatal(err)
	}
}

func TestLivenessFailureThreshold(t *testing.T) {
	h := newHarness(t, 0)
	tgp := int64(5)
	spec := execProbeSpec("live", 10, 0, 1, 3)
	spec.TerminationGracePeriodSeconds = &tgp
	h.add(&v1.Container{Name: "app", LivenessProbe: spec})
	if u := h.nextUpdate(); u.Type != Liveness || u.Result != Success || u.ContainerID != "cid-app" {
		t.Fatalf("initial update %+v", u)
	}
	h.waitProbed(1) // first probe at once
	if h.nCalls("live") != 1 {
		t.Fatalf("calls %d", h.nCalls("live"))
	}
	if _, bad := h.m.Unhealthy("cid-app"); bad {
		t.Fatal("unhealthy too early")
	}
	h.setCode("live", 1)
	h.step(10*time.Second, 1)
	h.step(10*time.Second, 1)
	h.noUpdate()
	if r, _ := h.m.Result("cid-app", Liveness); r != Success {
		t.Fatalf("below threshold the result must not change: %v", r)
	}
	h.step(10*time.Second, 1)
	if u := h.nextUpdate(); u.Result != Failure || u.Type != Liveness {
		t.Fatalf("update %+v", u)
	}
	k, bad := h.m.Unhealthy("cid-app")
	if !bad || k.Reason != "LivenessProbe" || k.Message != "Container app failed liveness probe" || k.GracePeriod == nil || *k.GracePeriod != 5 {
		t.Fatalf("kill %+v %v", k, bad)
	}
	// On hold: no more probes for this container instance.
	h.step(10*time.Second, 1)
	h.step(10*time.Second, 1)
	if h.nCalls("live") != 4 {
		t.Fatalf("probed on hold: %d calls", h.nCalls("live"))
	}
	h.m.RemoveContainer("cid-app")
	if _, ok := h.m.Result("cid-app", Liveness); ok {
		t.Fatal("result kept after remove")
	}
}

func TestReadinessThresholdsAndInitialDelay(t *testing.T) {
	h := newHarness(t, 0)
	h.add(&v1.Container{Name: "web", ReadinessProbe: execProbeSpec("ready", 5, 12, 2, 1)})
	if h.m.Ready("cid-web") {
		t.Fatal("ready before any probe")
	}
	if u := h.nextUpdate(); u.Type != Readiness || u.Result != Failure {
		t.Fatalf("initial %+v", u)
	}
	h.waitProbed(1) // t=0: within initial delay
	h.step(5*time.Second, 1)
	h.step(5*time.Second, 1) // t=10 < 12
	if n := h.nCalls("ready"); n != 0 {
		t.Fatalf("probed during initialDelaySeconds: %d", n)
	}
	h.step(5*time.Second, 1) // t=15: first probe, success 1 of 2
	if h.nCalls("ready") != 1 || h.m.Ready("cid-web") {
		t.Fatalf("calls %d ready %v", h.nCalls("ready"), h.m.Ready("cid-web"))
	}
	h.step(5*time.Second, 1) // success 2 of 2
	if u := h.nextUpdate(); u.Result != Success || !h.m.Ready("cid-web") {
		t.Fatalf("update %+v ready %v", u, h.m.Ready("cid-web"))
	}
	h.setCode("ready", 1)
	h.step(5*time.Second, 1) // failureThreshold 1
	if u := h.nextUpdate(); u.Result != Failure || h.m.Ready("cid-web") {
		t.Fatalf("update %+v", u)
	}
	// Readiness keeps probing after a failure.
	h.setCode("ready", 0)
	h.step(5*time.Second, 1)
	h.step(5*time.Second, 1)
	if !h.m.Ready("cid-web") {
		t.Fatal("not ready again")
	}
	if _, bad := h.m.Unhealthy("cid-web"); bad {
		t.Fatal("readiness failures never kill")
	}
}

func TestStartupGatesLivenessAndReadiness(t *testing.T) {
	h := newHarness(t, 0)
	h.setCode("start", 1)
	h.add(&v1.Container{Name: "app",
		StartupProbe:   execProbeSpec("start", 10, 0, 1, 30),
		LivenessProbe:  execProbeSpec("live", 10, 0, 1, 1),
		ReadinessProbe: execProbeSpec("ready", 10, 0, 1, 1)})
	if h.m.Started("cid-app") || h.m.Ready("cid-app") {
		t.Fatal("started before the startup probe succeeded")
	}
	h.waitProbed(3)
	h.step(10*time.Second, 3)
	h.step(10*time.Second, 3)
	if h.nCalls("start") != 3 || h.nCalls("live") != 0 || h.nCalls("ready") != 0 {
		t.Fatalf("calls start %d live %d ready %d", h.nCalls("start"), h.nCalls("live"), h.nCalls("ready"))
	}
	if h.m.Started("cid-app") {
		t.Fatal("started")
	}
	if r, ok := h.m.Result("cid-app", Startup); !ok || r != Unknown {
		t.Fatalf("startup result %v %v", r, ok)
	}
	h.setCode("start", 0)
	h.step(10*time.Second, 3) // startup succeeds; the others still see it not started this round or just after
	deadline := time.Now().Add(10 * time.Second)
	for !h.m.Started("cid-app") {
		if time.Now().After(deadline) {
			t.Fatal("not started")
		}
		time.Sleep(time.Millisecond)
	}
	h.step(10*time.Second, 3)
	if h.nCalls("start") != 4 {
		t.Fatalf("startup probed after success: %d", h.nCalls("start"))
	}
	if h.nCalls("live") == 0 || h.nCalls("ready") == 0 || !h.m.Ready("cid-app") {
		t.Fatalf("liveness/readiness not running after start: %d %d ready %v", h.nCalls("live"), h.nCalls("ready"), h.m.Ready("cid-app"))
	}
}

func TestStartupFailureKills(t *testing.T) {
	h := newHarness(t, 0)
	h.setCode("start", 1)
	h.add(&v1.Container{Name: "app", StartupProbe: execProbeSpec("start", 10, 0, 1, 2)})
	h.waitProbed(1)
	h.step(10*time.Second, 1)
	k, bad := h.m.Unhealthy("cid-app")
	if !bad || k.Reason != "StartupProbe" || k.Message != "Container app failed startup probe" || *k.GracePeriod != 30 {
		t.Fatalf("kill %+v %v", k, bad)
	}
}

func TestFirstProbeJitterAndTerminating(t *testing.T) {
	h := newHarness(t, 0.5) // manager just started: wait half a period first
	h.add(&v1.Container{Name: "app", LivenessProbe: execProbeSpec("live", 10, 0, 1, 1)})
	h.nextUpdate()
	for !h.clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	h.clk.Step(4 * time.Second)
	select {
	case <-h.probed:
		t.Fatal("probed before the jitter elapsed")
	case <-time.After(50 * time.Millisecond):
	}
	h.step(time.Second, 1)
	if h.nCalls("live") != 1 {
		t.Fatalf("calls %d", h.nCalls("live"))
	}
	h.setCode("live", 1)
	h.m.PodTerminating("uid1")
	h.step(10*time.Second, 1)
	if h.nCalls("live") != 1 {
		t.Fatal("liveness probed while the pod terminates")
	}
	if _, bad := h.m.Unhealthy("cid-app"); bad {
		t.Fatal("unhealthy while terminating")
	}
}

func TestNoProbes(t *testing.T) {
	h := newHarness(t, 0)
	h.add(&v1.Container{Name: "plain"})
	if !h.m.Started("cid-plain") || !h.m.Ready("cid-plain") {
		t.Fatal("a container without probes is started and ready")
	}
	if h.m.Ready("unknown") || h.m.Started("unknown") {
		t.Fatal("unknown container")
	}
	h.m.RemovePod("uid1")
	if h.m.Ready("cid-plain") {
		t.Fatal("kept after RemovePod")
	}
}

// TestRemoveUnblocksWorker: with nobody reading Updates, a worker blocked on
// a full channel returns when its container is removed, and Close returns.
func TestRemoveUnblocksWorker(t *testing.T) {
	h := newHarness(t, 0)
	for i := 0; i < updatesBuffer; i++ {
		h.m.updates <- Update{}
	}
	h.add(&v1.Container{Name: "app", ReadinessProbe: execProbeSpec("ready", 1, 0, 1, 1)})
	h.m.RemoveContainer("cid-app")
	done := make(chan struct{})
	go func() { h.m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked")
	}
	if err := h.m.AddContainer(Target{ContainerID: "x", Container: &v1.Container{Name: "x"}}); err == nil {
		t.Fatal("AddContainer after Close")
	}
}

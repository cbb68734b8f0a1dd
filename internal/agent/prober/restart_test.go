package prober

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	testingclock "k8s.io/utils/clock/testing"
)

func TestShouldRestart(t *testing.T) {
	tests := []struct {
		policy v1.RestartPolicy
		code   int
		want   bool
	}{
		{v1.RestartPolicyAlways, 0, true},
		{v1.RestartPolicyAlways, 1, true},
		{v1.RestartPolicyOnFailure, 0, false},
		{v1.RestartPolicyOnFailure, 137, true},
		{v1.RestartPolicyNever, 1, false},
		{"", 0, true},
	}
	for _, tc := range tests {
		if got := ShouldRestart(tc.policy, tc.code); got != tc.want {
			t.Errorf("ShouldRestart(%s, %d) = %v", tc.policy, tc.code, got)
		}
	}
}

func testPod() *v1.Pod {
	p := &v1.Pod{}
	p.Name, p.Namespace, p.UID = "web", "default", "u-1"
	p.Spec.Containers = []v1.Container{{Name: "app", Image: "busybox"}}
	return p
}

// TestBackoffSequence crashes a container at once after every start and
// checks the waits: first restart immediate, then 10s, 20s, … capped at 5m.
func TestBackoffSequence(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := NewBackoff(clk)
	pod := testPod()
	c := &pod.Spec.Containers[0]

	var waits []time.Duration
	finished := clk.Now()
	for i := 0; i < 9; i++ {
		r := b.Restart(pod, c, finished)
		var waited time.Duration
		for !r.Now {
			if r.Waiting == nil || r.Waiting.Reason != "CrashLoopBackOff" {
				t.Fatalf("waiting %+v", r.Waiting)
			}
			if i == 2 && waited == 0 {
				want := "back-off 20s restarting failed container=app pod=web_default(u-1)"
				if r.Waiting.Message != want {
					t.Fatalf("message %q, want %q", r.Waiting.Message, want)
				}
			}
			clk.Step(r.After)
			waited += r.After
			r = b.Restart(pod, c, finished)
		}
		waits = append(waits, waited)
		clk.Step(time.Second) // runs 1s, crashes
		finished = clk.Now()
	}
	want := []time.Duration{0, 10, 20, 40, 80, 160, 300, 300, 300}
	for i := range want {
		if waits[i] != want[i]*time.Second {
			t.Fatalf("waits %v, want %v (s)", waits, want)
		}
	}
	if got := b.Restart(pod, c, finished); got.Now || got.Waiting.Message != "back-off 5m0s restarting failed container=app pod=web_default(u-1)" {
		t.Fatalf("at cap: %+v", got.Waiting)
	}
}

// TestBackoffReset: a container that ran for more than 10 minutes after its
// last restart starts again at once and the window goes back to 10s.
func TestBackoffReset(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := NewBackoff(clk)
	pod := testPod()
	c := &pod.Spec.Containers[0]
	// Crash loop until 80s.
	for i := 0; i < 5; i++ {
		finished := clk.Now()
		r := b.Restart(pod, c, finished)
		if !r.Now {
			clk.Step(r.After)
			r = b.Restart(pod, c, finished)
		}
		if !r.Now {
			t.Fatalf("still in back-off after waiting: %+v", r.Waiting)
		}
		clk.Step(time.Second)
	}
	if b.Current(pod, c) < 80*time.Second {
		t.Fatalf("current %v", b.Current(pod, c))
	}
	// Runs 9 minutes: not reset.
	clk.Step(9 * time.Minute)
	if r := b.Restart(pod, c, clk.Now()); r.Now {
		t.Fatal("9 minutes of running must not reset the back-off")
	}
	// Runs 10m+1s after the last restart: reset.
	b2 := NewBackoff(clk)
	_ = b2.Restart(pod, c, clk.Now()) // 10s
	clk.Step(10 * time.Second)
	_ = b2.Restart(pod, c, clk.Now().Add(-10*time.Second)) // → 20s, restarted now
	clk.Step(10*time.Minute + time.Second)
	if r := b2.Restart(pod, c, clk.Now()); !r.Now {
		t.Fatalf("not reset after 10 minutes: %+v", r.Waiting)
	}
	if got := b2.Current(pod, c); got != 10*time.Second {
		t.Fatalf("after reset %v", got)
	}
	// A changed container spec has its own back-off.
	c2 := *c
	c2.Image = "busybox:2"
	if got := b2.Current(pod, &c2); got != 0 {
		t.Fatalf("new spec inherits back-off %v", got)
	}
	b2.Forget(pod, c)
	if got := b2.Current(pod, c); got != 0 {
		t.Fatalf("after Forget %v", got)
	}
}

func TestPlanInit(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	pod := func(policy v1.RestartPolicy) *v1.Pod {
		p := testPod()
		p.Spec.RestartPolicy = policy
		p.Spec.InitContainers = []v1.Container{{Name: "i1"}, {Name: "side", RestartPolicy: &always}, {Name: "i2"}}
		return p
	}
	done := ContainerState{Exists: true, ExitCode: 0}
	running := ContainerState{Exists: true, Running: true, Started: true}
	tests := []struct {
		name        string
		policy      v1.RestartPolicy
		states      map[string]ContainerState
		initialized bool
		want        InitPlan
	}{
		{"nothing ran", v1.RestartPolicyAlways, nil, false, InitPlan{Start: []string{"i1"}}},
		{"i1 running", v1.RestartPolicyAlways, map[string]ContainerState{"i1": {Exists: true, Running: true}}, false, InitPlan{}},
		{"i1 done: sidecar next", v1.RestartPolicyAlways, map[string]ContainerState{"i1": done}, false, InitPlan{Start: []string{"side"}}},
		{"sidecar not started yet", v1.RestartPolicyNever, map[string]ContainerState{"i1": done, "side": {Exists: true, Running: true}}, false, InitPlan{}},
		{"sidecar started: i2 next", v1.RestartPolicyNever, map[string]ContainerState{"i1": done, "side": running}, false, InitPlan{Start: []string{"i2"}}},
		{"i1 failed, OnFailure", v1.RestartPolicyOnFailure, map[string]ContainerState{"i1": {Exists: true, ExitCode: 2}}, false, InitPlan{Start: []string{"i1"}}},
		{"i1 failed, Never", v1.RestartPolicyNever, map[string]ContainerState{"i1": {Exists: true, ExitCode: 2}}, false, InitPlan{Failed: true, FailedContainer: "i1"}},
		{"sidecar exited, Never: restarted", v1.RestartPolicyNever, map[string]ContainerState{"i1": done, "side": {Exists: true, ExitCode: 1}}, false, InitPlan{Start: []string{"side"}}},
		{"all done", v1.RestartPolicyAlways, map[string]ContainerState{"i1": done, "side": running, "i2": done}, false, InitPlan{Initialized: true}},
		{"initialized, sidecar exited", v1.RestartPolicyNever, map[string]ContainerState{"side": {Exists: true}}, true, InitPlan{Start: []string{"side"}, Initialized: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanInit(pod(tc.policy), tc.states, tc.initialized)
			if len(got.Start) == 0 {
				got.Start = nil
			}
			if got.Initialized != tc.want.Initialized || got.Failed != tc.want.Failed || got.FailedContainer != tc.want.FailedContainer ||
				len(got.Start) != len(tc.want.Start) || (len(got.Start) > 0 && got.Start[0] != tc.want.Start[0]) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

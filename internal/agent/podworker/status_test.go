package podworker

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/internal/runtime"
)

var (
	t0 = time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Minute)
)

func running() *runtime.State {
	return &runtime.State{Status: runtime.StatusRunning, CreatedAt: t0, StartedAt: t0}
}

func exited(code int) *runtime.State {
	return &runtime.State{Status: runtime.StatusExited, ExitCode: code, CreatedAt: t0, StartedAt: t0, FinishedAt: t1}
}

func statusPod(policy corev1.RestartPolicy, init []string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}}
	p.Spec.RestartPolicy = policy
	for _, n := range init {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n, Image: "img"})
	}
	for _, n := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: "img"})
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0)}}
	return p
}

func view(name string, cur *runtime.State, ready bool) containerView {
	v := containerView{Name: name, Current: cur, Ready: ready, Started: cur != nil && cur.Status == runtime.StatusRunning}
	if cur != nil {
		v.CurrentID = "abc"
	}
	return v
}

func condOf(st corev1.PodStatus, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

func TestComputePodStatus(t *testing.T) {
	type want struct {
		phase          corev1.PodPhase
		ready, cready  corev1.ConditionStatus
		initialized    corev1.ConditionStatus
		readyReason    string
		readyMessage   string
		initMessage    string
		waiting        string // first container's waiting reason
		terminated     string // first container's terminated reason
		lastTerminated int32  // exit code of lastState, -1 none
	}
	crash := view("c", exited(2), false)
	crash.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonCrashLoopBackOff, Message: "back-off 10s"}
	oom := exited(137)
	oom.OOMKilled = true
	gated := statusPod(corev1.RestartPolicyAlways, nil, "c")
	gated.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/gate"}}

	for _, tc := range []struct {
		name       string
		pod        *corev1.Pod
		init, ctrs []containerView
		inited     bool
		want       want
	}{
		{"creating", statusPod(corev1.RestartPolicyAlways, nil, "c"), nil, []containerView{view("c", nil, false)}, true,
			want{phase: corev1.PodPending, ready: "False", cready: "False", initialized: "True", readyReason: "ContainersNotReady",
				readyMessage: "containers with unready status: [c]", waiting: ReasonContainerCreating, lastTerminated: -1}},
		{"running ready", statusPod(corev1.RestartPolicyAlways, nil, "a", "b"), nil, []containerView{view("a", running(), true), view("b", running(), true)}, true,
			want{phase: corev1.PodRunning, ready: "True", cready: "True", initialized: "True", lastTerminated: -1}},
		{"running unready", statusPod(corev1.RestartPolicyAlways, nil, "a", "b"), nil, []containerView{view("a", running(), true), view("b", running(), false)}, true,
			want{phase: corev1.PodRunning, ready: "False", cready: "False", initialized: "True", readyReason: "ContainersNotReady",
				readyMessage: "containers with unready status: [b]", lastTerminated: -1}},
		{"readiness gate missing", gated, nil, []containerView{view("c", running(), true)}, true,
			want{phase: corev1.PodRunning, ready: "False", cready: "True", initialized: "True", readyReason: "ReadinessGatesNotReady",
				readyMessage: `corresponding condition of pod readiness gate "example.com/gate" does not exist.`, lastTerminated: -1}},
		{"never succeeded", statusPod(corev1.RestartPolicyNever, nil, "c"), nil, []containerView{view("c", exited(0), false)}, true,
			want{phase: corev1.PodSucceeded, ready: "False", cready: "False", initialized: "True", readyReason: "PodCompleted", terminated: "Completed", lastTerminated: -1}},
		{"never failed", statusPod(corev1.RestartPolicyNever, nil, "a", "b"), nil, []containerView{view("a", exited(1), false), view("b", exited(0), false)}, true,
			want{phase: corev1.PodFailed, ready: "False", cready: "False", initialized: "True", readyReason: "PodFailed", terminated: "Error", lastTerminated: -1}},
		{"never one still running", statusPod(corev1.RestartPolicyNever, nil, "a", "b"), nil, []containerView{view("a", exited(1), false), view("b", running(), true)}, true,
			want{phase: corev1.PodRunning, ready: "False", cready: "False", initialized: "True", readyReason: "ContainersNotReady",
				readyMessage: "containers with unready status: [a]", terminated: "Error", lastTerminated: -1}},
		{"onfailure succeeded", statusPod(corev1.RestartPolicyOnFailure, nil, "c"), nil, []containerView{view("c", exited(0), false)}, true,
			want{phase: corev1.PodSucceeded, ready: "False", cready: "False", initialized: "True", readyReason: "PodCompleted", terminated: "Completed", lastTerminated: -1}},
		{"crash loop", statusPod(corev1.RestartPolicyAlways, nil, "c"), nil, []containerView{crash}, true,
			want{phase: corev1.PodRunning, ready: "False", cready: "False", initialized: "True", readyReason: "ContainersNotReady",
				readyMessage: "containers with unready status: [c]", waiting: ReasonCrashLoopBackOff, lastTerminated: 2}},
		{"oom killed", statusPod(corev1.RestartPolicyNever, nil, "c"), nil, []containerView{view("c", oom, false)}, true,
			want{phase: corev1.PodFailed, ready: "False", cready: "False", initialized: "True", readyReason: "PodFailed", terminated: "OOMKilled", lastTerminated: -1}},
		{"init pending", statusPod(corev1.RestartPolicyAlways, []string{"i1", "i2"}, "c"),
			[]containerView{view("i1", exited(0), false), view("i2", running(), false)}, []containerView{view("c", nil, false)}, false,
			want{phase: corev1.PodPending, ready: "False", cready: "False", initialized: "False", readyReason: "ContainersNotReady",
				readyMessage: "containers with unready status: [c]", initMessage: "containers with incomplete status: [i2]",
				waiting: ReasonPodInitializing, lastTerminated: -1}},
		{"init failed never", statusPod(corev1.RestartPolicyNever, []string{"i1"}, "c"),
			[]containerView{view("i1", exited(1), false)}, []containerView{view("c", nil, false)}, false,
			want{phase: corev1.PodFailed, ready: "False", cready: "False", initialized: "False", readyReason: "PodFailed",
				initMessage: "containers with incomplete status: [i1]", waiting: ReasonPodInitializing, lastTerminated: -1}},
		{"initialized", statusPod(corev1.RestartPolicyAlways, []string{"i1"}, "c"),
			[]containerView{view("i1", exited(0), false)}, []containerView{view("c", running(), true)}, true,
			want{phase: corev1.PodRunning, ready: "True", cready: "True", initialized: "True", lastTerminated: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := computePodStatus(statusInput{Pod: tc.pod, Now: t1, HostIPs: []string{"10.0.0.1"}, SandboxReady: true,
				Init: tc.init, Containers: tc.ctrs, Initialized: tc.inited, StartTimeIfNew: t0})
			w := tc.want
			if st.Phase != w.phase {
				t.Errorf("phase %s, want %s", st.Phase, w.phase)
			}
			r, cr, in := condOf(st, corev1.PodReady), condOf(st, corev1.ContainersReady), condOf(st, corev1.PodInitialized)
			if r.Status != w.ready || cr.Status != w.cready || in.Status != w.initialized {
				t.Errorf("ready %s containersReady %s initialized %s", r.Status, cr.Status, in.Status)
			}
			if r.Reason != w.readyReason || r.Message != w.readyMessage {
				t.Errorf("ready reason %q message %q", r.Reason, r.Message)
			}
			if in.Message != w.initMessage {
				t.Errorf("initialized message %q", in.Message)
			}
			if condOf(st, corev1.PodScheduled) == nil {
				t.Error("PodScheduled dropped")
			}
			cs := st.ContainerStatuses[0]
			if got := cs.State.Waiting; (got == nil) != (w.waiting == "") || got != nil && got.Reason != w.waiting {
				t.Errorf("waiting %+v, want %q", got, w.waiting)
			}
			if got := cs.State.Terminated; (got == nil) != (w.terminated == "") || got != nil && got.Reason != w.terminated {
				t.Errorf("terminated %+v, want %q", got, w.terminated)
			}
			if lt := cs.LastTerminationState.Terminated; (lt == nil) != (w.lastTerminated < 0) || lt != nil && lt.ExitCode != w.lastTerminated {
				t.Errorf("lastState %+v, want exit %d", lt, w.lastTerminated)
			}
			if st.HostIP != "10.0.0.1" || st.PodIP != "" || st.StartTime == nil || st.QOSClass != corev1.PodQOSBestEffort {
				t.Errorf("hostIP %q podIP %q startTime %v qos %q", st.HostIP, st.PodIP, st.StartTime, st.QOSClass)
			}
		})
	}
}

// TestComputePodStatusStable: computing the status again from what was
// written changes nothing (transition times kept, times in whole seconds),
// so no patch is sent.
func TestComputePodStatusStable(t *testing.T) {
	pod := statusPod(corev1.RestartPolicyAlways, nil, "c")
	st := running()
	st.StartedAt = t0.Add(123456789 * time.Nanosecond)
	in := statusInput{Pod: pod, Now: t1, HostIPs: []string{"10.0.0.1"}, SandboxReady: true,
		Containers: []containerView{view("c", st, true)}, Initialized: true, StartTimeIfNew: t1.Add(time.Millisecond)}
	first := computePodStatus(in)
	pod.Status = first
	in.Now = t1.Add(time.Hour)
	second := computePodStatus(in)
	if !equalStatus(first, second) {
		t.Fatalf("status changed:\n%s\n%s", dump(first), dump(second))
	}
	if got := second.ContainerStatuses[0].State.Running.StartedAt.Time; !got.Equal(t0) {
		t.Errorf("startedAt %v not truncated to seconds", got)
	}
	// A readiness change moves only Ready/ContainersReady's transition time.
	in.Containers[0].Ready = false
	third := computePodStatus(in)
	if c := condOf(third, corev1.PodReady); c.Status != "False" || !c.LastTransitionTime.Time.Equal(t1.Add(time.Hour)) {
		t.Errorf("Ready %+v", c)
	}
	if c := condOf(third, corev1.PodInitialized); !c.LastTransitionTime.Time.Equal(t1) {
		t.Errorf("Initialized transition moved: %+v", c)
	}
}

func TestGracePeriod(t *testing.T) {
	pod := &corev1.Pod{}
	if d := gracePeriod(pod, nil); d != 30*time.Second {
		t.Errorf("default %v", d)
	}
	s := int64(5)
	pod.Spec.TerminationGracePeriodSeconds = &s
	if d := gracePeriod(pod, nil); d != 5*time.Second {
		t.Errorf("pod %v", d)
	}
	o := int64(0)
	if d := gracePeriod(pod, &o); d != 0 {
		t.Errorf("override %v", d)
	}
}

func equalStatus(a, b corev1.PodStatus) bool { return apiequality.Semantic.DeepEqual(a, b) }

package podworker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/runtime"
)

// TestExitCodesAndCrashLoop: restartPolicy Never pods end Succeeded or
// Failed with their exit codes and termination messages; a crashing
// container under Always backs off with CrashLoopBackOff.
func TestExitCodesAndCrashLoop(t *testing.T) {
	e := newEnv(t)
	ok := simplePod("ok", corev1.Container{Name: "c", Command: []string{"sh", "-c", "echo done"}})
	ok.Spec.RestartPolicy = corev1.RestartPolicyNever
	bad := simplePod("bad", corev1.Container{Name: "c", Command: []string{"sh", "-c", "echo -n 'bye now' > /dev/termination-log; exit 3"}})
	bad.Spec.RestartPolicy = corev1.RestartPolicyNever
	fallback := simplePod("fallback", corev1.Container{Name: "c", Command: []string{"sh", "-c", "echo last words; exit 4"},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError})
	fallback.Spec.RestartPolicy = corev1.RestartPolicyNever
	crash := simplePod("crash", corev1.Container{Name: "c", Command: []string{"sh", "-c", "echo crashing; exit 2"}})
	for _, p := range []*corev1.Pod{ok, bad, fallback, crash} {
		e.createPod(p)
	}

	p := e.waitPod("default", "ok", 30*time.Second, "Succeeded, sandbox released", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded && cond(p, corev1.PodReadyToStartContainers) == corev1.ConditionFalse
	})
	if cs := cstatus(p, "c"); cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" || cs.State.Terminated.ExitCode != 0 || cs.Ready {
		t.Errorf("ok: %s", dump(cs))
	}
	if cond(p, corev1.PodReady) != corev1.ConditionFalse || cond(p, corev1.ContainersReady) != corev1.ConditionFalse {
		t.Errorf("ok: conditions %s", dump(p.Status.Conditions))
	}
	p = e.waitPod("default", "bad", 30*time.Second, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if cs := cstatus(p, "c"); cs.State.Terminated == nil || cs.State.Terminated.Reason != "Error" || cs.State.Terminated.ExitCode != 3 || cs.State.Terminated.Message != "bye now" {
		t.Errorf("bad: %s", dump(cs))
	}
	p = e.waitPod("default", "fallback", 30*time.Second, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if cs := cstatus(p, "c"); cs.State.Terminated == nil || !strings.Contains(cs.State.Terminated.Message, "last words") {
		t.Errorf("fallback: %s", dump(cs))
	}
	// Terminal pods keep their logs but release the sandbox.
	if !strings.Contains(e.containerLog("default", "ok", "c", false), "done") {
		t.Error("no log")
	}
	if _, err := e.m.PodNetNS("default", "ok"); err == nil {
		t.Error("a succeeded pod still has a sandbox")
	}

	p = e.waitPod("default", "crash", 60*time.Second, "CrashLoopBackOff", func(p *corev1.Pod) bool {
		cs := cstatus(p, "c")
		return cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff"
	})
	cs := cstatus(p, "c")
	if cs.RestartCount < 1 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 2 ||
		!strings.HasPrefix(cs.State.Waiting.Message, "back-off 10s restarting failed container=c pod=crash_default(") {
		t.Errorf("crash: %s", dump(cs))
	}
	if p.Status.Phase != corev1.PodRunning || cond(p, corev1.PodReady) != corev1.ConditionFalse {
		t.Errorf("crash: phase %s ready %s", p.Status.Phase, cond(p, corev1.PodReady))
	}
	if !strings.Contains(e.containerLog("default", "crash", "c", true), "crashing") {
		t.Error("crash: no previous log")
	}
	waitFor(t, 10*time.Second, "BackOff event", func() bool {
		evs, _ := e.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		for _, ev := range evs.Items {
			if ev.Reason == "BackOff" && ev.InvolvedObject.Name == "crash" && ev.Source.Component == "kubelet" {
				return true
			}
		}
		return false
	})
	for _, n := range []string{"ok", "bad", "fallback", "crash"} {
		e.client.CoreV1().Pods("default").Delete(context.Background(), n, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
	}
	for _, n := range []string{"ok", "bad", "fallback", "crash"} {
		e.waitGone("default", n, 30*time.Second)
	}
}

// TestLivenessRestart: a failing liveness probe kills the container and a
// new instance starts.
func TestLivenessRestart(t *testing.T) {
	e := newEnv(t)
	pod := simplePod("live", corev1.Container{
		Name: "c", Command: []string{"sh", "-c", "touch /tmp/healthy; echo up; exec sleep 3600"},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/healthy"}}},
			PeriodSeconds: 1, FailureThreshold: 1,
		},
	})
	e.createPod(pod)
	p := e.waitPod("default", "live", 30*time.Second, "Running", func(p *corev1.Pod) bool {
		cs := cstatus(p, "c")
		return cs != nil && cs.State.Running != nil
	})
	first := cstatus(p, "c").ContainerID
	id, _, err := e.m.ContainerID("default", "live", "c")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := e.rt.Exec(context.Background(), id, execRm()); err != nil || code != 0 {
		t.Fatalf("exec: %d %v", code, err)
	}
	p = e.waitPod("default", "live", 30*time.Second, "restart", func(p *corev1.Pod) bool {
		cs := cstatus(p, "c")
		return cs != nil && cs.RestartCount == 1 && cs.State.Running != nil
	})
	cs := cstatus(p, "c")
	if cs.ContainerID == first || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ContainerID != first {
		t.Errorf("after restart: %s", dump(cs))
	}
	e.client.CoreV1().Pods("default").Delete(context.Background(), "live", metav1.DeleteOptions{})
	e.waitGone("default", "live", 30*time.Second)
}

func execRm() runtime.ExecConfig { return runtime.ExecConfig{Args: []string{"rm", "/tmp/healthy"}} }

// TestLifecycleHooks: postStart runs after the start, preStop before the
// SIGTERM of a deletion.
func TestLifecycleHooks(t *testing.T) {
	e := newEnv(t)
	host := t.TempDir()
	pod := simplePod("hooks", corev1.Container{
		Name: "c", Command: []string{"sh", "-c", "trap 'echo term >> /host/events; exit 0' TERM; while true; do sleep 0.1; done"},
		VolumeMounts: []corev1.VolumeMount{{Name: "host", MountPath: "/host"}},
		Lifecycle: &corev1.Lifecycle{
			PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo poststart >> /host/events"}}},
			PreStop:   &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo prestop >> /host/events"}}},
		},
	})
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](10)
	pod.Spec.Volumes = []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: host}}}}
	e.createPod(pod)
	e.waitPod("default", "hooks", 30*time.Second, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	waitFor(t, 10*time.Second, "postStart", func() bool {
		b, _ := os.ReadFile(filepath.Join(host, "events"))
		return string(b) == "poststart\n"
	})
	if err := e.client.CoreV1().Pods("default").Delete(context.Background(), "hooks", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitGone("default", "hooks", 30*time.Second)
	b, _ := os.ReadFile(filepath.Join(host, "events"))
	if string(b) != "poststart\nprestop\nterm\n" {
		t.Errorf("events %q", b)
	}
}

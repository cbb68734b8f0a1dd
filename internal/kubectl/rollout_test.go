//go:build !skiff_no_apiserver

package kubectl

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// rolloutSeq exercises scale and rollout on the describe fixture. No
// controllers run, so every step sees exactly what the previous wrote.
var rolloutSeq = []step{
	s("scale", "deploy", "web", "--replicas=5"),
	s("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"),
	s("scale", "deploy", "web", "--current-replicas=3", "--replicas=2"),
	s("scale", "deploy/web", "--current-replicas=5", "--replicas=3"),
	s("scale", "rs", "-l", "app=web", "--replicas=0"),
	s("get", "rs", "-o", "jsonpath={.items[*].spec.replicas}"),
	s("scale", "pod", "pending", "--replicas=1"),
	s("scale", "deploy", "nope", "--replicas=1"),
	s("scale", "deploy", "web"),
	s("scale", "deploy", "-l", "app=nothing", "--replicas=1"),
	s("scale", "deploy", "web", "--replicas=4", "--dry-run=server"),
	s("scale", "deploy", "web", "--replicas=4", "-o", "name"),
	s("rollout", "history", "deploy/web"),
	s("rollout", "history", "deploy", "web", "--revision=1"),
	s("rollout", "history", "deploy", "web", "--revision=7"),
	s("rollout", "status", "deploy", "web", "--watch=false"),
	s("rollout", "status", "deploy", "web", "--timeout=1s"),
	s("rollout", "status", "deploy", "nope"),
	s("rollout", "pause", "deploy", "web"),
	s("rollout", "pause", "deploy", "web"),
	s("get", "deploy", "web", "-o", "jsonpath={.spec.paused}"),
	s("rollout", "restart", "deploy", "web"),
	s("rollout", "undo", "deploy", "web"),
	s("rollout", "resume", "deploy", "web"),
	s("rollout", "resume", "deploy", "web"),
	s("get", "deploy", "web", "-o", "jsonpath={.spec.paused}"),
	s("rollout", "undo", "deploy", "web", "--dry-run=client"),
	s("rollout", "undo", "deploy", "web"),
	s("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.metadata.labels} {.metadata.annotations}"),
	s("rollout", "undo", "deploy", "web", "--to-revision=1"),
	s("rollout", "undo", "deploy", "web", "--to-revision=9"),
	s("rollout", "undo", "deploy", "web", "--to-revision=2"),
	s("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"),
	s("rollout", "restart", "deploy", "web"),
	s("rollout", "pause", "rs/web-5d4f7b9c8"),
	s("rollout", "history", "rs", "web-5d4f7b9c8"),
	s("rollout", "status", "deploy", "web", "--to-revision=1"),
	s("rollout", "frob", "deploy", "web"),
	s("rollout", "status", "deploy", "--watch=false"),
	s("rollout", "status", "deploy", "-l", "app=web", "--watch=false"),
	s("rollout", "history", "deploy", "-l", "app=nothing"),
	s("scale", "deploy", "--all", "--replicas=2"),
	s("rollout", "pause", "deploy", "web", "-o", "name"),
	s("rollout", "resume", "deploy", "-o", "name"),
}

// TestScaleAndRolloutMatchUpstream runs rolloutSeq with Run and with
// upstream kubectl against two identical servers and compares every step
// and the resulting deployment.
func TestScaleAndRolloutMatchUpstream(t *testing.T) {
	bin := kubectlPath(t)
	run := func(upstream bool) ([]result, string) {
		api := controllertest.Start(t)
		buildFixture(t, api.Client)
		kc := realKubeconfig(t, api)
		var out []result
		for _, st := range rolloutSeq {
			var r result
			if upstream {
				r = runUpstream(t, bin, kc, "", st.args...)
				r.stderr = normalizeStderr(r.stderr)
			} else {
				r = runOurs(t, kc, "", st.args...)
				r.stderr = normalizeStderr(r.stderr)
			}
			out = append(out, r)
		}
		d, err := api.Client.AppsV1().Deployments("default").Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, restarted := d.Spec.Template.Annotations[restartedAtAnnotation]
		state := strings.Join([]string{d.Spec.Template.Spec.Containers[0].Image, fmtBool(d.Spec.Paused), fmtBool(restarted)}, " ")
		return out, state
	}
	ours, ourState := run(false)
	var transcript strings.Builder
	for i, st := range rolloutSeq {
		transcript.WriteString("$ kubectl " + strings.Join(st.args, " ") + "\n" + ours[i].stdout)
		if ours[i].stderr != "" {
			transcript.WriteString("[stderr] " + ours[i].stderr)
		}
		if ours[i].code != 0 {
			transcript.WriteString("[exit 1]\n")
		}
	}
	golden(t, "seq-scale-rollout", normalizeDescribe(transcript.String()))
	if bin == "" {
		t.Skip("kubectl not on PATH")
	}
	up, upState := run(true)
	for i, st := range rolloutSeq {
		if up[i] != ours[i] {
			t.Errorf("step %d (kubectl %s) differs\n--- kubectl (exit %d)\n%s%s--- ours (exit %d)\n%s%s", i, strings.Join(st.args, " "),
				up[i].code, up[i].stdout, up[i].stderr, ours[i].code, ours[i].stdout, ours[i].stderr)
		}
	}
	if upState != ourState {
		t.Errorf("final deployment: kubectl left %q, ours %q", upState, ourState)
	}
}

func fmtBool(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// TestRolloutStatusFollowsProgress plays a rolling update's status
// changes while `rollout status` watches, once with Run and once with
// upstream kubectl, and expects the same messages in the same order.
func TestRolloutStatusFollowsProgress(t *testing.T) {
	api := controllertest.Start(t)
	buildFixture(t, api.Client)
	kc := realKubeconfig(t, api)
	ctx := context.Background()
	deps := api.Client.AppsV1().Deployments("default")
	setStatus := func(replicas, updated, available int32, progressReason string) {
		t.Helper()
		d, err := deps.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Status.ObservedGeneration = d.Generation
		d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.AvailableReplicas = replicas, updated, available
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: progressReason}}
		if progressReason == timedOutReason {
			d.Status.Conditions[0].Status = corev1.ConditionFalse
		}
		if _, err := deps.UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		replicas, updated, available int32
		reason, want                 string
	}{
		{4, 1, 3, "ReplicaSetUpdated", `Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...`},
		{4, 3, 2, "ReplicaSetUpdated", `Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...`},
		{3, 3, 2, "ReplicaSetUpdated", `Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...`},
		{3, 3, 3, "NewReplicaSetAvailable", `deployment "web" successfully rolled out`},
	}
	play := func(start func(out *lockedBuffer) func() result) string {
		setStatus(steps[0].replicas, steps[0].updated, steps[0].available, steps[0].reason)
		var out lockedBuffer
		wait := start(&out)
		for i, st := range steps {
			if i > 0 {
				setStatus(st.replicas, st.updated, st.available, st.reason)
			}
			waitFor(t, func() bool { return strings.Contains(out.String(), st.want) })
		}
		r := wait()
		if r.code != 0 {
			t.Errorf("rollout status exited %d: %s", r.code, r.stderr)
		}
		return out.String()
	}
	ours := play(func(out *lockedBuffer) func() result {
		done := make(chan result, 1)
		go func() {
			var errOut lockedBuffer
			c, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			err := Run(c, []string{"--kubeconfig", kc, "rollout", "status", "deployment/web"}, nil, out, &errOut)
			code := 0
			if err != nil {
				code = 1
			}
			done <- result{stderr: errOut.String(), code: code}
		}()
		return func() result { return <-done }
	})
	var want strings.Builder
	for _, st := range steps {
		want.WriteString(st.want + "\n")
	}
	if ours != want.String() {
		t.Errorf("ours printed\n%s\nwant\n%s", ours, want.String())
	}

	// A rollout past its deadline fails at once.
	setStatus(4, 1, 3, timedOutReason)
	r := runOurs(t, kc, "", "rollout", "status", "deploy", "web")
	if r.code != 1 || r.stderr != "error: deployment \"web\" exceeded its progress deadline\n" {
		t.Errorf("deadline exceeded: %+v", r)
	}

	bin := kubectlPath(t)
	if bin == "" {
		t.Skip("kubectl not on PATH")
	}
	if up := runUpstream(t, bin, kc, "", "rollout", "status", "deploy", "web"); up != r {
		t.Errorf("deadline exceeded: kubectl %+v, ours %+v", up, r)
	}
	upstream := play(func(out *lockedBuffer) func() result {
		home := t.TempDir()
		cmd := exec.Command(bin, "--kubeconfig", kc, "--cache-dir", filepath.Join(home, "cache"), "rollout", "status", "deployment/web")
		cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "KUBECTL_KUBERC=false"}
		var errOut lockedBuffer
		cmd.Stdout, cmd.Stderr = out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return func() result {
			err := cmd.Wait()
			code := 0
			if err != nil {
				code = 1
			}
			return result{stderr: errOut.String(), code: code}
		}
	})
	if upstream != ours {
		t.Errorf("kubectl printed\n%s\nours\n%s", upstream, ours)
	}
}

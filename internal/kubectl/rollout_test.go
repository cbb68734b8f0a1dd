//go:build !skiff_no_apiserver

package kubectl

import (
	"context"
	"strings"
	"testing"

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

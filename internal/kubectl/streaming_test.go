//go:build !skiff_no_apiserver

package kubectl

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// streamFixture fills the fake with pods in the shapes the streaming
// verbs treat differently.
func streamFixture(t *testing.T, f *streamFake) {
	t.Helper()
	ctx := context.Background()
	cs := f.api.Client
	created := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	running := func(p *corev1.Pod, ready bool) {
		p.Status.Phase = corev1.PodRunning
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: created}}
	}
	mk := func(name string, labels, ann map[string]string, init []string, containers []string, phase corev1.PodPhase, ready bool) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels, Annotations: ann}}
		for _, c := range init {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: c, Image: "busybox"})
		}
		for _, c := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "busybox",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}})
		}
		if len(labels) > 0 || name == "one" {
			p.Spec.NodeName = "node-1"
		}
		p, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		switch phase {
		case corev1.PodRunning:
			running(p, ready)
		default:
			p.Status.Phase = phase
		}
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("one", nil, nil, nil, []string{"main"}, corev1.PodRunning, true)
	mk("multi", nil, nil, []string{"setup"}, []string{"app", "side"}, corev1.PodRunning, true)
	mk("annotated", nil, map[string]string{"kubectl.kubernetes.io/default-container": "b"}, nil, []string{"a", "b"}, corev1.PodRunning, true)
	mk("badann", nil, map[string]string{"kubectl.kubernetes.io/default-container": "zzz"}, nil, []string{"x", "y"}, corev1.PodRunning, true)
	mk("done", nil, nil, nil, []string{"main"}, corev1.PodSucceeded, false)
	mk("pending", nil, nil, nil, []string{"main"}, corev1.PodPending, false)
	mk("ttypod", nil, nil, nil, []string{"c"}, corev1.PodRunning, true)
	if p, err := cs.CoreV1().Pods("default").Get(ctx, "ttypod", metav1.GetOptions{}); err == nil {
		// TTY is immutable; recreate the pod with it.
		cs.CoreV1().Pods("default").Delete(ctx, "ttypod", metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		p.ResourceVersion, p.UID = "", ""
		p.Spec.Containers[0].TTY, p.Spec.Containers[0].Stdin = true, true
		p, err = cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		running(p, true)
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("web-1", map[string]string{"app": "web"}, nil, nil, []string{"web"}, corev1.PodRunning, true)
	mk("web-2", map[string]string{"app": "web"}, nil, nil, []string{"web"}, corev1.PodRunning, false)

	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}}}}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	empty := d.DeepCopy()
	empty.Name = "nopods"
	empty.Spec.Selector.MatchLabels = map[string]string{"app": "none"}
	empty.Spec.Template.Labels = map[string]string{"app": "none"}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, empty, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "websvc", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
			{Name: "alt", Port: 81, TargetPort: intstr.FromInt32(9090)}}}}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	noSel := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "nosel", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := cs.CoreV1().Services("default").Create(ctx, noSel, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	f.mu.Lock()
	f.logs["one/main"] = []string{"hello", "world", "three"}
	f.logs["multi/setup"] = []string{"setting up"}
	f.logs["multi/app"] = []string{"app 1", "app 2"}
	f.logs["multi/side"] = []string{"side 1"}
	f.logs["annotated/a"] = []string{"from a"}
	f.logs["annotated/b"] = []string{"from b"}
	f.logs["badann/x"] = []string{"from x"}
	f.logs["web-1/web"] = []string{"web-1 log"}
	f.logs["web-2/web"] = []string{"web-2 log"}
	f.prevLogs["one/main"] = []string{"before the restart"}
	f.mu.Unlock()
}

// streamCases are compared with upstream kubectl: output, exit code and
// the request the server saw.
var streamCases = [][]string{
	{"logs", "one"},
	{"logs", "multi"},
	{"logs", "multi", "side"},
	{"logs", "multi", "side", "-c", "app"},
	{"logs", "annotated"},
	{"logs", "badann"},
	{"logs", "deploy/web"},
	{"logs", "deployment.apps/web", "--all-pods"},
	{"logs", "svc/websvc"},
	{"logs", "rs/nothing"},
	{"logs", "one", "--tail=1", "--timestamps"},
	{"logs", "one", "-p"},
	{"logs", "multi", "-p"},
	{"logs", "multi", "--all-containers", "--prefix"},
	{"logs", "multi", "--all-containers", "-c", "app"},
	{"logs", "multi", "-c", "nope"},
	{"logs", "nope"},
	{"logs"},
	{"logs", "a", "b", "c"},
	{"logs", "one", "-l", "app=web"},
	{"logs", "-l", "app=web"},
	{"logs", "-l", "app=web", "--tail=1", "--prefix"},
	{"logs", "-l", "app=nothing"},
	{"logs", "deploy/nopods", "--pod-running-timeout=1s"},
	{"logs", "svc/nosel"},
	{"logs", "cm/x"},
	{"logs", "one", "--since=1h", "--since-time=2026-01-01T00:00:00Z"},
	{"logs", "one", "--since-time=yesterday"},
	{"logs", "one", "--since=90s", "--since-time=2026-01-01T00:00:00.5Z"},
	{"logs", "one", "--since=1500ms", "--insecure-skip-tls-verify-backend"},
	{"logs", "one", "--since-time=2026-01-01T00:00:00Z"},
	{"logs", "one", "--limit-bytes=4"},
	{"logs", "one", "--limit-bytes=-1"},
	{"logs", "one", "--tail=-2"},
	{"logs", "-f", "deploy/web", "--all-pods", "--max-log-requests=1"},
	{"exec", "one", "--", "echo", "hi"},
	{"exec", "one", "echo", "hi"},
	{"exec", "one"},
	{"exec"},
	{"exec", "multi", "--", "echo", "hi"},
	{"exec", "-q", "multi", "--", "echo", "hi"},
	{"exec", "annotated", "--", "echo", "hi"},
	{"exec", "badann", "--", "echo", "hi"},
	{"exec", "one", "--", "exit", "3"},
	{"exec", "one", "--", "fail"},
	{"exec", "one", "--", "err", "oops"},
	{"exec", "-i", "one", "--", "cat"},
	{"exec", "done", "--", "echo"},
	{"exec", "one", "-c", "nope", "--", "echo"},
	{"exec", "-t", "one", "--", "tty"},
	{"exec", "-it", "one", "--", "tty"},
	{"exec", "deploy/web", "--", "echo", "x"},
	{"exec", "svc/websvc", "--", "echo", "x"},
	{"exec", "svc/nosel", "--", "echo", "x"},
	{"exec", "cm/x", "--", "echo", "x"},
	{"exec", "nope", "--", "echo", "x"},
	{"attach", "one"},
	{"attach", "multi"},
	{"attach", "pod", "multi", "-c", "side"},
	{"attach", "multi", "-c", "nope"},
	{"attach", "done"},
	{"attach"},
	{"attach", "a", "b", "c"},
	{"attach", "-i", "one"},
	{"attach", "-it", "one"},
	{"attach", "deploy/web", "-q"},
	{"port-forward", "pending", "8080"},
	{"port-forward", "one"},
	{"port-forward", "one", "x:y"},
	{"port-forward", "one", "dns"},
	{"port-forward", "one", "8080:"},
	{"port-forward", "one", "99999"},
	{"port-forward", "svc/nosel", "80"},
	{"port-forward", "svc/websvc", "99"},
	{"port-forward", "svc/websvc", "nope"},
	{"port-forward", "nope", "80"},
	{"port-forward", "one", "8080", "--address=foo"},
	{"port-forward", "one", "8080", "--pod-running-timeout=0"},
	{"logs", "one", "--pod-running-timeout=0"},
	{"exec", "one", "--pod-running-timeout=0", "--", "echo"},
	{"attach", "one", "--pod-running-timeout=-1s"},
	{"attach", "--pod-running-timeout=-1s"},
	{"exec", "one", "--pod-running-timeout=0"},
	{"-n", "kube-system", "exec", "one", "--", "echo"},
	{"-n", "kube-system", "logs", "one"},
	{"logs", "frob/x"},
	{"logs", "node/x"},
	{"logs", "ns/default"},
	{"exec", "ns/default", "--", "echo"},
	{"exec", "frob/x", "--", "echo"},
	{"port-forward", "frob/x", "80"},
	{"logs", "pod/"},
	{"attach", "deploy", "web"},
	{"attach", "frob", "web"},
	{"logs", "-f", "-l", "app=web", "--prefix"},
	{"logs", "-f", "deploy/web", "--all-pods", "--timestamps"},
	{"logs", "-f", "multi", "--all-containers"},
}

// TestStreamingVerbsMatchUpstream runs every case with Run and with
// upstream kubectl against one fake, once with the WebSocket v5 route
// and once SPDY only (WebSocket upgrades fail and both fall back).
func TestStreamingVerbsMatchUpstream(t *testing.T) {
	bin := kubectlPath(t)
	f := newStreamFake(t)
	streamFixture(t, f)
	kc := f.kubeconfig(t)
	for _, v5 := range []bool{true, false} {
		f.v5 = v5
		var transcript strings.Builder
		for _, args := range streamCases {
			if !v5 && args[0] != "exec" && args[0] != "attach" {
				continue
			}
			ours := runOurs(t, kc, "in1\nin2\n", args...)
			ourCall := f.lastCall()
			// kubectl reads several containers' or pods' logs in map
			// order; ours are in pod order, then spec order (init,
			// regular, ephemeral), and following runs them in parallel.
			line := strings.Join(args, " ")
			unordered := args[0] == "logs" && (strings.Contains(line, "--all-") || strings.Contains(line, "-l app=web"))
			if unordered {
				ours.stdout = sortLines(ours.stdout)
			}
			transcript.WriteString("$ kubectl " + strings.Join(args, " ") + "\n" + ours.stdout)
			if ours.stderr != "" {
				transcript.WriteString("[stderr] " + ours.stderr)
			}
			if ours.code != 0 {
				transcript.WriteString(fmt.Sprintf("[exit %d]\n", ours.code))
			}
			// (A refused WebSocket upgrade falls back to SPDY and is
			// refused again.)
			if (ourCall.verb == "exec" || ourCall.verb == "attach") && !strings.Contains(ours.stderr, "Error from server") {
				want := map[bool]string{true: "websocket", false: "spdy"}[v5]
				if ourCall.transport != want {
					t.Errorf("kubectl %s: over %s, want %s", strings.Join(args, " "), ourCall.transport, want)
				}
			}
			if bin == "" {
				continue
			}
			up := runUpstream(t, bin, kc, "in1\nin2\n", args...)
			upCall := f.lastCall()
			up.stderr = normalizeStderr(up.stderr)
			if unordered {
				up.stdout = sortLines(up.stdout)
				upCall, ourCall = streamCall{}, streamCall{}
			}
			ours.stderr = normalizeStderr(ours.stderr)
			if up != ours {
				t.Errorf("v5=%v: kubectl %s differs\n--- kubectl (exit %d)\n%s[stderr]\n%s--- ours (exit %d)\n%s[stderr]\n%s", v5, strings.Join(args, " "),
					up.code, up.stdout, up.stderr, ours.code, ours.stdout, ours.stderr)
			}
			if fmt.Sprint(upCall) != fmt.Sprint(ourCall) {
				t.Errorf("v5=%v: kubectl %s: server saw\n kubectl %+v\n ours    %+v", v5, strings.Join(args, " "), upCall, ourCall)
			}
		}
		if v5 {
			golden(t, "seq-streaming", transcript.String())
		}
	}
	if bin == "" {
		t.Skip("kubectl not on PATH")
	}
}

func sortLines(s string) string {
	lines := strings.SplitAfter(s, "\n")
	sort.Strings(lines)
	return strings.Join(lines, "")
}

package podworker

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/runtime"
)

// TestEnvFromConfigMapAndSecretVolume: env from a ConfigMap key and a
// Secret volume are visible inside; init containers run first.
func TestEnvFromConfigMapAndSecretVolume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"greeting": "hello-from-cm"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"password": []byte("s3cret")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := simplePod("envpod", corev1.Container{
		Name:    "c",
		Command: []string{"sh", "-c", "echo GREETING=$GREETING; echo PASSWORD=$(cat /etc/sec/password); cat /work/init; exec sleep 3600"},
		Env: []corev1.EnvVar{{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "greeting"}}}},
		VolumeMounts: []corev1.VolumeMount{{Name: "sec", MountPath: "/etc/sec"}, {Name: "work", MountPath: "/work"}},
	})
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: testImage, ImagePullPolicy: corev1.PullIfNotPresent,
		Command:      []string{"sh", "-c", "echo init-ran > /work/init"},
		VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}}}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
		{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	created := e.createPod(pod)
	p := e.waitPod("default", "envpod", 30*time.Second, "Ready", func(p *corev1.Pod) bool { return cond(p, corev1.PodReady) == corev1.ConditionTrue })
	if ics := cstatus(p, "init"); ics == nil || ics.State.Terminated == nil || ics.State.Terminated.Reason != "Completed" {
		t.Errorf("init: %s", dump(ics))
	}
	waitFor(t, 10*time.Second, "env and secret in the output", func() bool {
		out := e.containerLog("default", "envpod", "c", false)
		return strings.Contains(out, "GREETING=hello-from-cm") && strings.Contains(out, "PASSWORD=s3cret") && strings.Contains(out, "init-ran")
	})
	podDir := filepath.Join(e.dir, "pods", string(created.UID))
	if len(mountsUnder(podDir)) == 0 {
		t.Error("secret volume is not a tmpfs")
	}

	// A missing ConfigMap key: CreateContainerConfigError.
	bad := simplePod("badenv", corev1.Container{Name: "c", Command: []string{"true"},
		Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "missing"}}}}})
	e.createPod(bad)
	p = e.waitPod("default", "badenv", 30*time.Second, "CreateContainerConfigError", func(p *corev1.Pod) bool {
		cs := cstatus(p, "c")
		return cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason == "CreateContainerConfigError"
	})
	if p.Status.Phase != corev1.PodPending || cstatus(p, "c").State.Waiting.Message == "" {
		t.Errorf("badenv: %s", dump(p.Status))
	}
	// A missing image with pull policy Never.
	never := simplePod("never", corev1.Container{Name: "c", Image: "skiff.test/none:v1", ImagePullPolicy: corev1.PullNever})
	e.createPod(never)
	e.waitPod("default", "never", 30*time.Second, "ErrImageNeverPull", func(p *corev1.Pod) bool {
		cs := cstatus(p, "c")
		return cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason == "ErrImageNeverPull"
	})
	// An unreachable registry: ErrImagePull (its message from the
	// registry client), then ImagePullBackOff on the next sync.
	pull := simplePod("pull", corev1.Container{Name: "c", Image: "127.0.0.1:1/none:v1", ImagePullPolicy: corev1.PullAlways})
	e.createPod(pull)
	e.m.Resync("default")
	e.waitPod("default", "pull", 30*time.Second, "ImagePullBackOff", func(p *corev1.Pod) bool {
		cs := cstatus(p, "c")
		return cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason == "ImagePullBackOff" &&
			strings.Contains(cs.State.Waiting.Message, "ErrImagePull: ") && strings.Contains(cs.State.Waiting.Message, "connection refused")
	})
	waitFor(t, 10*time.Second, "Failed event", func() bool {
		evs, _ := e.client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		for _, ev := range evs.Items {
			if ev.Reason == "Failed" && ev.InvolvedObject.Name == "pull" && strings.HasPrefix(ev.Message, `Failed to pull image "127.0.0.1:1/none:v1": `) {
				return true
			}
		}
		return false
	})

	for _, n := range []string{"envpod", "badenv", "never", "pull"} {
		e.client.CoreV1().Pods("default").Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
	}
	for _, n := range []string{"envpod", "badenv", "never", "pull"} {
		e.waitGone("default", n, 30*time.Second)
	}
	if m := mountsUnder(e.dir); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
}

// TestRestartReadopts: a Manager restart keeps the container running with
// the same ID, keeps its output flowing into the same log, and changes
// nothing in the pod's status.
func TestRestartReadopts(t *testing.T) {
	e := newEnv(t)
	pod := simplePod("keep", corev1.Container{
		Name:    "c",
		Command: []string{"sh", "-c", "mkdir -p /www; echo ok > /www/index.html; httpd -p 8080 -h /www; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}},
			PeriodSeconds: 1,
		},
	})
	e.createPod(pod)
	p := e.waitPod("default", "keep", 30*time.Second, "Ready", func(p *corev1.Pod) bool { return cond(p, corev1.PodReady) == corev1.ConditionTrue })
	time.Sleep(1500 * time.Millisecond) // let the status settle
	p = e.getPod("default", "keep")
	before := cstatus(p, "c").ContainerID
	rv := p.ResourceVersion

	e.stop()
	time.Sleep(500 * time.Millisecond)
	e.start()
	time.Sleep(4 * time.Second)

	after := e.getPod("default", "keep")
	if cs := cstatus(after, "c"); cs.ContainerID != before || cs.RestartCount != 0 || !cs.Ready {
		t.Errorf("after restart: %s", dump(cs))
	}
	if after.ResourceVersion != rv {
		t.Errorf("status changed across the restart:\nbefore %s\nafter %s", dump(p.Status), dump(after.Status))
	}
	id, running, err := e.m.ContainerID("default", "keep", "c")
	if err != nil || !running || "runc://"+id != before {
		t.Fatalf("ContainerID: %s %v %v", id, running, err)
	}
	// Output still reaches the log.
	n := strings.Count(e.containerLog("default", "keep", "c", false), "tick")
	waitFor(t, 5*time.Second, "new log lines", func() bool {
		return strings.Count(e.containerLog("default", "keep", "c", false), "tick") > n+3
	})
	// Nothing was lost or duplicated: the ticks are consecutive.
	next := 0
	for _, line := range strings.Split(e.containerLog("default", "keep", "c", false), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "tick" {
			if f[1] != strconv.Itoa(next) {
				t.Fatalf("tick %s after %d", f[1], next-1)
			}
			next++
		}
	}
	e.client.CoreV1().Pods("default").Delete(context.Background(), "keep", metav1.DeleteOptions{})
	e.waitGone("default", "keep", 30*time.Second)
}

// TestDeletedWhileDown: a pod force-deleted while the Manager was stopped
// is cleaned up when it starts again.
func TestDeletedWhileDown(t *testing.T) {
	e := newEnv(t)
	pod := simplePod("gone", corev1.Container{Name: "c", Command: []string{"sleep", "3600"}})
	pod.Spec.Volumes = []corev1.Volume{{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "mem", MountPath: "/mem"}}
	created := e.createPod(pod)
	e.waitPod("default", "gone", 30*time.Second, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	netns, _ := e.m.PodNetNS("default", "gone")
	e.stop()
	if err := e.client.CoreV1().Pods("default").Delete(context.Background(), "gone", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	e.waitGone("default", "gone", 10*time.Second)
	e.start()
	cs, _ := e.rt.List()
	sbs, _ := e.rt.ListSandboxes()
	if len(cs) != 0 || len(sbs) != 0 {
		t.Errorf("left: %d containers, %d sandboxes", len(cs), len(sbs))
	}
	if exists(netns) {
		t.Errorf("netns %s left", netns)
	}
	if cg := e.podCgroups(string(created.UID)); len(cg) != 0 {
		t.Errorf("cgroups left: %v", cg)
	}
	if m := mountsUnder(e.dir); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	if exists(filepath.Join(e.dir, "pods", string(created.UID))) {
		t.Error("pod dir left")
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "run")); len(ents) != 0 {
		t.Errorf("FIFOs left: %d", len(ents))
	}
}

// TestHostNetwork: a hostNetwork pod's containers are in the host's
// network namespace and its status shows the node IP as pod IP.
func TestHostNetwork(t *testing.T) {
	e := newEnv(t)
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	pod := simplePod("hostnet", corev1.Container{Name: "c", Command: []string{"sh", "-c", "echo net=$(readlink /proc/self/ns/net); exec sleep 3600"}})
	pod.Spec.HostNetwork = true
	e.createPod(pod)
	p := e.waitPod("default", "hostnet", 30*time.Second, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if p.Status.PodIP != "10.0.0.1" || len(p.Status.PodIPs) != 1 {
		t.Errorf("podIP %q %v", p.Status.PodIP, p.Status.PodIPs)
	}
	waitFor(t, 10*time.Second, "output", func() bool {
		return strings.Contains(e.containerLog("default", "hostnet", "c", false), "net="+hostNet)
	})
	if ns, err := e.m.PodNetNS("default", "hostnet"); err != nil || ns != "/proc/self/ns/net" {
		t.Errorf("PodNetNS %q %v", ns, err)
	}
	e.client.CoreV1().Pods("default").Delete(context.Background(), "hostnet", metav1.DeleteOptions{})
	e.waitGone("default", "hostnet", 30*time.Second)
}

// TestConfigMapVolumeUpdate: a changed ConfigMap reaches the pod's volume
// at once (podsources.OnChange → ResyncPod), not at the next periodic sync.
func TestConfigMapVolumeUpdate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cm, err := e.client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "live"}, Data: map[string]string{"key": "one"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := simplePod("cmpod", corev1.Container{Name: "c", Command: []string{"sleep", "3600"},
		VolumeMounts: []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}}})
	pod.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "live"}}}}}
	e.createPod(pod)
	e.waitPod("default", "cmpod", 30*time.Second, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	id, _, err := e.m.ContainerID("default", "cmpod", "c")
	if err != nil {
		t.Fatal(err)
	}
	read := func() string {
		var out strings.Builder
		e.rt.Exec(ctx, id, runtime.ExecConfig{Args: []string{"cat", "/cfg/key"}, Stdout: &out})
		return out.String()
	}
	if got := read(); got != "one" {
		t.Fatalf("key %q", got)
	}
	cm.Data["key"] = "two"
	if _, err := e.client.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "updated key", func() bool { return read() == "two" })
	e.client.CoreV1().Pods("default").Delete(ctx, "cmpod", metav1.DeleteOptions{})
	e.waitGone("default", "cmpod", 30*time.Second)
}

// TestForceDeleted: a pod force-deleted (grace 0) while it runs is cleaned
// up from the informer's delete event.
func TestForceDeleted(t *testing.T) {
	e := newEnv(t)
	pod := simplePod("forced", corev1.Container{Name: "c", Command: []string{"sleep", "3600"}})
	created := e.createPod(pod)
	e.waitPod("default", "forced", 30*time.Second, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	netns, _ := e.m.PodNetNS("default", "forced")
	if err := e.client.CoreV1().Pods("default").Delete(context.Background(), "forced", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "cleanup", func() bool {
		cs, _ := e.rt.List()
		sbs, _ := e.rt.ListSandboxes()
		return len(cs) == 0 && len(sbs) == 0 && !exists(netns) && len(e.podCgroups(string(created.UID))) == 0 &&
			!exists(filepath.Join(e.dir, "pods", string(created.UID)))
	})
}

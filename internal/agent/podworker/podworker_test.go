package podworker

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

var containerIDRe = regexp.MustCompile(`^runc://[0-9a-f]{64}$`)

// TestPodReadyLogsAndDeletion: a pod runs httpd, becomes Ready through its
// readiness probe, its output reaches the CRI log, and deleting it frees
// its containers, cgroup, netns and mounts.
func TestPodReadyLogsAndDeletion(t *testing.T) {
	e := newEnv(t)
	pod := simplePod("web",
		corev1.Container{
			Name: "web", Command: []string{"sh", "-c", "mkdir -p /www && echo hi > /www/index.html && echo started && exec httpd -f -p 8080 -h /www"},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}},
				PeriodSeconds: 1,
			},
		},
		corev1.Container{Name: "side", Command: []string{"sh", "-c", "echo side-$HOSTNAME; exec sleep 3600"}},
	)
	pod.Spec.Volumes = []corev1.Volume{{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}}
	pod.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "mem", MountPath: "/mem"}}
	created := e.createPod(pod)
	p := e.waitPod("default", "web", 30*time.Second, "Ready", func(p *corev1.Pod) bool { return cond(p, corev1.PodReady) == corev1.ConditionTrue })
	if p.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s", p.Status.Phase)
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady} {
		if cond(p, ct) != corev1.ConditionTrue {
			t.Errorf("condition %s = %q", ct, cond(p, ct))
		}
	}
	if p.Status.HostIP != "10.0.0.1" || p.Status.StartTime == nil || p.Status.QOSClass != corev1.PodQOSBestEffort {
		t.Errorf("hostIP %q startTime %v qos %q", p.Status.HostIP, p.Status.StartTime, p.Status.QOSClass)
	}
	for _, name := range []string{"web", "side"} {
		cs := cstatus(p, name)
		if cs == nil || cs.State.Running == nil || !cs.Ready || cs.Started == nil || !*cs.Started {
			t.Fatalf("%s: %s", name, dump(cs))
		}
		if !containerIDRe.MatchString(cs.ContainerID) || cs.ImageID == "" || cs.Image != "skiff.test/busybox:v1" || cs.RestartCount != 0 {
			t.Errorf("%s: containerID %q image %q imageID %q", name, cs.ContainerID, cs.Image, cs.ImageID)
		}
		id, running, err := e.m.ContainerID("default", "web", name)
		if err != nil || !running || "runc://"+id != cs.ContainerID {
			t.Errorf("ContainerID(%s) = %q %v %v", name, id, running, err)
		}
	}
	waitFor(t, 10*time.Second, "log output", func() bool {
		return strings.Contains(e.containerLog("default", "web", "web", false), "started") &&
			strings.Contains(e.containerLog("default", "web", "side", false), "side-web")
	})
	if _, _, err := e.m.ContainerLog("default", "web", "nope", false); err == nil {
		t.Error("ContainerLog of an unknown container: no error")
	}
	if _, _, err := e.m.ContainerLog("default", "nope", "web", false); err == nil {
		t.Error("ContainerLog of an unknown pod: no error")
	}
	netns, err := e.m.PodNetNS("default", "web")
	if err != nil || !exists(netns) {
		t.Fatalf("PodNetNS: %q %v", netns, err)
	}
	if len(e.podCgroups(string(created.UID))) == 0 {
		t.Error("no pod cgroup found")
	}
	podDir := filepath.Join(e.dir, "pods", string(created.UID))
	if len(mountsUnder(podDir)) == 0 {
		t.Error("memory emptyDir is not a tmpfs mount")
	}

	// Deletion: SIGTERM (httpd and sleep die of it), cleanup, confirmation.
	if err := e.client.CoreV1().Pods("default").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitGone("default", "web", 30*time.Second)
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
	if exists(podDir) {
		t.Errorf("pod dir %s left", podDir)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "run")); len(ents) != 0 {
		t.Errorf("FIFOs left: %d", len(ents))
	}
}

var _ = ptr.To[int]
